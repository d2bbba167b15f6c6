"""Exact mean-variance baselines (gpusim.mvo): closed forms, real data vs an independent solver,
KKT optimality, frontier shape, and every documented error."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import shared_file
from scipy.optimize import minimize

from gpusim import mvo
from gpusim.errors import SolverError
from gpusim.mvo import efficient_frontier, max_sharpe, min_variance

FIVE = ["GOOG", "AAPL", "FB", "BABA", "AMZN"]


# ----------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def returns():
    p = shared_file("pypfopt/stock_prices.csv")
    prices = pd.read_csv(p, parse_dates=["date"], index_col="date").dropna()
    assert len(prices) == 896
    assert str(prices.index[0].date()) == "2014-09-19"
    assert str(prices.index[-1].date()) == "2018-04-11"
    return prices.pct_change().dropna()


def stats(r):
    return r.mean().to_numpy(), r.cov(ddof=1).to_numpy()


def sharpe(w, mu, cov, ann=1.0, rf=0.0):
    return (ann * mu @ w - rf) / np.sqrt(ann * w @ cov @ w)


def slsqp(fun, jac, n, seed=0, starts=6):
    """Independent long-only solve on the simplex: SLSQP from several starts, best kept."""
    rng = np.random.default_rng(seed)
    x0s = [np.full(n, 1.0 / n)] + [rng.dirichlet(np.ones(n)) for _ in range(starts - 1)]
    best = None
    for x0 in x0s:
        res = minimize(fun, x0, jac=jac, method="SLSQP", bounds=[(0.0, 1.0)] * n,
                       constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0,
                                     "jac": lambda w: np.ones_like(w)}],
                       options={"ftol": 1e-16, "maxiter": 2000})
        if best is None or res.fun < best.fun:
            best = res
    return best.x


def scipy_max_sharpe(mu, cov):
    def f(w):
        return -(mu @ w) / np.sqrt(w @ cov @ w)

    def g(w):
        s = np.sqrt(w @ cov @ w)
        return -(mu / s - (mu @ w) * (cov @ w) / s**3)

    return slsqp(f, g, mu.size)


def assert_kkt_simplex(w, mu, cov, tol=1e-7):
    """First-order optimality of max Sharpe on the simplex: grad_i = lam on the support,
    grad_i <= lam off it. Sharpe is 0-homogeneous, so w'grad = 0 and lam = 0."""
    s = np.sqrt(w @ cov @ w)
    g = (mu / s - (mu @ w) * (cov @ w) / s**3) * s / np.abs(mu).max()  # scale-free
    active = w > 1e-6
    lam = g[active].mean()
    assert active.sum() >= 1
    assert abs(lam) < tol
    assert np.abs(g[active] - lam).max() < tol
    assert np.all(g[~active] <= lam + tol)


# ----------------------------------------------------------------------------- closed forms
def random_problem(n=6, seed=1):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(3 * n, n))
    cov = a.T @ a / (3 * n) * 1e-4
    mu = rng.normal(4e-4, 3e-4, size=n)
    return mu, cov


def test_min_variance_unconstrained_closed_form():
    mu, cov = random_problem()
    x = np.linalg.solve(cov, np.ones(mu.size))
    b = min_variance(mu, cov, long_only=False)
    assert np.abs(b.weights - x / x.sum()).max() < 1e-6
    assert b.kind == "min_variance" and b.status in ("optimal", "optimal_inaccurate")
    assert b.solver == "ACTIVE_SET"
    assert abs(b.vol - np.sqrt(1.0 / x.sum())) < 1e-9
    c = min_variance(mu, cov, long_only=False, solver="cvxpy")
    assert c.solver == "CLARABEL" and np.abs(c.weights - x / x.sum()).max() < 1e-6


def test_max_sharpe_unconstrained_closed_form():
    mu, cov = random_problem(seed=2)
    x = np.linalg.solve(cov, mu)
    assert x.sum() > 0  # the normalised tangency portfolio is then the max-Sharpe one
    b = max_sharpe(mu, cov, long_only=False, ann=252)
    assert np.abs(b.weights - x / x.sum()).max() < 1e-6
    # max Sharpe^2 = ann * mu' cov^-1 mu
    assert abs(b.sharpe - np.sqrt(252 * mu @ x)) < 1e-8 * b.sharpe


