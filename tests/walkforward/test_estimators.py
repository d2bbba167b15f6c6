"""Walk-forward estimators: batched (gpusim.walkforward.estimators) vs the readable oracle
(cpu_ref.estimators) vs pandas ewm and scikit-learn LedoitWolf on real prices."""

import numpy as np
import pandas as pd
import pytest
from conftest import shared_file

from cpu_ref import estimators as ref
from gpusim.errors import GpusimError
from gpusim.walkforward import estimators as est


def _prices(T=90, A=4, seed=0):
    r = np.random.default_rng(seed)
    return 100 * np.cumprod(1 + r.normal(3e-4, 0.01, (T, A)), axis=0)


def _real(n_assets=20):
    df = pd.read_csv(shared_file("pypfopt/stock_prices.csv"), parse_dates=["date"],
                     index_col="date")
    return df.dropna().iloc[:, :n_assets]


WINDOWS = (np.array([1, 10, 30, 5]), np.array([40, 70, 89, 90]))


@pytest.mark.parametrize("name", ["sample", "ewma:7", "ledoit_wolf"])
def test_batched_windows_equal_the_reference(name):
    close = _prices()
    a, t = WINDOWS
    e = est.parse_estimator(name)
    mu, cov = est.estimate(np, close, a, t, e, close.shape[1])
    R = close[1:] / close[:-1] - 1
    for s in range(len(a)):
        r = R[a[s] - 1:t[s] - 1]
        if e.kind == "ewma":
            m_ref, c_ref = ref.ewma_stats(r, 7.0)
        else:
            m_ref, c_ref = ref.sample_stats(r)
            if e.kind == "ledoit_wolf":
                c_ref = ref.ledoit_wolf_cov(r)
        np.testing.assert_allclose(mu[s], m_ref, rtol=1e-11, atol=1e-16)
        np.testing.assert_allclose(cov[s], c_ref, rtol=1e-10, atol=1e-17)


def test_reference_ewma_is_pandas_ewm():
    R = pd.DataFrame(np.diff(_prices(60, 3), axis=0))
    m, c = ref.ewma_stats(R.to_numpy(), 5.0)
    np.testing.assert_allclose(m, R.ewm(halflife=5.0).mean().iloc[-1], rtol=1e-13)
    np.testing.assert_allclose(c, R.ewm(halflife=5.0).cov().iloc[-3:], rtol=1e-12)


def test_ewma_equals_pandas_on_real_data():
    px = _real(10)
    R = px.pct_change().iloc[1:]
    close = px.to_numpy()
    T = len(close)
    t = np.array([300, 600, T])
    a = t - 252
    mu, cov = est.estimate(np, close, a, t, est.parse_estimator("ewma:63"), 10)
    for s in range(3):
        win = R.iloc[a[s] - 1:t[s] - 1]
        np.testing.assert_allclose(mu[s], win.ewm(halflife=63).mean().iloc[-1], rtol=1e-10)
        np.testing.assert_allclose(cov[s], win.ewm(halflife=63).cov().iloc[-10:].to_numpy(),
                                   rtol=1e-10, atol=1e-18)


def test_ledoit_wolf_equals_scikit_learn_and_pypfopt_on_real_data():
    sk = pytest.importorskip("sklearn.covariance")
    px = _real(20)
    R = px.pct_change().iloc[1:]
    close = px.to_numpy()
    t = np.array([260, 500, len(close)])
    a = t - 252
    mu, cov = est.estimate(np, close, a, t, est.parse_estimator("ledoit_wolf"), 20)
    for s in range(3):
        win = R.iloc[a[s] - 1:t[s] - 1].to_numpy()
        lw = sk.LedoitWolf().fit(win)
        assert lw.shrinkage_ > 0.01           # a real shrinkage, not the sample covariance
        np.testing.assert_allclose(cov[s], lw.covariance_, rtol=1e-10, atol=1e-18)
        np.testing.assert_allclose(mu[s], win.mean(axis=0), rtol=1e-12)
    risk_models = pytest.importorskip("pypfopt.risk_models")
    win = px.iloc[a[2] - 1:t[2]]          # prices of the last window (its returns: 252 rows)
    S = risk_models.CovarianceShrinkage(win, frequency=1).ledoit_wolf("constant_variance")
    np.testing.assert_allclose(cov[2], S.to_numpy(), rtol=1e-10, atol=1e-18)


def test_callable_estimator_sees_the_window_and_replaces_the_asset_block():
    close = _prices(50, 3)
    idx = pd.bdate_range("2020-01-01", periods=50)
    seen = []

    def shrink(r):
        seen.append((r.index[0], r.index[-1], list(r.columns)))
        return r.mean().to_numpy() * 0.5, np.diag(r.var().to_numpy())

    e = est.parse_estimator(shrink)
    assert e.label == "shrink"
    a, t = np.array([1, 20]), np.array([30, 50])
    mu, cov = est.estimate(np, close, a, t, e, 3, idx, ["x", "y", "z"])
    R = close[1:] / close[:-1] - 1
    assert seen[1] == (idx[20], idx[49], ["x", "y", "z"])
    np.testing.assert_allclose(mu[1], 0.5 * R[19:49].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(cov[1], np.diag(R[19:49].var(axis=0, ddof=1)), rtol=1e-12)


def test_bad_estimators_are_one_line_errors():
    for bad in ("ewma", "ewma:-3", "ewma:x", "shrunk"):
        with pytest.raises(GpusimError, match="estimator="):
            est.parse_estimator(bad)
    e = est.parse_estimator(lambda r: (np.zeros(2), np.eye(3)))
    assert e.label == "custom"
    with pytest.raises(GpusimError, match="must return finite"):
        est.estimate(np, _prices(30, 3), np.array([1]), np.array([20]), e, 3)


def test_walkforward_estimator_axis_matches_single_runs_and_reference():
    import gpusim
    from gpusim.grid import Param

    mkt = gpusim.synthetic_market(n_assets=4, n_bars=200, seed=3)
    kw = {"every": "M", "lookback": 60, "num_tests": 300, "progress": False, "backend": "cpu"}
    names = ["sample", "ewma:20", "ledoit_wolf"]
    res = gpusim.walkforward(mkt, estimator=Param(names), **kw)
    assert list(res.metrics.index.get_level_values("estimator")) == names
    assert res.summary["estimators"] == names
    v = res.verify(n_combinations=3, n_dates=3)
    assert v["ok"] and v["same_choices"] and v["n_checked"] > 6
    allocs = []
    for name in names:
        one = gpusim.walkforward(mkt, estimator=name, **kw)
        np.testing.assert_array_equal(one.allocations().to_numpy(),
                                      res.allocations(estimator=name).to_numpy())
        allocs.append(one.allocations().to_numpy())
    assert not np.array_equal(allocs[0], allocs[1])      # the estimator changes the choice
    assert not np.array_equal(allocs[0], allocs[2])
    # a callable equal to the sample estimator gives the sample choices
    same = gpusim.walkforward(mkt, estimator=lambda r: (r.mean().to_numpy(),
                                                        r.cov().to_numpy()), **kw)
    np.testing.assert_allclose(same.allocations().to_numpy(), allocs[0], rtol=1e-12)
