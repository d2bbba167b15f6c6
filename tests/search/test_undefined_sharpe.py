"""Sharpe ratios of (near) riskless portfolios are undefined, not numbers (issue 16, item 7).

Before: a riskless asset with a positive drift gave a max-Sharpe baseline of 1.4e13 (volatility
1.8e-15 from rounding), a gap above 1, and a top-k of such numbers; a constant-price asset gave
a min-variance "Sharpe" from 1e-16 noise. Now a volatility at or below the floor
VOL_FLOOR_RTOL x the largest asset volatility gives NaN, with the reason in the warnings.
"""

import json
import math
import warnings

import numpy as np
import pytest

import gpusim
from gpusim.mvo import VOL_FLOOR_RTOL, min_variance, vol_floor


@pytest.fixture(scope="module")
def prices():
    p = gpusim.synthetic_market(n_assets=4, n_bars=300, seed=1).prices.copy()
    p["BOND"] = 100 * 1.0001 ** np.arange(300)          # riskless, 2.5% a year
    return p


def test_floor_is_relative_to_the_largest_asset_volatility():
    cov = np.diag([0.04, 0.01]) / 252
    assert vol_floor(cov, 252) == pytest.approx(VOL_FLOOR_RTOL * 0.2)
    mu = np.array([0.1, 0.05]) / 252
    b = min_variance(mu, cov, ann=252)                   # vol 0.0894: far above the floor
    assert math.isfinite(b.sharpe) and b.sharpe == pytest.approx(b.ret / b.vol)


def test_riskless_asset_gives_nan_with_reasons(prices, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = gpusim.search(prices, n=20_000, alpha=0.05, seed=1, backend="cpu",
                            progress=False)
    ms, mv = res.baselines["max_sharpe"], res.baselines["min_variance"]
    assert ms.weights[-1] == pytest.approx(1.0) and ms.vol < 1e-12
    assert math.isnan(ms.sharpe) and math.isnan(mv.sharpe)
    top = res.top
    # riskless candidates are never ranked (task H5): the top-k is all genuine portfolios
    assert (top["expected_volatility"].to_numpy() > vol_floor(res.cov, res.summary["ann"])).all()
    assert len(top) == 10 and np.isfinite(top["sharpe"].to_numpy()).all()
    s = res.summary
    assert s["n_riskless"] > 0 and s["gap"] is None and s["exact_max_sharpe"] is None
    text = " ".join(s["warnings"])
    assert "Sharpe ratios are undefined and they were not ranked" in text
    assert "exact max sharpe" in text and "unbounded" in text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert gpusim.verify(res)["ok"]
    out = res.save(tmp_path / "r")
    saved = json.loads((out / "summary.json").read_text(),
                       parse_constant=lambda c: pytest.fail(f"{c} in summary.json"))
    assert saved["exact_max_sharpe"] is None and saved["best_sharpe"] == s["best_sharpe"]
    assert saved["n_riskless"] == s["n_riskless"]


def test_constant_asset_min_variance_is_not_a_number():
    p = gpusim.synthetic_market(n_assets=3, n_bars=200, seed=2).prices.copy()
    p["CASH"] = 100.0
    m = gpusim.load_prices(p)
    mu, cov = m.stats()
    b = min_variance(mu, cov, ann=252)
    assert b.weights[-1] == pytest.approx(1.0)
    assert b.vol <= vol_floor(cov, 252) and math.isnan(b.sharpe)


def test_mu_cov_without_ann_says_ann_1_is_assumed():
    """search((mu, cov)) without ann used to take ann = 1 silently (issue 16, item 7)."""
    from gpusim.errors import DataWarning, GpusimError

    mu = np.array([0.08, 0.05, 0.03])
    cov = np.diag([0.04, 0.02, 0.01])
    with pytest.warns(DataWarning, match="ann = 1 is assumed"):
        res = gpusim.search((mu, cov), n=2000, backend="cpu", progress=False, baselines=False)
    assert res.summary["ann"] == 1.0 and any("ann = 1 is assumed" in w
                                             for w in res.summary["warnings"])
    best = res.top.iloc[0]
    w = res.weights().iloc[0].to_numpy()
    assert best["expected_return"] == pytest.approx(mu @ w, rel=1e-12)   # annual as given
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                     # no warning
        daily = gpusim.search((mu / 252, cov / 252), ann=252, n=2000, backend="cpu",
                              progress=False, baselines=False)
    assert not daily.summary["warnings"]
    np.testing.assert_allclose(daily.top["sharpe"], res.top["sharpe"], rtol=1e-12)
    for bad in ("x", 0, -1, math.inf):
        with pytest.raises(GpusimError, match="ann="):
            gpusim.search((mu, cov), ann=bad, n=10, backend="cpu", progress=False)


def test_guided_search_reports_the_same_undefined_sharpes(prices):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = gpusim.search(prices, method="guided", budget=20_000, seed=1, backend="cpu",
                            progress=False)
    low = res.top["expected_volatility"].to_numpy() <= vol_floor(res.problem.objective.cov, 252)
    assert low.any() and np.isnan(res.top["sharpe"].to_numpy()[low]).all()
    assert res.summary["exact_max_sharpe"] is None and res.summary["gap"] is None
    assert any("undefined (NaN)" in w for w in res.summary["warnings"])
    assert res.verify()["ok"]                     # the reference applies the same floor
