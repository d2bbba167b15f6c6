"""Real-GPU checks (marked ``gpu``): skipped unless a CUDA device is reachable and the suite runs
with GPUSIM_TEST_HARDWARE=1 (which keeps the CUDA simulator off):

    GPUSIM_TEST_HARDWARE=1 python -m pytest -m gpu -q
"""

import numpy as np
import pytest

import gpusim
from cpu_ref import rng

pytestmark = pytest.mark.gpu


def _stats(A, seed=0):
    r = np.random.default_rng(seed)
    X = r.normal(size=(500, A)) @ (r.normal(size=(A, A)) * 0.004) + r.uniform(0, 6e-4, A)
    return X.mean(0), np.cov(X.T)


@pytest.mark.parametrize("sampler,bounds", [("dirichlet", None), ("uniform", (0.0, 0.4))])
def test_search_gpu_equals_cpu(sampler, bounds):
    mu, cov = _stats(12)
    kw = dict(n=3_000_000, seed=5, top_k=20, ann=252, sampler=sampler, bounds=bounds,
              progress=False, baselines=False)
    cpu = gpusim.search((mu, cov), backend="cpu", **kw)
    gpu = gpusim.search((mu, cov), backend="gpu", **kw)
    assert gpu.summary["backend"] == "gpu"
    assert gpu.top["candidate"].tolist() == cpu.top["candidate"].tolist()
    np.testing.assert_allclose(gpu.top["sharpe"], cpu.top["sharpe"], rtol=1e-12, atol=0)
    assert gpu.summary["n_valid"] == cpu.summary["n_valid"]
    assert gpusim.verify(gpu, sample=50_000)["ok"]


def test_population_bit_identical_on_device():
    import cupy
    from numba import cuda

    from gpusim._cuda.rng import sample_dev

    @cuda.jit
    def gen(key, lo, hi, out):
        i = cuda.grid(1)
        if i < out.shape[0]:
            sample_dev(key, i, 1, 1.0, lo, hi, 0.0, out[i])

    A, n = 9, 100_000
    out = cupy.zeros((n, A))
    gen[(n + 127) // 128, 128](np.uint64(rng.seed_key_nb(11)), cupy.zeros(A), cupy.ones(A), out)
    W, _ = rng.population_nb(11, 0, n, A, 1, 1.0, np.zeros(A), np.ones(A))
    assert np.array_equal(cupy.asnumpy(out), W)


def test_backtest_gpu_equals_cpu():
    m = gpusim.synthetic_market(n_assets=6, n_bars=500, seed=3)
    kw = dict(weights=gpusim.RandomWeights(3000, seed=2), rebalance="never",
              threshold=gpusim.Param([0.02, 0.05]), fees=gpusim.Param([0.0, 0.005]),
              init_cash=100, progress=False)
    cpu = gpusim.backtest(m, backend="cpu", **kw).metrics
    gpu = gpusim.backtest(m, backend="gpu", **kw).metrics
    np.testing.assert_allclose(gpu.to_numpy(), cpu.to_numpy(), rtol=1e-10, atol=1e-12)


def test_search_gpu_float32_close_to_float64():
    mu, cov = _stats(20)
    kw = dict(n=2_000_000, seed=8, top_k=10, ann=252, progress=False, baselines=False,
              backend="gpu")
    f64 = gpusim.search((mu, cov), **kw)
    f32 = gpusim.search((mu, cov), dtype="float32", **kw)
    np.testing.assert_allclose(f32.top["sharpe"], f64.top["sharpe"], rtol=1e-4)
    assert gpusim.verify(f32, sample=50_000)["ok"]
