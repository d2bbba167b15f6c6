"""Hand-computed checks of the reference backtest (cpu_ref/backtest.py, DESIGN §6).

Every expected number below is derived in the test itself with explicit arithmetic, not taken
from the code under test.
"""

import math

import numpy as np
import pytest

from cpu_ref.backtest import (
    METRICS,
    metrics_from_values,
    rebalance_bar_nb,
    simulate_1d_nb,
    simulate_nb,
)

M = {name: i for i, name in enumerate(METRICS)}
NO_MASK = np.zeros(0, dtype=bool)


def run(close, w, mask=None, threshold=np.nan, relative=False, fees=0.0, init_cash=1.0,
        ann=252.0, rf=0.0):
    close = np.ascontiguousarray(close, dtype=np.float64)
    if mask is None:
        mask = np.zeros(close.shape[0], dtype=bool)
    return simulate_1d_nb(close, np.asarray(w, dtype=np.float64), np.asarray(mask, dtype=bool),
                          float(threshold), bool(relative), float(fees), float(init_cash),
                          float(ann), float(rf))


def test_metric_names_and_order():
    assert METRICS == (
        "total_return", "cagr", "volatility", "sharpe", "sortino",
        "max_drawdown", "calmar", "turnover", "fees_paid", "n_rebalances", "final_value",
    )


# ------------------------------------------------------------------------------------------
# Execution model, by hand
# ------------------------------------------------------------------------------------------


def test_buy_and_hold_no_fees_by_hand():
    close = [[10.0, 20.0], [11.0, 18.0], [12.0, 22.0], [9.0, 25.0]]
    m, v, bars, tgt, real = run(close, [0.6, 0.4], init_cash=1000.0)
    # bar 0: V = 1000 -> 600/10 = 60 units of A, 400/20 = 20 units of B, cash 0
    expected = [60 * 10 + 20 * 20, 60 * 11 + 20 * 18, 60 * 12 + 20 * 22, 60 * 9 + 20 * 25]
    assert expected == [1000, 1020, 1160, 1040]
    np.testing.assert_allclose(v, expected, rtol=1e-15)
    np.testing.assert_array_equal(bars, [0])
    np.testing.assert_allclose(tgt, [[0.6, 0.4]], rtol=0)
    np.testing.assert_allclose(real, [[0.6, 0.4]], rtol=1e-15)
    assert m[M["n_rebalances"]] == 1.0
    assert m[M["fees_paid"]] == 0.0
    assert m[M["final_value"]] == pytest.approx(1040.0, rel=1e-15)
    assert m[M["total_return"]] == pytest.approx(0.04, rel=1e-13)
    # traded 1000 at bar 0, mean value (1000 + 1020 + 1160 + 1040) / 4 = 1055; per year:
    # x 252 bars a year / 4 bars
    assert m[M["turnover"]] == pytest.approx(1000.0 / 1055.0 * 252 / 4, rel=1e-14)


