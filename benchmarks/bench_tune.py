"""Tuning benchmark (issue 13): how good is TPE after a few trials, and what does a batch cost.

1. **Quality** on enumerable walk-forward spaces: run ``gpusim.tune`` for ``--trials`` trials
   with several seeds and batch sizes, compare each run with the full grid
   (``compare_grid``: rank of the tuned best among the grid's rows, 1 = the grid's best) and
   report the mean rank, how often it is within the top 3, and the distinct points tried;
   Optuna's RandomSampler under the same budget is the reference.

   * ``27``: every W/M/21 x lookback 63/126/252 x num_tests 100/1000/5000, fees 0.001, on the
     synthetic market (5 assets x 756 business days, seed 0): the issue's acceptance grid.
   * ``27-real``: the same grid on PyPortfolioOpt's 20 stocks (``../shared/data/pypfopt``,
     skipped when absent).
   * ``450``: every W/M/5/10/21 x lookback 42/63/126/252/None x num_tests
     30/100/300/1000/3000/10000 x fees 0/0.001/0.005 on the synthetic market (60 trials).

2. **Cost**: a batch of 32 TPE trials as one zipped walkforward call, against one call of a
   32-point crossed grid over the same ranges (every W/M x lookback 63/252 x num_tests
   100/1000/3000/10000 x fees 0/0.005), 20 assets x 1260 bars; and the same 32 grid points as
   one zipped call (what the batch path does). Also the Optuna time of the 32 asks and tells.
   Medians of ``--repeat`` runs, after a warm-up call (compilation excluded).

    python benchmarks/bench_tune.py                 # everything (~1-2 min on 2 cores)
    python benchmarks/bench_tune.py --quick         # fewer seeds

Prints tables and writes nothing; numbers are outputs of this machine, not truth.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "pypfopt" / "stock_prices.csv"
SPACE_27 = {"every": ["W", "M", 21], "lookback": [63, 126, 252],
            "num_tests": [100, 1000, 5000]}
SPACE_450 = {"every": ["W", "M", 5, 10, 21], "lookback": [42, 63, 126, 252, None],
             "num_tests": [30, 100, 300, 1000, 3000, 10_000], "fees": [0.0, 0.001, 0.005]}


def quality(market, space, fixed, trials, batches, seeds, samplers=("tpe", "random")):
    """Rows (sampler, batch, mean rank, share in top 3, worst rank, distinct points, grid)."""
    import gpusim

    rows = []
    for sampler in samplers:
        for b in batches:
            ranks, tried = [], []
            for s in seeds:
                st = gpusim.tune("walkforward", market, space, n_trials=trials, batch=b,
                                 seed=s, sampler=sampler, backend="cpu", progress=False,
                                 **fixed)
                c = st.compare_grid()
                ranks.append(c.rank)
                tried.append(c.summary["n_distinct_tried"])
            rows.append((sampler, b, statistics.mean(ranks),
                         sum(r <= 3 for r in ranks) / len(ranks), max(ranks),
                         statistics.mean(tried), c.summary["n_grid"]))
    return rows


def print_quality(title, rows, trials, n_seeds):
    print(f"\n{title}: {trials} trials, {n_seeds} seeds")
    print(f"{'sampler':8} {'batch':>5} {'mean rank':>9} {'top-3':>6} {'worst':>6} "
          f"{'distinct tried':>14} {'grid':>5}")
    for s, b, mr, t3, w, d, g in rows:
        print(f"{s:8} {b:5d} {mr:9.2f} {t3:6.0%} {w:6d} {d:14.1f} {g:5d}")


def _median_time(fn, repeat):
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def cost(repeat: int):
    """Times (s) of: a 32-trial TPE batch's call, its Optuna asks/tells, the crossed 32-point
    grid call, the same 32 points zipped."""
    import gpusim
    from gpusim import Param
    from gpusim.tune.targets import evaluate, get_target

    m = gpusim.synthetic_market(n_assets=20, n_bars=1260, seed=0)
    E, L, N, F = ["W", "M"], [63, 252], [100, 1000, 3000, 10_000], [0.0, 0.005]
    kw = dict(gap=False, start=253, backend="cpu", progress=False)
    crossed = lambda: gpusim.walkforward(m, every=Param(E), lookback=Param(L),  # noqa: E731
                                         num_tests=Param(N), fees=Param(F), **kw)
    crossed()                                          # warm-up (compilation, caches)
    t_cross = _median_time(crossed, repeat)
    tgt = get_target("walkforward")
    rows = [dict(every=e, lookback=lb, num_tests=n, fees=f)
            for e, lb, n, f in itertools.product(E, L, N, F)]
    fixed = {"gap": False, "start": 253}
    t_zip = _median_time(lambda: evaluate(tgt, m, rows, fixed, "cpu"), repeat)
    space = {"every": E, "lookback": L, "num_tests": (100, 10_000, "log"), "fees": (0.0, 0.01)}
    ev, sm = [], []
    for s in range(repeat):
        st = gpusim.tune("walkforward", m, space, n_trials=32 * 4, batch=32, seed=s,
                         backend="cpu", progress=False, start=253)
        for b in st.summary["batches"][1:]:            # batch 0 also loads the kernels
            ev.append(b["evaluate_s"])
            sm.append(b["sampler_s"])
    return t_cross, t_zip, statistics.median(ev), statistics.median(sm), min(sm), max(sm)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="5 seeds instead of 20")
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--skip", default="", help="comma list of parts to skip: 27,real,450,cost")
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    import gpusim

    skip = set(a.skip.split(",")) - {""}
    seeds = range(5 if a.quick else 20)
    fixed27 = {"fees": 0.001}
    print(f"gpusim {gpusim.__version__}; seeds {seeds.start}..{seeds.stop - 1}")
    if "27" not in skip:
        m = gpusim.synthetic_market(n_assets=5, n_bars=756, seed=0)
        rows = quality(m, SPACE_27, fixed27, a.trials, (5, 10, 32), seeds)
        print_quality("27-point grid, synthetic 5 x 756", rows, a.trials, len(seeds))
    if "real" not in skip and SHARED.exists():
        m = gpusim.load_prices(SHARED)
        rows = quality(m, SPACE_27, fixed27, a.trials, (10, 32), seeds)
        print_quality(f"27-point grid, PyPortfolioOpt {m.prices.shape[1]} x "
                      f"{m.prices.shape[0]}", rows, a.trials, len(seeds))
    if "450" not in skip:
        m = gpusim.synthetic_market(n_assets=5, n_bars=756, seed=0)
        rows = quality(m, SPACE_450, {}, 60, (10,), seeds)
        print_quality("450-point grid, synthetic 5 x 756", rows, 60, len(seeds))
    if "cost" not in skip:
        tc, tz, te, ts, ts_lo, ts_hi = cost(a.repeat)
        print("\ncost, walkforward 20 assets x 1260 bars, 32 points (medians):")
        print(f"  crossed 32-point grid, one call        {tc * 1e3:8.1f} ms")
        print(f"  the same 32 points zipped, one call    {tz * 1e3:8.1f} ms")
        print(f"  a 32-trial TPE batch, its one call     {te * 1e3:8.1f} ms")
        print(f"  its 32 Optuna asks + tells             {ts * 1e3:8.1f} ms "
              f"({ts_lo * 1e3:.0f}-{ts_hi * 1e3:.0f} ms over batches 2-4)")


if __name__ == "__main__":
    main()
