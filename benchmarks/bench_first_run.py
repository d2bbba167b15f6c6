"""First run vs later runs of the command line, and whole-call vs kernel-only search time.

    python benchmarks/bench_first_run.py             # cold start (3 repeats) + search times
    python benchmarks/bench_first_run.py --repeats 5 --json out.json

1. Cold start: ``gpusim search`` (defaults: synthetic 5 assets, 10^6 candidates, cvxpy
   baselines) as a new process with an empty Numba cache (``NUMBA_CACHE_DIR`` = a new temporary
   folder, as after a fresh install: every kernel compiles), then again with that cache filled.
   Wall time of the whole process, and the compile time the command itself reports.
2. Search, warm (kernels cached and loaded): for A = 5, 20, 100 and 10^8 candidates at A = 20,
   the whole ``gpusim.search`` call (statistics, kernel loop, top-k re-score; no baselines) and
   the kernel loop alone (``summary["elapsed_s"]``, compilation and warm-up excluded).

Medians of ``--repeats`` runs. Figures are outputs, not truth: re-run on your machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cli(cache: str, args: list[str]) -> tuple[float, float | None]:
    """Wall seconds of ``python -m gpusim <args>`` and the compile seconds it reported."""
    env = {**os.environ, "NUMBA_CACHE_DIR": cache,
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "gpusim", *args, "--json"], env=env,
                       capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    s = json.loads(r.stdout)
    return wall, (s.get("compile_s") if s.get("compiled") else 0.0)


def cold_start(repeats: int, args: list[str]) -> dict:
    first, second, comp = [], [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            w1, c1 = _cli(cache, args)
            w2, _ = _cli(cache, args)
        first.append(w1)
        second.append(w2)
        comp.append(c1)
    med = statistics.median
    return {"command": "gpusim " + " ".join(args), "first_run_s": med(first),
            "first_run_compile_s": med(comp), "second_run_s": med(second),
            "first_runs": first, "second_runs": second}


def search_times(repeats: int) -> list[dict]:
    import warnings

    import gpusim

    warnings.simplefilter("ignore")
    rows = []
    for A, n in ((5, 10**7), (20, 10**7), (100, 10**6), (20, 10**8)):
        m = gpusim.synthetic_market(n_assets=A, n_bars=756, seed=0)
        gpusim.search(m, n=1000, backend="cpu", progress=False, baselines=False)  # compile/load
        whole, kernel = [], []
        for r in range(repeats):
            t = time.perf_counter()
            res = gpusim.search(m, n=n, seed=r, backend="cpu", progress=False, baselines=False)
            whole.append(time.perf_counter() - t)
            kernel.append(res.summary["elapsed_s"])
        w, k = statistics.median(whole), statistics.median(kernel)
        rows.append({"assets": A, "n": n, "whole_call_s": w, "kernel_s": k,
                     "whole_call_per_s": n / w, "kernel_per_s": n / k})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="runs per figure (median)")
    p.add_argument("--skip-cold", action="store_true", help="only the warm search times")
    p.add_argument("--json", default=None, help="write the figures to this JSON file")
    a = p.parse_args()
    out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
           "load_average": os.getloadavg()}
    if not a.skip_cold:
        out["cold_start"] = cs = cold_start(a.repeats, ["search"])
        print(f"{cs['command']}: first run {cs['first_run_s']:.1f} s (of which "
              f"{cs['first_run_compile_s']:.1f} s compiling), second run "
              f"{cs['second_run_s']:.1f} s  (medians of {a.repeats})", flush=True)
    out["search"] = rows = search_times(a.repeats)
    print("assets          n   whole call (s)   kernel (s)   whole-call cand/s   kernel cand/s")
    for r in rows:
        print(f"{r['assets']:6d} {r['n']:10.0e} {r['whole_call_s']:16.2f} {r['kernel_s']:12.2f} "
              f"{r['whole_call_per_s']:19,.0f} {r['kernel_per_s']:15,.0f}")
    out["load_average_after"] = os.getloadavg()
    print(f"load average before / after: {out['load_average']} / {out['load_average_after']}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
