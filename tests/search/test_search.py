"""Weight search: fused CPU kernel and CUDA kernel (simulator) against the cpu_ref oracle."""

import json
import math

import numpy as np
import pandas as pd
import pytest

import gpusim
from cpu_ref import rng
from cpu_ref.search import score_nb, search_ref, sharpe_1d_nb
from gpusim.errors import GpusimError
from gpusim.search.api import merge_topk


def _stats(A, seed=0, T=400):
    r = np.random.default_rng(seed)
    L = r.normal(size=(A, A)) * 0.004
    X = r.normal(size=(T, A)) @ L + r.uniform(-2e-4, 8e-4, size=A)
    return X.mean(0), np.cov(X.T)


def test_sharpe_1d_closed_form():
    mu = np.array([0.001, 0.002])
    cov = np.array([[4e-4, 1e-4], [1e-4, 9e-4]])
    w = np.array([0.25, 0.75])
    ret, vol, sh = sharpe_1d_nb(w, mu, cov, 252.0, 0.01)
    var = 0.25**2 * 4e-4 + 2 * 0.25 * 0.75 * 1e-4 + 0.75**2 * 9e-4
    assert ret == pytest.approx(252 * (0.25 * 0.001 + 0.75 * 0.002), rel=1e-15)
    assert vol == pytest.approx(math.sqrt(252 * var), rel=1e-15)
    assert sh == pytest.approx((ret - 0.01) / vol, rel=1e-15)


def test_merge_topk_total_order():
    s = np.array([1.0, 3.0, 3.0, -np.inf, 2.0, 3.0])
    i = np.array([10, 7, 5, -1, 1, 6])
    ms, mi = merge_topk(np, s, i, 4)
    assert mi.tolist() == [5, 6, 7, 1]
    assert ms.tolist() == [3.0, 3.0, 3.0, 2.0]
    # the partition pre-selection of large inputs keeps every tie at the boundary
    r = np.random.default_rng(0)
    s = np.round(r.normal(size=5000), 1)
    i = r.permutation(5000)
    ms, mi = merge_topk(np, s, i, 7)
    order = np.lexsort((i, -s))[:7]
    assert mi.tolist() == i[order].tolist() and ms.tolist() == s[order].tolist()


def test_merge_topk_drops_nan_scores():
    """NaN (undefined) scores are never kept: with more NaNs than k, the partition's k-th best
    used to be NaN and the result came back empty (issue 16)."""
    s = np.array([np.nan] * 100 + [1.0, 2.0, 3.0])
    ms, mi = merge_topk(np, s, np.arange(103), 2)
    assert ms.tolist() == [3.0, 2.0] and mi.tolist() == [102, 101]
    ms, mi = merge_topk(np, np.array([np.nan, 1.0, np.nan, -np.inf]), np.arange(4), 3)
    assert ms.tolist() == [1.0, -np.inf] and mi.tolist() == [1, 3]
    r = np.random.default_rng(1)
    s = r.normal(size=4000)
    s[r.random(4000) < 0.7] = np.nan
    i = r.permutation(4000)
    ms, mi = merge_topk(np, s, i, 9)
    fin = np.isfinite(s)
    order = np.lexsort((i[fin], -s[fin]))[:9]
    assert mi.tolist() == i[fin][order].tolist() and not np.isnan(ms).any()


@pytest.mark.parametrize("A,sampler,alpha,bounds", [
    (3, "dirichlet", 1.0, None),
    (7, "uniform", 1.0, None),
    (5, "dirichlet", 0.5, None),
    (6, "dirichlet", 1.0, (0.02, 0.45)),
])
def test_cpu_fast_path_matches_reference(A, sampler, alpha, bounds):
    mu, cov = _stats(A, seed=A)
    n, k = 30_000, 12
    res = gpusim.search((mu, cov), n=n, sampler=sampler, alpha=alpha, seed=11, top_k=k,
                        bounds=bounds, ann=252, backend="cpu", progress=False, baselines=False,
                        chunk_size=7_001)  # odd chunks: result must not depend on chunking
    lo, hi = res.lo, res.hi
    code = rng.sampler_code(sampler, alpha)
    ref_i, ref_s = search_ref(11, 0, n, code, alpha, lo, hi, mu, cov, 252.0, 0.0, k)
    assert res.top["candidate"].tolist() == ref_i.tolist()
    np.testing.assert_allclose(res.top["sharpe"], ref_s, rtol=1e-12, atol=0)
    W, st, _ok = score_nb(11, ref_i, code, alpha, lo, hi, mu, cov, 252.0, 0.0)
    assert np.array_equal(res.weights().to_numpy(), W)
    np.testing.assert_allclose(res.top["expected_return"], st[:, 0], rtol=1e-14)
    if bounds is not None:
        assert 0 < res.summary["n_valid"] < n
        idx = np.arange(n, dtype=np.int64)
        assert res.summary["n_valid"] == int(score_nb(11, idx, code, alpha, lo, hi, mu, cov,
                                                      252.0, 0.0)[2].sum())
        assert (res.weights().to_numpy() <= hi + 1e-15).all()


