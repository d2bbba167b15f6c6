"""Search: cost of the top-k size, and the GEMM path beside the fused CPU kernel (issue 14).

    python benchmarks/bench_search_topk.py                   # both parts, medians of 3
    python benchmarks/bench_search_topk.py --part topk --n 1e7 --ks 10,10000
    python benchmarks/bench_search_topk.py --part gemm --assets 20,100,500
    python benchmarks/bench_search_topk.py --json out.json

``topk``: one ``gpusim.search`` of n candidates (A = 20, CPU, adaptive chunks) per k; the
figure is the median wall time and its ratio to the smallest k. ``gemm``: candidates/s of
``path="fused"`` and ``path="gemm"`` (NumPy + BLAS on all cores) per asset count, at a size
taking ~``--seconds`` each, timed over the search loop (``summary["elapsed_s"]``: without the
input checks, e.g. an eigendecomposition of Σ, and the top-k table). Figures are outputs, not
truth: re-run on your machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time

import numpy as np

import gpusim
from gpusim.search.bench import _cpu_name


def _stats(A: int):
    r = np.random.default_rng(A)
    X = r.normal(size=(max(500, 2 * A), A)) @ (r.normal(size=(A, A)) * 0.003) \
        + r.uniform(0, 6e-4, A)
    return X.mean(0), np.cov(X.T)


def _run(mu, cov, n, **kw):
    t = time.perf_counter()
    res = gpusim.search((mu, cov), n=n, ann=252, seed=1, backend="cpu", progress=False,
                        baselines=False, **kw)
    return time.perf_counter() - t, res


def bench_topk(n: int, ks, A: int = 20, repeats: int = 3) -> list[dict]:
    mu, cov = _stats(A)
    _run(mu, cov, 10_000, top_k=10)  # compile
    rows = []
    for k in ks:
        ts = [_run(mu, cov, n, top_k=k)[0] for _ in range(repeats)]
        rows.append({"k": k, "n": n, "assets": A, "seconds": statistics.median(ts),
                     "candidates_per_s": n / statistics.median(ts)})
    for r in rows:
        r["vs_first_k"] = r["seconds"] / rows[0]["seconds"]
    return rows


def bench_gemm(assets, seconds: float = 2.0, repeats: int = 3) -> list[dict]:
    rows = []
    for A in assets:
        mu, cov = _stats(A)
        for path in ("fused", "gemm"):
            _run(mu, cov, 2_000, path=path)  # compile
            n = 2_000
            while True:  # calibrate n to ~seconds of search loop
                t = _run(mu, cov, n, path=path)[1].summary["elapsed_s"]
                if t > 0.2 * seconds:
                    break
                n *= 4
            n = max(1_000, int(n * seconds / t))
            # the search loop only (summary elapsed_s): not the input checks and the top-k table
            ts = [_run(mu, cov, n, path=path)[1].summary["elapsed_s"] for _ in range(repeats)]
            rows.append({"assets": A, "path": path, "n": n, "seconds": statistics.median(ts),
                         "candidates_per_s": n / statistics.median(ts)})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("topk", "gemm", "both"), default="both")
    p.add_argument("--n", type=float, default=1e7)
    p.add_argument("--ks", default="10,1000,10000,100000")
    p.add_argument("--assets", default="20,100,500")
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    import numba

    out = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
           "machine": {"processor": _cpu_name(), "cpu_count": os.cpu_count(),
                       "numba_threads": numba.get_num_threads(),
                       "platform": platform.platform()}}
    print(f"{out['date']}: {out['machine']['processor']}, {out['machine']['cpu_count']} cores")
    if a.part in ("topk", "both"):
        out["topk"] = bench_topk(int(a.n), [int(x) for x in a.ks.split(",")],
                                 repeats=a.repeats)
        print(f"{'k':>8s} {'n':>12s} {'seconds':>8s} {'candidates/s':>14s} {'vs first':>8s}")
        for r in out["topk"]:
            print(f"{r['k']:8d} {r['n']:12,d} {r['seconds']:8.2f} {r['candidates_per_s']:14,.0f} "
                  f"{r['vs_first_k']:7.2f}x")
    if a.part in ("gemm", "both"):
        out["gemm"] = bench_gemm([int(x) for x in a.assets.split(",")], a.seconds, a.repeats)
        print(f"{'assets':>6s} {'path':>6s} {'n':>12s} {'candidates/s':>14s}")
        for r in out["gemm"]:
            print(f"{r['assets']:6d} {r['path']:>6s} {r['n']:12,d} {r['candidates_per_s']:14,.0f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
