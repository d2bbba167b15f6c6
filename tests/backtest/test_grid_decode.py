"""The GPU backtest decodes each combination's parameters from its flat index (issue 14):
the decode body equals :meth:`Grid.codes` (also beyond 2**31 and with zipped repeats), the
decoded kernel parameters equal the host's ``chunk_args``, and the GPU path (simulator) over
many small chunks equals the CPU path bit for bit.
"""

import numpy as np
import pandas as pd
import pytest

import gpusim
from gpusim import Param
from gpusim.backtest.decode import (
    ARGS,
    NO_REMAP,
    REMAP,
    check_tables,
    combination_nb,
    decode_all_nb,
    level_table,
    weight_positions,
)
from gpusim.grid import build_grid
from gpusim.schedule import NEVER


def _big_grid():
    """2e6 x 4 x 2 x 600 = 9.6e9 combinations (> 2**33): threshold and fees zipped, with
    repeats (a repeat decodes to the position of its first occurrence)."""
    entries = {"weights": Param(range(2_000_000)), "rebalance": Param(["never", 5, 10, "M"]),
               "threshold": Param([0.01, 0.02, 0.03] * 200, level="z"),
               "threshold_abs": Param([0.0, 0.05], name="abs"),
               "fees": Param(np.repeat(np.arange(200) * 1e-5, 3), level="z")}
    axis_of = {"weights": "weights", "rebalance": "rebalance", "threshold": "threshold",
               "threshold_abs": "abs", "fees": "fees"}
    return build_grid(entries), axis_of


def test_decode_equals_grid_codes_beyond_2_31():
    grid, axis_of = _big_grid()
    assert grid.size == 2_000_000 * 4 * 600 * 2 > 2 ** 33
    levels, remap = level_table(grid, axis_of)
    # the zipped group repeats values: both its levels carry a remap, the others none
    assert (levels[:, REMAP] != NO_REMAP).tolist() == [False, False, True, False, True]
    for start in (0, 2 ** 31 - 7, 2 ** 32 + 12_345, 2 ** 33 + 5, grid.size - 9):
        stop = min(start + 9, grid.size)
        codes = grid.codes(start, stop)
        for i, flat in enumerate(range(start, stop)):
            got = decode_all_nb(np.int64(flat), levels, remap)
            want = tuple(int(codes[axis_of[a]][i]) for a in ARGS)
            assert got == want, (flat, got, want)
    # by hand: the last combination is the last weight vector, "M", the last zipped row
    # (threshold 0.03 first at position 2, fees 0.00199 first at 597) and threshold_abs 0.05
    assert decode_all_nb(np.int64(grid.size - 1), levels, remap) == (1_999_999, 3, 2, 1, 597)
    # a fixed argument decodes to 0
    lv, rm = level_table(grid, {"weights": "weights"})
    assert decode_all_nb(np.int64(2 ** 33), lv, rm)[1:] == (0, 0, 0, 0)
    # 4800 combinations per weight vector: 2**32 = 894784 * 4800 + 4096
    assert weight_positions(levels, remap, 2 ** 32, 2 ** 32 + 4801) == (894_784, 894_786)


def test_check_tables_rejects_out_of_range_positions():
    grid, axis_of = _big_grid()
    levels, remap = level_table(grid, axis_of)
    ok = (levels, remap, np.zeros(0, np.int64), np.zeros((3, 2), np.int64), np.zeros(598))
    check_tables(ok, n_masks=4, n_band_rows=1)
    with pytest.raises(ValueError, match="rebalance positions must index rows of masks"):
        check_tables(ok, n_masks=3, n_band_rows=1)
    with pytest.raises(ValueError, match="bfirst must have a row per threshold"):
        check_tables((*ok[:3], np.zeros((2, 2), np.int64), ok[4]), 4, 1)
    with pytest.raises(ValueError, match="bfirst must index rows of B"):
        check_tables((*ok[:3], np.ones((3, 2), np.int64), ok[4]), 4, 1)
    with pytest.raises(ValueError, match="fees must hold 598 values"):
        check_tables((*ok[:4], np.zeros(597)), 4, 1)
    with pytest.raises(ValueError, match="wfirst must hold"):
        check_tables((*ok[:2], np.arange(10, dtype=np.int64), *ok[3:]), 4, 1)


