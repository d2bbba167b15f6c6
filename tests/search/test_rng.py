"""Counter-based RNG and samplers (DESIGN §4): stream identity, distributions, bounds."""

import math

import numpy as np
import pytest

from cpu_ref import rng


def test_mix64_is_splitmix64():
    # Published SplitMix64 (Vigna): the first output of the generator seeded with 0.
    with np.errstate(over="ignore"):
        assert int(rng.mix64_nb(rng.GOLDEN)) == 0xE220A8397B1DCDAF
        assert int(rng.mix64(rng.GOLDEN)) == 0xE220A8397B1DCDAF


def test_python_body_equals_compiled():
    key = np.uint64(rng.seed_key_nb(123))
    with np.errstate(over="ignore"):
        assert rng.seed_key(123) == key
        for i, j, t in [(0, 0, 0), (5, 3, 0), (2**39, 65535, 255), (77, 1, 9)]:
            assert rng.uniform(key, i, j, t) == rng.uniform_nb(key, i, j, t)
            x = np.uint64(rng.bits(key, i, j, t))
            assert rng.neg_log_uniform(x) == rng.neg_log_uniform_nb(x)


def test_population_independent_of_chunking():
    lo, hi = np.zeros(6), np.ones(6)
    W, ok = rng.population_nb(9, 0, 200, 6, 1, 1.0, lo, hi)
    W2, _ = rng.population_nb(9, 37, 50, 6, 1, 1.0, lo, hi)
    assert np.array_equal(W[37:87], W2)
    W3, _ = rng.population_nb(10, 0, 200, 6, 1, 1.0, lo, hi)
    assert not np.array_equal(W, W3)
    assert ok.all()
    np.testing.assert_allclose(W.sum(1), 1.0, rtol=0, atol=2e-15)


def test_neg_log_uniform_matches_libm():
    key = np.uint64(rng.seed_key_nb(3))
    worst = 0.0
    for i in range(20000):
        x = np.uint64(rng.bits_nb(key, i, 0, 0))
        u = rng.uniform_nb(key, i, 0, 0)
        worst = max(worst, abs(rng.neg_log_uniform_nb(x) + math.log(u)) / -math.log(u))
    assert worst < 2e-15
    # extremes of the grid: u = 2**-53 and u = 1 - 2**-53
    assert rng.neg_log_uniform_nb(np.uint64(0)) == pytest.approx(53 * math.log(2), rel=1e-15)
    assert rng.neg_log_uniform_nb(np.uint64(2**64 - 1)) == pytest.approx(2.0**-53, rel=1e-12)


def test_uniforms_are_uniform():
    key = np.uint64(rng.seed_key_nb(1))
    u = np.array([rng.uniform_nb(key, i, 2, 0) for i in range(100000)])
    assert 0.0 < u.min() and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 4 * math.sqrt(1 / 12 / u.size)
    # Kolmogorov-Smirnov distance against U(0, 1); 1.63/sqrt(n) is the 1% critical value
    us = np.sort(u)
    d = np.max(np.maximum(np.arange(1, u.size + 1) / u.size - us, us - np.arange(u.size) / u.size))
    assert d < 1.63 / math.sqrt(u.size)


@pytest.mark.parametrize("code,alpha", [(1, 1.0), (2, 0.5), (2, 3.0)])
def test_dirichlet_moments(code, alpha):
    A, n = 4, 200000
    W, _ok = rng.population_nb(5, 0, n, A, code, alpha, np.zeros(A), np.ones(A))
    a0 = A * alpha
    var = (alpha * (a0 - alpha)) / (a0 * a0 * (a0 + 1))
    cov01 = -(alpha * alpha) / (a0 * a0 * (a0 + 1))
    se_mean = math.sqrt(var / n)
    np.testing.assert_allclose(W.mean(0), 1 / A, atol=5 * se_mean)
    np.testing.assert_allclose(W.var(0), var, rtol=0.03)
    assert np.cov(W[:, 0], W[:, 1])[0, 1] == pytest.approx(cov01, rel=0.06)


def test_uniform_sampler_is_normalised_uniforms():
    A = 3
    W, _ = rng.population_nb(2, 0, 10, A, 0, 1.0, np.zeros(A), np.ones(A))
    key = np.uint64(rng.seed_key_nb(2))
    u = np.array([[rng.uniform_nb(key, i, j, 0) for j in range(A)] for i in range(10)])
    np.testing.assert_allclose(W, u / u.sum(1, keepdims=True), rtol=1e-15)


def test_bounds_lower_exact_upper_rejected():
    A = 5
    lo = np.array([0.1, 0.0, 0.05, 0.0, 0.2])
    hi = np.array([0.5, 0.5, 0.5, 0.5, 0.5])
    W, ok = rng.population_nb(4, 0, 20000, A, 1, 1.0, lo, hi)
    assert (W >= lo - 1e-15).all()
    np.testing.assert_allclose(W.sum(1), 1.0, atol=2e-15)
    assert np.array_equal(ok, (W <= hi).all(1))
    assert 0.2 < ok.mean() < 1.0  # some, not all, are rejected by hi
    # the shifted part is a flat Dirichlet on the remaining mass 1 - sum(lo) = 0.65
    np.testing.assert_allclose((W - lo).mean(0), 0.65 / A, atol=0.005)


def test_sampler_code():
    assert rng.sampler_code("uniform") == 0
    assert rng.sampler_code("dirichlet") == 1
    assert rng.sampler_code("dirichlet", 0.5) == 2
    with pytest.raises(ValueError, match="sampler='sobol'.*dirichlet"):
        rng.sampler_code("sobol")
