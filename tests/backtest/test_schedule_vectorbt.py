"""Target schedules against vectorbt on real prices (DESIGN §6, issue 11): a dated weights
table is a schedule whose result equals ``Portfolio.from_orders(size_type="targetpercent")``
with the same targets on those dates (value path, metrics, and the order records: bar, asset,
units, price, fee) to 1e-9; with a drift band, vectorbt re-runs our rebalance bars and targets.
Skips when vectorbt or the shared data are absent.
"""

import numpy as np
import pandas as pd
import pytest
from conftest import shared_file

vbt = pytest.importorskip("vectorbt")

import gpusim  # noqa: E402

RTOL = 1e-9
INIT_CASH = 100.0
COLS = ["GOOG", "AAPL", "FB", "BABA", "AMZN"]


@pytest.fixture(scope="module")
def close():
    df = pd.read_csv(shared_file("pypfopt/stock_prices.csv"), parse_dates=["date"],
                     index_col="date")
    return df[COLS].dropna().astype(np.float64)


def _schedule(close, n=6, seed=0):
    """Targets on n dates: the first before the prices start, the others between bars
    (a Saturday: in force from the next bar)."""
    rng = np.random.default_rng(seed)
    idx = close.index
    picks = np.sort(rng.choice(np.arange(30, len(idx) - 30), n - 1, replace=False))
    dates = [idx[0] - pd.Timedelta(days=10)] + [idx[k] - pd.Timedelta(hours=12) for k in picks]
    return pd.DataFrame(rng.dirichlet(np.ones(len(COLS)), n), index=pd.DatetimeIndex(dates),
                        columns=COLS), np.r_[0, picks]


def _vbt(close, bars, rows, fees):
    size = np.full(close.shape, np.nan)
    size[bars] = rows
    return vbt.Portfolio.from_orders(close, size=pd.DataFrame(size, index=close.index,
                                                              columns=close.columns),
                                     size_type="targetpercent", group_by=True,
                                     cash_sharing=True, call_seq="auto", fees=fees,
                                     init_cash=INIT_CASH, freq="1D")


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def _same_orders(rec, pf):
    o = pf.orders.values
    mine = rec.orders
    assert len(mine) == len(o)
    # vectorbt lists orders by bar then by processing order (call_seq "auto": sells first)
    np.testing.assert_array_equal(mine["bar"].to_numpy(), o["idx"])
    np.testing.assert_array_equal(mine["symbol"].to_numpy(), np.array(COLS)[o["col"]])
    assert _rel(mine["size"].abs(), o["size"]) <= RTOL
    assert _rel(mine["price"], o["price"]) == 0.0
    assert np.max(np.abs(mine["fee"].to_numpy() - o["fees"])) <= RTOL * INIT_CASH
    np.testing.assert_array_equal(mine["side"].to_numpy() == "sell", o["side"] == 1)


@pytest.mark.parametrize("fees", [0.0, 0.002])
def test_dated_table_is_a_schedule_equal_to_vectorbt_from_orders(close, fees):
    sched, bars = _schedule(close)
    res = gpusim.backtest(close, weights=sched, fees=fees, init_cash=INIT_CASH, progress=False,
                          backend="cpu")
    rec = res.records()
    np.testing.assert_array_equal(rec.rebalance_idx, bars)
    pf = _vbt(close, bars, sched.to_numpy(), fees)
    assert _rel(rec.value, pf.value()) <= RTOL
    assert _rel(res.metrics["final_value"].iloc[0], pf.value().iloc[-1]) <= RTOL
    assert _rel(res.metrics["fees_paid"].iloc[0], pf.orders.values["fees"].sum() / INIT_CASH
                ) <= 1e-8 or fees == 0.0
    _same_orders(rec, pf)


def test_schedule_with_threshold_matches_vectorbt_on_its_rebalance_bars(close):
    sched, bars = _schedule(close, n=4, seed=1)
    res = gpusim.backtest(close, weights=sched, threshold=gpusim.Param([0.03, 0.06]),
                          fees=0.001, init_cash=INIT_CASH, progress=False, backend="cpu")
    for thr in (0.03, 0.06):
        rec = res.records(threshold=thr)
        assert set(bars) <= set(rec.rebalance_idx) and len(rec.rebalance_idx) > len(bars)
        pf = _vbt(close, rec.rebalance_idx, rec.target.to_numpy(), 0.001)
        assert _rel(rec.value, pf.value()) <= RTOL
        assert _rel(res.metrics.loc[(0, thr) if isinstance(res.metrics.index, pd.MultiIndex)
                                    else thr, "final_value"], pf.value().iloc[-1]) <= RTOL
        _same_orders(rec, pf)
        # targets in force: the schedule row of the last date at or before each bar
        k = np.searchsorted(bars, rec.rebalance_idx, side="right") - 1
        np.testing.assert_array_equal(rec.target.to_numpy(), sched.to_numpy()[k])