def _market():
    return gpusim.synthetic_market(n_assets=3, n_bars=45, seed=14)


def _schedule_kwargs(m):
    idx, cols = m.prices.index, m.prices.columns
    rng = np.random.default_rng(3)
    sched = gpusim.Schedule(pd.DataFrame(rng.dirichlet(np.ones(3), 3), index=idx[[0, 12, 30]],
                                         columns=cols), name="dated")
    band = pd.Series([0.04, 0.01], index=idx[[0, 20]], name="bandsched")
    return dict(weights=Param([sched, np.full(3, 1 / 3)]), rebalance=Param(["never", 9]),
                threshold=Param([0.03, 0.03, band], level="z"),
                fees=Param([0.0, 0.002, 0.002], level="z"), init_cash=50.0, rf=0.01,
                progress=False)


def _hybrid_kwargs():
    return dict(weights=gpusim.RandomWeights(3, seed=4), rebalance=Param(["never", 7]),
                band="hybrid", threshold=Param([0.02, 0.1]), threshold_abs=Param([0.002, 0.02]),
                fees=Param([0.0, 0.003]), progress=False)


def test_decoded_parameters_equal_chunk_args():
    from gpusim.backtest.api import _run

    m = _market()
    for kw in (_schedule_kwargs(m), _hybrid_kwargs()):
        kw = {k: v for k, v in kw.items() if k not in ("progress", "init_cash", "rf")}
        ctx = _run(m, backend="cpu", progress=False, **kw).ctx
        tables = check_tables(ctx.tables, ctx.masks.shape[0], ctx.B.shape[0])
        C = ctx.grid.size
        for start, stop in ((0, C), (5, C - 2), (C - 4, C)):
            a = ctx.chunk_args(start, stop)
            W, wnxt, w0 = ctx.weight_block(start, stop)
            np.testing.assert_array_equal(W, a["W"])
            if wnxt is None:      # constant targets: the runner's resident NEVER rows
                assert ctx.wsrc.first is None and np.all(a["wnxt"] == NEVER)
            else:
                np.testing.assert_array_equal(wnxt, a["wnxt"])
            got = np.array([combination_nb(np.int64(f), tables, np.int64(w0))
                            for f in range(start, stop)])
            for col, key in enumerate(("wid", "mid", "bid", "fees")):
                np.testing.assert_array_equal(got[:, col], a[key], err_msg=key)


@pytest.mark.parametrize("which", ["hybrid", "schedule"])
def test_gpu_decoded_grid_bit_identical_to_cpu_over_chunks(which):
    from gpusim.backend import simulator_requested

    if not simulator_requested():
        pytest.skip("NUMBA_ENABLE_CUDASIM is not set")
    m = _market()
    kw = _hybrid_kwargs() if which == "hybrid" else _schedule_kwargs(m)
    cpu = gpusim.backtest(m, backend="cpu", **kw)
    gpu = gpusim.backtest(m, backend="gpu", chunk_size=5, **kw)
    C = 3 * 2 * 2 * 2 * 2 if which == "hybrid" else 2 * 2 * 3
    assert len(gpu.metrics) == C and gpu.summary["n_chunks"] == -(-C // 5)
    assert gpu.metrics.index.equals(cpu.metrics.index)
    np.testing.assert_array_equal(gpu.metrics.to_numpy(), cpu.metrics.to_numpy())
    # the grid really varies along every level
    n = gpu.metrics["n_rebalances"].to_numpy()
    assert len(np.unique(n)) > 3 and len(np.unique(gpu.metrics["fees_paid"])) > 3
