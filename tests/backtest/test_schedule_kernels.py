"""Target schedules and band rows in the backtest fast paths (DESIGN §6, issue 11): the CPU
lockstep path ``backtest_cpu_nb`` is bit-identical to the per-combination path
``backtest_scalar_nb`` (the GPU thread's code) and to the CUDA kernel in Numba's simulator, and
a schedule whose rows never change equals constant targets.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpusim.backtest.cpu import LANES, backtest_cpu, backtest_cpu_nb, backtest_scalar_nb
from gpusim.backtest.steps import NEVER, prepare_inputs


def _close(rng, T, A):
    return 50.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.02, (T, A)), axis=0))


def _stack(rng, T, n, width, make_row, max_rows=5):
    """``n`` random schedules stacked: (rows, first row of each, nxt)."""
    rows, first, nxt = [], [], []
    for _ in range(n):
        k = int(rng.integers(1, max_rows + 1))
        bars = np.sort(rng.choice(np.arange(1, T), k - 1, replace=False))
        first.append(len(rows))
        for i in range(k):
            rows.append(make_row())
            nxt.append(int(bars[i]) if i < k - 1 else NEVER)
    return np.array(rows).reshape(len(rows), width), np.array(first), np.array(nxt)


def _band_row(rng, A):
    kind = rng.integers(0, 5)
    tau = rng.choice([0.01, 0.03, 0.08], A)
    rel = np.zeros(A)
    ab = np.full(A, np.inf)
    if kind == 1:                      # absolute, per asset
        ab = tau
    elif kind == 2:                    # relative
        rel, ab = tau * 3, np.zeros(A)
    elif kind == 3:                    # hybrid max(rel w, abs)
        rel, ab = tau * 3, tau / 2
    elif kind == 4:                    # absolute on some assets only
        ab = np.where(rng.random(A) < 0.5, tau, np.inf)
    return np.r_[rel, ab]


def _inputs(seed, C, T=80, A=4):
    rng = np.random.default_rng(seed)
    close = _close(rng, T, A)
    W, wfirst, wnxt = _stack(rng, T, 12, A, lambda: rng.dirichlet(np.ones(A)))
    B, bfirst, bnxt = _stack(rng, T, 8, 2 * A, lambda: _band_row(rng, A))
    masks = np.zeros((3, T), bool)
    masks[1, ::10] = True
    masks[2, ::3] = True
    wid = wfirst[rng.integers(0, wfirst.size, C)]
    bid = bfirst[rng.integers(0, bfirst.size, C)]
    mid = rng.integers(0, 3, C)
    fees = rng.choice([0.0, 0.002, 0.02], C)
    return prepare_inputs(close, W, wid, wnxt, masks, mid, B, bid, bnxt, fees, 100.0, 252.0,
                          0.01)


@pytest.mark.parametrize("C", [1, 9, LANES + 5, 3 * LANES + 2])
def test_lockstep_equals_scalar_path_with_schedules_and_band_rows(C):
    args = _inputs(C, C)
    fast = backtest_cpu_nb(*args)
    np.testing.assert_array_equal(fast, backtest_scalar_nb(*args))
    assert np.all(np.isfinite(fast[:, -1]))


def test_schedule_switch_bars_rebalance():
    # one schedule, no rule, no band: rebalances exactly at bar 0 and at each switch bar
    rng = np.random.default_rng(3)
    T, A = 40, 3
    close = _close(rng, T, A)
    W = rng.dirichlet(np.ones(A), 3)
    inf_band = np.r_[np.zeros(A), np.full(A, np.inf)].reshape(1, -1)
    args = prepare_inputs(close, W, [0, 1, 2], [7, 25, NEVER], np.zeros((1, T), bool), 0,
                          inf_band, 0, [NEVER], 0.001, 1.0, 252.0, 0.0)
    out = backtest_cpu_nb(*args)
    assert out[:, 9].tolist() == [3.0, 2.0, 1.0]         # n_rebalances from rows 0, 1, 2
    # the last row alone equals constant targets W[2]
    const = backtest_cpu(close, W, [2], np.zeros((1, T), bool), 0, 0.0, False, 0.001)
    np.testing.assert_array_equal(out[2], const[0])


def test_constant_schedule_rows_equal_a_mask_rule():
    # a schedule that repeats the same row at bars 10, 20, 30 = the same targets with a mask on
    # those bars
    rng = np.random.default_rng(4)
    T, A = 45, 5
    close = _close(rng, T, A)
    w = rng.dirichlet(np.ones(A))
    W = np.tile(w, (4, 1))
    off = np.r_[np.zeros(A), np.full(A, np.inf)].reshape(1, -1)
    sched = backtest_cpu_nb(*prepare_inputs(close, W, [0], [10, 20, 30, NEVER],
                                            np.zeros((1, T), bool), 0, off, 0, [NEVER], 0.003,
                                            1.0, 252.0, 0.0))
    mask = np.zeros((1, T), bool)
    mask[0, [10, 20, 30]] = True
    np.testing.assert_array_equal(sched, backtest_cpu(close, w[None], [0], mask, 0, 0.0, False,
                                                      0.003))


def test_band_row_switch_changes_the_band_from_its_bar():
    # band rows: none until bar 20, then absolute 1e-12 (any drift breaches): every bar from 20 on
    # rebalances (prices move every bar)
    rng = np.random.default_rng(5)
    T, A = 40, 3
    close = _close(rng, T, A)
    w = np.full((1, A), 1 / A)
    B = np.array([np.r_[np.zeros(A), np.full(A, np.inf)], np.r_[np.zeros(A), np.full(A, 1e-12)]])
    out = backtest_cpu_nb(*prepare_inputs(close, w, [0], [NEVER], np.zeros((1, T), bool), 0, B,
                                          0, [20, NEVER], 0.0, 1.0, 252.0, 0.0))
    assert out[0, 9] == 1 + (T - 20)


def test_cuda_kernel_schedules_bit_identical_to_cpu():
    from gpusim.backtest.cuda import backtest_gpu

    args = _inputs(11, 37, T=30)
    gpu = backtest_gpu(*args, threads_per_block=8)
    cpu = backtest_cpu_nb(*args)
    np.testing.assert_array_equal(gpu[:, 9], cpu[:, 9])
    np.testing.assert_allclose(gpu, cpu, rtol=1e-13, atol=1e-15)
