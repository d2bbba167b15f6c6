"""Search throughput: gpusim backends vs the plain-NumPy way vs the measured matmul ceiling.

    python benchmarks/bench_search.py                 # A = 5, 20, 100; ~3 s per measurement
    python benchmarks/bench_search.py --big           # + 10^8 candidates at A = 20: time, RSS
    python benchmarks/bench_search.py --json out.json # machine-readable figures

Figures are medians of 3 runs measured side by side in one process. They are outputs, not truth:
re-run on your machine (the README quotes the latest run and its machine).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import warnings

import gpusim
from gpusim.search.bench import bench_search, format_table


def big_run(n: int = 10**8, A: int = 20) -> dict:
    m = gpusim.synthetic_market(n_assets=A, n_bars=756, seed=0)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    res = gpusim.search(m, n=n, seed=1, top_k=10, backend="cpu", progress=True, baselines=False)
    dt = time.perf_counter() - t
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"n": n, "assets": A, "seconds": dt, "candidates_per_s": n / dt,
            "peak_rss_mb_before": rss0 / 1024, "peak_rss_mb_after": rss1 / 1024,
            "best_sharpe": float(res.best["sharpe"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--assets", default="5,20,100")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--sampler", default="dirichlet")
    p.add_argument("--big", action="store_true", help="also run 10^8 candidates at A = 20")
    p.add_argument("--json", default=None, help="write the figures to this JSON file")
    a = p.parse_args()
    warnings.simplefilter("ignore")
    res = bench_search([int(x) for x in a.assets.split(",")], seconds=a.seconds,
                       sampler=a.sampler)
    print(format_table(res))
    if a.big:
        res["big"] = big_run()
        b = res["big"]
        print(f"\n10^8 candidates, A = 20, CPU: {b['seconds']:.1f} s "
              f"({b['candidates_per_s']:,.0f}/s); "
              f"peak RSS {b['peak_rss_mb_before']:.0f} MB before, "
              f"{b['peak_rss_mb_after']:.0f} MB after")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