def test_two_assets_by_hand():
    # uncorrelated, vols 10% and 20%, means 5% and 10% (ann = 1)
    mu, cov = np.array([0.05, 0.10]), np.diag([0.01, 0.04])
    mv = min_variance(mu, cov)
    assert np.allclose(mv.weights, [0.8, 0.2], atol=1e-7)        # w1 = s2^2 / (s1^2 + s2^2)
    assert abs(mv.vol - np.sqrt(0.64 * 0.01 + 0.04 * 0.04)) < 1e-9
    ms = max_sharpe(mu, cov)
    assert np.allclose(ms.weights, [2 / 3, 1 / 3], atol=1e-7)    # w_i ∝ mu_i / s_i^2
    assert abs(ms.sharpe - np.sqrt(0.5)) < 1e-8                  # sqrt(sum (mu_i/s_i)^2)
    assert abs(ms.ret - 0.2 / 3) < 1e-9
    # with rf = 3%: excess (0.02, 0.07) -> w ∝ (2, 1.75)
    ms_rf = max_sharpe(mu, cov, rf=0.03)
    assert np.allclose(ms_rf.weights, [8 / 15, 7 / 15], atol=1e-7)
    assert abs(ms_rf.sharpe - (ms_rf.ret - 0.03) / ms_rf.vol) < 1e-12
    # an upper bound of 60% binds on asset 0 (Sharpe is unimodal along the segment)
    ms_b = max_sharpe(mu, cov, bounds=(0.0, 0.6))
    assert np.allclose(ms_b.weights, [0.6, 0.4], atol=1e-7)
    s = ms_b.as_series(["A", "B"])
    assert list(s.index) == ["A", "B"] and s.name == "max_sharpe"
    assert list(ms.as_series().index) == ["w_0", "w_1"]


def test_ann_and_rf():
    mu, cov = random_problem(seed=3)
    b1, b2 = max_sharpe(mu, cov), max_sharpe(mu, cov, ann=252)
    assert np.abs(b1.weights - b2.weights).max() < 1e-7
    assert abs(b2.sharpe - np.sqrt(252) * b1.sharpe) < 1e-8 * b2.sharpe
    assert abs(b2.ret - 252 * b1.ret) < 1e-12 and abs(b2.vol - np.sqrt(252) * b1.vol) < 1e-12
    # annual rf = 2% with daily stats: tangency on the per-bar excess mu - rf/ann
    x = np.linalg.solve(cov, mu - 0.02 / 252)
    b3 = max_sharpe(mu, cov, ann=252, rf=0.02, long_only=False)
    assert np.abs(b3.weights - x / x.sum()).max() < 1e-6
    w3 = b3.weights
    assert abs(b3.sharpe - (252 * mu @ w3 - 0.02) / np.sqrt(252 * w3 @ cov @ w3)) < 1e-12
    assert abs(b3.sharpe - np.sqrt(252 * (mu - 0.02 / 252) @ x)) < 1e-8 * b3.sharpe


# ----------------------------------------------------------------------------- real data
@pytest.mark.parametrize("subset", [None, FIVE], ids=["20-assets", "5-assets"])
def test_max_sharpe_real_data_vs_scipy_and_kkt(returns, subset):
    r = returns if subset is None else returns[subset]
    mu, cov = stats(r)
    b = max_sharpe(mu, cov, ann=252)
    ref = scipy_max_sharpe(mu, cov)
    assert np.abs(b.weights - ref).max() < 1e-6
    s_ref = sharpe(ref, mu, cov, 252)
    assert abs(b.sharpe - s_ref) / s_ref < 1e-6
    assert b.sharpe >= s_ref - 1e-12  # the convex solve is never beaten
    assert abs(b.weights.sum() - 1) < 1e-12 and b.weights.min() >= 0
    assert_kkt_simplex(b.weights, mu, cov)
    i, j = np.flatnonzero(b.weights > 1e-3)[:2]  # the check itself rejects a near-miss
    nudged = b.weights.copy()
    nudged[i] += 1e-5
    nudged[j] -= 1e-5
    with pytest.raises(AssertionError):
        assert_kkt_simplex(nudged, mu, cov)
    if subset is None:
        # regression values for this window (ann = 252, rf = 0)
        assert abs(b.sharpe - 1.786489) < 1e-5
        support = set(r.columns[b.weights > 1e-6])
        assert support == {"AMZN", "AMD", "BBY", "MA", "JPM"}


