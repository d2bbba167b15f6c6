"""Dynamic optimisation throughput: gpusim fast paths vs a plain Python implementation.

    python benchmarks/bench_dynopt.py                  # 36 combinations x 18 instruments x 10 y
    python benchmarks/bench_dynopt.py --python-days 120 --json out.json

The grid is issue 6's: capital (1e5, 5e5, 1e6) x shadow cost (10, 50, 100) x buffer (0, 0.01,
0.0125, 0.02) = 36 combinations, daily rebalancing, on the pysystemtrade futures data (all 18
instruments, the last 10 years; synthetic futures of the same size when the data folder is
absent), optimal positions by vol targeting (equal weights, risk target 20%, idm 2).

Measured side by side in one process (medians of ``--repeat`` runs, after a warm-up run that
compiles/loads the kernels):

- ``cpu``: :func:`gpusim.dynopt.cpu.dynopt_cpu` (Numba, parallel over combinations);
- ``gpu``: :func:`gpusim.dynopt.cuda.dynopt_gpu` when a CUDA device is present;
- ``cpu_ref``: the readable reference :func:`cpu_ref.dynopt.dynopt_nb` (Numba, objective from
  scratch), for context;
- ``python``: :func:`python_loop` below — the same daily loop in plain Python + NumPy (one
  NumPy quadratic form per greedy trial, the way the book's code evaluates it). It is far too
  slow for the whole grid, so it runs on ``--python-days`` days per combination (blocks spread
  over the 10 years, each block starting from the fast path's positions of the day before, so
  its positions are checked equal to the fast path's), and its time per combination-day is
  **extrapolated** to the 36 x T combination-days of the full run.

Figures are outputs, not truth: re-run on your machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CAPITALS = (1e5, 5e5, 1e6)
SHADOWS = (10.0, 50.0, 100.0)
BUFFERS = (0.0, 0.01, 0.0125, 0.02)


def python_loop(dprice, notional, cost, k, w_star, covs, cov_id, mask, capital, shadow_cost,
                buffer, days, n_start):
    """The daily loop of DESIGN §8 in plain Python + NumPy, over ``days`` (consecutive), starting
    from contracts ``n_start``. Returns the (len(days), N) contracts held and the daily returns.
    """
    N = dprice.shape[1]
    n = np.array(n_start, dtype=float)
    pos, rets = [], []
    for t in days:
        pnl = float(n @ dprice[t]) if t > 0 else 0.0
        cov = covs[cov_id[t]]
        active = notional[t] > 0
        c = np.where(active, notional[t] / capital, 0.0)
        ws = w_star[t]
        day_cost = 0.0
        if mask[t]:
            w0 = n * c
            kt = k[t]

            def objective(m, c=c, ws=ws, w0=w0, kt=kt, cov=cov):
                gap = m * c - ws
                return (math.sqrt(max(float(gap @ cov @ gap), 0.0))
                        + shadow_cost * float(np.abs(kt * (m * c - w0)).sum()))

            direction = np.where(active, np.sign(ws), 0.0)
            g = np.zeros(N)
            best = objective(g)
            while True:
                best_i, best_v = -1, best
                for i in np.flatnonzero(direction):
                    trial = g.copy()
                    trial[i] += direction[i]
                    v = objective(trial)
                    if v < best_v:
                        best_i, best_v = i, v
                if best_i < 0:
                    break
                g[best_i] += direction[best_i]
                best = best_v
            gap = n * c - g * c
            te_prior = math.sqrt(max(float(gap @ cov @ gap), 0.0))
            alpha = max((te_prior - buffer) / te_prior, 0.0) if te_prior > 0 else 0.0
            new = np.where(active, n + np.rint(alpha * (g - n)), 0.0)
            day_cost = float(np.abs(new - n) @ cost[t])
            n = new
        if active.any():
            gap = n * c - ws
            _te = math.sqrt(max(float(gap @ cov @ gap), 0.0))
        pos.append(n.copy())
        rets.append((pnl - day_cost) / capital)
    return np.array(pos), np.array(rets)


def load_inputs(years: float, idm: float):
    from gpusim.data.futures import default_data_dir, load_futures, synthetic_futures
    from gpusim.dynopt.api import prepare

    if default_data_dir() is not None:
        data = load_futures().last_years(years)
    else:
        data = synthetic_futures(18, round(261 * years), seed=0)
    return data, prepare(data, idm=idm)


def median_time(fn, repeat: int) -> float:
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--years", type=float, default=10.0)
    p.add_argument("--idm", type=float, default=2.0)
    p.add_argument("--python-days", type=int, default=60,
                   help="days per combination for the plain-Python run (default 60)")
    p.add_argument("--blocks", type=int, default=6, help="blocks those days are split into")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", default=None, help="write the figures to this JSON file")
    a = p.parse_args()
    warnings.simplefilter("ignore")
    import numba

    from cpu_ref.dynopt import dynopt_nb
    from gpusim.backend import gpu_status
    from gpusim.dynopt.cpu import dynopt_cpu

    data, inp = load_inputs(a.years, a.idm)
    T, N = inp.dprice.shape
    grid = [(cap, s, b) for cap in CAPITALS for s in SHADOWS for b in BUFFERS]
    C = len(grid)
    caps, shs, bus = (np.array(x) for x in zip(*grid))
    mid = np.zeros(C, dtype=np.int64)
    masks = np.ones((1, T), dtype=np.bool_)
    args = inp.kernel_args()
    print(f"{data.describe()}; {C} combinations (capital x shadow cost x buffer), daily; "
          f"{numba.config.NUMBA_NUM_THREADS} Numba threads on {os.cpu_count()} CPUs")

    res = {"instruments": N, "days": T, "combinations": C, "start": str(inp.index[0].date()),
           "end": str(inp.index[-1].date()), "idm": a.idm,
           "threads": numba.config.NUMBA_NUM_THREADS, "machine": platform.platform(),
           "processor": platform.processor(), "timings": {}}
    cd = C * T

    def fast():
        return dynopt_cpu(*args, masks, mid, caps, shs, bus, inp.ann)

    _, rec = dynopt_cpu(*args, masks, mid, caps, shs, bus, inp.ann, record=True)  # warm-up
    t_cpu = median_time(fast, a.repeat)
    res["timings"]["cpu"] = {"seconds": t_cpu, "combination_days_per_s": cd / t_cpu}
    contracts = np.abs(rec).sum(axis=2).mean()
    res["mean_contracts_held"] = float(contracts)

    dynopt_nb(*args, masks, mid, caps, shs, bus, inp.ann)
    t_ref = median_time(lambda: dynopt_nb(*args, masks, mid, caps, shs, bus, inp.ann), 1)
    res["timings"]["cpu_ref"] = {"seconds": t_ref, "combination_days_per_s": cd / t_ref}

    ok, why = gpu_status()
    if ok:
        from gpusim.dynopt.cuda import dynopt_gpu

        dynopt_gpu(*args, masks, mid, caps, shs, bus, inp.ann)
        t_gpu = median_time(lambda: dynopt_gpu(*args, masks, mid, caps, shs, bus, inp.ann),
                            a.repeat)
        res["timings"]["gpu"] = {"seconds": t_gpu, "combination_days_per_s": cd / t_gpu}
    else:
        res["timings"]["gpu"] = {"skipped": why}

    # plain Python on blocks of days spread over the period, checked against the fast path
    per = max(1, a.python_days // a.blocks)
    starts = np.linspace(T // 10, T - per, a.blocks).astype(int)
    py_secs, py_days, mismatches = 0.0, 0, 0
    for j, (cap, s, b) in enumerate(grid):
        for s0 in starts:
            days = range(int(s0), int(s0) + per)
            n0 = rec[j, s0 - 1] if s0 > 0 else np.zeros(N)
            t = time.perf_counter()
            pos, _ = python_loop(*args, masks[0], cap, s, b, days, n0)
            py_secs += time.perf_counter() - t
            py_days += per
            mismatches += int((pos != rec[j, int(s0):int(s0) + per]).any())
    per_cd = py_secs / py_days
    t_py = per_cd * cd
    res["timings"]["python"] = {"seconds_extrapolated": t_py, "measured_seconds": py_secs,
                                "measured_combination_days": py_days,
                                "combination_days_per_s": 1.0 / per_cd,
                                "blocks_with_different_positions": mismatches}
    res["speedup_cpu_vs_python"] = t_py / t_cpu
    res["speedup_cpu_ref_vs_python"] = t_py / t_ref
    if ok:
        res["speedup_gpu_vs_python"] = t_py / res["timings"]["gpu"]["seconds"]

    print(f"mean contracts held (sum |n| over instruments): {contracts:.1f}")
    print(f"{'path':10s} {'seconds':>12s} {'comb-days/s':>14s}  note")
    for name in ("cpu", "gpu", "cpu_ref", "python"):
        r = res["timings"][name]
        if "skipped" in r:
            print(f"{name:10s} {'-':>12s} {'-':>14s}  skipped: {r['skipped']}")
            continue
        secs = r.get("seconds", r.get("seconds_extrapolated"))
        note = ""
        if name == "python":
            note = (f"extrapolated from {py_days} combination-days measured in {py_secs:.1f} s; "
                    f"positions equal to the fast path in "
                    f"{C * len(starts) - mismatches}/{C * len(starts)} blocks")
        print(f"{name:10s} {secs:12.3f} {r['combination_days_per_s']:14.4g}  {note}")
    print(f"speed-up of the CPU fast path over plain Python: {res['speedup_cpu_vs_python']:.0f}x"
          f" (reference: {res['speedup_cpu_ref_vs_python']:.0f}x)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