@pytest.mark.parametrize("A", [13, 20])
@pytest.mark.parametrize("sym", [True, False])
def test_cpu_kernel_both_scorers_match_reference(A, sym):
    """The symmetric block scorer (8- and 4-row steps and the remainder, at A = 13 and 20) and
    the BLAS scorer give the reference's top-k and Sharpe."""
    from gpusim.search.cpu import CpuSearch
    from gpusim.search.steps import Stream

    mu, cov = _stats(A, seed=A)
    n, k = 5_000, 10
    lo, hi = np.zeros(A), np.ones(A)
    key = np.uint64(rng.seed_key_nb(5))
    st = CpuSearch(Stream(key, 1, 1.0, lo, hi), mu, cov, 252.0, 0.01, k, 0.0, n_tasks=3)
    st.sym = sym
    try:
        n_ok = st.run(3, n)
        ms, mi = st.best()
    finally:
        st.close()
    ref_i, ref_s = search_ref(5, 3, n, 1, 1.0, lo, hi, mu, cov, 252.0, 0.01, k)
    assert mi.tolist() == ref_i.tolist() and n_ok == n
    np.testing.assert_allclose(ms, ref_s, rtol=1e-12, atol=0)


@pytest.mark.parametrize("k", [1, 10, 1000])
def test_cpu_heaps_topk_over_chunkings(k):
    """Top-k by the running-threshold heaps equals cpu_ref for k in {1, 10, 1000}, whatever the
    chunking and the number of tasks (heaps persist across chunks)."""
    from gpusim.search.cpu import CpuSearch
    from gpusim.search.steps import Stream

    A, n, start = 6, 12_000, 17
    mu, cov = _stats(A, seed=2)
    lo, hi = np.zeros(A), np.full(A, 0.6)
    key = np.uint64(rng.seed_key_nb(8))
    ref_i, ref_s = search_ref(8, start, n, 1, 1.0, lo, hi, mu, cov, 252.0, 0.0, k)
    assert len(ref_i) == k
    for cuts, tasks in (([n], 1), ([1, 999, 5000, n - 6000], 3), ([257] * 46 + [n - 257 * 46], 8)):
        st = CpuSearch(Stream(key, 1, 1.0, lo, hi), mu, cov, 252.0, 0.0, k, 0.0, n_tasks=tasks)
        i0 = start
        total = 0
        for m in cuts:
            total += st.run(i0, m)
            i0 += m
        st.close()
        ms, mi = st.best()
        assert i0 == start + n
        assert mi.tolist() == ref_i.tolist(), (cuts, tasks)
        np.testing.assert_allclose(ms, ref_s, rtol=1e-12, atol=0)
        assert total == int(score_nb(8, np.arange(start, start + n), 1, 1.0, lo, hi, mu, cov,
                                     252.0, 0.0)[2].sum())


def test_heap_replace_ties_and_order():
    """The heap keeps the k best by (score desc, index asc), hand-checked with ties."""
    from gpusim.search.steps import heap_replace

    k = 4
    hs, hi = np.full(k, -np.inf), np.full(k, -1, dtype=np.int64)
    items = [(1.0, 9), (2.0, 4), (2.0, 3), (0.5, 1), (2.0, 7), (3.0, 8), (2.0, 2), (1.0, 0)]
    for s, i in items:
        if s > hs[0] or (s == hs[0] and hi[0] >= 0 and i < hi[0]):
            heap_replace(hs, hi, s, i)
    order = np.lexsort((hi, -hs))
    assert list(zip(hs[order].tolist(), hi[order].tolist())) == [
        (3.0, 8), (2.0, 2), (2.0, 3), (2.0, 4)]
    assert (hs[0], hi[0]) == (2.0, 4)  # the root is the k-th best