@pytest.mark.parametrize("subset", [None, FIVE], ids=["20-assets", "5-assets"])
def test_min_variance_real_data_vs_scipy(returns, subset):
    r = returns if subset is None else returns[subset]
    mu, cov = stats(r)
    b = min_variance(mu, cov, ann=252)
    c = cov / np.diag(cov).max()
    ref = slsqp(lambda w: w @ c @ w, lambda w: 2 * c @ w, mu.size)
    assert np.abs(b.weights - ref).max() < 1e-6
    assert b.vol <= np.sqrt(252 * ref @ cov @ ref) + 1e-12
    # KKT: (cov w)_i equal on the support, >= it off the support
    g = cov @ b.weights / (b.weights @ cov @ b.weights)
    act = b.weights > 1e-6
    assert np.abs(g[act] - 1).max() < 1e-6 and np.all(g[~act] >= 1 - 1e-6)


def test_efficient_frontier_real_data(returns):
    mu, cov = stats(returns)
    f = efficient_frontier(mu, cov, ann=252, n_points=30, symbols=returns.columns)
    assert list(f.columns) == ["ret", "vol", "sharpe", *returns.columns]
    assert len(f) == 30
    assert len(f.attrs["status"]) == 30
    assert set(f.attrs["status"]) <= {"optimal", "optimal_inaccurate"}
    assert set(f.attrs["solver"]) == {"CLARABEL"}
    assert np.all(np.diff(f["ret"]) > 0)
    assert np.all(np.diff(f["vol"]) > -1e-12)
    w = f[list(returns.columns)].to_numpy()
    assert np.abs(w.sum(axis=1) - 1).max() < 1e-9 and w.min() >= 0
    mv = min_variance(mu, cov, ann=252)
    assert np.abs(w[0] - mv.weights).max() < 1e-6
    assert abs(f["vol"].iloc[0] - mv.vol) < 1e-9
    assert abs(f["ret"].iloc[-1] - 252 * mu.max()) < 1e-8  # long-only: all in the best asset
    ms = max_sharpe(mu, cov, ann=252)
    assert np.all(ms.sharpe >= f["sharpe"] - 1e-7)
    assert f["sharpe"].max() > ms.sharpe - 0.01  # the grid passes near the tangency point
    # every frontier point is the min-variance portfolio for its return: none dominated
    i = 10
    c = cov / np.diag(cov).max()
    tgt = f["ret"].iloc[i] / 252
    res = minimize(lambda x: x @ c @ x, w[i], jac=lambda x: 2 * c @ x, method="SLSQP",
                   bounds=[(0, 1)] * mu.size,
                   constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1},
                                {"type": "ineq", "fun": lambda x: (mu @ x - tgt) * 1e4}],
                   options={"ftol": 1e-16, "maxiter": 1000})
    assert np.sqrt(252 * res.x @ cov @ res.x) >= f["vol"].iloc[i] - 1e-8


def test_frontier_unconstrained_closed_form():
    # Merton (1972): var(r) = (a r^2 - 2 b r + c) / (a c - b^2), a = 1'S^-1 1, b = 1'S^-1 mu,
    # c = mu'S^-1 mu; the grid runs from the min-variance return b/a up to max(mu).
    mu, cov = random_problem(n=5, seed=4)
    inv = np.linalg.inv(cov)
    a, b, c = inv.sum(), inv.sum(axis=0) @ mu, mu @ inv @ mu
    f = efficient_frontier(mu, cov, n_points=7, long_only=False)
    assert abs(f["ret"].iloc[0] - b / a) < 1e-12 and abs(f["ret"].iloc[-1] - mu.max()) < 1e-12
    r = f["ret"].to_numpy()
    var = (a * r**2 - 2 * b * r + c) / (a * c - b**2)
    assert np.abs(f["vol"].to_numpy() ** 2 / var - 1).max() < 1e-8
    # the frontier weights are affine in r: w(r) = w_mv + (r - r_mv) * d
    w = f[[f"w_{i}" for i in range(5)]].to_numpy()
    assert np.abs(np.diff(w, 2, axis=0)).max() < 1e-7