def test_rebalance_with_fees_partial_fill_by_hand():
    f = 0.01
    close = [[1.0, 1.0], [2.0, 1.0], [2.0, 1.5]]
    mask = [False, True, False]
    m, v, bars, _tgt, real = run(close, [0.5, 0.5], mask=mask, fees=f, init_cash=100.0)

    # bar 0: V = 100, order values 50 and 50 tie -> asset 0 first (stable, by index)
    h0 = 50.0
    cash = 100.0 - 50.0 * 1.0 * (1 + f)  # 49.5
    fees = f * 50.0
    traded = 50.0
    # asset 1 wants 50 units costing 50.5 > 49.5: partial fill of 49.5 / 1.01 units
    want1 = 50.0
    assert want1 * 1.0 * (1 + f) > cash
    h1 = cash / (1.0 * (1 + f))
    fees += f * h1 * 1.0
    traded += h1 * 1.0
    cash = 0.0
    h1_bar0 = h1
    V0 = h0 * 1.0 + h1 * 1.0
    assert h1 == pytest.approx(49.00990099009901, rel=1e-15)

    # bar 1: prices (2, 1); V fixed before the orders
    V = cash + h0 * 2.0 + h1 * 1.0
    target0 = 0.5 * V / 2.0
    target1 = 0.5 * V / 1.0
    o0, o1 = 0.5 * V - h0 * 2.0, 0.5 * V - h1 * 1.0
    assert o0 < 0 < o1  # asset 0 is sold first
    sell0 = h0 - target0
    cash += sell0 * 2.0 * (1 - f)
    fees += f * sell0 * 2.0
    traded += sell0 * 2.0
    h0 = target0
    want1 = target1 - h1
    assert want1 * 1.0 * (1 + f) > cash  # the buy is short of cash again: partial fill
    buy1 = cash / (1.0 * (1 + f))
    fees += f * buy1 * 1.0
    traded += buy1 * 1.0
    h1 += buy1
    V1 = h0 * 2.0 + h1 * 1.0
    # bar 2: no rebalance, marked at the close
    V2 = h0 * 2.0 + h1 * 1.5

    np.testing.assert_allclose(v, [V0, V1, V2], rtol=1e-13)
    np.testing.assert_array_equal(bars, [0, 1])
    np.testing.assert_allclose(real, [[50.0 / V0, h1_bar0 / V0], [h0 * 2.0 / V1, h1 / V1]],
                               rtol=1e-13)
    assert real[1, 1] < 0.5 < real[1, 0]  # the last buy came up short
    assert m[M["fees_paid"]] == pytest.approx(fees / 100.0, rel=1e-13)  # of the initial 100
    assert m[M["turnover"]] == pytest.approx(traded / np.mean([V0, V1, V2]) * 252 / 3, rel=1e-13)
    assert m[M["n_rebalances"]] == 2.0
    # cash accounting: at bar 0 the whole loss is the fee
    assert 100.0 - V0 == pytest.approx(f * 50.0 + f * (49.5 / 1.01), rel=1e-12)


def test_buys_processed_in_ascending_order_value():
    """Three buys competing for cash: the smallest order fills first, the largest comes short."""
    f = 0.01
    _m, v, _bars, _tgt, real = run([[1.0, 1.0, 1.0]], [0.5, 0.2, 0.3], fees=f, init_cash=100.0)
    # order values 50, 20, 30 -> order: asset 1 (20), asset 2 (30), asset 0 (50)
    cash = 100.0 - 20.0 * (1 + f) - 30.0 * (1 + f)  # 49.5 left for asset 0
    h = np.array([cash / (1 + f), 20.0, 30.0])
    np.testing.assert_allclose(v, [h.sum()], rtol=1e-14)
    np.testing.assert_allclose(real, [h / h.sum()], rtol=1e-14)
    # by asset index instead, asset 2 would have been the short one
    assert real[0, 2] > real[0, 0] * 0.3 / 0.5


def test_sells_before_buys_ordering_matters():
    # bar 0 (fee 0): 50 units of each, cash 0. bar 1: B triples, V = 50 + 150 = 200.
    # A must buy 50 units, B must sell 50 - 100/3 units. Buying first (index order) finds no
    # cash and would skip; sells first frees the cash and both land on target.
    close = [[1.0, 1.0], [1.0, 3.0]]
    m, v, _bars, _tgt, real = run(close, [0.5, 0.5], mask=[False, True], init_cash=100.0)
    np.testing.assert_allclose(v, [100.0, 200.0], rtol=1e-15)
    np.testing.assert_allclose(real[1], [0.5, 0.5], rtol=1e-14)
    # turnover: 100 at bar 0, then 50 sold + 50 bought at bar 1
    assert m[M["turnover"]] == pytest.approx(200.0 / 150.0 * 252 / 2, rel=1e-14)

    # the same rebalance directly: index order would have left A at 50 units
    h = np.array([50.0, 50.0])
    cash, traded, fees = rebalance_bar_nb(0.0, h, np.array([1.0, 3.0]), np.array([0.5, 0.5]), 0.0)
    np.testing.assert_allclose(h, [100.0, 100.0 / 3.0], rtol=1e-15)
    assert abs(cash) < 1e-12 and traded == pytest.approx(100.0, rel=1e-14) and fees == 0.0