def _gen_kernel():
    """A kernel writing candidate i's weights to out[i] (globals: the simulator patches cuda)."""
    global cuda, sample_dev
    from numba import cuda

    from gpusim._cuda.rng import sample_dev

    @cuda.jit
    def gen(key, lo, hi, out):
        i = cuda.grid(1)
        if i < out.shape[0]:
            sample_dev(key, i, 1, 1.0, lo, hi, 0.0, out[i])

    return gen


def test_gpu_simulator_identical_population_and_topk():
    """numba.cuda kernel in the CUDA simulator vs CPU: same weights bit for bit, same top-k."""
    from gpusim.search.cuda import SearchLauncher

    A, n, k = 5, 1_500, 8
    mu, cov = _stats(A, seed=3)
    cpu = gpusim.search((mu, cov), n=n, seed=42, top_k=k, ann=252, backend="cpu",
                        progress=False, baselines=False)
    gpu = gpusim.search((mu, cov), n=n, seed=42, top_k=k, ann=252, backend="gpu",
                        progress=False, baselines=False)
    assert gpu.summary["backend"] == "gpu-simulator"
    assert gpu.top["candidate"].tolist() == cpu.top["candidate"].tolist()
    np.testing.assert_allclose(gpu.top["sharpe"], cpu.top["sharpe"], rtol=1e-12, atol=0)
    # The population itself: generate in a kernel and compare to the CPU stream bit for bit.
    gen = _gen_kernel()
    out = np.zeros((64, A))
    key = np.uint64(rng.seed_key_nb(42))
    gen[2, 32](key, np.zeros(A), np.ones(A), out)
    W, _ = rng.population_nb(42, 0, 64, A, 1, 1.0, np.zeros(A), np.ones(A))
    assert np.array_equal(out, W)
    # the launcher's running top-k equals the reference
    L = SearchLauncher(key, 0, 1.0, np.zeros(A), np.ones(A), mu, cov, 252.0, 0.0, 4, 300,
                       xp=np, merge=merge_topk, vfl=0.0)
    n_ok = L.run(100, 300)
    ms, mi = L.best()
    ri, rs = search_ref(42, 100, 300, 0, 1.0, np.zeros(A), np.ones(A), mu, cov, 252.0, 0.0, 4)
    assert mi.tolist() == ri.tolist() and n_ok == 300
    np.testing.assert_allclose(ms, rs, rtol=1e-12)


@pytest.mark.parametrize("k,buffer", [(1, 2), (10, 11), (10, 64), (1000, 1001)])
def test_gpu_threshold_buffer_overflow_in_simulator(k, buffer):
    """The CUDA kernel's running threshold and candidate buffer (simulator, small launches):
    tiny buffers overflow on most launches and force reruns, yet the top-k equals cpu_ref over
    several chunkings."""
    from gpusim.search.cuda import SearchLauncher

    A, n, start = 4, 1_500, 5
    mu, cov = _stats(A, seed=7)
    lo, hi = np.zeros(A), np.full(A, 0.7)
    key = np.uint64(rng.seed_key_nb(3))
    ri, rs = search_ref(3, start, n, 1, 1.0, lo, hi, mu, cov, 252.0, 0.0, k)
    n_valid = int(score_nb(3, np.arange(start, start + n), 1, 1.0, lo, hi, mu, cov, 252.0,
                           0.0)[2].sum())
    for cuts in ([n], [700, 1, 799]):
        L = SearchLauncher(key, 1, 1.0, lo, hi, mu, cov, 252.0, 0.0, k, 512, xp=np,
                           merge=merge_topk, vfl=0.0, buffer=buffer)
        assert L.T == 128  # the simulator's resident grid, whatever k
        i0, got = start, 0
        for m in cuts:
            got += L.run(i0, m)
            i0 += m
        ms, mi = L.best()
        assert mi.tolist() == ri.tolist() and got == n_valid
        np.testing.assert_allclose(ms, rs, rtol=1e-12)
        if buffer == k + 1 and k <= 10:  # the smallest buffer overflows: reruns exercised
            assert L.n_reruns > 0


