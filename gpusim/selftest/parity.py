"""Correctness sections of the GPU check: environment, the ``gpu``-marked tests, populations,
and parity of every GPU path with the CPU paths (themselves tested against ``cpu_ref``).

Each section takes the size name (``"simulate"`` or ``"device"``) and returns a dict; a
non-empty ``failures`` list marks it failed; :class:`gpusim.selftest.Skip` marks it skipped.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

from gpusim.selftest.common import Skip

SIZES = {
    "simulate": dict(pop_n=64, pop_A=6, search_A=5, search_n=300, search_ks=(1, 10, 50),
                     search_chunks=(None, 128), limit_n=24, bt_assets=3, bt_bars=60,
                     bt_weights=6, wf_bars=70, dyn_inst=3, dyn_days=60),
    "device": dict(pop_n=200_000, pop_A=24, search_A=20, search_n=2_000_000,
                   search_ks=(10, 1000, 10000), search_chunks=(None, 300_000), limit_n=100_000,
                   bt_assets=8, bt_bars=1000, bt_weights=20_000, wf_bars=600, dyn_inst=10,
                   dyn_days=1000),
}
"""Problem sizes per mode: tiny in the simulator (each CUDA thread is a Python thread)."""
GAMMA_RTOL = 1e-12
"""alpha != 1 populations (libm log/pow on the device): per-weight relative difference allowed,"""
GAMMA_MAX_FLIPPED = 1e-3
"""and the fraction of candidates allowed beyond it (a last-bit difference can flip one
Marsaglia-Tsang accept/reject decision, which changes that candidate's variate)."""
LIMIT_BEYOND = 300
"""Assets of the search beyond the former cap (GEMM path)."""
METRIC_RTOL = 1e-10
"""Backtest / walk-forward / dynopt metrics: GPU vs CPU path."""
SHARPE_RTOL = 1e-12
"""Search: top-k Sharpe, GPU vs CPU."""


def _version(dist: str):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _gpu_backend():
    """The ``gpu`` backend, or Skip with the one-line reason (e.g. CuPy is not installed)."""
    from gpusim.backend import resolve_backend
    from gpusim.errors import BackendError

    try:
        return resolve_backend("gpu")
    except BackendError as exc:
        raise Skip(str(exc)) from None


def env(size) -> dict:
    """Device and versions."""
    import numba
    from numba import cuda

    from gpusim._version import __version__
    from gpusim.backend import allocator, info

    out = {"python": platform.python_version(), "platform": platform.platform(),
           "gpusim": __version__, "numpy": np.__version__, "numba": numba.__version__,
           "numba_cuda": _version("numba-cuda"), "cupy": None, "backends": info()}
    for dist in ("cupy-cuda13x", "cupy-cuda12x", "cupy"):
        if _version(dist):
            out["cupy"] = f"{dist} {_version(dist)}"
            break
    dev = cuda.get_current_device()
    name = getattr(dev, "name", "CUDA simulator")
    out["device"] = {"name": name.decode() if isinstance(name, bytes) else str(name)}
    if size == "device":
        from numba.cuda.cudadrv.driver import driver

        out["device"].update(
            compute_capability=".".join(map(str, dev.compute_capability)),
            multiprocessors=int(dev.MULTIPROCESSOR_COUNT),
            memory_bytes=int(cuda.current_context().get_memory_info().total))
        out["driver_cuda_version"] = ".".join(map(str, driver.get_version()))
        out["runtime_cuda_version"] = ".".join(map(str, cuda.runtime.get_version()))
        out["allocator"] = allocator()
    return out


def hardware_tests(size) -> dict:
    """``pytest -m gpu`` with GPUSIM_TEST_HARDWARE=1 (from a checkout)."""
    if size == "simulate":
        raise Skip("the gpu-marked tests need a real device")
    root = Path(__file__).resolve().parents[2]
    if not (root / "tests" / "conftest.py").exists():
        raise Skip("no tests/ beside the package (run from a checkout)")
    # only the files with gpu-marked tests: collecting the others may import what a GPU
    # machine lacks (cvxpy, vectorbt, ...)
    files = sorted(str(p) for p in (root / "tests").rglob("test_*.py")
                   if "mark.gpu" in p.read_text(errors="replace"))
    env_ = {**os.environ, "GPUSIM_TEST_HARDWARE": "1", "PYTHONPATH": str(root)}
    env_.pop("NUMBA_ENABLE_CUDASIM", None)
    r = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                        *files], capture_output=True, text=True, env=env_, cwd=root, timeout=400)
    summary = (r.stdout.strip().splitlines() or [""])[-1]
    if r.returncode == 0 and " passed" not in f" {summary}":
        raise Skip(f"pytest ran none of them: {summary} (they need CuPy and a device)")
    fails = [] if r.returncode == 0 else [summary or r.stderr.strip()[-300:]]
    return {"returncode": r.returncode, "files": [Path(f).relative_to(root).as_posix()
                                                  for f in files],
            "summary": summary, "failures": fails}


