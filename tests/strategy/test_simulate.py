"""gpusim.simulate (issue 11): a Python optimiser that sees the simulated portfolio. Segments
between calls carry cash and holdings: every segment's final value equals one monolithic
simulation (cpu_ref.strategy, calling the dated targets) at that date."""

import numpy as np
import pandas as pd
import pytest

import gpusim
from cpu_ref.strategy import simulate_alloc_1d
from gpusim.errors import GpusimError
from tests.conftest import shared_file


def inverse_variance(state):
    """Inverse-variance targets when the drift exceeds 1% (None: keep, no trade)."""
    if state.bar > 0 and np.abs(state.weights - state.targets).max() < 0.01:
        return None
    r = state.history.pct_change().dropna()
    if len(r) < 5:
        return None
    iv = 1.0 / r.var()
    return (iv / iv.sum()).to_dict()


def monolithic(res, key, market, fee, init_cash=1.0):
    """One simulation of the dated targets of ``res`` by the reference (plain Python)."""
    prices = market.prices
    close = np.ascontiguousarray(prices.to_numpy())
    sched = res.schedule(key)
    bars = {int(prices.index.get_loc(d)): w.to_numpy() for d, w in sched.iterrows()}

    def follow(c, params, targets):
        if c.t in bars:
            targets[:] = bars[c.t]
            return True
        return False

    T = close.shape[0]
    m, value, reb, *_ = simulate_alloc_1d(follow, close, sched.iloc[0].to_numpy(), [],
                                          np.ones(T, bool), fee, init_cash, float(market.ann),
                                          0.0, 0, 0)
    return m, pd.Series(value, index=prices.index, name="value"), reb


@pytest.fixture(scope="module")
def mkt():
    return gpusim.synthetic_market(n_assets=4, n_bars=150, seed=5)


def test_segments_equal_the_monolithic_simulation(mkt):
    res = gpusim.simulate(mkt, inverse_variance, every="W", fees=gpusim.Param([0.0, 0.004]),
                          progress=False)
    assert list(res.metrics.index.names) == ["weights", "fees"]
    assert res.summary["n_segments"] > 20
    for key in res.metrics.index:
        fee = key[1]
        m, value, reb = monolithic(res, key, mkt, fee)
        assert len(reb) >= 3                                 # the optimiser traded
        seg = res.segments(key)
        pd.testing.assert_series_equal(seg, value.loc[seg.index], check_exact=True)
        pd.testing.assert_series_equal(res.value(key), value, check_exact=True)
        np.testing.assert_allclose(res.metrics.loc[key].to_numpy(), m, rtol=1e-12, atol=1e-15)
        assert res.metrics.loc[key, "n_rebalances"] == len(reb)
    fp = res.metrics["fees_paid"].to_numpy()
    assert fp[0] == 0.0 and fp[1] > 0.0


def test_state_and_none_keeps_without_trading(mkt):
    seen = []

    def spy(state):
        seen.append(state)
        return None

    res = gpusim.simulate(mkt, spy, every="M", weights=[0.1, 0.2, 0.3, 0.4], fees=0.001,
                          params={"tag": "x"}, progress=False)
    assert res.metrics["n_rebalances"].iloc[0] == 1          # only bar 0
    s = seen[-1]
    assert s.params == {"tag": "x"} and s.history.index[-1] == s.date
    assert len(s.history) == s.bar + 1 and list(s.weights.index) == list(mkt.prices.columns)
    p = mkt.prices.iloc[s.bar]
    assert s.value == pytest.approx(s.cash + float((s.holdings * p).sum()), rel=1e-14)
    np.testing.assert_allclose(s.weights, s.holdings * p / s.value, rtol=1e-14)
    np.testing.assert_array_equal(s.targets, [0.1, 0.2, 0.3, 0.4])
    months = mkt.prices.index.to_period("M")
    assert [x.bar for x in seen] == [0, *np.flatnonzero(months[1:] != months[:-1]) + 1]