def test_verify_reports_agreement():
    mu, cov = _stats(4, seed=9)
    res = gpusim.search((mu, cov), n=5_000, seed=1, ann=252, backend="cpu", progress=False,
                        baselines=False)
    v = gpusim.verify(res, sample=3_000)
    assert v["ok"] and v["weights_identical"] and v["same_topk"]
    assert v["max_rel_diff"] < 1e-12
    res.top.loc[1, "sharpe"] *= 1 + 1e-6  # a corrupted result must be caught
    v = gpusim.verify(res, sample=1_000)
    assert not v["ok"] and v["max_rel_diff"] == pytest.approx(1e-6, rel=1e-3)


def test_search_on_market_with_baselines_and_save(tmp_path):
    m = gpusim.synthetic_market(n_assets=4, n_bars=300, seed=2)
    res = gpusim.search(m, n=200_000, seed=3, top_k=5, backend="cpu", progress=False)
    assert list(res.top.columns[4:]) == m.symbols
    ms = res.baselines["max_sharpe"]
    assert res.best["sharpe"] <= ms.sharpe * (1 + 1e-9)  # never beats the exact optimum
    assert res.gap == pytest.approx(res.best["sharpe"] / ms.sharpe)
    assert res.gap > 0.97
    out = res.save(tmp_path / "res")
    top = pd.read_parquet(out / "top_k.parquet")
    pd.testing.assert_frame_equal(top, res.top)
    summ = json.loads((out / "summary.json").read_text())
    for key in ("seed", "sampler", "n", "backend", "dtype", "elapsed_s", "candidates_per_s",
                "versions", "gap"):
        assert key in summ
    assert summ["n_evaluated"] == 200_000 and summ["partial"] is False
    assert [p.name for p in tmp_path.iterdir()] == ["res"]  # no temporary folder left behind


def test_interrupt_returns_partial(monkeypatch):
    import importlib

    search_mod = importlib.import_module("gpusim.search.api")

    calls = {"n": 0}
    real = search_mod._CpuRunner.run

    def run(self, start, n):
        calls["n"] += 1
        if calls["n"] == 4:  # call 1 is the compile warm-up, then two real chunks
            raise KeyboardInterrupt
        return real(self, start, n)

    monkeypatch.setattr(search_mod._CpuRunner, "run", run)
    mu, cov = _stats(3)
    res = gpusim.search((mu, cov), n=10_000, chunk_size=1_000, seed=5, top_k=3, ann=252,
                        backend="cpu", progress=False, baselines=False)
    assert res.partial and res.summary["n_evaluated"] == 2_000
    ri, _ = search_ref(5, 0, 2_000, 1, 1.0, np.zeros(3), np.ones(3), mu, cov, 252.0, 0.0, 3)
    assert res.top["candidate"].tolist() == ri.tolist()


@pytest.mark.parametrize("kwargs,match", [
    (dict(n=0), "n=0 must be a whole number"),
    (dict(n=2.5), "n=2.5 must be a whole number"),
    (dict(sampler="sobol"), "sampler='sobol' is unknown"),
    (dict(alpha=0), "alpha=0.0 must be a positive"),
    (dict(backend="tpu"), "backend='tpu' is not a backend"),
    (dict(bounds=(0.3, 1.0)), "simplex empty: the lower bounds sum to 1.2 > 1"),
    (dict(bounds=(0.0, 0.2)), "simplex empty: the upper bounds sum to 0.8 < 1"),
    (dict(bounds=([0.5, 0, 0, 0], [0.4, 1, 1, 1])), "lower bound 0.5 > upper bound 0.4 for A00"),
    (dict(bounds=(-0.1, 1.0)), "negative weights"),
    (dict(top_k=0), "top_k=0"),
    (dict(dtype="float16"), "dtype=.float16. is unknown"),
    (dict(dtype="float32", backend="cpu"), "GPU-only"),
])
def test_bad_input_one_line_errors(kwargs, match):
    mu, cov = _stats(4)
    with pytest.raises(GpusimError, match=match) as ei:
        gpusim.search((mu, cov), **{"n": 100, "progress": False, **kwargs})
    assert "\n" not in str(ei.value)