def test_frontier_bounds_and_default_labels():
    mu, cov = random_problem(n=4, seed=5)
    f = efficient_frontier(mu, cov, n_points=5, bounds=(0.1, 0.5))
    w = f[["w_0", "w_1", "w_2", "w_3"]].to_numpy()
    assert w.min() >= 0.1 - 1e-9 and w.max() <= 0.5 + 1e-9
    # max attainable return under the bounds: 0.5 to the top asset, then the next, rest at 0.1
    order = np.argsort(-mu)
    top = np.full(4, 0.1)
    top[order[0]] = 0.5
    top[order[1]] = 0.3
    assert abs(f["ret"].iloc[-1] - mu @ top) < 1e-9


# ----------------------------------------------------------------------------- solvers
def test_fallback_when_clarabel_fails(monkeypatch):
    mu, cov = random_problem(seed=7)
    ref = max_sharpe(mu, cov, solver="cvxpy")
    monkeypatch.setitem(mvo._OPTIONS, "CLARABEL", {"no_such_option": 1})
    b = max_sharpe(mu, cov, solver="cvxpy")
    assert b.solver != "CLARABEL"
    assert np.abs(b.weights - ref.weights).max() < 1e-6
    with pytest.raises(SolverError, match="could not be solved.*CLARABEL"):
        max_sharpe(mu, cov, solver="clarabel")


def test_fallback_when_clarabel_missing(monkeypatch):
    import cvxpy as cp

    real = cp.installed_solvers()
    monkeypatch.setattr(cp, "installed_solvers", lambda: [s for s in real if s != "CLARABEL"])
    mu, cov = random_problem(seed=8)
    b = min_variance(mu, cov, solver="cvxpy")
    assert b.solver in ("ECOS", "OSQP", "SCS", "HIGHS")
    monkeypatch.undo()
    ref = min_variance(mu, cov, solver="cvxpy")
    assert ref.solver == "CLARABEL"
    assert np.abs(b.weights - ref.weights).max() < 1e-6


def test_named_solvers_agree():
    mu, cov = random_problem(seed=9)
    ref = max_sharpe(mu, cov)
    for name in ("OSQP", "SCS"):
        b = max_sharpe(mu, cov, solver=name.lower())
        assert b.solver == name
        assert np.abs(b.weights - ref.weights).max() < 1e-5


def test_cvxpy_imported_lazily():
    # house rule (DESIGN §2): no CuPy, numba.cuda, cvxpy (nor matplotlib) at import time
    code = ("import sys, gpusim, gpusim.mvo, gpusim.backtest.api, gpusim.search.api; "
            "heavy = [m for m in ('cvxpy', 'cupy', 'numba.cuda', 'matplotlib') "
            "if m in sys.modules]; assert not heavy, heavy")
    root = Path(__file__).resolve().parents[2]
    path = os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env=env)


# ----------------------------------------------------------------------------- errors
def test_error_rf_above_every_return():
    mu, cov = np.array([0.05, 0.10]), np.diag([0.01, 0.04])
    with pytest.raises(SolverError, match="risk-free.*lower rf"):
        max_sharpe(mu, cov, rf=0.12)
    # within bounds the best return is 0.7 * 0.10 + 0.3 * 0.05 = 0.085
    with pytest.raises(SolverError, match="risk-free"):
        max_sharpe(mu, cov, rf=0.09, bounds=(0.0, 0.7))
    b = max_sharpe(mu, cov, rf=0.08, bounds=(0.0, 0.7))
    assert abs(b.weights[1] - 0.7) < 1e-9 and b.ret - 0.08 > 0


def test_error_max_sharpe_not_attained_long_short():
    # 1' cov^-1 mu < 0: the supremum is approached only by dollar-neutral portfolios
    with pytest.raises(SolverError, match="not attained.*long_only=True"):
        max_sharpe(np.array([-0.01, 0.005]), np.eye(2), long_only=False)


