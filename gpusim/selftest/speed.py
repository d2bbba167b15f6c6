"""Speed and memory sections of the GPU check: measured ceilings (DGEMM, SGEMM, device copy
bandwidth), throughput of every GPU path at several sizes as a fraction of them, and device
memory over repeated calls.

In the simulator the same code runs at tiny sizes and the "ceilings" are NumPy on the host, so
its figures only show that the section works.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from gpusim.selftest.common import Skip
from gpusim.selftest.parity import _gpu_backend, _stats, threshold_rule

SPEED_SIZES = {
    "simulate": dict(gemm_n=96, copy_mb=4, reps=1, search=[(4, 200), (8, 100)], f32_A=8,
                     backtest=[(3, 60, 8)], strategy=[(3, 60, 4)], walkforward=[(3, 80, 16)],
                     dynopt=[(3, 60)],
                     guided=[(5, 200)], mem_calls=3, crossover=[(4, 300), (12, 100)]),
    "device": dict(gemm_n=8192, copy_mb=1024, reps=3,
                   search=[(8, 50_000_000), (20, 20_000_000), (64, 4_000_000), (256, 300_000)],
                   f32_A=64, backtest=[(8, 1000, 20_000), (8, 2500, 200_000)],
                   strategy=[(8, 2500, 20_000)],
                   walkforward=[(10, 1500, 1000), (10, 1500, 10_000)],
                   dynopt=[(10, 1500), (30, 2500)], guided=[(20, 2_000_000)], mem_calls=5,
                   crossover=[(A, max(1_000_000, round(4e10 / (A * A))))
                              for A in (16, 32, 48, 64, 96, 128, 192, 256)]),
}
"""Sizes: search and guided search (A, n); backtest (A, bars, random weights x 4 rules);
strategy (A, bars, random weights x 15 drift bands: the built-in rule and the same rule as a
user function);
walk-forward (A, bars, num_tests); dynopt (instruments, days); repeated calls of the memory
section; crossover (A, n): the fused and the GEMM search paths, both float64, on one
population."""
BACKTEST_FLOPS = 6
"""Rough float operations per (combination, bar, asset) of the backtest step (drift,
value, band check); used only to express its rate as a fraction of DGEMM."""
DYNOPT_FLOPS = 8
"""Rough float operations per (combination, day, instrument^2) of the greedy dynopt step."""


def _median_time(fn, reps, sync) -> tuple[float, float]:
    """(first call seconds, median of ``reps`` later calls) of ``fn()``."""
    t0 = time.perf_counter()
    fn()
    sync()
    first = time.perf_counter() - t0
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    return first, statistics.median(ts)


def _sync():
    from numba import cuda

    cuda.synchronize()


def _cupy():
    from gpusim.backend import simulator_requested

    if simulator_requested():
        return None
    try:
        import cupy
    except ImportError:
        return None
    return cupy


def ceilings(size, numba_only: bool = False) -> dict:
    """Measured DGEMM / SGEMM (flop/s) and device-to-device copy bandwidth (bytes/s).

    With CuPy: cuBLAS and a CuPy copy; without it (or ``numba_only``): a numba.cuda device copy
    for the bandwidth and no GEMM ceilings; in the simulator NumPy on the host.
    """
    z = SPEED_SIZES[size]
    cp = None if numba_only else _cupy()
    out = {}
    if size == "simulate" and not numba_only:
        xp, sync, out["source"] = np, (lambda: None), "numpy on the host (simulator)"
    elif cp is not None:
        xp, out["source"] = cp, "cupy (cuBLAS, device copy)"

        def sync():
            cp.cuda.Stream.null.synchronize()
    else:
        xp = None
        out["source"] = "numba copy kernel (CuPy absent: GEMM ceilings skipped)"
    n = z["gemm_n"]
    if xp is not None:
        for name, dt in (("dgemm", xp.float64), ("sgemm", xp.float32)):
            a = xp.ones((n, n), dtype=dt)
            _, t = _median_time(lambda a=a: a @ a, z["reps"], sync)
            out[f"{name}_flops"] = 2.0 * n ** 3 / t
        a = xp.ones(z["copy_mb"] << 17)               # float64: copy_mb MiB
        b = xp.empty_like(a)
        _, t = _median_time(lambda: b.__setitem__(slice(None), a), z["reps"], sync)
        out["bandwidth_bytes"] = 2.0 * a.nbytes / t
    else:
        from numba import cuda

        a = cuda.to_device(np.ones(z["copy_mb"] << 17))
        b = cuda.device_array_like(a)
        _, t = _median_time(lambda: b.copy_to_device(a), z["reps"], _sync)
        out["bandwidth_bytes"] = 2.0 * a.nbytes / t
        out["dgemm_flops"] = out["sgemm_flops"] = None
    return out


def _frac(rate, ceiling):
    return None if not ceiling else rate / ceiling


def throughput(size) -> dict:
    """Every GPU path at several sizes: rates, and fractions of the measured ceilings."""
    import gpusim
    from gpusim import Param

    z = SPEED_SIZES[size]
    ceil = ceilings(size)
    dg = ceil.get("dgemm_flops")
    try:
        be = _gpu_backend()
    except Skip as why:            # e.g. no CuPy: time the kernels with numba-cuda alone
        from gpusim.selftest.kernels import backtest_kernel, dynopt_kernel

        rows = [{"kernel": "backtest", **backtest_kernel(size)},
                {"kernel": "dynopt", **dynopt_kernel(size)}]
        for r in rows:
            r.pop("max_rel_vs_cpu")
        return {"ceilings": ceil, "kernels": rows, "note": f"public backend skipped: {why}"}
    rows = []
    for A, n in z["search"]:
        mu, cov = _stats(A, 3)
        for dtype in ("float64",) + (("float32",) if A == z["f32_A"] else ()):
            res = []
            first, t = _median_time(lambda mu=mu, cov=cov, n=n, dtype=dtype, res=res: res.append(
                gpusim.search((mu, cov), n=n, top_k=10, ann=252, backend=be, dtype=dtype,
                              progress=False, baselines=False)), z["reps"], _sync)
            flops = n * (2 * A * A + 4 * A) / t
            ref = dg if dtype == "float64" else ceil.get("sgemm_flops")
            rows.append({"kernel": "search", "dtype": dtype, "A": A, "n": n,
                         "path": res[-1].summary.get("path"), "seconds": t,
                         "first_call_seconds": first, "candidates_per_s": n / t,
                         "flops": flops, "fraction_of_gemm": _frac(flops, ref)})
    for A, n in z["guided"]:
        mu, cov = _stats(A, 5)
        res = []
        first, t = _median_time(lambda mu=mu, cov=cov, n=n, res=res: res.append(gpusim.search(
            (mu, cov), ann=252, method="guided", budget=n, backend=be, progress=False,
            baselines=False)), z["reps"], _sync)
        ne = int(res[-1].summary.get("n_evaluated") or n)
        rows.append({"kernel": "guided", "A": A, "budget": n, "evaluated": ne, "seconds": t,
                     "first_call_seconds": first, "candidates_per_s": ne / t,
                     "fraction_of_dgemm": _frac(ne * (2 * A * A + 4 * A) / t, dg)})
    for A, T, nw in z["backtest"]:
        m = gpusim.synthetic_market(n_assets=A, n_bars=T, seed=1)
        kw = dict(weights=gpusim.RandomWeights(nw, seed=1), rebalance=Param(["never", "M"]),
                  threshold=Param([None, 0.05]), progress=False, backend=be)
        first, t = _median_time(lambda m=m, kw=kw: gpusim.backtest(m, **kw), z["reps"], _sync)
        cb = 4 * nw * T / t
        rows.append({"kernel": "backtest", "A": A, "bars": T, "combinations": 4 * nw,
                     "seconds": t, "first_call_seconds": first, "combination_bars_per_s": cb,
                     "fraction_of_dgemm": _frac(cb * A * BACKTEST_FLOPS, dg)})
    for A, T, nw in z["strategy"]:
        m = gpusim.synthetic_market(n_assets=A, n_bars=T, seed=1)
        taus = Param(np.arange(1, 16) / 100)
        kw = dict(weights=gpusim.RandomWeights(nw, seed=1), fees=0.001, progress=False,
                  backend=be)
        for name, extra in (("builtin", {"threshold": taus}),
                            ("alloc", {"alloc": threshold_rule, "params": {"tau": taus}})):
            def call(m=m, kw=kw, extra=extra):
                return gpusim.backtest(m, **extra, **kw)

            first, t = _median_time(call, z["reps"], _sync)
            cb = 15 * nw * T / t
            rows.append({"kernel": f"strategy_{name}", "A": A, "bars": T,
                         "combinations": 15 * nw, "seconds": t, "first_call_seconds": first,
                         "combination_bars_per_s": cb,
                         "fraction_of_dgemm": _frac(cb * A * BACKTEST_FLOPS, dg)})
    for A, T, nt in z["walkforward"]:
        m = gpusim.synthetic_market(n_assets=A, n_bars=T, seed=2)
        s0 = T // 3
        kw = dict(every="W", lookback=Param([None, s0 // 2]), num_tests=nt, start=s0, gap=False,
                  progress=False, backend=be)
        first, t = _median_time(lambda m=m, kw=kw: gpusim.walkforward(m, **kw), z["reps"],
                                _sync)
        cands = 2 * nt * len(range(s0, T, 5))   # ~ weekly rebalances
        rows.append({"kernel": "walkforward", "A": A, "bars": T, "num_tests": nt,
                     "seconds": t, "first_call_seconds": first,
                     "candidates_per_s_approx": cands / t,
                     "fraction_of_dgemm": _frac(cands * (2 * A * A + 4 * A) / t, dg)})
    for ni, nd in z["dynopt"]:
        data = gpusim.synthetic_futures(n_instruments=ni, n_days=nd, seed=3)
        kw = dict(capital=Param([1e5, 3e5, 1e6, 3e6]), shadow_cost=Param([1.0, 10.0, 50.0]),
                  min_periods=10, progress=False, backend=be)
        first, t = _median_time(lambda d=data, kw=kw: gpusim.dynopt(d, **kw), z["reps"], _sync)
        cd = 12 * nd / t
        rows.append({"kernel": "dynopt", "instruments": ni, "days": nd, "combinations": 12,
                     "seconds": t, "first_call_seconds": first, "combination_days_per_s": cd,
                     "fraction_of_dgemm": _frac(cd * ni * ni * DYNOPT_FLOPS, dg)})
    return {"ceilings": ceil, "kernels": rows}


def memory(size) -> dict:
    """Device memory after each of several repeated search + backtest calls: it must not grow."""
    import gpusim

    if size == "simulate":
        raise Skip("the CUDA simulator has no device memory")
    from numba import cuda

    be = _gpu_backend()
    z = SPEED_SIZES[size]
    cp = _cupy()
    mu, cov = _stats(32, 4)
    m = gpusim.synthetic_market(n_assets=8, n_bars=2000, seed=5)
    rows = []
    for i in range(z["mem_calls"]):
        gpusim.search((mu, cov), n=5_000_000, top_k=1000, ann=252, backend=be, progress=False,
                      baselines=False)
        gpusim.backtest(m, weights=gpusim.RandomWeights(200_000, seed=i), progress=False,
                        backend=be)
        _sync()
        row = {"call": i + 1, "device_free_bytes": int(cuda.current_context()
                                                       .get_memory_info().free)}
        if cp is not None:
            pool = cp.get_default_memory_pool()
            row.update(pool_used_bytes=int(pool.used_bytes()),
                       pool_total_bytes=int(pool.total_bytes()))
        rows.append(row)
    slack = 64 << 20
    if cp is not None:
        grew = rows[-1]["pool_total_bytes"] > 1.25 * rows[1]["pool_total_bytes"] + slack
    else:
        grew = rows[-1]["device_free_bytes"] < rows[1]["device_free_bytes"] - slack
    return {"calls": rows, "failures": ["device memory grows over repeated calls"] if grew
            else []}


def crossover(size) -> dict:
    """The fused and the GEMM search paths timed on the same population (float64, top 10) at
    several A: which is faster where, the measured crossover (the smallest A from which the
    GEMM path wins at every larger A measured) and what ``path="auto"`` picks
    (:data:`gpusim.search.gemm.GEMM_MIN_ASSETS`). Also checks that both paths keep the same
    top-k candidates (their scores differ only by rounding: one swap at the 10th place is
    allowed and reported in ``same_top_k``).
    """
    import gpusim
    from gpusim.search.gemm import GEMM_MIN_ASSETS

    be = _gpu_backend()
    z = SPEED_SIZES[size]
    rows, failures = [], []
    for A, n in z["crossover"]:
        mu, cov = _stats(A, 6)
        t, res = {}, {}
        for path in ("fused", "gemm"):
            out = []
            _, t[path] = _median_time(lambda mu=mu, cov=cov, n=n, path=path, out=out: out.append(
                gpusim.search((mu, cov), n=n, top_k=10, ann=252, backend=be, path=path,
                              progress=False, baselines=False)), z["reps"], _sync)
            res[path] = out[-1]
        kept = [set(res[p].top["candidate"].tolist()) for p in ("fused", "gemm")]
        same = kept[0] == kept[1]
        if len(kept[0] & kept[1]) < len(kept[0]) - 1:   # one swap at the edge: a rounding tie
            failures.append(f"A={A}: the fused and GEMM paths keep different top-10 candidates")
        auto = "gemm" if A >= GEMM_MIN_ASSETS["gpu"] else "fused"
        faster = "gemm" if t["gemm"] < t["fused"] else "fused"
        rows.append({"A": A, "n": n, "fused_seconds": t["fused"], "gemm_seconds": t["gemm"],
                     "fused_candidates_per_s": n / t["fused"],
                     "gemm_candidates_per_s": n / t["gemm"],
                     "gemm_speedup": t["fused"] / t["gemm"], "faster": faster, "auto": auto,
                     "same_top_k": same})
    cross = None
    for r in reversed(rows):
        if r["faster"] != "gemm":
            break
        cross = r["A"]
    return {"cases": rows, "measured_crossover_A": cross,
            "auto_gemm_from_A": GEMM_MIN_ASSETS["gpu"],
            "auto_picks_faster": all(r["auto"] == r["faster"] for r in rows),
            "failures": failures}