def test_warmup_and_answers_by_symbol(mkt):
    calls = []

    def first_asset(state):
        calls.append(state.bar)
        return {"A00": 1.0}                                   # others get 0

    res = gpusim.simulate(mkt, first_asset, every=20, warmup=30, progress=False)
    assert calls[0] >= 30
    sched = res.schedule()
    np.testing.assert_array_equal(sched.iloc[1], [1.0, 0.0, 0.0, 0.0])
    assert sched.index[0] == mkt.prices.index[0]


@pytest.mark.parametrize(("answer", "match"), [
    ([0.5, 0.5], "returned 2 weights"),
    ({"ZZZ": 1.0}, "not symbols of the prices"),
    ([0.7, 0.7, -0.2, -0.2], "long-only"),
])
def test_bad_answers_are_one_line_errors(mkt, answer, match):
    with pytest.raises(GpusimError, match=match):
        gpusim.simulate(mkt, lambda s: answer, every="M", progress=False)


def test_backend_argument(mkt):
    with pytest.raises(GpusimError, match="simulate runs on the CPU"):
        gpusim.simulate(mkt, inverse_variance, backend="gpu", progress=False)
    with pytest.raises(GpusimError, match="backend='x' is unknown"):
        gpusim.simulate(mkt, inverse_variance, backend="x", progress=False)
    r = gpusim.simulate(mkt, inverse_variance, backend="cpu", progress=False)
    assert r.summary["backend"] == "cpu"


def test_errors_in_the_optimiser_say_where(mkt):
    def boom(state):
        raise ValueError("solver failed")

    with pytest.raises(ValueError, match="solver failed") as e:
        gpusim.simulate(mkt, boom, every="M", progress=False)
    assert any("gpusim.simulate: optimize at" in n for n in e.value.__notes__)


def test_pypfopt_max_sharpe_weekly_on_real_data():
    """The issue's hybrid: PyPortfolioOpt max-Sharpe per week, re-run only when the drift
    exceeds 1% (and at the first call); per-segment final values equal the monolithic
    portfolio's values."""
    pypfopt = pytest.importorskip("pypfopt")
    st = pd.read_csv(shared_file("pypfopt/stock_prices.csv"), parse_dates=["date"],
                     index_col="date")
    prices = st[["AAPL", "WMT", "XOM", "PFE", "JPM", "T"]].loc["2016":"2017"]
    market = gpusim.load_prices(prices)

    def optimize(state):
        first = state.targets.eq(1 / 6).all()
        if not first and np.abs(state.weights - state.targets).max() < 0.01:
            return None
        h = state.history.iloc[-250:]
        ef = pypfopt.EfficientFrontier(pypfopt.expected_returns.mean_historical_return(h),
                                       pypfopt.risk_models.sample_cov(h))
        return ef.max_sharpe(risk_free_rate=0.0)

    res = gpusim.simulate(market, optimize, every="W", warmup=60, fees=0.001, progress=False)
    m, value, reb = monolithic(res, None, market, 0.001)
    seg = res.segments()
    pd.testing.assert_series_equal(seg, value.loc[seg.index], check_exact=True)
    np.testing.assert_allclose(res.metrics.iloc[0].to_numpy(), m, rtol=1e-12)
    assert len(reb) >= 3
    sched = res.schedule()
    assert list(sched.columns) == list(prices.columns)
    np.testing.assert_allclose(sched.sum(axis=1), 1.0, atol=1e-6)
    assert res.metrics.iloc[0]["fees_paid"] > 0


@pytest.mark.parametrize("every", ["M", 15])
def test_segments_equal_the_builtin_engine_on_the_same_schedule(mkt, every):
    """The dated targets of a simulation, run as a target schedule by gpusim.backtest, give
    the same metrics bit for bit (repeated rows included: every row's bar trades)."""
    def fixed(state):
        return [0.1, 0.2, 0.3, 0.4]

    for fn in (fixed, inverse_variance):
        sim = gpusim.simulate(mkt, fn, every=every, fees=0.002, progress=False)
        sched = sim.schedule()
        assert len(sched) >= 3
        bt = gpusim.backtest(mkt, weights=sched, fees=0.002, backend="cpu", progress=False)
        assert len(bt.metrics) == 1
        np.testing.assert_array_equal(bt.metrics.to_numpy(), sim.metrics.to_numpy())