def test_tiny_orders_are_skipped():
    p = np.array([1.0, 1.0])
    w = np.array([0.5, 0.5])
    # |s| / target = 5e-10 <= 1e-9: both orders skipped, nothing traded, no fee
    h = np.array([0.5 * (1 + 5e-10), 0.5 * (1 - 5e-10)])
    h_before = h.copy()
    cash, traded, fees = rebalance_bar_nb(0.0, h, p, w, 0.01)
    assert (traded, fees, cash) == (0.0, 0.0, 0.0)
    np.testing.assert_array_equal(h, h_before)
    # 4e-9 relative is traded
    h = np.array([0.5 * (1 + 4e-9), 0.5 * (1 - 4e-9)])
    cash, traded, fees = rebalance_bar_nb(0.0, h, p, w, 0.01)
    assert traded > 1e-9 and fees > 0.0


def test_rebalance_routine_counts_even_without_fills():
    # constant prices, fee 0, rebalance every bar: after bar 0 every order is (near) zero and
    # skipped, but every bar still counts as a rebalance bar.
    T = 6
    close = np.tile([2.0, 5.0, 4.0], (T, 1))
    w = [0.2, 0.3, 0.5]
    m, v, bars, _tgt, _real = run(close, w, mask=np.ones(T, bool), init_cash=10.0)
    m1, *_ = run(close[:1], w, init_cash=10.0)
    assert m[M["n_rebalances"]] == T
    np.testing.assert_array_equal(bars, np.arange(T))
    # only bar 0 traded: the same value traded, per year over T bars against 1 bar
    assert m[M["turnover"]] * v.mean() * T == pytest.approx(m1[M["turnover"]] * v[0], rel=1e-15)


def test_every_bar_no_fees_stays_at_target():
    rng = np.random.default_rng(1)
    T, A = 60, 4
    close = 10.0 * np.cumprod(1.0 + 0.02 * rng.standard_normal((T, A)), axis=0)
    w = np.array([0.1, 0.2, 0.3, 0.4])
    m, v, bars, tgt, real = run(close, w, mask=np.ones(T, bool), init_cash=100.0)
    np.testing.assert_array_equal(bars, np.arange(T))
    np.testing.assert_allclose(real, np.tile(w, (T, 1)), rtol=0, atol=1e-14)
    np.testing.assert_array_equal(tgt, np.tile(w, (T, 1)))
    # with weights held at target, each bar's return is the weighted asset return
    r_assets = close[1:] / close[:-1] - 1.0
    np.testing.assert_allclose(v[1:] / v[:-1] - 1.0, r_assets @ w, rtol=0, atol=1e-13)
    assert m[M["fees_paid"]] == 0.0


def test_mask_bar0_always_rebalances():
    close = [[1.0, 2.0], [1.5, 2.0], [1.2, 2.5]]
    _, _v, bars, _, _ = run(close, [0.5, 0.5], mask=[False, False, True])
    np.testing.assert_array_equal(bars, [0, 2])
    _, _v, bars, _, _ = run(close, [0.5, 0.5], mask=[True, False, False])
    np.testing.assert_array_equal(bars, [0])


# ------------------------------------------------------------------------------------------
# Threshold rule
# ------------------------------------------------------------------------------------------


def _weight_a(p_a, units_a, units_b, p_b):
    return units_a * p_a / (units_a * p_a + units_b * p_b)


