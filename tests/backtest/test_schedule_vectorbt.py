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