def samplers(size) -> dict:
    """Populations generated on the device vs ``cpu_ref.rng.population_nb``, bit for bit
    (alpha != 1 within GAMMA_RTOL), at the start of the stream and just below 2**40.
    """
    from cpu_ref import rng
    from gpusim._cuda.population import population_gpu

    z = SIZES[size]
    n, A = z["pop_n"], z["pop_A"]
    unb = (np.zeros(A), np.ones(A))
    bnd = (np.full(A, 0.01), np.full(A, 0.5))
    cases = [("uniform", 1.0, unb), ("uniform", 1.0, bnd), ("dirichlet", 1.0, unb),
             ("dirichlet", 1.0, bnd), ("dirichlet", 0.5, unb), ("dirichlet", 3.0, bnd)]
    rows, failures = [], []
    for sampler, alpha, (lo, hi) in cases:
        code = rng.sampler_code(sampler, alpha)
        for start in (0, rng.MAX_CANDIDATES - n):
            W, ok = population_gpu(17, start, n, A, code, alpha, lo, hi)
            Wr, okr = rng.population_nb(17, start, n, A, code, alpha, lo, hi)
            rel = np.abs(W - Wr) / np.maximum(np.abs(Wr), 1e-300)
            row = {"sampler": sampler, "alpha": alpha, "bounds": bool(lo.any()), "start": start,
                   "n": n, "A": A, "identical": bool(np.array_equal(W, Wr)
                                                      and np.array_equal(ok, okr)),
                   "max_rel_diff": float(rel.max())}
            if alpha == 1.0:
                row["ok"] = row["identical"]
            else:
                row["flipped_fraction"] = float((rel.max(axis=1) > GAMMA_RTOL).mean())
                row["ok"] = row["flipped_fraction"] <= GAMMA_MAX_FLIPPED
            rows.append(row)
            if not row["ok"]:
                failures.append(f"{sampler} alpha={alpha} start={start}")
    return {"cases": rows, "failures": failures}


def _stats(A, seed=0):
    r = np.random.default_rng(seed)
    X = r.normal(size=(max(300, 3 * A), A)) @ (r.normal(size=(A, A)) * 0.004)
    X += r.uniform(0, 6e-4, A)
    return X.mean(0), np.cov(X.T)


def _search_pair(be, mu, cov, n, k, chunk, path="auto", **kw):
    import gpusim

    kw = dict(n=n, seed=5, top_k=k, ann=252, progress=False, baselines=False, **kw)
    cpu = gpusim.search((mu, cov), backend="cpu", **kw)
    gpu = gpusim.search((mu, cov), backend=be, chunk_size=chunk, path=path, **kw)
    same = gpu.top["candidate"].tolist() == cpu.top["candidate"].tolist()
    rel = float(np.max(np.abs(gpu.top["sharpe"].to_numpy() - cpu.top["sharpe"].to_numpy())
                       / np.abs(cpu.top["sharpe"].to_numpy()))) if len(cpu.top) else 0.0
    ok = same and rel <= SHARPE_RTOL and gpu.summary["n_valid"] == cpu.summary["n_valid"]
    return {"k": k, "chunk_size": chunk, "n": n, "A": len(mu),
            "path": gpu.summary.get("path", path), "same_candidates": same,
            "max_rel_sharpe_diff": rel, "ok": ok}


