"""Acceptance on real prices (PyPortfolioOpt's stock_prices.csv, common window)."""

import numpy as np
import pytest
from conftest import shared_file

import gpusim

FIVE = ["GOOG", "AAPL", "FB", "BABA", "AMZN"]


@pytest.fixture(scope="module")
def market():
    return gpusim.load_prices(shared_file("pypfopt/stock_prices.csv"), align="common")


def test_exact_max_sharpe_agrees_with_first_order_conditions(market):
    """Long-only max Sharpe from cvxpy vs an independent check: KKT on the simplex and SLSQP."""
    from scipy.optimize import minimize

    mu, cov = market.stats()
    b = gpusim.max_sharpe(mu, cov, ann=market.ann)
    w = b.weights
    # gradient of Sharpe: equal on the support, not larger off it (first-order optimality)
    s = w @ cov @ w
    grad = (mu * s - (mu @ w) * (cov @ w)) / s**1.5
    act = w > 1e-6
    lam = grad[act].mean()
    assert np.max(np.abs(grad[act] - lam)) < 1e-6 * np.abs(grad).max()
    assert (grad[~act] <= lam + 1e-6 * np.abs(grad).max()).all()
    # independent solver
    f = lambda x: -(mu @ x) / np.sqrt(x @ cov @ x)  # noqa: E731
    r = minimize(f, np.full(mu.size, 1 / mu.size), method="SLSQP", bounds=[(0, 1)] * mu.size,
                 constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1}],
                 options={"ftol": 1e-15, "maxiter": 1000})
    assert -r.fun * np.sqrt(market.ann) == pytest.approx(b.sharpe, rel=1e-6)
    np.testing.assert_allclose(r.x, w, atol=1e-5)


def test_search_1e7_on_five_assets_within_one_percent(market):
    m5 = market.subset(FIVE)
    res = gpusim.search(m5, n=10_000_000, seed=7, top_k=5, backend="cpu", progress=False)
    exact = res.baselines["max_sharpe"].sharpe
    assert res.best["sharpe"] <= exact * (1 + 1e-9)
    assert res.gap >= 0.99, res.gap
    # the best candidate is close to the exact weights too
    assert np.abs(res.weights().iloc[0].to_numpy() - res.baselines["max_sharpe"].weights).max() \
        < 0.05
