"""Cold start of the search: the NumPy re-score of the top-k (no compilation) equals the CPU
reference, and the compile notice is printed before a compilation and only then.
"""

import numpy as np
import pytest
from numba import njit

from cpu_ref.search import score_nb
from gpusim.compiling import compile_notice, compile_text
from gpusim.search.inputs import rescore


@pytest.mark.parametrize(("code", "alpha"), [(0, 1.0), (1, 1.0), (2, 0.5), (2, 3.0)])
def test_rescore_equals_reference(code, alpha):
    rng = np.random.default_rng(3)
    A = 7
    X = rng.normal(size=(40, A))
    mu, cov = X.mean(0), np.cov(X.T)
    lo = np.full(A, 0.02)
    hi = np.full(A, 0.4)        # some candidates break it: ok False, Sharpe -inf
    idx = np.array([0, 1, 17, 123_456_789, 2**39 + 5], dtype=np.int64)
    W0, s0, ok0 = score_nb(11, idx, code, alpha, lo, hi, mu, cov, 252.0, 0.01)
    W1, s1, ok1 = rescore(11, idx, code, alpha, lo, hi, mu, cov, 252.0, 0.01)
    assert np.array_equal(W0, W1)                 # bit-identical weights
    assert np.array_equal(ok0, ok1)
    np.testing.assert_allclose(s1, s0, rtol=1e-12)
    # closed form for one row
    w = W1[2]
    assert s1[2, 0] == pytest.approx(252.0 * mu @ w, rel=1e-13)
    assert s1[2, 1] == pytest.approx(np.sqrt(252.0 * w @ cov @ w), rel=1e-13)


def test_rescore_no_variance_is_minus_inf():
    W, s, ok = rescore(0, [3], 1, 1.0, np.zeros(2), np.ones(2), np.zeros(2), np.zeros((2, 2)),
                       1.0, 0.0)
    assert ok.all() and s[0, 1] == 0.0 and s[0, 2] == -np.inf
    assert W.sum() == pytest.approx(1.0)


def test_compile_notice_only_when_compiling():
    @njit
    def twice(x):
        return 2 * x

    lines = []
    with compile_notice("twice", 3, say=lines.append) as w:
        assert twice(2) == 4
    assert w.compiled and w.seconds > 0
    assert lines == ["compiling twice (first run only, ~3 s; cached on disk afterwards)"]
    with compile_notice("twice", 3, say=lines.append) as w2:
        twice(3)
    assert not w2.compiled and len(lines) == 1          # compiled already: silent
    with compile_notice("twice", None, say=lines.append, enabled=False) as w3:
        twice(2.5)                                       # a new signature compiles
    assert w3.compiled and len(lines) == 1               # but the notice is off
    assert compile_text(7.94, True) == " (+ 7.9 s compiling, first run only)"
    assert compile_text(0.01, False) == ""


def test_search_reports_compile_time():
    from gpusim.search.api import search

    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 4))
    res = search((X.mean(0), np.cov(X.T)), n=2000, top_k=3, backend="cpu", progress=False,
                 baselines=False)
    s = res.summary
    assert isinstance(s["compiled"], bool) and s["compile_s"] >= 0
    W, st, _ = score_nb(0, res.top["candidate"].to_numpy(), s["sampler_code"], 1.0, res.lo,
                        res.hi, res.mu, res.cov, 1.0, 0.0)
    assert np.array_equal(res.weights().to_numpy(), W)
    np.testing.assert_allclose(res.top["expected_volatility"], st[:, 1], rtol=1e-12)