def search(size) -> dict:
    """Top-k of the GPU search vs the CPU search, several chunkings and k."""
    be = _gpu_backend()
    z = SIZES[size]
    mu, cov = _stats(z["search_A"], 1)
    rows = [_search_pair(be, mu, cov, z["search_n"], k, c, sampler=s, bounds=b)
            for k in z["search_ks"] for c in z["search_chunks"]
            for s, b in (("dirichlet", None),) + ((("uniform", (0.0, 0.4)),) if k == 10 else ())]
    return {"cases": rows, "failures": [f"k={r['k']} chunk={r['chunk_size']}" for r in rows
                                        if not r["ok"]]}


def limits(size) -> dict:
    """The search at the fused kernel's former asset cap (MAX_ASSETS) on both paths, and
    beyond it on the GEMM path, vs the CPU.
    """
    from gpusim._cuda.launch import MAX_ASSETS

    be = _gpu_backend()
    n = SIZES[size]["limit_n"]
    rows = []
    for A, paths in ((MAX_ASSETS, ("fused", "gemm")), (LIMIT_BEYOND, ("gemm",))):
        mu, cov = _stats(A, 2)
        rows += [_search_pair(be, mu, cov, n, 10, None, path=p) for p in paths]
    return {"cases": rows, "failures": [f"A={r['A']} {r['path']}" for r in rows
                                        if not r["ok"]]}


def _metrics_close(gpu, cpu) -> float:
    g, c = gpu.to_numpy(float), cpu.to_numpy(float)
    if g.shape != c.shape or not np.array_equal(np.isnan(g), np.isnan(c)):
        return float("inf")
    d = np.abs(g - c) / np.maximum(np.abs(c), 1e-12)
    return float(np.nanmax(d)) if d.size else 0.0


