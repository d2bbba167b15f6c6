"""Throughput measurement: fused search per backend vs the plain-NumPy way, vs the machine ceiling.

Figures are medians of repeated runs measured side by side in one process. Each search
candidate is counted as 2A² + 4A flops (DESIGN §10), so ``gflops`` is comparable with the
measured float64 matrix-multiply ceiling (``fraction_of_ceiling``).
"""

from __future__ import annotations

import os
import platform
import statistics
import time

import numpy as np


def flops_per_candidate(A: int) -> int:
    return 2 * A * A + 4 * A


def matmul_ceiling(size: int = 2000, repeats: int = 3) -> float:
    """Measured float64 matrix-multiply rate (FLOP/s) of NumPy's BLAS on all cores."""
    a = np.random.default_rng(0).random((size, size))
    a @ a
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ a
        ts.append(time.perf_counter() - t)
    return 2.0 * size**3 / statistics.median(ts)


def _stats(A: int):
    r = np.random.default_rng(A)
    X = r.normal(size=(500, A)) @ (r.normal(size=(A, A)) * 0.003) + r.uniform(0, 6e-4, A)
    return X.mean(0), np.cov(X.T)


def numpy_way(mu, cov, n: int, *, ann: float = 252.0, k: int = 10, chunk: int = 65536,
              seed: int = 0, sampler: str = "dirichlet"):
    """The plain-NumPy search: materialise W (chunk x A), score by W @ Σ row-dot, keep top-k.

    Dirichlet weights from NumPy's fastest exponential generator (ziggurat), uniform weights
    from ``random``; returns (best Sharpe, its candidate index).
    """
    g = np.random.default_rng(seed)
    A = mu.size
    best_s, best_i = np.empty(0), np.empty(0, dtype=np.int64)
    done = 0
    while done < n:
        m = min(chunk, n - done)
        E = g.standard_exponential((m, A)) if sampler == "dirichlet" else g.random((m, A))
        W = E / E.sum(axis=1, keepdims=True)
        ret = W @ (ann * mu)
        vol = np.sqrt(ann * np.einsum("ij,ij->i", W @ cov, W))
        s = ret / vol
        top = np.argpartition(-s, min(k, m - 1))[:k]
        best_s = np.concatenate([best_s, s[top]])
        best_i = np.concatenate([best_i, top + done])
        keep = np.argsort(-best_s)[:k]
        best_s, best_i = best_s[keep], best_i[keep]
        done += m
    return best_s[0], best_i[0]


def _timed(fn, n_start: int, seconds: float, repeats: int = 3):
    """Calibrate n so that fn(n) takes ~seconds, then return (n, median seconds)."""
    n = n_start
    while True:
        t = time.perf_counter()
        fn(n)
        dt = time.perf_counter() - t
        if dt > 0.2 * seconds or n > 1 << 34:
            break
        n *= 4
    n = max(1, int(n * seconds / max(dt, 1e-9)))
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(n)
        ts.append(time.perf_counter() - t)
    return n, statistics.median(ts)


def bench_search(assets=(5, 20, 100), *, seconds: float = 1.0, backends=None,
                 sampler: str = "dirichlet", repeats: int = 3) -> dict:
    """Candidates/s of each available backend and of the NumPy way, for each asset count."""
    import numba

    from gpusim.backend import gpu_status
    from gpusim.search.api import search

    if backends is None:
        backends = ["cpu"] + (["gpu"] if gpu_status()[0] else [])
    elif isinstance(backends, str):
        backends = [backends]
    ceiling = matmul_ceiling()
    rows = []
    for A in assets:
        mu, cov = _stats(A)
        fpc = flops_per_candidate(A)
        ways = {f"gpusim-{b}": (lambda n, b=b, mu=mu, cov=cov: search(
            (mu, cov), n=n, ann=252, sampler=sampler, backend=b, progress=False,
            baselines=False)) for b in backends}
        ways["numpy"] = lambda n, mu=mu, cov=cov: numpy_way(mu, cov, n, sampler=sampler)
        for name, fn in ways.items():
            fn(1000)  # warm-up (compilation)
            n, dt = _timed(fn, 100_000, seconds, repeats)
            rate = n / dt
            rows.append({"way": name, "assets": A, "n": n, "seconds": dt,
                         "candidates_per_s": rate, "gflops": rate * fpc / 1e9,
                         "fraction_of_ceiling": rate * fpc / ceiling})
    for r in rows:
        base = next(x for x in rows if x["way"] == "numpy" and x["assets"] == r["assets"])
        r["vs_numpy"] = r["candidates_per_s"] / base["candidates_per_s"]
    return {"machine": {"platform": platform.platform(), "processor": _cpu_name(),
                        "cpu_count": os.cpu_count(), "numba_threads": numba.get_num_threads()},
            "sampler": sampler, "matmul_ceiling_gflops": ceiling / 1e9, "rows": rows}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def format_table(res: dict) -> str:
    m = res["machine"]
    lines = [f"machine: {m['processor']}, {m['cpu_count']} cores ({m['numba_threads']} numba "
             f"threads); float64 matmul ceiling {res['matmul_ceiling_gflops']:.1f} GFLOP/s; "
             f"sampler {res['sampler']}",
             f"{'way':14s} {'assets':>6s} {'candidates/s':>14s} {'GFLOP/s':>8s} "
             f"{'of ceiling':>10s} {'vs numpy':>9s}"]
    for r in res["rows"]:
        lines.append(f"{r['way']:14s} {r['assets']:6d} {r['candidates_per_s']:14,.0f} "
                     f"{r['gflops']:8.1f} {r['fraction_of_ceiling']:10.1%} "
                     f"{r['vs_numpy']:8.1f}x")
    return "\n".join(lines)
