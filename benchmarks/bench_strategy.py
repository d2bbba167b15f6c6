"""User allocation functions vs the built-in threshold rule (issue 11), CPU path.

Workload: 5 assets, 756 business-day bars, 15 drift thresholds (0.01 .. 0.15, absolute band)
x ``--targets`` random target vectors, fee 0.001. Three calls of ``gpusim.backtest`` on the
same grid:

* ``builtin``: ``threshold=Param(taus)`` (the lockstep CPU kernel);
* ``alloc``: the same rule written as a user function ``alloc(c, params, targets)``
  (:mod:`gpusim.strategy`), whose metrics are checked equal to the built-in ones bit for bit;
* ``alloc_random``: the issue's example (new random targets at each trigger).

For each: the median wall time of the whole call and of the kernel (``summary['elapsed_s']``),
the share of the call spent outside the kernel (Python, pandas, grid building), throughput in
combination-bars per second, and the ratio alloc / builtin. Compilation is excluded (one
warm-up call). Figures are outputs of this machine, not truth::

    python benchmarks/bench_strategy.py              # 15 x 1000 targets
    python benchmarks/bench_strategy.py --quick      # 15 x 100
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gpusim
from gpusim import Param, RandomWeights
from gpusim.selftest.parity import threshold_rule  # the built-in band as a user function

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from user_strategies import band_rebalance


def timed(call, repeats):
    call()   # warm-up: compilation
    walls, kernels = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = call()
        walls.append(time.perf_counter() - t0)
        kernels.append(res.summary["elapsed_s"])
    return res, statistics.median(walls), statistics.median(kernels)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--targets", type=int, default=1000)
    p.add_argument("--bars", type=int, default=756)
    p.add_argument("--assets", type=int, default=5)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if a.quick:
        a.targets, a.repeats = 100, 3
    m = gpusim.synthetic_market(n_assets=a.assets, n_bars=a.bars, seed=1)
    taus = Param(np.arange(1, 16) / 100)
    kw = {"weights": RandomWeights(a.targets, seed=1), "fees": 0.001, "backend": "cpu",
          "progress": False}
    runs = {
        "builtin": lambda: gpusim.backtest(m, threshold=taus, **kw),
        "alloc": lambda: gpusim.backtest(m, alloc=threshold_rule, params={"tau": taus}, **kw),
        "alloc_random": lambda: gpusim.backtest(m, alloc=band_rebalance, params={"tau": taus},
                                                seed=7, **kw),
    }
    C = 15 * a.targets
    rows, res = {}, {}
    for name, call in runs.items():
        res[name], wall, kern = timed(call, a.repeats)
        rows[name] = {"wall_s": wall, "kernel_s": kern, "outside_kernel": 1 - kern / wall,
                      "comb_bars_per_s": C * a.bars / kern}
    same = np.array_equal(res["alloc"].metrics.to_numpy(), res["builtin"].metrics.to_numpy(),
                          equal_nan=True)
    out = {"combinations": C, "bars": a.bars, "assets": a.assets, "threads": os.cpu_count(),
           "runs": rows, "alloc_over_builtin_kernel": rows["alloc"]["kernel_s"]
           / rows["builtin"]["kernel_s"], "alloc_over_builtin_wall": rows["alloc"]["wall_s"]
           / rows["builtin"]["wall_s"], "alloc_equals_builtin_bit_for_bit": bool(same)}
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{C:,} combinations x {a.bars} bars x {a.assets} assets, "
              f"{os.cpu_count()} CPU threads, median of {a.repeats}")
        for name, r in rows.items():
            print(f"{name:13s} call {r['wall_s'] * 1e3:8.1f} ms  kernel {r['kernel_s'] * 1e3:8.1f}"
                  f" ms  outside kernel {r['outside_kernel']:5.1%}  "
                  f"{r['comb_bars_per_s'] / 1e6:8.1f} M comb-bars/s")
        print(f"alloc / builtin: kernel {out['alloc_over_builtin_kernel']:.2f}x, call "
              f"{out['alloc_over_builtin_wall']:.2f}x; metrics identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