def test_absolute_threshold_triggers_on_hand_computed_bars():
    # w = (0.5, 0.5), fee 0, init 1: h = (0.5, 0.5) at prices (1, 1). B stays at 1.
    pa = [1.0, 1.1, 1.2, 1.5, 1.5, 2.0]
    close = np.column_stack([pa, np.ones(6)])
    hA, hB = 0.5, 0.5
    # bar 1: a = 0.55/1.05 = 0.5238 -> drift 0.024; bar 2: 0.6/1.1 = 0.5455 -> 0.045 < 0.05
    assert abs(_weight_a(1.1, hA, hB, 1.0) - 0.5) < 0.05
    assert abs(_weight_a(1.2, hA, hB, 1.0) - 0.5) < 0.05
    # bar 3: 0.75/1.25 = 0.6 -> drift 0.1 >= 0.05: rebalance, V = 1.25
    assert abs(_weight_a(1.5, hA, hB, 1.0) - 0.5) >= 0.05
    V3 = hA * 1.5 + hB * 1.0
    hA, hB = 0.5 * V3 / 1.5, 0.5 * V3 / 1.0
    # bar 4: unchanged prices -> on target; bar 5: 0.8333/1.4583 = 0.5714 -> drift 0.071
    assert abs(_weight_a(1.5, hA, hB, 1.0) - 0.5) < 1e-12
    assert abs(_weight_a(2.0, hA, hB, 1.0) - 0.5) >= 0.05
    V5 = hA * 2.0 + hB

    _m, v, bars, _tgt, real = run(close, [0.5, 0.5], threshold=0.05)
    np.testing.assert_array_equal(bars, [0, 3, 5])
    np.testing.assert_allclose(v[[3, 5]], [V3, V5], rtol=1e-14)
    np.testing.assert_allclose(real, 0.5, rtol=1e-14)
    # a slightly wider band no longer triggers at bar 5 (drift 1/14 = 0.0714)
    _, _, bars, _, _ = run(close, [0.5, 0.5], threshold=0.072)
    np.testing.assert_array_equal(bars, [0, 3])


def test_threshold_boundary_is_inclusive():
    # a = 1.5 / 2 = 0.75 exactly -> drift exactly 0.25
    close = [[1.0, 1.0], [3.0, 1.0]]
    _, _, bars, _, _ = run(close, [0.5, 0.5], threshold=0.25)
    np.testing.assert_array_equal(bars, [0, 1])
    _, _, bars, _, _ = run(close, [0.5, 0.5], threshold=0.25 + 1e-12)
    np.testing.assert_array_equal(bars, [0])


@pytest.mark.parametrize("thr", [0.0, -0.1, np.nan])
def test_non_positive_or_nan_threshold_means_no_band(thr):
    close = [[1.0, 1.0], [3.0, 1.0], [9.0, 1.0]]
    _, _, bars, _, _ = run(close, [0.5, 0.5], threshold=thr)
    np.testing.assert_array_equal(bars, [0])


def test_relative_band_by_hand():
    # w = (0.8, 0.2), h = (0.8, 0.2) at prices 1. A stays at 1, B rises.
    q = [1.0, 1.2, 1.4, 1.4]
    close = np.column_stack([np.ones(4), q])
    # bar 1: b = 0.24/1.04 = 0.2308 -> drift 0.0308 < 0.25 * 0.2 = 0.05
    # bar 2: b = 0.28/1.08 = 0.2593 -> drift 0.0593 >= 0.05 (A's band is 0.25 * 0.8 = 0.2)
    d1 = abs(0.2 * 1.2 / (0.8 + 0.2 * 1.2) - 0.2)
    d2 = abs(0.2 * 1.4 / (0.8 + 0.2 * 1.4) - 0.2)
    assert d1 < 0.05 <= d2 < 0.2
    _, _, bars, _, real = run(close, [0.8, 0.2], threshold=0.25, relative=True)
    np.testing.assert_array_equal(bars, [0, 2])
    np.testing.assert_allclose(real[1], [0.8, 0.2], rtol=1e-14)
    # the absolute band of 0.25 never triggers on this path
    _, _, bars, _, _ = run(close, [0.8, 0.2], threshold=0.25, relative=False)
    np.testing.assert_array_equal(bars, [0])