def backtest(size) -> dict:
    """Backtest metrics on the GPU vs the CPU fast path and the ``cpu_ref`` re-run."""
    import gpusim

    try:
        be = _gpu_backend()
    except Skip as why:            # e.g. no CuPy: the kernel itself, with numba-cuda alone
        from gpusim.selftest.kernels import backtest_kernel

        out = backtest_kernel(size)
        return {**out, "note": f"public backend skipped: {why}", "failures":
                [] if out["max_rel_vs_cpu"] <= METRIC_RTOL else ["kernel vs cpu"]}
    z = SIZES[size]
    m = gpusim.synthetic_market(n_assets=z["bt_assets"], n_bars=z["bt_bars"], seed=3)
    kw = dict(weights=gpusim.RandomWeights(z["bt_weights"], seed=2), rebalance="never",
              threshold=gpusim.Param([0.02, 0.05]), fees=gpusim.Param([0.0, 0.005]),
              init_cash=100, progress=False)
    cpu = gpusim.backtest(m, backend="cpu", **kw)
    gpu = gpusim.backtest(m, backend=be, **kw)
    rel = _metrics_close(gpu.metrics, cpu.metrics)
    keys = list(gpu.metrics.index[:: max(1, len(gpu.metrics) // 3)])[:3]
    ref = max(_metrics_close(gpu.metrics.loc[[k]].iloc[0], gpu.records(k).metrics)
              for k in keys)
    fails = [f"{what} rel {v:.1e}" for what, v in (("cpu", rel), ("cpu_ref", ref))
             if not v <= METRIC_RTOL]
    return {"combinations": len(gpu.metrics), "max_rel_vs_cpu": rel, "max_rel_vs_cpu_ref": ref,
            "failures": fails}


def walkforward(size) -> dict:
    """Walk-forward (random method, constraints) on the GPU vs the CPU, and ``verify()``."""
    import gpusim
    from gpusim import Param, WeightBounds

    be = _gpu_backend()
    z = SIZES[size]
    m = gpusim.synthetic_market(n_assets=3, n_bars=z["wf_bars"], seed=4)
    kw = dict(every=Param(["W", 20]), lookback=Param([None, 25]), num_tests=Param([16, 48]),
              fees=0.001, start=30, constraints=[WeightBounds(hi=0.7)], seed=2, gap=False,
              progress=False)
    cpu = gpusim.walkforward(m, backend="cpu", **kw)
    gpu = gpusim.walkforward(m, backend=be, **kw)
    rel = _metrics_close(gpu.metrics, cpu.metrics)
    same = all(cpu.decisions(k)["candidate"].equals(gpu.decisions(k)["candidate"])
               for k in cpu.metrics.index)
    ver = gpu.verify(n_combinations=2, n_dates=2)
    fails = ([] if rel <= METRIC_RTOL else [f"metrics rel {rel:.1e}"]) + (
        [] if same else ["different candidates"]) + ([] if ver["ok"] else ["verify()"])
    return {"combinations": len(gpu.metrics), "max_rel_vs_cpu": rel, "same_candidates": same,
            "verify_ok": bool(ver["ok"]), "failures": fails}


def dynopt(size) -> dict:
    """Dynamic optimisation metrics on the GPU vs the CPU path."""
    import gpusim
    from gpusim import Param

    try:
        be = _gpu_backend()
    except Skip as why:
        from gpusim.selftest.kernels import dynopt_kernel

        out = dynopt_kernel(size)
        return {**out, "note": f"public backend skipped: {why}", "failures":
                [] if out["max_rel_vs_cpu"] <= METRIC_RTOL else ["kernel vs cpu"]}
    z = SIZES[size]
    data = gpusim.synthetic_futures(n_instruments=z["dyn_inst"], n_days=z["dyn_days"], seed=5)
    kw = dict(idm=2.0, capital=Param([3e5, 1e6]), shadow_cost=Param([0.0, 50.0]),
              buffer=0.0125, min_periods=10, progress=False)
    cpu = gpusim.dynopt(data, backend="cpu", **kw)
    gpu = gpusim.dynopt(data, backend=be, **kw)
    rel = _metrics_close(gpu.metrics, cpu.metrics)
    return {"combinations": len(gpu.metrics), "max_rel_vs_cpu": rel,
            "failures": [] if rel <= METRIC_RTOL else [f"metrics rel {rel:.1e}"]}


def band_rebalance(c, params, targets):
    """A user allocation function (gpusim.strategy): new random targets whenever the portfolio
    drifts past ``params[0]``; compiled for the CPU and for the GPU by the strategy section.
    """
    tau = params[0]
    drift = 0.0
    for j in range(c.n_assets):
        drift = max(drift, abs(c.weights[j] - c.targets[j]))
    if c.t == 0 or drift >= tau:
        s = 0.0
        for j in range(c.n_assets):
            targets[j] = -np.log(c.uniform(j, 0))
            s += targets[j]
        for j in range(c.n_assets):
            targets[j] /= s
        return True
    return False


def threshold_rule(c, params, targets):
    """The built-in absolute drift band as a user allocation function (throughput section:
    the user-function kernel against the built-in rule on the same grid).
    """
    drift = 0.0
    for j in range(c.n_assets):
        drift = max(drift, abs(c.weights[j] - c.targets[j]))
    return drift >= params[0]


def strategy(size) -> dict:
    """A user allocation function (``backtest(alloc=...)``) on the GPU vs the CPU."""
    import gpusim

    be = _gpu_backend()
    z = SIZES[size]
    m = gpusim.synthetic_market(n_assets=z["bt_assets"], n_bars=z["bt_bars"], seed=8)
    kw = dict(alloc=band_rebalance, params={"tau": gpusim.Param([0.02, 0.05, 0.1])},
              fees=gpusim.Param([0.0, 0.002]), seed=7, progress=False)
    cpu = gpusim.backtest(m, backend="cpu", **kw)
    gpu = gpusim.backtest(m, backend=be, **kw)
    rel = _metrics_close(gpu.metrics, cpu.metrics)
    return {"combinations": len(gpu.metrics), "max_rel_vs_cpu": rel,
            "failures": [] if rel <= METRIC_RTOL else [f"metrics rel {rel:.1e}"]}
