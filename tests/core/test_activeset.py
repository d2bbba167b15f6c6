"""The dedicated active-set solver behind gpusim.max_sharpe / min_variance (gpusim.activeset):
against cvxpy (Clarabel, tight) and PyPortfolioOpt on real data to 1e-8, a KKT residual at
round-off, random problems with every kind of bound, the fallback to cvxpy, one BLAS thread."""

import numpy as np
import pandas as pd
import pytest
from conftest import shared_file

from gpusim import activeset, mvo
from gpusim.errors import SolverError
from gpusim.mvo import max_sharpe, min_variance

BOUNDS = {"long-only": None, "cap 0.2": (0.0, 0.2), "floor+cap": (0.02, 0.3)}


@pytest.fixture(scope="module")
def stats():
    p = shared_file("pypfopt/stock_prices.csv")
    r = pd.read_csv(p, parse_dates=["date"], index_col="date").dropna().pct_change().dropna()
    return r.mean().to_numpy() * 252, r.cov().to_numpy() * 252


def kkt_max_sharpe(w, mu, cov, lo, hi):
    """KKT residual of max Sharpe s.t. sum(w) = 1, lo <= w <= hi, from the weights alone: the
    projected-gradient step |w - clip(w + g - lam, lo, hi)| with g the Sharpe gradient (scaled by
    vol / max|mu|) and lam the budget multiplier (g on the assets strictly inside their bounds)."""
    s = np.sqrt(w @ cov @ w)
    g = (mu / s - (mu @ w) * (cov @ w) / s**3) * s / np.abs(mu).max()
    inside = (w > lo + 1e-9) & (w < hi - 1e-9)
    lam = np.median(g[inside])
    return float(max(np.abs(w - np.clip(w + g - lam, lo, hi)).max(), abs(w.sum() - 1)))


@pytest.mark.parametrize("bounds", list(BOUNDS.values()), ids=list(BOUNDS))
def test_real_data_equals_cvxpy_and_pypfopt(stats, bounds):
    from pypfopt import EfficientFrontier

    mu, cov = stats
    tight = {"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12, "max_iter": 500}
    for fn, ppo in ((max_sharpe, "max_sharpe"), (min_variance, "min_volatility")):
        b = fn(mu, cov, bounds=bounds)
        c = fn(mu, cov, bounds=bounds, solver="cvxpy")
        assert b.solver == "ACTIVE_SET" and c.solver == "CLARABEL"
        assert np.abs(b.weights - c.weights).max() < 1e-8
        ef = EfficientFrontier(mu, cov, weight_bounds=bounds or (0, 1), solver="CLARABEL",
                               solver_options=tight)
        getattr(ef, ppo)(**({"risk_free_rate": 0.0} if ppo == "max_sharpe" else {}))
        assert np.abs(b.weights - np.asarray(ef.weights)).max() < 1e-8
        if fn is max_sharpe:  # never beaten, and optimal to round-off
            assert b.sharpe >= c.sharpe - 1e-13
            lo, hi = (0.0, np.inf) if bounds is None else bounds
            assert kkt_max_sharpe(b.weights, mu, cov, lo, hi) < 1e-12
            i, j = np.flatnonzero((b.weights > lo + 1e-3) & (b.weights < hi - 1e-3))[:2]
            nudged = b.weights.copy()
            nudged[[i, j]] += [1e-7, -1e-7]
            assert kkt_max_sharpe(nudged, mu, cov, lo, hi) > 1e-9  # the check can fail
        else:
            assert b.vol <= c.vol * (1 + 1e-14)


def test_random_problems_every_kind_of_bound():
    rng = np.random.default_rng(5)
    for trial in range(60):
        n = int(rng.integers(2, 40))
        x = rng.normal(size=(n + 30, n)) * rng.uniform(0.5, 2, n) + rng.normal(size=(n + 30, 1))
        mu, cov = rng.normal(3e-4, 5e-4, n), np.cov(x.T) * 1e-4
        lo = rng.uniform(0, 0.5 / n, n)
        hi = lo + rng.uniform(1.0 / n, 0.8, n)
        kw = [dict(), dict(bounds=(0, 0.35)), dict(bounds=(lo, hi)),
              dict(bounds=(-0.3, 0.5), long_only=False), dict(long_only=False)][trial % 5]
        for fn in (max_sharpe, min_variance):
            try:
                ref = fn(mu, cov, solver="cvxpy", **kw)
            except SolverError:  # e.g. no portfolio beats rf: the fast path says so too
                with pytest.raises(SolverError):
                    fn(mu, cov, **kw)
                continue
            b = fn(mu, cov, **kw)
            assert b.solver == "ACTIVE_SET", (trial, fn.__name__)
            assert np.abs(b.weights - ref.weights).max() < 1e-6, (trial, fn.__name__)
            if fn is max_sharpe:
                assert b.sharpe >= ref.sharpe - 1e-12 * abs(ref.sharpe)
            else:
                assert b.vol <= ref.vol * (1 + 1e-12)


def test_hand_case_two_assets():
    # uncorrelated, vols 10% / 20%, means 5% / 10%: unconstrained tangency w ∝ cov^-1 mu = (5, 2.5)
    mu, cov = np.array([0.05, 0.10]), np.diag([0.01, 0.04])
    np.testing.assert_allclose(max_sharpe(mu, cov).weights, [2 / 3, 1 / 3], atol=1e-15)
    np.testing.assert_allclose(min_variance(mu, cov).weights, [0.8, 0.2], atol=1e-15)
    # a cap of 0.6 binds: (0.6, 0.4)
    np.testing.assert_allclose(max_sharpe(mu, cov, bounds=(0, 0.6)).weights, [0.6, 0.4],
                               atol=1e-15)


def test_falls_back_to_cvxpy_or_says_why():
    mu, cov = np.array([0.05, 0.10, 0.07]), np.diag([0.01, 0.04, 0.02])
    hi_only = (np.array([-np.inf, 0.0, 0.0]), np.array([0.7, 0.6, 0.6]))
    b = min_variance(mu, cov, bounds=hi_only, long_only=False)
    assert b.solver == "CLARABEL"  # an asset with only an upper bound: not the fast path's
    with pytest.raises(SolverError, match="active-set solver could not vouch.*solver=None"):
        min_variance(mu, cov, bounds=hi_only, long_only=False, solver="active_set")
    assert activeset.solve(cov / 0.04, mu / 0.1, *hi_only, False) is None


def test_one_blas_thread_up_to_the_limit():
    from threadpoolctl import threadpool_info

    def blas_threads():
        return {d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"}

    with mvo._one_blas_thread(mvo.ONE_THREAD_MAX):
        assert blas_threads() == {1}
    outside = blas_threads()
    with mvo._one_blas_thread(mvo.ONE_THREAD_MAX + 1):
        assert blas_threads() == outside