def test_gpu_required_without_device_is_clear(monkeypatch):
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    from gpusim import backend

    monkeypatch.setattr(backend, "_probe_cupy", lambda: (False, "CuPy is not installed"))
    with pytest.raises(gpusim.BackendError, match="gpusim\\[cuda12\\]|CuPy is not installed"):
        backend.resolve_backend("gpu")
    assert backend.resolve_backend("auto").name == "cpu"
    monkeypatch.setenv("GPUSIM_BACKEND", "cpu")
    assert backend.resolve_backend(None).name == "cpu"
    monkeypatch.setenv("GPUSIM_BACKEND", "fast")
    with pytest.raises(gpusim.BackendError, match="GPUSIM_BACKEND='fast'"):
        backend.resolve_backend(None)


def test_gpu_float32_scoring_in_simulator():
    """dtype='float32' (GPU only): same population, Sharpe within 1e-5 of float64."""
    A, n, k = 6, 1_200, 5
    mu, cov = _stats(A, seed=4)
    kw = dict(n=n, seed=9, top_k=k, ann=252, progress=False, baselines=False)
    f64 = gpusim.search((mu, cov), backend="gpu", **kw)
    f32 = gpusim.search((mu, cov), backend="gpu", dtype="float32", **kw)
    assert f32.summary["dtype"] == "float32"
    np.testing.assert_allclose(f32.top["sharpe"], f64.top["sharpe"], rtol=1e-5)
    assert f32.top["candidate"].iloc[0] == f64.top["candidate"].iloc[0]
    assert not np.array_equal(f32.top["sharpe"].to_numpy(), f64.top["sharpe"].to_numpy())
    # weights in the table are regenerated in float64: identical populations
    for c in f32.top["candidate"]:
        if c in set(f64.top["candidate"]):
            row32 = f32.top.set_index("candidate").loc[c, f32.symbols].to_numpy()
            row64 = f64.top.set_index("candidate").loc[c, f64.symbols].to_numpy()
            assert np.array_equal(row32, row64)
    v = gpusim.verify(f32, sample=600)
    assert v["ok"] and v["tolerance"] == 1e-4 and v["max_rel_diff"] < 1e-5
    with pytest.raises(GpusimError, match="float32' is GPU-only"):
        gpusim.search((mu, cov), backend="cpu", dtype="float32", **kw)


@pytest.mark.parametrize("code,alpha", [(0, 1.0), (1, 1.0), (2, 0.7)])
def test_fast_generator_bit_identical_to_reference_population(code, alpha):
    """The CPU kernel's blocked generator (bit-level -log reduction) == cpu_ref, bit for bit."""
    from gpusim.search.cpu import BLOCK, _generate_block

    A, i0, nb = 7, 12_345, BLOCK - 3
    lo, hi = np.full(A, 0.01), np.full(A, 0.25)
    Wt, ok, ssum = np.zeros((A, BLOCK)), np.zeros(BLOCK, dtype=np.bool_), np.zeros(BLOCK)
    key = np.uint64(rng.seed_key_nb(21))
    _generate_block(key, i0, nb, code, alpha, lo, hi, lo.sum(), Wt, ok, ssum)
    W, ok_ref = rng.population_nb(21, i0, nb, A, code, alpha, lo, hi)
    assert np.array_equal(Wt[:, :nb].T, W)
    assert np.array_equal(ok[:nb], ok_ref) and 0 < ok_ref.sum() < nb


def test_covariance_checks_and_warnings():
    """Issue 16: a negative or zero covariance is an error; a flat asset or a singular Σ runs
    with a DataWarning that the summary records."""
    from gpusim.errors import DataWarning

    mu = np.array([0.01, 0.02, 0.0])
    cov = np.diag([0.01, 0.02, 0.0])
    with pytest.warns(DataWarning, match="zero variance: A02"):
        res = gpusim.search((mu, cov), n=500, ann=252, backend="cpu", progress=False,
                            baselines=False)
    assert any("singular: rank 2 of 3" in w for w in res.summary["warnings"])
    with pytest.raises(GpusimError, match="negative eigenvalue"):
        gpusim.search((mu, -cov - 1e-3 * np.eye(3)), n=10, ann=252, backend="cpu")
    with pytest.raises(GpusimError, match="cov is zero"):
        gpusim.search((mu, 0 * cov), n=10, ann=252, backend="cpu")
    m = gpusim.synthetic_market(n_assets=3, n_bars=200, seed=1)
    res = gpusim.search(m, n=500, backend="cpu", progress=False, baselines=False)
    assert res.summary["warnings"] == []
