"""Walk-forward risk caps Volatility(max=) and TrackingError(benchmark, max=): held at every
date by the exact method (second-order cones) and by accepted random candidates (rejection);
CPU kernel, cpu_ref and CUDA kernel (simulator) agree; max_return under a volatility cap is
PyPortfolioOpt's efficient_risk; the three value forms; the binding report."""

import numpy as np
import pandas as pd
import pytest
from conftest import shared_file

import gpusim
from gpusim.errors import GpusimError
from gpusim.grid import Param
from gpusim.walkforward.api import walkforward
from gpusim.walkforward.constraints import Budget, TrackingError, Volatility, WeightBounds

TIGHT = {"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12}


@pytest.fixture(scope="module")
def spy():
    st = pd.read_csv(shared_file("pypfopt/stock_prices.csv"), parse_dates=["date"],
                     index_col="date")
    b = pd.read_csv(shared_file("pypfopt/spy_prices.csv"), parse_dates=["date"],
                    index_col="date")["SPY"]
    common = st.index.intersection(b.index)
    p = st.loc[common, ["AAPL", "WMT", "XOM", "PFE", "JPM", "T"]].loc["2015":"2016"]
    return gpusim.load_prices(p), b.loc[common]


def _vol(prices, t, lookback, w, ann):
    r = prices.pct_change().iloc[t - lookback:t].to_numpy()
    return float(np.sqrt(ann * w @ np.cov(r.T) @ w))


def _te(prices, bench, t, lookback, w, ann):
    r = prices.pct_change().iloc[t - lookback:t].to_numpy()
    rb = bench.pct_change().reindex(prices.index).iloc[t - lookback:t].to_numpy()
    return float(np.sqrt(ann) * np.std(r @ w - rb, ddof=1))


def test_exact_max_return_under_a_volatility_cap_is_pypfopt_efficient_risk(spy):
    ef_mod = pytest.importorskip("pypfopt.efficient_frontier")
    m, _ = spy
    cap = 0.18
    res = walkforward(m, every="M", lookback=126, method="exact", objective="max_return",
                      constraints=[Volatility(max=cap)], progress=False, backend="cpu")
    dec = res.decisions()
    assert dec["fallback"].sum() <= 1 and res.report["bound_volatility"].iloc[0] > 0.5
    n = 0
    for date, row in res.allocations().iterrows():
        if dec.loc[date, "fallback"]:       # the least volatile portfolio is above the cap
            continue
        n += 1
        t = m.prices.index.get_loc(date)
        r = m.prices.pct_change().iloc[t - 126:t]
        ef = ef_mod.EfficientFrontier(m.ann * r.mean(), m.ann * r.cov(), weight_bounds=(0, 1),
                                      solver="CLARABEL", solver_options=TIGHT)
        ef.efficient_risk(cap)
        np.testing.assert_allclose(row.to_numpy(), np.array(list(ef.weights)), atol=1e-6)
        assert _vol(m.prices, t, 126, row.to_numpy(), m.ann) <= cap * (1 + 1e-7)
    assert n >= 15


@pytest.mark.parametrize("obj", ["max_sharpe", "min_variance", "max_utility"])
def test_caps_hold_at_every_date_exact_and_random(spy, obj):
    m, bench = spy
    cons = [Volatility(max=0.15), TrackingError(bench, max=0.10)]
    kw = dict(every="M", lookback=126, objective=obj, risk_aversion=1.0, constraints=cons,
              progress=False, backend="cpu")
    for method in ("exact", "random"):
        res = walkforward(m, method=method, num_tests=3000, **kw)
        dec, alloc = res.decisions(), res.allocations()
        ok = ~dec["fallback"].to_numpy()
        assert ok.sum() >= 10
        for (date, row), good in zip(alloc.iterrows(), ok):
            if not good:
                continue
            t = m.prices.index.get_loc(date)
            w = row.to_numpy()
            assert _vol(m.prices, t, 126, w, m.ann) <= 0.15 * (1 + 1e-7)
            assert _te(m.prices, bench, t, 126, w, m.ann) <= 0.10 * (1 + 1e-7)
        if method == "random":
            assert res.verify(n_combinations=1, n_dates=4)["ok"]
            assert 0 < res.report["acceptance"].iloc[0] < 1
    # the caps bind: without them the choice is riskier somewhere
    free = walkforward(m, method="exact", **{**kw, "constraints": None})
    vols = [_vol(m.prices, m.prices.index.get_loc(d), 126, r.to_numpy(), m.ann)
            for d, r in free.allocations().iterrows()]
    if obj != "min_variance":
        assert max(vols) > 0.15


def test_gpu_simulator_and_reference_agree_with_caps(spy):
    m, bench = spy
    px = m.prices.iloc[:160]
    mk = gpusim.load_prices(px)
    cons = [Volatility(max=pd.Series([0.13, 0.11], index=pd.to_datetime(["2015-01-01",
                                                                        "2015-05-01"]))),
            TrackingError(bench, max=lambda state, t: 0.07), WeightBounds(hi=0.5),
            Budget(0.7, 1.0)]
    kw = dict(every=20, lookback=40, num_tests=Param([64, 200]), start=45, constraints=cons,
              objective=Param(["max_sharpe", "max_utility"]), risk_aversion=2.0,
              progress=False, seed=3)
    cpu = walkforward(mk, backend="cpu", **kw)
    gpu = walkforward(mk, backend="gpu", **kw)
    for key in cpu.metrics.index:
        a, b = cpu.decisions(key), gpu.decisions(key)
        assert a["candidate"].equals(b["candidate"]) and a["n_accepted"].equals(b["n_accepted"])
        np.testing.assert_array_equal(a["score"].to_numpy(), b["score"].to_numpy())
    np.testing.assert_allclose(gpu.metrics.to_numpy(), cpu.metrics.to_numpy(), rtol=1e-10,
                               atol=1e-13, equal_nan=True)
    v = cpu.verify(n_combinations=4, n_dates=3)
    assert v["ok"] and v["n_checked"] >= 12
    rep = cpu.report
    assert (rep["acceptance"] < 0.9).all()          # the caps reject candidates


def test_cap_errors_and_binding_summary(spy):
    m, _ = spy
    with pytest.raises(GpusimError, match="volatility max"):
        walkforward(m, constraints=[Volatility(max=-0.1)], progress=False)
    with pytest.raises(GpusimError, match="Budget"):
        walkforward(m, method="exact", constraints=[Volatility(max=0.1), Budget()],
                    progress=False)
    with pytest.raises(GpusimError, match="pd.Series"):
        TrackingError([1, 2, 3], max=0.1)
    res = walkforward(m, every="M", lookback=126, method="exact",
                      objective=Param(["max_return", "min_variance"]),
                      constraints=[Volatility(max=0.15)], progress=False, backend="cpu")
    b = res.summary["bound_by_objective"]
    assert b["max_return"]["volatility"] > 0.5 and b["min_variance"]["volatility"] == 0.0
    assert b["max_return"]["volatility"] == res.report["bound_volatility"].to_numpy()[0]
    assert gpusim.Volatility is Volatility and gpusim.TrackingError is TrackingError


def test_estimators_with_benchmark_constraints_match_the_reference(spy):
    """EWMA estimates assets and benchmark together (betas, tracking error from the EWMA
    covariances); Ledoit-Wolf and a callable the assets' block: verify() re-derives each."""
    from gpusim.walkforward.constraints import Beta

    m, bench = spy
    mk = gpusim.load_prices(m.prices.iloc[:200])
    cons = [Beta(bench, "<=", 0.6), TrackingError(bench, max=0.06), Budget(0.5, 1.0)]
    res = walkforward(mk, every="M", lookback=60, num_tests=400, constraints=cons,
                      estimator=Param(["ewma:20", "ledoit_wolf",
                                       lambda r: (r.mean().to_numpy(), r.cov().to_numpy())]),
                      objective="max_utility", risk_aversion=2.0, progress=False,
                      backend="cpu")
    v = res.verify(n_combinations=3, n_dates=3)
    assert v["ok"] and v["n_checked"] >= 9, v
    assert (res.report["acceptance"] < 0.95).all() and (res.report["acceptance"] > 0).all()


def test_exact_max_sharpe_with_a_volatility_cap_equals_a_direct_solve(spy):
    import cvxpy as cp

    m, _ = spy
    cap = 0.14
    res = walkforward(m, every="M", lookback=126, method="exact",
                      constraints=[Volatility(max=cap)], progress=False, backend="cpu")
    dec = res.decisions()
    assert res.report["bound_volatility"].iloc[0] > 0.2    # the cap binds on some dates
    n = 0
    for date, row in res.allocations().iterrows():
        if dec.loc[date, "fallback"]:
            continue
        t = m.prices.index.get_loc(date)
        r = m.prices.pct_change().iloc[t - 126:t]
        mu, S = m.ann * r.mean().to_numpy(), m.ann * r.cov().to_numpy()
        if mu.max() <= 0:
            continue
        y, k = cp.Variable(6), cp.Variable()     # homogeneous max Sharpe with the cone
        L = np.linalg.cholesky(S)
        cp.Problem(cp.Minimize(cp.sum_squares(L.T @ y)),
                   [mu @ y == 1, cp.sum(y) == k, y >= 0, cp.norm(L.T @ y) <= cap * k]).solve(
            solver="CLARABEL", **TIGHT)
        w, got = y.value / k.value, row.to_numpy()
        # where the cap binds the Sharpe is flat along the cone to ~1e-12: the weights agree
        # to 1e-5 and gpusim's are never worse (same or higher Sharpe, within the cap)
        np.testing.assert_allclose(got, w, atol=1e-5)
        assert mu @ got / np.sqrt(got @ S @ got) >= mu @ w / np.sqrt(w @ S @ w) - 1e-10
        assert np.sqrt(got @ S @ got) <= cap * (1 + 1e-9)
        n += 1
    assert n >= 10


def test_polished_efficient_risk_on_ten_assets_equals_pypfopt():
    """With the cap binding, the exact weights are polished on the first-order curve: they
    equal PyPortfolioOpt's efficient_risk to 1e-6 on 10 assets too, and the polish never
    leaves the constraints nor lowers the objective."""
    ef_mod = pytest.importorskip("pypfopt.efficient_frontier")

    st = pd.read_csv(shared_file("pypfopt/stock_prices.csv"), parse_dates=["date"],
                     index_col="date")
    m = gpusim.load_prices(st.dropna().iloc[:, :10].loc["2015":"2016"])
    cap = 0.16
    res = walkforward(m, every="M", lookback=126, method="exact", objective="max_return",
                      constraints=[Volatility(max=cap), WeightBounds(hi=0.4)], progress=False,
                      backend="cpu")
    dec, n = res.decisions(), 0
    for date, row in res.allocations().iterrows():
        if dec.loc[date, "fallback"] or not dec.loc[date, "bound_volatility"]:
            continue
        t = m.prices.index.get_loc(date)
        r = m.prices.pct_change().iloc[t - 126:t]
        ef = ef_mod.EfficientFrontier(m.ann * r.mean(), m.ann * r.cov(),
                                      weight_bounds=(0, 0.4), solver="CLARABEL",
                                      solver_options=TIGHT)
        ef.efficient_risk(cap)
        np.testing.assert_allclose(row.to_numpy(), np.array(list(ef.weights)), atol=1e-6)
        n += 1
    assert n >= 8


def test_polish_makes_a_loose_solve_exact(monkeypatch):
    """Clarabel stopped at 1e-7 and at 1e-12: unpolished weights differ by > 1e-6, the
    polished ones agree to 1e-9 (both land on the same first-order point)."""
    import importlib

    from gpusim.walkforward import exact

    choose = importlib.import_module("gpusim.walkforward.choose")
    m = gpusim.synthetic_market(n_assets=8, n_bars=400, seed=3)
    kw = dict(every="M", lookback=126, method="exact", objective=Param(["max_return",
                                                                         "max_utility"]),
              risk_aversion=1.0, constraints=[Volatility(max=0.12), WeightBounds(hi=0.4)],
              progress=False, backend="cpu")
    tight = walkforward(m, **kw)
    loose_opts = {**exact.TIGHT_OPTIONS["CLARABEL"], "tol_gap_abs": 1e-7, "tol_gap_rel": 1e-7,
                  "tol_feas": 1e-7}
    monkeypatch.setitem(exact.TIGHT_OPTIONS, "CLARABEL", loose_opts)
    loose = walkforward(m, **kw)
    monkeypatch.setattr(choose, "_polish", lambda ctx, sid, w, obj, lam, b: w)
    raw = walkforward(m, **kw)
    bound = tight.report["bound_volatility"].to_numpy()
    assert (bound > 0.5).all()
    for o in ("max_return", "max_utility"):
        on = tight.decisions(objective=o)["bound_volatility"].to_numpy()   # the cap binds
        a, b, c = (x.allocations(objective=o).to_numpy()[on] for x in (tight, loose, raw))
        assert np.abs(a - b).max() < 1e-9
        assert np.abs(a - c).max() > 1e-6
