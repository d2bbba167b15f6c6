"""Weights labelled by symbol in search results and baselines (issue 15)."""

import numpy as np
import pandas as pd
import pytest

import gpusim
from gpusim.errors import GpusimError


def _mu_cov():
    rng = np.random.default_rng(5)
    X = rng.normal(0.001, 0.01, size=(200, 3)) + np.array([0.0, 0.0005, 0.001])
    names = ["AAA", "BBB", "CCC"]
    return (pd.Series(X.mean(0), index=names),
            pd.DataFrame(np.cov(X.T), index=names, columns=names))


def test_labelled_inputs_keep_their_symbols_everywhere():
    mu, cov = _mu_cov()
    for given in ((mu, cov), (mu.to_numpy(), cov)):
        res = gpusim.search(given, n=3000, ann=252, top_k=3, backend="cpu", progress=False)
        assert res.symbols == ["AAA", "BBB", "CCC"]
        s = res.summary
        assert list(s["best_weights"]) == ["AAA", "BBB", "CCC"]
        assert s["best_weights"]["CCC"] == res.weights().iloc[0]["CCC"]
        ms = res.baselines["max_sharpe"]
        ser = ms.as_series()
        assert list(ser.index) == ["AAA", "BBB", "CCC"] and ser.sum() == pytest.approx(1.0)
        assert s["exact_max_sharpe_weights"] == pytest.approx(ser.to_dict())
        text = res.to_text()
        assert "AAA" in text and "CCC" in text and "exact max sharpe" in text


def test_mismatched_labels_are_one_line():
    mu, cov = _mu_cov()
    with pytest.raises(GpusimError, match="labels of mu"):
        gpusim.search((mu, cov.iloc[::-1, ::-1]), n=100, ann=252, backend="cpu",
                      progress=False)


def test_max_sharpe_of_labelled_stats_is_labelled():
    mu, cov = _mu_cov()
    b = gpusim.max_sharpe(mu, cov, ann=252)
    assert b.symbols == ["AAA", "BBB", "CCC"]
    assert list(b.as_series().index) == ["AAA", "BBB", "CCC"]
    # unlabelled input: generic names, or the caller's
    assert list(gpusim.max_sharpe(mu.to_numpy(), cov.to_numpy(), ann=252).as_series().index) \
        == ["w_0", "w_1", "w_2"]


def test_all_twenty_weights_printed():
    m = gpusim.synthetic_market(n_assets=20, n_bars=300, seed=1)
    res = gpusim.search(m, n=2000, top_k=2, backend="cpu", progress=False, baselines=False)
    text = res.to_text()
    assert all(s in text for s in m.symbols) and "first" not in text
