"""Overhead of checkpointed sweeps: chunking + atomic Parquet writes + manifest + final merge.

Workload (issue 4): 10^5 backtest combinations x 756 business-day bars on the CPU, 5 assets:
5000 random target vectors x 5 drift thresholds x 4 fee levels, monthly rebalancing.

1. Baseline: one ``gpusim.backtest()`` call over the whole grid (metrics in memory, nothing
   written), after a warm-up call (compilation).
2. ``gpusim.sweep.api`` of the same job, with the default chunk plan and with the chunk sizes given
   by ``--chunks``: wall time, the sum of the chunks' compute time, the time spent writing chunk
   files and the manifest, and publishing ``results.parquet`` (the chunk files linked as its
   parts, plus the best rows). The overhead is ``(sweep wall - baseline wall) / baseline
   wall``; the target is < 10 %. Baseline and sweep run in pairs, back to back, alternating
   which goes first; the quartiles of the pairs' ratios are reported too.
3. Memory: the process's resident set size is sampled every 20 ms during one more (untimed)
   sweep per chunk size; it must stay flat (no growth with the number of chunks finished).

The sweep's table is checked to equal the baseline's metrics exactly. A tqdm bar over chunks is
shown (stderr). Results are outputs of this machine, not truth::

    python benchmarks/bench_sweep.py                     # 10^5 combinations
    python benchmarks/bench_sweep.py --weights 500       # 10^4 (quick)
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gpusim
from gpusim import Param, RandomWeights
from gpusim.sweep.api import sweep

THRESHOLDS = [0.02, 0.04, 0.06, 0.08, 0.10]
FEES = [0.0, 0.0005, 0.001, 0.002]


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


class RssSampler(threading.Thread):
    def __init__(self, every=0.02):
        super().__init__(daemon=True)
        self.every, self.samples, self.stop = every, [], threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.samples.append((time.perf_counter(), rss_mib()))
            time.sleep(self.every)

    def halt(self):
        self.stop.set()
        self.join()
        return self.samples


def run_sweep(market, weights, chunk_size, out, progress, rss=False):
    """One sweep: (result, wall s, CPU s, RSS samples). The RSS sampler (a thread waking every
    20 ms) runs only when ``rss`` is set: the timed runs go without it."""
    s = RssSampler()
    if rss:
        s.start()
    t0, c0 = time.perf_counter(), time.process_time()
    res = sweep("backtest", {"threshold": THRESHOLDS, "fees": FEES}, market=market,
                weights=weights, rebalance="M", backend="cpu", chunk_size=chunk_size, out=out,
                progress=progress)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    samples = s.halt() if rss else []
    return res, wall, cpu, samples


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=int, default=5000,
                    help="random target vectors (x 20 = combinations; default 5000 -> 10^5)")
    ap.add_argument("--bars", type=int, default=756)
    ap.add_argument("--assets", type=int, default=5)
    ap.add_argument("--chunks", default="5000,20000",
                    help="extra chunk sizes (combinations) to time besides the default plan")
    ap.add_argument("--repeats", type=int, default=15,
                    help="timed (baseline, sweep) pairs per chunk size (medians reported)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    mkt = gpusim.synthetic_market(args.assets, args.bars, seed=0)
    rw = RandomWeights(args.weights, seed=1)
    n = args.weights * len(THRESHOLDS) * len(FEES)
    print(f"gpusim {gpusim.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, python {platform.python_version()}")
    print(f"workload: {n:,} combinations x {args.bars} bars x {args.assets} assets "
          f"= {n * args.bars:.3g} combination-bars (CPU)")

    def baseline():
        t, c = time.perf_counter(), time.process_time()
        r = gpusim.backtest(mkt, weights=rw, rebalance="M", threshold=Param(THRESHOLDS),
                            fees=Param(FEES), backend="cpu", progress=False)
        return r, time.perf_counter() - t, time.process_time() - c

    baseline()                                     # warm-up: compile / load the kernels
    sizes = [None] + [int(x) for x in args.chunks.split(",") if x.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    rows, all_base, all_base_cpu = [], [], []
    try:
        for cs in sizes:
            # baseline and sweep alternate, so that load from other processes hits both alike
            walls, bases, cpus, base_cpus, last = [], [], [], [], None
            for r in range(args.repeats):
                if r % 2:          # alternate which of the pair runs first
                    res, wall, cpu, samples = run_sweep(mkt, rw, cs, tmp / f"cs{cs}-{r}",
                                                        progress=False)
                    ref, t, c = baseline()
                else:
                    ref, t, c = baseline()
                    res, wall, cpu, samples = run_sweep(mkt, rw, cs, tmp / f"cs{cs}-{r}",
                                                        progress=not args.no_progress and r == 0)
                bases.append(t)
                base_cpus.append(c)
                walls.append(wall)
                cpus.append(cpu)
                last = (res,)
                assert np.array_equal(res.table.to_numpy(), ref.metrics.to_numpy()), \
                    "sweep table differs from the single backtest() call"
                shutil.rmtree(tmp / f"cs{cs}-{r}", ignore_errors=True)
            res = last[0]
            _, _, _, samples = run_sweep(mkt, rw, cs, tmp / f"cs{cs}-rss", progress=False,
                                         rss=True)      # untimed: memory only
            shutil.rmtree(tmp / f"cs{cs}-rss", ignore_errors=True)
            s = res.summary
            t_sweep, t_base = statistics.median(walls), statistics.median(bases)
            c_sweep, c_base = statistics.median(cpus), statistics.median(base_cpus)
            all_base += bases
            all_base_cpu += base_cpus
            rss = [m for _, m in samples]
            tail = rss[len(rss) // 5:] or rss          # after the first fifth of the run
            rows.append({
                "chunk_size": s["chunk_size"], "chunks": s["n_chunks"], "wall_s": t_sweep,
                "base_s": t_base, "overhead": (t_sweep - t_base) / t_base,
                "pair_q": np.percentile(np.array(walls) / np.array(bases) - 1, [25, 50, 75]),
                "cpu_overhead": (c_sweep - c_base) / c_base,
                "compute_s": s["compute_s"], "write_s": s["write_s"],
                "assemble_s": s["assemble_s"],
                "io_frac": (s["write_s"] + s["assemble_s"]) / s["compute_s"],
                "rss_start": rss[0], "rss_max": max(rss), "rss_tail_spread": max(tail) - min(tail),
            })
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    t_base = statistics.median(all_base)
    print(f"\nbaseline: one backtest() call, no files: {t_base:.3f} s "
          f"({n * args.bars / t_base:.3g} combination-bars/s; median of {len(all_base)})")

    print(f"baseline CPU time {statistics.median(all_base_cpu):.3f} s")
    print(f"\n{'chunk size':>10} {'chunks':>6} {'sweep s':>8} {'base s':>7} {'overhead':>9} "
          f"{'pairs: q1 / median / q3':>24} "
          f"{'CPU ovh':>8} {'compute s':>9} {'write s':>8} {'merge s':>8} {'I/O/compute':>11} "
          f"{'RSS MiB start/max':>18} {'spread':>8}")
    for r in rows:
        print(f"{r['chunk_size']:>10,} {r['chunks']:>6} {r['wall_s']:>8.3f} {r['base_s']:>7.3f} "
              f"{100 * r['overhead']:>8.1f}% "
              f"{'  '.join(f'{100 * x:5.1f}%' for x in r['pair_q']):>24} "
              f"{100 * r['cpu_overhead']:>7.1f}% "
              f"{r['compute_s']:>9.3f} {r['write_s']:>8.3f} "
              f"{r['assemble_s']:>8.3f} {100 * r['io_frac']:>10.1f}% {r['rss_start']:>8.0f} /"
              f"{r['rss_max']:>7.0f} {r['rss_tail_spread']:>6.1f}")
    print("\noverhead = median sweep wall / median baseline wall - 1; pairs: quartiles of "
          "sweep / baseline - 1 over the (baseline, sweep) pairs, run back to back in "
          "alternating order; CPU ovh: "
          "the same with the process's CPU time (less sensitive to other load); "
          "I/O/compute = (chunk + manifest + results writing + merge) / chunk compute, within "
          "the sweep. The first row is the default chunk plan. Every sweep's table equals the "
          "baseline's metrics exactly. RSS spread: max - min after the first fifth of the run.")


if __name__ == "__main__":
    main()
