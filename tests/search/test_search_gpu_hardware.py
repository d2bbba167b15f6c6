"""Real-GPU checks of the search's top-k and paths (issue 14; marked ``gpu``, skipped unless a
CUDA device is reachable and the suite runs with GPUSIM_TEST_HARDWARE=1)."""

import numpy as np
import pytest

import gpusim

pytestmark = pytest.mark.gpu


def _stats(A, seed=0):
    r = np.random.default_rng(seed)
    X = r.normal(size=(max(500, 2 * A), A)) @ (r.normal(size=(A, A)) * 0.004) \
        + r.uniform(0, 6e-4, A)
    return X.mean(0), np.cov(X.T)


@pytest.mark.parametrize("k", [10, 1000, 10000])
def test_large_k_over_chunks_equals_cpu(k):
    """Several chunks (chunk_size), the running threshold and buffer merges vs the CPU."""
    mu, cov = _stats(16, seed=1)
    kw = dict(n=3_000_000, seed=4, top_k=k, ann=252, progress=False, baselines=False,
              chunk_size=700_001)
    cpu = gpusim.search((mu, cov), backend="cpu", **kw)
    gpu = gpusim.search((mu, cov), backend="gpu", **kw)
    assert gpu.top["candidate"].tolist() == cpu.top["candidate"].tolist()
    np.testing.assert_allclose(gpu.top["sharpe"], cpu.top["sharpe"], rtol=1e-12, atol=0)


def test_buffer_overflow_reruns_on_device():
    """A buffer of k + 1 overflows on most launches; the top-k is still the CPU's."""
    import cupy

    from cpu_ref import rng
    from gpusim.search.cuda import SearchLauncher
    from gpusim.search.inputs import merge_topk

    A, n, k = 8, 1_000_000, 50
    mu, cov = _stats(A, seed=2)
    lo, hi = np.zeros(A), np.ones(A)
    L = SearchLauncher(np.uint64(rng.seed_key_nb(3)), 1, 1.0, lo, hi, mu, cov, 252.0, 0.0, k,
                       n, xp=cupy, merge=merge_topk, vfl=0.0, buffer=k + 1)
    assert L.run(0, n) == n and L.n_reruns > 0
    s, i = L.best()
    cpu = gpusim.search((mu, cov), n=n, seed=3, top_k=k, ann=252, backend="cpu",
                        progress=False, baselines=False)
    assert i.tolist() == cpu.top["candidate"].tolist()
    np.testing.assert_allclose(s, cpu.top["sharpe"], rtol=1e-12)


@pytest.mark.parametrize("path", ["fused", "gemm"])
def test_300_assets_both_paths_equal_cpu(path):
    mu, cov = _stats(300, seed=3)
    kw = dict(n=200_000, seed=6, top_k=10, ann=252, progress=False, baselines=False)
    cpu = gpusim.search((mu, cov), backend="cpu", **kw)
    gpu = gpusim.search((mu, cov), backend="gpu", path=path, **kw)
    assert gpu.summary["path"] == path
    assert gpu.top["candidate"].tolist() == cpu.top["candidate"].tolist()
    np.testing.assert_allclose(gpu.top["sharpe"], cpu.top["sharpe"], rtol=1e-12)