def test_relative_band_zero_weight_asset_always_breaches():
    """Contract taken literally: |a_j - 0| >= thr * 0 holds for a zero-weight asset, so a
    relative band with any zero target weight rebalances on every bar."""
    close = [[1.0, 1.0, 1.0]] * 4
    _, _, bars, _, _ = run(close, [0.5, 0.5, 0.0], threshold=0.5, relative=True)
    np.testing.assert_array_equal(bars, [0, 1, 2, 3])


def test_mask_and_threshold_combine_by_or():
    pa = [1.0, 1.1, 1.2, 1.5, 1.5, 2.0]
    close = np.column_stack([pa, np.ones(6)])
    mask = np.zeros(6, bool)
    mask[4] = True
    _, _, bars, _, _ = run(close, [0.5, 0.5], mask=mask, threshold=0.05)
    np.testing.assert_array_equal(bars, [0, 3, 4, 5])
    mask[1] = True  # rebalancing at bar 1 changes the path: bar 2/3 drift from 1.1 instead
    # after bar 1: 0.525 in each asset at prices (1.1, 1); bar 2: A worth 0.525 * 1.2 / 1.1,
    # a = 0.5217 (drift 0.022 < 0.05); bar 3: A worth 0.525 * 1.5 / 1.1, a = 0.5769 (0.077)
    _, _, bars, _, _ = run(close, [0.5, 0.5], mask=mask, threshold=0.05)
    np.testing.assert_array_equal(bars, [0, 1, 3, 4, 5])


# ------------------------------------------------------------------------------------------
# Metrics against direct numpy formulas
# ------------------------------------------------------------------------------------------


def _numpy_metrics(v, init_cash, ann, rf):
    R = np.empty_like(v)
    R[0] = v[0] / init_cash - 1
    R[1:] = v[1:] / v[:-1] - 1
    n = len(v)
    ex = R - rf / ann
    total = v[-1] / init_cash - 1
    annual = (v[-1] / init_cash) ** (ann / n) - 1
    std = np.std(R, ddof=1)
    dd = v / np.maximum.accumulate(v) - 1
    return dict(
        total_return=total,
        cagr=annual,
        volatility=std * np.sqrt(ann),
        sharpe=ex.mean() / std * np.sqrt(ann),
        sortino=ex.mean() / np.sqrt(np.mean(np.minimum(ex, 0) ** 2)) * np.sqrt(ann),
        max_drawdown=dd.min(),
        calmar=annual / abs(dd.min()),
        final_value=v[-1],
    )


@pytest.mark.parametrize("rf", [0.0, 0.03])
def test_metrics_match_numpy_formulas(rf):
    rng = np.random.default_rng(7)
    T, A = 300, 5
    close = 50.0 * np.cumprod(1.0 + 0.015 * rng.standard_normal((T, A)), axis=0)
    w = rng.dirichlet(np.ones(A))
    mask = np.zeros(T, bool)
    mask[::21] = True
    f, init_cash, ann = 0.002, 100.0, 252.0
    m, v, bars, _tgt, _real = run(close, w, mask=mask, threshold=0.02, fees=f,
                                init_cash=init_cash, ann=ann, rf=rf)
    assert len(bars) > mask.sum()  # the band triggered between scheduled bars too
    ref = _numpy_metrics(v, init_cash, ann, rf)
    for name, x in ref.items():
        assert m[M[name]] == pytest.approx(x, rel=1e-12, abs=1e-15), name
    assert m[M["max_drawdown"]] < 0
    assert m[M["n_rebalances"]] == len(bars)
    # every fee is f times the gross traded value
    traded = m[M["turnover"]] * v.mean() * len(v) / ann
    assert m[M["fees_paid"]] * init_cash == pytest.approx(f * traded, rel=1e-12)
    np.testing.assert_array_equal(metrics_from_values(v, init_cash, ann, rf, traded,
                                                      m[M["fees_paid"]] * init_cash,
                                                      len(bars))[:7], m[:7])