# ---- schedule + dated per-asset hybrid band, checked by vectorbt's own band test ----------

from numba import njit  # noqa: E402
from vectorbt.portfolio import nb as pnb  # noqa: E402
from vectorbt.portfolio.enums import Direction, SizeType  # noqa: E402


@njit
def _pre_segment_nb(c, tw, switch, rel, ab, flags, order_value_out):
    """Targets in force tw[i]; rebalance at bar 0, at a schedule change, or when some asset
    drifts by >= max(rel w, abs) (NaN: no band on that asset); sells first."""
    for col in range(c.from_col, c.to_col):
        c.last_val_price[col] = c.close[c.i, col]
    w = tw[c.i]
    rebalance = c.i == 0 or switch[c.i]
    if not rebalance:
        V = pnb.get_group_value_ctx_nb(c)
        for k in range(c.group_len):
            col = c.from_col + k
            r = rel[c.i, k]
            a = ab[c.i, k]
            if np.isnan(r) and np.isnan(a):
                continue
            lim = max(0.0 if np.isnan(r) else r * w[k], 0.0 if np.isnan(a) else a)
            if abs(c.last_position[col] * c.last_val_price[col] / V - w[k]) >= lim:
                rebalance = True
    if rebalance:
        pnb.sort_call_seq_nb(c, w, np.asarray(SizeType.TargetPercent),
                             np.asarray(Direction.Both), order_value_out, ctx_select=False)
    flags[c.i] = rebalance
    return (rebalance,)


@njit
def _order_nb(c, rebalance, tw, fees):
    if not rebalance:
        return pnb.order_nothing_nb()
    col_i = c.call_seq_now[c.call_idx]
    return pnb.order_nb(size=tw[c.i, col_i], price=c.close[c.i, c.col],
                        size_type=SizeType.TargetPercent, fees=fees)


def test_schedule_with_dated_per_asset_hybrid_band_equals_vectorbt_order_func(close):
    sched, _ = _schedule(close, n=3, seed=4)
    idx = close.index
    rng = np.random.default_rng(5)
    rel = pd.DataFrame(rng.choice([0.1, 0.2, np.nan], (2, len(COLS))), columns=COLS,
                       index=[idx[100], idx[400]])                 # none before bar 100
    ab = pd.Series([0.04, 0.015], index=[idx[0], idx[300] + pd.Timedelta(hours=3)])
    fees = 0.002
    res = gpusim.backtest(close, weights=sched, band="hybrid", threshold=rel, threshold_abs=ab,
                          fees=fees, init_cash=INIT_CASH, progress=False, backend="cpu")
    rec = res.records()
    # the tables in force at each bar, built with pandas' forward fill (last label <= bar)
    row = pd.Series(np.arange(len(sched)), index=sched.index).reindex(idx, method="ffill")
    tw = np.ascontiguousarray(sched.to_numpy()[row.to_numpy().astype(int)])
    switch = np.r_[True, row.to_numpy()[1:] != row.to_numpy()[:-1]]
    rel_t = np.ascontiguousarray(rel.reindex(idx, method="ffill").to_numpy())
    ab_t = np.ascontiguousarray(np.repeat(ab.reindex(idx, method="ffill").to_numpy()[:, None],
                                          len(COLS), axis=1))
    flags = np.zeros(len(idx), dtype=np.bool_)
    pf = vbt.Portfolio.from_order_func(
        close, _order_nb, tw, fees, pre_segment_func_nb=_pre_segment_nb,
        pre_segment_args=(tw, switch, rel_t, ab_t, flags, np.empty(len(COLS))),
        cash_sharing=True, group_by=True, init_cash=INIT_CASH, freq="1D")
    assert _rel(rec.value, pf.value()) <= RTOL
    np.testing.assert_array_equal(rec.rebalance_idx, np.flatnonzero(flags))
    assert len(rec.rebalance_idx) > 6                          # the band really triggers
    _same_orders(rec, pf)
    assert _rel(res.metrics["final_value"].iloc[0], pf.value().iloc[-1]) <= RTOL
