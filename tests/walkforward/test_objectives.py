"""Walk-forward objectives (max_sharpe, min_variance, max_return, max_utility): the reference
score by hand, CPU kernel vs cpu_ref vs CUDA kernel (simulator), exact solves vs PyPortfolioOpt
on real prices, random search converging to the exact optimum."""

import numpy as np
import pandas as pd
import pytest
from conftest import shared_file

import gpusim
from cpu_ref import walkforward as ref
from gpusim.errors import GpusimError
from gpusim.grid import Param
from gpusim.walkforward.api import walkforward
from gpusim.walkforward.constraints import Budget, WeightBounds

TIGHT = {"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12}
"""PyPortfolioOpt's solve at the precision of gpusim's (Clarabel's defaults are 1e-8)."""
OBJ = ["max_sharpe", "min_variance", "max_return", "max_utility"]


@pytest.fixture(scope="module")
def real():
    st = pd.read_csv(shared_file("pypfopt/stock_prices.csv"), parse_dates=["date"],
                     index_col="date")
    return gpusim.load_prices(st[["AAPL", "WMT", "XOM", "PFE", "JPM", "T"]].loc["2015":"2016"])


def test_reference_objective_by_hand():
    y = np.array([0.2, 0.8])
    mu = np.array([0.001, 0.002])
    cov = np.array([[1e-4, 2e-5], [2e-5, 4e-4]])
    ann, rf, s = 252.0, 0.01, 0.5
    w = s * y
    ret = (252 * 0.001 - 0.01) * w[0] + (252 * 0.002 - 0.01) * w[1]
    var = 252 * (w[0] ** 2 * 1e-4 + 2 * w[0] * w[1] * 2e-5 + w[1] ** 2 * 4e-4)
    sharpe = ((252 * 0.001 - 0.01) * 0.2 + (252 * 0.002 - 0.01) * 0.8) / np.sqrt(var / s ** 2)
    got = [ref.objective_1d_nb(y, s, mu, cov, ann, rf, k, 3.0) for k in range(4)]
    np.testing.assert_allclose(got, [sharpe, -var, ret, ret - 1.5 * var], rtol=1e-14)


@pytest.mark.parametrize("obj", OBJ)
def test_cpu_kernel_choices_equal_the_reference(obj):
    m = gpusim.synthetic_market(n_assets=4, n_bars=160, seed=5)
    cons = [WeightBounds(hi=0.6), Budget(0.5, 1.0)]
    res = walkforward(m, every="M", lookback=Param([40, None]), num_tests=Param([50, 700]),
                      objective=obj, risk_aversion=4.0, constraints=cons, progress=False,
                      backend="cpu")
    v = res.verify(n_combinations=4, n_dates=3)
    assert v["ok"] and v["same_choices"] and v["n_checked"] >= 12, v
    d = res.decisions(lookback=40, num_tests=700)
    assert (d["candidate"] >= 0).all() and np.isfinite(d["score"]).all()


def test_cuda_simulator_equals_cpu_for_every_objective():
    m = gpusim.synthetic_market(n_assets=3, n_bars=90, seed=4)
    kw = dict(every=20, lookback=25, num_tests=Param([16, 48]), start=30, risk_aversion=2.0,
              objective=Param(OBJ), constraints=[WeightBounds(hi=0.7), Budget(0.6, 1.0)],
              seed=2, progress=False)
    cpu = walkforward(m, backend="cpu", **kw)
    gpu = walkforward(m, backend="gpu", **kw)
    assert gpu.summary["backend"] == "gpu-simulator"
    np.testing.assert_allclose(gpu.metrics.to_numpy(), cpu.metrics.to_numpy(), rtol=1e-10,
                               atol=1e-13, equal_nan=True)
    for key in cpu.metrics.index:
        a, b = cpu.decisions(key), gpu.decisions(key)
        assert a["candidate"].equals(b["candidate"]) and a["n_accepted"].equals(b["n_accepted"])
        np.testing.assert_array_equal(a["score"].to_numpy(), b["score"].to_numpy())
    # the objectives choose differently
    picks = {o: tuple(cpu.decisions(objective=o, num_tests=48)["candidate"]) for o in OBJ}
    assert len(set(picks.values())) == 4


def _window(prices, t, lookback):
    r = prices.pct_change().iloc[t - lookback:t]
    return r.mean().to_numpy(), r.cov().to_numpy()


def test_exact_objectives_equal_pypfopt_on_real_prices(real):
    ef_mod = pytest.importorskip("pypfopt.efficient_frontier")
    lam = 3.0
    res = walkforward(real, every="M", lookback=126, method="exact", risk_aversion=lam,
                      objective=Param(["min_variance", "max_utility"]), progress=False,
                      backend="cpu")
    ann = real.ann
    n = 0
    for obj in ("min_variance", "max_utility"):
        alloc = res.allocations(objective=obj)
        assert not res.decisions(objective=obj)["fallback"].any()
        for date, row in alloc.iterrows():
            t = real.prices.index.get_loc(date)
            mu, cov = _window(real.prices, t, 126)
            ef = ef_mod.EfficientFrontier(ann * mu, ann * cov, weight_bounds=(0, 1),
                                          solver="CLARABEL", solver_options=TIGHT)
            if obj == "min_variance":
                ef.min_volatility()
            else:
                ef.max_quadratic_utility(risk_aversion=lam)
            w = np.array(list(ef.weights))
            np.testing.assert_allclose(row.to_numpy(), w, atol=1e-6)
            n += 1
    assert n >= 30
    # the two objectives differ and utility with a small risk aversion concentrates
    a = res.allocations(objective="min_variance").to_numpy()
    b = res.allocations(objective="max_utility").to_numpy()
    assert np.abs(a - b).max() > 0.05


@pytest.mark.parametrize("obj", ["min_variance", "max_utility", "max_return"])
def test_random_converges_to_exact(obj):
    m = gpusim.synthetic_market(n_assets=3, n_bars=300, seed=21, mu=[0.08, 0.12, 0.1],
                                vol=[0.15, 0.25, 0.2])
    common = dict(every="M", lookback=120, backend="cpu", progress=False, objective=obj,
                  risk_aversion=3.0, constraints=[WeightBounds(hi=0.6)])
    rnd = walkforward(m, num_tests=Param([30, 100_000]), gap=True, **common)
    ex = walkforward(m, method="exact", num_tests=30, **common)
    ok = ~ex.decisions()["fallback"].to_numpy()
    assert ok.sum() >= 5
    se = ex.decisions()["score"].to_numpy()[ok]
    err = {}
    for n in (30, 100_000):
        s = rnd.decisions(num_tests=n)["score"].to_numpy()[ok]
        assert np.all(s <= se + 1e-9 * np.abs(se))          # never better than the optimum
        err[n] = np.max(np.abs(s - se)) / np.abs(se).max()     # scores may be near 0
        g = rnd.decisions(num_tests=n)["gap"].to_numpy()[ok]
        assert np.isfinite(g).sum() >= 3 and np.all(g[np.isfinite(g)] <= 1 + 1e-9)
    assert err[100_000] < 2e-3 and err[100_000] < err[30] / 5
    if obj != "max_return":        # interior optimum: the weights converge too
        d = np.abs(rnd.allocations(num_tests=100_000).to_numpy() - ex.allocations().to_numpy())
        assert d[ok].max() < 0.03


def test_binding_report_per_objective_and_errors():
    m = gpusim.synthetic_market(n_assets=4, n_bars=200, seed=9)
    res = walkforward(m, every="M", lookback=60, num_tests=2000, method="exact",
                      objective=Param(["max_return", "min_variance"]),
                      constraints=[WeightBounds(hi=0.4)], progress=False, backend="cpu")
    b = res.summary["bound_by_objective"]
    assert b["max_return"]["weights"] == 1.0     # the best asset is always capped
    rep = res.report["bound_weights"]
    assert rep.loc["max_return"].iloc[0] == 1.0
    assert b["min_variance"]["weights"] == pytest.approx(rep.loc["min_variance"].iloc[0])
    with pytest.raises(GpusimError, match="objective="):
        walkforward(m, objective="max_sortino", progress=False)
    with pytest.raises(GpusimError, match="risk_aversion"):
        walkforward(m, risk_aversion=-1, progress=False)


def test_method_param_equals_single_runs():
    m = gpusim.synthetic_market(n_assets=3, n_bars=160, seed=8)
    kw = dict(every="M", lookback=60, num_tests=500, objective=Param(["max_sharpe",
                                                                       "min_variance"]),
              constraints=[WeightBounds(hi=0.6)], progress=False, backend="cpu")
    both = walkforward(m, method=Param(["random", "exact"]), **kw)
    assert both.metrics.index.names[0] == "method" and len(both.metrics) == 4
    assert both.summary["method"] == "random,exact"
    for meth in ("random", "exact"):
        one = walkforward(m, method=meth, **kw)
        for obj in ("max_sharpe", "min_variance"):
            np.testing.assert_allclose(both.allocations(method=meth, objective=obj),
                                       one.allocations(objective=obj), rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(both.metrics.loc[(meth, obj)].to_numpy().ravel(),
                                       one.metrics.loc[obj].to_numpy().ravel(), rtol=1e-12)
    rep = both.report
    assert rep["acceptance"].loc["random"].notna().all()
    assert rep["acceptance"].loc["exact"].isna().all()
    assert rep["exact_sharpe"].loc["exact"].notna().all()
    assert both.verify(n_combinations=4)["ok"]
    with pytest.raises(GpusimError, match="method="):
        walkforward(m, method=Param(["random", "greedy"]), progress=False)


def test_risk_aversion_param_equals_single_runs():
    m = gpusim.synthetic_market(n_assets=4, n_bars=160, seed=12)
    kw = dict(every="M", lookback=60, num_tests=800, objective="max_utility", progress=False,
              backend="cpu")
    for method in ("random", "exact"):
        many = walkforward(m, method=method, risk_aversion=Param([0.5, 8.0]), **kw)
        assert many.metrics.index.names == ["risk_aversion"]
        assert many.summary["risk_aversion"] == [0.5, 8.0]
        allocs = []
        for lam in (0.5, 8.0):
            one = walkforward(m, method=method, risk_aversion=lam, **kw)
            np.testing.assert_allclose(many.allocations(risk_aversion=lam).to_numpy(),
                                       one.allocations().to_numpy(), rtol=1e-12, atol=1e-15)
            allocs.append(one.allocations().to_numpy())
        assert np.abs(allocs[0] - allocs[1]).max() > 0.05     # more aversion: another choice
        if method == "random":
            assert many.verify(n_combinations=2, n_dates=3)["ok"]