def test_fees_and_turnover_from_cash_accounting():
    # buy and hold with fees: at bar 0 the value lost is exactly the fee, and the whole of the
    # remaining value was traded (the last buy is partially filled and leaves no cash)
    rng = np.random.default_rng(3)
    close = 20.0 * np.cumprod(1.0 + 0.01 * rng.standard_normal((40, 3)), axis=0)
    m, v, *_ = run(close, [0.3, 0.3, 0.4], fees=0.005, init_cash=100.0)
    assert m[M["fees_paid"]] * 100.0 == pytest.approx(100.0 - v[0], rel=1e-12)
    assert m[M["turnover"]] * v.mean() * len(v) / 252 == pytest.approx(v[0], rel=1e-12)


def test_nan_when_denominator_is_zero():
    # constant prices, fee 0, exact arithmetic: V = 1 on every bar, every return exactly 0
    close = np.tile([1.0, 2.0], (5, 1))
    m, v, *_ = run(close, [0.5, 0.5])
    np.testing.assert_array_equal(v, 1.0)
    assert m[M["total_return"]] == 0.0 and m[M["cagr"]] == 0.0
    assert m[M["volatility"]] == 0.0 and m[M["max_drawdown"]] == 0.0
    for name in ("sharpe", "sortino", "calmar"):
        assert math.isnan(m[M[name]]), name
    # a path that only rises: no downside, no drawdown
    m, *_ = run([[1.0, 1.0], [1.1, 1.2], [1.2, 1.3]], [0.5, 0.5])
    assert math.isnan(m[M["sortino"]]) and math.isnan(m[M["calmar"]])
    assert m[M["sharpe"]] > 0
    # one bar: no sample std
    m, *_ = run([[1.0, 2.0]], [0.5, 0.5])
    assert math.isnan(m[M["volatility"]]) and math.isnan(m[M["sharpe"]])
    assert m[M["final_value"]] == 1.0


def test_metrics_from_values_direct():
    v = np.array([1.0, 1.1, 0.99, 1.2])
    m = metrics_from_values(v, 1.0, 12.0, 0.0, 2.0, 0.01, 3)
    R = np.array([0.0, 0.1, 0.99 / 1.1 - 1, 1.2 / 0.99 - 1])
    assert m[M["sharpe"]] == pytest.approx(R.mean() / R.std(ddof=1) * np.sqrt(12), rel=1e-13)
    assert m[M["max_drawdown"]] == pytest.approx(0.99 / 1.1 - 1, rel=1e-14)
    assert m[M["turnover"]] == pytest.approx(2.0 / v.mean() * 12 / 4, rel=1e-14)
    assert (m[M["fees_paid"]], m[M["n_rebalances"]], m[M["final_value"]]) == (0.01, 3.0, 1.2)
    with pytest.raises(ValueError):
        metrics_from_values(np.ones((2, 2)), 1.0, 12.0, 0.0, 0.0, 0.0, 1)


# ------------------------------------------------------------------------------------------
# Population version
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("relative", [False, True])
def test_simulate_nb_equals_loop_of_1d(relative):
    rng = np.random.default_rng(11)
    T, A = 120, 4
    close = 30.0 * np.cumprod(1.0 + 0.02 * rng.standard_normal((T, A)), axis=0)
    W = rng.dirichlet(np.ones(A), size=3)
    masks = np.zeros((3, T), bool)
    masks[1, ::5] = True
    masks[2, :] = True
    C = 24
    wid = rng.integers(0, 3, C).astype(np.int64)
    mid = rng.integers(0, 3, C).astype(np.int64)
    thresholds = rng.choice([np.nan, 0.0, 0.03, 0.1, 0.5], C)
    fees = rng.choice([0.0, 0.001, 0.01], C)
    out = simulate_nb(close, W, wid, masks, mid, thresholds, relative, fees, 100.0, 252.0, 0.01)
    assert out.shape == (C, len(METRICS))
    for c in range(C):
        m, *_ = simulate_1d_nb(close, W[wid[c]], masks[mid[c]], thresholds[c], relative,
                               fees[c], 100.0, 252.0, 0.01)
        np.testing.assert_array_equal(out[c], m)
    assert len(np.unique(out[:, M["n_rebalances"]])) > 2  # the grid really differs
