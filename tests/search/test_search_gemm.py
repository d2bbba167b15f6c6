"""The GEMM search path (issue 14): the same population bit for bit and the same top-k as the
fused kernels, on the CPU (NumPy + BLAS) and in the CUDA simulator; A = 300 works."""

import numpy as np
import pytest

import gpusim
from cpu_ref import rng
from cpu_ref.search import search_ref
from gpusim.errors import GpusimError


def _stats(A, seed=0, T=600):
    r = np.random.default_rng(seed)
    X = r.normal(size=(T, A)) @ (r.normal(size=(A, A)) * 0.004) + r.uniform(-2e-4, 8e-4, A)
    return X.mean(0), np.cov(X.T)


@pytest.mark.parametrize("code,alpha,bounds", [(1, 1.0, False), (0, 1.0, False), (2, 0.6, True)])
def test_cpu_tile_is_the_reference_population(code, alpha, bounds):
    from gpusim.search.gemm import generate_tile_nb
    from gpusim.search.steps import Stream

    A, m, start = 7, 700, 123
    lo = np.full(A, 0.02) if bounds else np.zeros(A)
    hi = np.full(A, 0.4) if bounds else np.ones(A)
    Wt, ok = np.empty((A, m)), np.empty(m, dtype=np.bool_)
    generate_tile_nb(Stream(np.uint64(rng.seed_key_nb(4)), code, alpha, lo, hi), start, Wt, ok)
    W, ok_ref = rng.population_nb(4, start, m, A, code, alpha, lo, hi)
    assert np.array_equal(Wt.T, W) and np.array_equal(ok, ok_ref)
    if bounds:
        assert 0 < ok.sum() < m


@pytest.mark.parametrize("A,n,k", [(3, 20_000, 10), (20, 20_000, 1000), (300, 3_000, 10)])
def test_gemm_equals_fused_on_cpu(A, n, k):
    mu, cov = _stats(A, seed=A)
    kw = dict(n=n, seed=2, top_k=k, ann=252, backend="cpu", progress=False, baselines=False,
              chunk_size=n // 3 + 1)
    fused = gpusim.search((mu, cov), path="fused", **kw)
    gemm = gpusim.search((mu, cov), path="gemm", **kw)
    assert fused.summary["path"] == "fused" and gemm.summary["path"] == "gemm"
    assert gemm.top["candidate"].tolist() == fused.top["candidate"].tolist()
    np.testing.assert_allclose(gemm.top["sharpe"], fused.top["sharpe"], rtol=1e-12)
    assert gemm.summary["n_valid"] == fused.summary["n_valid"] == n
    if A <= 20:
        ri, _ = search_ref(2, 0, n, 1, 1.0, np.zeros(A), np.ones(A), mu, cov, 252.0, 0.0, k)
        assert gemm.top["candidate"].tolist() == ri.tolist()


def test_gemm_small_tiles_and_bounds_cpu():
    """Tiles much smaller than a chunk, upper bounds rejecting candidates: still the reference."""
    from gpusim.search.gemm import GemmSearch, cpu_generator
    from gpusim.search.inputs import merge_topk
    from gpusim.search.steps import Stream

    A, n, k = 5, 5_000, 25
    mu, cov = _stats(A, seed=1)
    lo, hi = np.zeros(A), np.full(A, 0.5)
    st = Stream(np.uint64(rng.seed_key_nb(6)), 1, 1.0, lo, hi)
    g = GemmSearch(cpu_generator(st), mu, cov, 252.0, 0.01, k, xp=np, merge=merge_topk, vfl=0.0,
                   tile=333)
    n_ok = g.run(10, 2_000) + g.run(2_010, 3_000)
    s, i = g.best()
    ri, rs = search_ref(6, 10, n, 1, 1.0, lo, hi, mu, cov, 252.0, 0.01, k)
    assert i.tolist() == ri.tolist() and 0 < n_ok < n
    np.testing.assert_allclose(s, rs, rtol=1e-12)


@pytest.mark.parametrize("A", [4, 300])
def test_gemm_and_fused_in_cuda_simulator(A):
    """GPU paths in the simulator: the CUDA tile generator gives the CPU population, and the
    GEMM and fused kernels the CPU top-k (A = 300: above the old 256-asset cap)."""
    mu, cov = _stats(A, seed=5)
    n = 200 if A > 100 else 1_500   # the simulator runs A²/2 Python steps per candidate
    kw = dict(n=n, seed=3, top_k=5, ann=252, progress=False, baselines=False)
    cpu = gpusim.search((mu, cov), backend="cpu", **kw)
    for path in ("gemm", "fused"):
        gpu = gpusim.search((mu, cov), backend="gpu", path=path, **kw)
        assert gpu.summary["backend"] == "gpu-simulator" and gpu.summary["path"] == path
        assert gpu.top["candidate"].tolist() == cpu.top["candidate"].tolist(), path
        np.testing.assert_allclose(gpu.top["sharpe"], cpu.top["sharpe"], rtol=1e-12)


def test_cuda_tile_is_the_reference_population():
    from gpusim.search.gemm import cuda_generator
    from gpusim.search.steps import Stream

    A, m = 6, 100
    lo, hi = np.full(A, 0.01), np.full(A, 0.5)
    Wt, ok = np.zeros((A, m)), np.zeros(m, dtype=np.bool_)
    gen = cuda_generator(Stream(np.uint64(rng.seed_key_nb(9)), 1, 1.0, lo, hi), float(lo.sum()),
                         tpb=32)
    gen(77, Wt, ok)
    W, ok_ref = rng.population_nb(9, 77, m, A, 1, 1.0, lo, hi)
    assert np.array_equal(Wt.T, W) and np.array_equal(ok, ok_ref)


def test_path_choice_and_errors():
    from gpusim.search.gemm import GEMM_MIN_ASSETS, choose_path

    assert choose_path("auto", "gpu", GEMM_MIN_ASSETS["gpu"]) == "gemm"
    assert choose_path("auto", "gpu", GEMM_MIN_ASSETS["gpu"] - 1) == "fused"
    assert choose_path("auto", "gpu", 500, "float32") == "fused"
    assert choose_path("auto", "cpu", 20) == "fused"
    mu, cov = _stats(3)
    with pytest.raises(GpusimError, match="path='blas' is unknown"):
        gpusim.search((mu, cov), n=10, path="blas", backend="cpu", progress=False,
                      baselines=False)
    with pytest.raises(GpusimError, match="float64 only"):
        choose_path("gemm", "gpu", 10, "float32")


def test_cli_path_option(capsys):
    """`gpusim search --path gemm` runs the GEMM path and gives the fused top-k."""
    import json

    from gpusim.cli.main import main

    got = {}
    for path in ("gemm", "fused"):
        rc = main(["search", "--prices", "synthetic:5:200:1", "--n", "3000", "--json",
                   "--no-progress", "--no-baselines", "--backend", "cpu", "--path", path])
        assert rc == 0
        got[path] = json.loads(capsys.readouterr().out)
        assert got[path]["path"] == path
    assert got["gemm"]["best_sharpe"] == pytest.approx(got["fused"]["best_sharpe"], rel=1e-12)
