"""Backtest fast paths (DESIGN §6, contract of issue 3): the CPU fast path
``gpusim.backtest.cpu.backtest_cpu_nb`` and the numba.cuda kernel
``gpusim.backtest.cuda`` (run here in Numba's CUDA simulator).

Checked against: hand-computed tiny cases (explicit arithmetic below), a slow, path-storing
pure-Python simulator written in this file (``_oracle_1d``), and the independent reference
``cpu_ref.backtest`` (``simulate_nb`` / ``simulate_1d_nb``).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cpu_ref.backtest import METRICS, simulate_1d_nb, simulate_nb
from gpusim.backtest.cpu import LANES, backtest_cpu, backtest_scalar_nb
from gpusim.backtest.steps import NEVER, prepare_inputs, scalar_inputs

ROOT = Path(__file__).resolve().parents[2]
M = {name: k for k, name in enumerate(METRICS)}
RTOL = 1e-10
ATOL = 1e-12



def test_metric_names_follow_the_contract():
    assert tuple(METRICS) == (
        "total_return", "cagr", "volatility", "sharpe", "sortino",
        "max_drawdown", "calmar", "turnover", "fees_paid", "n_rebalances", "final_value",
    )


# ---------------------------------------------------------------------------------------------
# A slow, readable simulator kept in the test (stores the path, numpy metrics at the end)
# ---------------------------------------------------------------------------------------------

def _oracle_1d(close, w, mask, threshold, relative, fee, init_cash=1.0, ann=252.0, rf=0.0,
               info=None):
    """Returns (metrics dict, values (T,), list of (bar, asset) partial fills). When ``info`` is
    a dict it receives ``rebal_bars`` and ``drift`` {bar: |a - w| (A,) before the orders}."""
    T, A = close.shape
    cash = float(init_cash)
    h = np.zeros(A)
    values = np.empty(T)
    traded = fees_paid = 0.0
    nreb = 0
    partial = []

    def value(p):
        v = cash
        for j in range(A):
            v += h[j] * p[j]
        return v

    for t in range(T):
        p = close[t]
        V = value(p)
        rebal = t == 0 or bool(mask[t])
        if info is not None and t > 0:
            info.setdefault("drift", {})[t] = np.abs(h * p / V - w)
        if not rebal and threshold > 0:
            dev = np.abs(h * p / V - w)
            rebal = bool(np.any(dev >= threshold * w)) if relative else dev.max() >= threshold
        if rebal:
            nreb += 1
            if info is not None:
                info.setdefault("rebal_bars", []).append(t)
            o = w * V - h * p
            for j in np.argsort(o, kind="stable"):
                target = w[j] * V / p[j]
                s = target - h[j]
                if s == 0 or abs(s) <= 1e-9 * max(abs(target), abs(h[j])):
                    continue
                if s < 0:
                    cash += -s * p[j] * (1 - fee)
                    fees_paid += fee * -s * p[j]
                    traded += -s * p[j]
                    h[j] = target
                else:
                    if s * p[j] * (1 + fee) > cash:
                        if cash <= 0:
                            continue
                        s = cash / (p[j] * (1 + fee))
                        partial.append((t, int(j)))
                    cash -= s * p[j] * (1 + fee)
                    fees_paid += fee * s * p[j]
                    traded += s * p[j]
                    h[j] += s
            V = value(p)
        values[t] = V
    R = np.empty(T)
    R[0] = values[0] / init_cash - 1
    R[1:] = values[1:] / values[:-1] - 1
    rf_bar = rf / ann
    ex = R - rf_bar
    std = R.std(ddof=1) if T > 1 else np.nan
    down = math.sqrt(np.mean(np.minimum(ex, 0) ** 2))
    ann_ret = (values[-1] / init_cash) ** (ann / T) - 1
    mdd = float(np.min(values / np.maximum.accumulate(values) - 1))
    nan = float("nan")
    met = {
        "total_return": values[-1] / init_cash - 1,
        "cagr": ann_ret,
        "volatility": std * math.sqrt(ann),
        "sharpe": ex.mean() / std * math.sqrt(ann) if std > 0 else nan,
        "sortino": ex.mean() / down * math.sqrt(ann) if down > 0 else nan,
        "max_drawdown": mdd,
        "calmar": ann_ret / abs(mdd) if mdd < 0 else nan,
        "turnover": traded / values.mean() * ann / T,  # per year
        "fees_paid": fees_paid / init_cash,  # a fraction of the initial capital
        "n_rebalances": float(nreb),
        "final_value": values[-1],
    }
    return met, values, partial


def _row(met):
    return np.array([met[name] for name in METRICS])


# ---------------------------------------------------------------------------------------------
# Random markets and grids
# ---------------------------------------------------------------------------------------------

def _market(rng, T, A):
    """GBM-like positive prices with per-asset drift and volatility (daily scale)."""
    mu = rng.uniform(-0.001, 0.0015, A)
    sig = rng.uniform(0.005, 0.04, A)
    z = rng.standard_normal((T, A))
    logp = np.cumsum(mu + sig * z, axis=0) + np.log(rng.uniform(5, 200, A))
    return np.ascontiguousarray(np.exp(logp))


def _masks(rng, T):
    """never, every 5, every 21, random (p = 0.15), every bar."""
    m = np.zeros((5, T), dtype=bool)
    m[1, ::5] = True
    m[2, ::21] = True
    m[3] = rng.random(T) < 0.15
    m[4] = True
    return m


def _grid(rng, T, A, K=6):
    W = rng.dirichlet(np.ones(A), size=K)
    masks = _masks(rng, T)
    ths = np.array([0.0, np.nan, -0.1, 0.01, 0.03, 0.08, 0.15])
    fees = np.array([0.0, 0.001, 0.005, 0.05])
    g = np.array(np.meshgrid(np.arange(K), np.arange(masks.shape[0]), np.arange(ths.size),
                             np.arange(fees.size), indexing="ij")).reshape(4, -1)
    return W, g[0].astype(np.int64), masks, g[1].astype(np.int64), ths[g[2]], fees[g[3]]


def _assert_metrics_close(got, want, what=""):
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"NaN pattern {what}")
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=what)


# ---------------------------------------------------------------------------------------------
# Hand-computed tiny cases (2 assets, 3 bars)
# ---------------------------------------------------------------------------------------------

CLOSE3 = np.array([[10.0, 20.0], [11.0, 18.0], [12.0, 22.0]])
W50 = np.array([[0.5, 0.5]])
NEVER3 = np.zeros((1, 3), dtype=bool)
EVERY3 = np.ones((1, 3), dtype=bool)


def _run1(close, W, masks, threshold=0.0, relative=False, fee=0.0, **kw):
    return backtest_cpu(close, W, [0], masks, [0], [threshold], relative, [fee], **kw)[0]


def test_hand_rebalance_every_bar_no_fees():
    out = _run1(CLOSE3, W50, EVERY3)
    # bar 0: V = 1, buy 0.05 units of A (0.5) and 0.025 of B (0.5); V_0 = 1
    # bar 1: V = 0.05*11 + 0.025*18 = 1.0; sell A down to 0.5/11 (0.05 of value), buy B to 0.5/18
    # bar 2: V = 0.5/11*12 + 0.5/18*22 (rebalancing at the close does not change V without fees)
    v = [1.0, 1.0, 0.5 / 11 * 12 + 0.5 / 18 * 22]
    R = np.array([0.0, 0.0, v[2] - 1.0])
    std = math.sqrt(((R - R.mean()) ** 2).sum() / 2)
    # traded: bar 0 1.0; bar 1 0.05 + 0.05; bar 2: A is worth 0.545 < V/2 = 0.578, so sell B
    # and buy A by V/2 - 0.5/11*12 each
    tr2 = v[2] / 2 - 0.5 / 11 * 12
    assert tr2 > 0
    expect = {
        "total_return": v[2] - 1,
        "cagr": v[2] ** (252 / 3) - 1,
        "volatility": std * math.sqrt(252),
        "sharpe": R.mean() / std * math.sqrt(252),
        "sortino": float("nan"),  # no negative return: downside deviation 0
        "max_drawdown": 0.0,
        "calmar": float("nan"),
        "turnover": (1.0 + 0.1 + 2 * tr2) / (sum(v) / 3) * 252 / 3,
        "fees_paid": 0.0,
        "n_rebalances": 3.0,
        "final_value": v[2],
    }
    _assert_metrics_close(out, _row(expect))


def test_hand_buy_and_hold_with_fee_partial_fill():
    f = 0.01
    out = _run1(CLOSE3, W50, NEVER3, fee=f)
    # bar 0: equal order values 0.5, 0.5 -> asset order 0, 1 (ties by index)
    # A: 0.05 units cost 0.05*10*1.01 = 0.505 -> cash 0.495, fee 0.005
    # B: wants 0.025 units costing 0.505 > 0.495: partial fill 0.495 / (20*1.01) units
    assert 0.025 * 20 * (1 + f) > 1.0 - 0.05 * 10 * (1 + f)  # cash really is short
    hA = 0.05
    hB = 0.495 / (20 * 1.01)
    assert hB < 0.025
    v = np.array([hA * 10 + hB * 20, hA * 11 + hB * 18, hA * 12 + hB * 22])
    R = np.r_[v[0] - 1, v[1] / v[0] - 1, v[2] / v[1] - 1]
    assert R[0] < 0 and R[1] > 0 and R[2] > 0
    std = R.std(ddof=1)
    expect = {
        "total_return": v[2] - 1,
        "cagr": v[2] ** 84 - 1,
        "volatility": std * math.sqrt(252),
        "sharpe": R.mean() / std * math.sqrt(252),
        "sortino": R.mean() / math.sqrt(R[0] ** 2 / 3) * math.sqrt(252),
        "max_drawdown": 0.0,  # V rises after bar 0 (the fee loss is in R_0, not a drawdown)
        "calmar": float("nan"),
        "turnover": (0.5 + hB * 20) / v.mean() * 84,
        "fees_paid": 0.005 + f * hB * 20,
        "n_rebalances": 1.0,
        "final_value": v[2],
    }
    _assert_metrics_close(out, _row(expect))
    assert out[M["fees_paid"]] == pytest.approx(0.005 + 0.495 / 1.01 * 0.01, rel=1e-14)


def test_hand_sells_before_buys_and_drawdown():
    # w = (0.8, 0.2); asset 0 falls then recovers: the every-bar rebalance sells B first
    close = np.array([[10.0, 10.0], [5.0, 10.0], [10.0, 10.0]])
    W = np.array([[0.8, 0.2]])
    out = _run1(close, W, EVERY3)
    # bar 0: h = (0.08, 0.02); bar 1: V = 0.4 + 0.2 = 0.6, targets 0.48/5 = 0.096 A and 0.012 B;
    # order values: A +0.08, B -0.08 -> B (sell) processed first, proceeds fund A exactly
    v1 = 0.6
    hA, hB = 0.8 * v1 / 5, 0.2 * v1 / 10
    v2 = hA * 10 + hB * 10  # 0.96 + 0.12 = 1.08
    assert v2 == pytest.approx(1.08, rel=1e-15)
    assert out[M["max_drawdown"]] == pytest.approx(0.6 - 1, rel=1e-14)
    assert out[M["final_value"]] == pytest.approx(v2, rel=1e-14)
    tr = 1.0 + 0.08 + 0.08 + 2 * (hA * 10 - 0.8 * v2)
    assert out[M["turnover"]] == pytest.approx(tr / ((1.0 + 0.6 + v2) / 3) * 84, rel=1e-13)
    ann_ret = v2 ** 84 - 1
    assert out[M["calmar"]] == pytest.approx(ann_ret / 0.4, rel=1e-13)
    # buy and hold instead: V = (1, 0.6, 1.0)
    bh = _run1(close, W, NEVER3)
    assert bh[M["final_value"]] == pytest.approx(1.0, rel=1e-15)
    assert bh[M["n_rebalances"]] == 1.0


@pytest.mark.parametrize("threshold, relative, nreb, final", [
    # bar 1 weights (0.55, 0.45): absolute drift 0.05; bar 2 (without a rebalance at bar 1)
    # weights (0.6, 0.55)/1.15: drift 0.0217; after a rebalance at bar 1 drift 0.0284
    (0.04, False, 2.0, 0.5 / 11 * 12 + 0.5 / 18 * 22),
    (0.06, False, 1.0, 0.05 * 12 + 0.025 * 22),
    (0.09, True, 2.0, 0.5 / 11 * 12 + 0.5 / 18 * 22),   # 0.05 >= 0.09 * 0.5
    (0.11, True, 1.0, 0.05 * 12 + 0.025 * 22),          # 0.05 < 0.11 * 0.5, 0.0217 < 0.055
    (0.0, False, 1.0, 0.05 * 12 + 0.025 * 22),           # 0: no band
    (float("nan"), True, 1.0, 0.05 * 12 + 0.025 * 22),   # NaN: no band
])
def test_hand_threshold_band(threshold, relative, nreb, final):
    out = _run1(CLOSE3, W50, NEVER3, threshold=threshold, relative=relative)
    assert out[M["n_rebalances"]] == nreb
    assert out[M["final_value"]] == pytest.approx(final, rel=1e-14)


def test_mask_and_band_combine_by_or_and_rf_init_cash():
    mask = np.array([[False, False, True]])
    out = _run1(CLOSE3, W50, mask, threshold=0.04, init_cash=100.0, ann=12.0, rf=0.03)
    assert out[M["n_rebalances"]] == 3.0  # bar 0, band at bar 1, mask at bar 2
    met, _, _ = _oracle_1d(CLOSE3, W50[0], mask[0], 0.04, False, 0.0, 100.0, 12.0, 0.03)
    _assert_metrics_close(out, _row(met))
    assert out[M["final_value"]] == pytest.approx(100 * (0.5 / 11 * 12 + 0.5 / 18 * 22))


def test_single_bar():
    out = _run1(CLOSE3[:1], W50, NEVER3[:, :1], fee=0.005)
    assert out[M["n_rebalances"]] == 1.0
    assert np.isnan(out[M["volatility"]]) and np.isnan(out[M["sharpe"]])
    assert out[M["final_value"]] < 1.0


# ---------------------------------------------------------------------------------------------
# Random markets against the in-test oracle and the cpu_ref reference
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed, T, A, relative", [
    (1, 60, 2, False), (2, 120, 4, True), (3, 300, 6, False), (4, 200, 3, True),
])
def test_cpu_fast_path_vs_oracle(seed, T, A, relative):
    rng = np.random.default_rng(seed)
    close = _market(rng, T, A)
    W, wid, masks, mid, ths, fees = _grid(rng, T, A)
    pick = rng.choice(wid.size, size=60, replace=False)
    # always include the extremes: never/every bar, no band/tightest band, zero/largest fee
    extra = np.flatnonzero(((mid == 0) | (mid == 4)) & (wid == 0) & ((ths == 0) | (ths == 0.01)))
    pick = np.union1d(pick, extra)
    wid, mid, ths, fees = wid[pick], mid[pick], ths[pick], fees[pick]
    got = backtest_cpu(close, W, wid, masks, mid, ths, relative, fees, 1.0, 252.0, 0.02)
    want = np.empty_like(got)
    n_partial_later = 0
    for c in range(wid.size):
        met, _, partial = _oracle_1d(close, W[wid[c]], masks[mid[c]], ths[c], relative, fees[c],
                                     1.0, 252.0, 0.02)
        want[c] = _row(met)
        n_partial_later += sum(1 for t, _ in partial if t > 0)
        if fees[c] > 0:
            assert partial and partial[0][0] == 0  # fees always leave the last buy of bar 0 short
    _assert_metrics_close(got, want, f"seed {seed}")
    nreb = got[:, M["n_rebalances"]]
    assert nreb.min() == 1.0 and nreb.max() == T  # never and every bar both present
    assert n_partial_later > 0  # partial fills happen on later rebalances too


@pytest.mark.parametrize("seed, T, A, relative", [
    (11, 60, 2, False), (12, 150, 5, True), (13, 300, 6, False), (14, 252, 3, True),
])
def test_cpu_fast_path_vs_reference_grid(seed, T, A, relative):
    rng = np.random.default_rng(seed)
    close = _market(rng, T, A)
    args = (close, *_grid(rng, T, A))
    _W, _wid, _masks, _mid, _ths, fees = args[1:]
    got = backtest_cpu(*args[:6], relative, fees, 1.0, 252.0, 0.0)
    want = simulate_nb(*args[:6], relative, fees, 1.0, 252.0, 0.0)
    _assert_metrics_close(got, want, f"seed {seed}")
    nreb = got[:, M["n_rebalances"]]
    assert nreb.min() == 1.0 and nreb.max() == T


def test_cpu_fast_path_vs_reference_1d_and_path():
    rng = np.random.default_rng(21)
    T, A = 180, 5
    close = _market(rng, T, A)
    W, wid, masks, mid, ths, fees = _grid(rng, T, A, K=2)
    pick = rng.choice(wid.size, size=25, replace=False)
    got = backtest_cpu(close, W, wid[pick], masks, mid[pick], ths[pick], False, fees[pick],
                          100.0, 252.0, 0.01)
    for k, c in enumerate(pick):
        met, values, *_ = simulate_1d_nb(close, W[wid[c]], masks[mid[c]], ths[c], False,
                                         fees[c], 100.0, 252.0, 0.01)
        _assert_metrics_close(got[k], met, f"combination {c}")
        _ora, ora_values, _ = _oracle_1d(close, W[wid[c]], masks[mid[c]], ths[c], False,
                                        fees[c], 100.0, 252.0, 0.01)
        np.testing.assert_allclose(values, ora_values, rtol=RTOL)


def _boundary_thresholds(close, w, fee, relative):
    """Thresholds exactly at, and one ulp above, the band edge at bar 1 of buy-and-hold."""
    info = {}
    _oracle_1d(close, w, np.zeros(close.shape[0], bool), 0.0, relative, fee, info=info)
    dev = info["drift"][1]
    if not relative:
        hit = dev.max()
    else:  # smallest th with fl(th * w_j) >= dev_j for the binding asset j
        j = int(np.argmax(dev / w))
        hit = dev[j] / w[j]
        while hit * w[j] < dev[j]:
            hit = np.nextafter(hit, np.inf)
        while np.nextafter(hit, 0.0) * w[j] >= dev[j]:
            hit = np.nextafter(hit, 0.0)
    return hit, np.nextafter(hit, np.inf)


@pytest.mark.parametrize("relative", [False, True])
def test_band_edge_is_exact(relative):
    # a threshold equal to the drift (>=) breaches, one ulp more does not: the fast paths screen
    # with a reciprocal and must still take exactly the decision of the literal definition
    rng = np.random.default_rng(61 + relative)
    T, A = 30, 4
    close = _market(rng, T, A)
    W = rng.dirichlet(np.ones(A), size=3)
    never = np.zeros((1, T), bool)
    wid, ths = [], []
    for k in range(3):
        hit, miss = _boundary_thresholds(close, W[k], 0.005, relative)
        wid += [k, k]
        ths += [hit, miss]
    wid = np.array(wid)
    ths = np.array(ths)
    n = wid.size
    args = (close, W, wid, never, np.zeros(n, np.int64), ths, relative, np.full(n, 0.005),
            1.0, 252.0, 0.0)
    fast = backtest_cpu(*args)
    np.testing.assert_array_equal(fast, backtest_scalar_nb(*scalar_inputs(*args)))
    for c in range(n):
        info = {}
        met, _, _ = _oracle_1d(close, W[wid[c]], never[0], ths[c], relative, 0.005, info=info)
        assert (1 in info["rebal_bars"]) == (c % 2 == 0)
        _assert_metrics_close(fast[c], _row(met), f"combination {c}")
    _assert_metrics_close(fast, simulate_nb(*args), "vs cpu_ref")
    gpu = _gpu().backtest_gpu_scalar(*args, threads_per_block=4)
    np.testing.assert_array_equal(gpu[:, M["n_rebalances"]], fast[:, M["n_rebalances"]])
    _assert_metrics_close(gpu, fast, "gpu")


@pytest.mark.parametrize("C", [1, 7, LANES - 1, LANES + 3, 5 * LANES + 11])
def test_lockstep_blocks_bit_identical_to_scalar_path(C):
    # backtest_cpu_nb runs blocks of combinations in lockstep (SIMD across combinations);
    # backtest_scalar_nb runs the GPU thread's code one combination at a time: same bits
    rng = np.random.default_rng(70 + C)
    T, A = 90, 5
    close = _market(rng, T, A)
    W = rng.dirichlet(np.ones(A), size=20)
    masks = _masks(rng, T)
    wid = rng.integers(0, 20, C)
    mid = rng.integers(0, masks.shape[0], C) if C % 2 else np.full(C, 2)  # mixed or shared
    ths = rng.choice([0.0, np.nan, 0.01, 0.02, 0.05, 0.3], C)
    fees = rng.choice([0.0, 0.001, 0.005, 0.05], C)
    for relative in (False, True):
        args = (close, W, wid, masks, mid, ths, relative, fees, 10.0, 252.0, 0.02)
        np.testing.assert_array_equal(backtest_cpu(*args),
                                      backtest_scalar_nb(*scalar_inputs(*args)))


def test_chunking_many_combinations_matches_one_by_one():
    # C > the number of parallel chunks: every combination lands in exactly one chunk
    rng = np.random.default_rng(5)
    T, A, C = 12, 3, 2600
    close = _market(rng, T, A)
    W = rng.dirichlet(np.ones(A), size=50)
    masks = _masks(rng, T)
    wid = rng.integers(0, 50, C)
    mid = rng.integers(0, masks.shape[0], C)
    ths = rng.choice([0.0, 0.005, 0.02], C)
    fees = rng.choice([0.0, 0.002, 0.05], C)
    got = backtest_cpu(close, W, wid, masks, mid, ths, False, fees, 1.0, 252.0, 0.0)
    for c in [*rng.choice(C, 40, replace=False).tolist(), 0, C - 1]:
        one = backtest_cpu(close, W, wid[c:c + 1], masks, mid[c:c + 1], ths[c:c + 1], False,
                              fees[c:c + 1], 1.0, 252.0, 0.0)
        np.testing.assert_array_equal(got[c], one[0])
    assert backtest_cpu(close, W, wid[:0], masks, mid[:0], ths[:0], False, fees[:0],
                           1.0, 252.0, 0.0).shape == (0, 11)


def test_prepare_inputs_rejects_bad_input():
    band = np.r_[np.zeros(2), np.full(2, 0.05)].reshape(1, 4)
    ok = (CLOSE3, W50, [0], [NEVER], NEVER3, [0], band, [0], [NEVER], [0.0], 1.0, 252.0, 0.0)
    prepare_inputs(*ok)

    def bad(k, v, msg):
        args = list(ok)
        args[k] = v
        with pytest.raises(ValueError, match=msg):
            prepare_inputs(*args)

    bad(0, -CLOSE3, "close")
    bad(1, np.ones((1, 3)) / 3, "W must be")
    bad(2, [1], "wid")
    bad(3, [2], "wnxt: the last row")
    bad(4, np.zeros((1, 4), bool), "masks must be")
    bad(5, [2], "mid")
    bad(6, np.full((1, 4), np.nan), "B must hold")
    bad(6, np.zeros((1, 3)), "B must be")
    bad(7, [1], "bid")
    bad(8, [3], "bnxt: the last row")
    bad(9, [1.0], "fees")
    bad(10, 0.0, "init_cash")
    two = (CLOSE3, np.r_[W50, W50], [0], [2, NEVER], NEVER3, [0], band, [0], [NEVER], [0.0])
    prepare_inputs(*two, 1.0, 252.0, 0.0)
    with pytest.raises(ValueError, match="increase"):
        prepare_inputs(CLOSE3, np.r_[W50, W50, W50], [0], [2, 1, NEVER], *two[4:], 1.0, 252.0,
                       0.0)


def test_importing_cpu_fast_path_does_not_touch_numba_cuda():
    code = ("import sys, gpusim.backtest.cpu; "
            "print('numba.cuda' in sys.modules, 'cupy' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = str(ROOT)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "False"]


# ---------------------------------------------------------------------------------------------
# GPU kernel in Numba's CUDA simulator (small launches only)
# ---------------------------------------------------------------------------------------------

def _gpu():
    from gpusim.backtest import cuda as backtest_cuda

    return backtest_cuda


def test_cuda_kernel_hand_case():
    bc = _gpu()
    out = bc.backtest_gpu_scalar(CLOSE3, W50, [0, 0], np.r_[NEVER3, EVERY3], [0, 1], [0.0, 0.04],
                                 False, [0.01, 0.0], 1.0, 252.0, 0.0, threads_per_block=32)
    cpu = backtest_cpu(CLOSE3, W50, [0, 0], np.r_[NEVER3, EVERY3], [0, 1], [0.0, 0.04], False,
                       [0.01, 0.0])
    _assert_metrics_close(out, cpu)
    assert out[0, M["fees_paid"]] == pytest.approx(0.005 + 0.495 / 1.01 * 0.01, rel=1e-14)
    assert out[1, M["n_rebalances"]] == 3.0


@pytest.mark.parametrize("relative", [False, True])
def test_cuda_kernel_vs_cpu_and_oracle(relative):
    bc = _gpu()
    rng = np.random.default_rng(31 + relative)
    T, A, C = 40, 4, 64
    close = _market(rng, T, A)
    W, wid, masks, mid, ths, fees = _grid(rng, T, A, K=3)
    pick = rng.choice(wid.size, size=C - 2, replace=False)
    extra = np.flatnonzero((mid == 4) & (ths == 0.0) & (fees == 0.05))[:1]
    extra = np.r_[extra, np.flatnonzero((mid == 0) & (ths == 0.01) & (fees == 0.005))[:1]]
    pick = np.r_[pick, extra]
    wid, mid, ths, fees = wid[pick], mid[pick], ths[pick], fees[pick]
    # 96 threads per block: two blocks, the second one partly idle (c >= C guard)
    got = bc.backtest_gpu_scalar(close, W, wid, masks, mid, ths, relative, fees, 100.0, 252.0, 0.01,
                          threads_per_block=96)
    cpu = backtest_cpu(close, W, wid, masks, mid, ths, relative, fees, 100.0, 252.0, 0.01)
    _assert_metrics_close(got, cpu, "gpu vs cpu fast path")
    for c in rng.choice(C, 8, replace=False):
        met, _, _ = _oracle_1d(close, W[wid[c]], masks[mid[c]], ths[c], relative, fees[c],
                               100.0, 252.0, 0.01)
        _assert_metrics_close(got[c], _row(met), f"gpu vs oracle, combination {c}")
    ref = simulate_nb(close, W, wid, masks, mid, ths, relative, fees, 100.0, 252.0, 0.01)
    _assert_metrics_close(got, ref, "gpu vs cpu_ref")
    nreb = got[:, M["n_rebalances"]]
    assert nreb.min() == 1.0 and nreb.max() == T


def test_cuda_kernel_many_assets_no_cap_and_empty():
    bc = _gpu()
    rng = np.random.default_rng(41)
    T, A = 6, 80  # more assets than any local-array cap would allow
    close = _market(rng, T, A)
    W = rng.dirichlet(np.ones(A), size=2)
    masks = _masks(rng, T)
    args = (close, W, [0, 1, 1], masks, [1, 3, 0], [0.0, 0.0, 0.01], True, [0.001, 0.0, 0.005],
            1.0, 252.0, 0.0)
    _assert_metrics_close(bc.backtest_gpu_scalar(*args, threads_per_block=2), backtest_cpu(*args))
    assert bc.backtest_gpu_scalar(close, W, [], masks, [], [], False, [], 1.0, 252.0, 0.0).shape \
        == (0, 11)
    with pytest.raises(ValueError, match="threads_per_block"):
        bc.backtest_gpu_scalar(*args, threads_per_block=0)


_PTX_PROBE = r"""
import re, sys, types as pytypes
import numba.cuda.dispatcher as disp
disp.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=(8, 0))
from numba import cuda, types as t
try:
    from gpusim.backtest import cuda as bc
    f8, i8, b1 = t.float64, t.int64, t.boolean
    v, m = f8[::1], f8[:, ::1]
    acct, scratch = t.UniTuple(f8, 3), t.Tuple((m, m, i8[:, ::1]))
    ptx, _ = cuda.compile_ptx(bc.backtest_cuda.py_func, (m, m, i8[::1], i8[::1], b1[:, ::1],
                              i8[::1], m, i8[::1], i8[::1], v, acct, scratch, m), cc=(8, 0))
    tables = t.Tuple((i8[:, ::1], i8[::1], i8[::1], i8[:, ::1], v))
    ptx_grid, _ = cuda.compile_ptx(bc.backtest_grid_cuda.py_func, (
        m, m, i8[::1], b1[:, ::1], m, i8[::1], tables, i8, i8, acct, scratch, m), cc=(8, 0))