def test_error_not_psd_and_repairs():
    mu = np.array([0.01, 0.02, 0.015])
    bad = np.array([[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]]) * 1e-3
    assert np.linalg.eigvalsh(bad)[0] < 0
    for f in (max_sharpe, min_variance, efficient_frontier):
        with pytest.raises(SolverError, match="positive semi-definite.*repair='clip'.*'nearest'"):
            f(mu, bad)
    for how in ("clip", "nearest"):
        _, fixed, *_ = mvo._check_inputs(mu, bad, 1.0, 0.0, how)
        assert np.linalg.eigvalsh(fixed)[0] > -1e-15
        b = max_sharpe(mu, bad, repair=how)
        assert abs(b.weights.sum() - 1) < 1e-9 and b.status.startswith("optimal")
    _, near, *_ = mvo._check_inputs(mu, bad, 1.0, 0.0, "nearest")
    assert np.allclose(np.diag(near), 1e-3, rtol=1e-12)  # variances kept
    assert np.abs(mvo._check_inputs(mu, bad, 1.0, 0.0, "clip")[1] - bad).max() > 0
    with pytest.raises(SolverError, match="repair must be"):
        max_sharpe(mu, bad, repair="magic")


def test_nearest_correlation_matches_higham_example():
    # Higham (2002), IMA J. Numer. Anal. 22, section 4: nearest correlation matrix of G
    g = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    _, x, *_ = mvo._check_inputs(np.zeros(3), g, 1.0, 0.0, "nearest")
    expected = np.array([[1.0, 0.7607, 0.1573], [0.7607, 1.0, 0.7607], [0.1573, 0.7607, 1.0]])
    assert np.abs(x - expected).max() < 1e-4


def test_error_not_symmetric():
    cov = np.array([[1.0, 0.5], [0.2, 1.0]]) * 1e-3
    with pytest.raises(SolverError, match="not symmetric.*repair="):
        min_variance(np.array([0.01, 0.02]), cov)
    b = min_variance(np.array([0.01, 0.02]), cov, repair="clip")
    assert np.allclose(b.weights, [0.5, 0.5], atol=1e-7)  # symmetrised: equal variances


def test_error_unknown_solver():
    mu, cov = random_problem()
    with pytest.raises(SolverError, match="not installed.*CLARABEL"):
        max_sharpe(mu, cov, solver="XYZ")


@pytest.mark.parametrize("mu,cov,words", [
    (np.zeros(3), np.eye(2), "shape"),
    (np.zeros((2, 1)), np.eye(2), "shape"),
    (np.array([0.1, np.nan]), np.eye(2), "mu contains NaN"),
    (np.array([0.1, 0.2]), np.array([[1.0, np.inf], [0.0, 1.0]]),
     r"cov contains NaN/inf at index \(0, 1\)"),
    (np.array(["a", "b"]), np.eye(2), "numeric"),
])
def test_error_bad_arrays(mu, cov, words):
    with pytest.raises(SolverError, match=words):
        max_sharpe(mu, cov)


@pytest.mark.parametrize("kw,words", [
    (dict(bounds=(0.6, 1.0)), "lower bounds sum to 1.8 > 1"),
    (dict(bounds=(0.0, 0.3)), "upper bounds sum to 0.9 < 1"),
    (dict(bounds=([0.0, 0.5, 0.0], [1.0, 0.4, 1.0])),
     "lower bound 0.5 > upper bound 0.4 for asset 1"),
    (dict(bounds=(-0.5, 1.0)), "long_only=False"),
    (dict(bounds=([0, 0], [1, 1])), "bounds must be"),
    (dict(bounds=0.5), "bounds must be a pair"),
    (dict(bounds=(0, 1, 2)), "bounds must be a pair"),
    (dict(ann=0.0), "ann must be"),
    (dict(rf=np.nan), "rf must be"),
])
def test_error_bad_options(kw, words):
    mu, cov = np.array([0.01, 0.02, 0.03]), np.eye(3) * 1e-3
    for f in (max_sharpe, min_variance):
        with pytest.raises(SolverError, match=words):
            f(mu, cov, **kw)


def test_errors_are_one_line_and_value_errors():
    with pytest.raises(ValueError) as e:
        max_sharpe(np.array([0.01, 0.02]), np.eye(2), solver="nope")
    assert "\n" not in str(e.value)
    for bad in (1, "a", 2.5):
        with pytest.raises(SolverError, match="n_points must be an integer >= 2"):
            efficient_frontier(np.array([0.01, 0.02]), np.eye(2), n_points=bad)