except Exception as exc:
    msg = str(exc)
    if any(k in msg for k in ("NVVM", "nvvm", "NVRTC", "nvrtc")):
        print("unavailable", msg.splitlines()[0] if msg else "")
        sys.exit(3)
    raise
for p in (ptx, ptx_grid):
    entry = p[p.index(".visible .entry"):]
    entry = entry[:entry.index("\n}\n")]
    print(entry.count("fma.rn.f64"), p.count("div.rn.f64"), end=" ")
"""


def test_cuda_kernel_compiles_for_sm80_without_fma():
    # the simulator runs Python; this lowers the kernel for a real target (NVVM, no GPU needed)
    # and checks that no multiply-add was fused in the kernel body (libdevice pow has its own)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = str(ROOT)
    r = subprocess.run([sys.executable, "-c", _PTX_PROBE], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=600)
    if r.returncode == 3:
        pytest.skip(f"CUDA compiler not available: {r.stdout.strip()[:200]}")
    assert r.returncode == 0, r.stderr[-2000:]
    n_fma, n_div, n_fma_grid, n_div_grid = map(int, r.stdout.split())
    assert n_fma == n_fma_grid == 0          # backtest_cuda and the decoding backtest_grid_cuda
    assert n_div > 0 and n_div_grid > 0
