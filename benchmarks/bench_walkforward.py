"""Walk-forward benchmark (issue 5): the 27-combination grid (every D/W/M x lookback
None/63/252 x num_tests 30/100/10 000, fees fixed) on 20 assets x 5 years of business days,
gpusim's CPU fast path vs a plain per-period Python/NumPy loop doing the same work.

The plain loop is what a researcher writes: for each combination, for each rebalance date,
estimate mu and cov on the window with NumPy, draw ``num_tests`` Dirichlet candidates (NumPy's
fastest exponential generator, seeded per period), score them all with matrix products, keep
the best, then simulate the execution bar by bar in Python with the same rule (DESIGN §6). Its
weights differ from gpusim's (another random generator), the work is the same: the same
windows, the same number of candidates scored, the same bars simulated.

    python benchmarks/bench_walkforward.py            # 3 rounds of both (~30 s)
    python benchmarks/bench_walkforward.py --quick    # plain loop on 1 in 4 combinations, scaled

Prints a table and writes nothing; numbers are outputs of this machine, not truth.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EVERY = ["D", "W", "M"]
LOOKBACK = [None, 63, 252]
NUM_TESTS = [30, 100, 10_000]
FEE = 0.001


def plain_loop(close, index, every, lookback, num_tests, fee, start, ann, seed=0):
    """One combination the plain way: per-period NumPy search + Python execution loop."""
    from gpusim.specs import rebalance_mask

    T, A = close.shape
    _, mask = rebalance_mask(every, index)
    R = close[1:] / close[:-1] - 1.0          # R[s - 1] is the return of bar s
    cash, h = 1.0, np.zeros(A)
    values = np.empty(T - start)
    w = np.zeros(A)
    for t in range(start, T):
        p = close[t]
        if t == start or mask[t]:
            a = 1 if lookback is None else max(1, t - lookback)
            win = R[a - 1:t - 1]
            mu = win.mean(axis=0)
            cov = np.cov(win, rowvar=False)
            g = np.random.default_rng([seed, t])
            E = g.standard_exponential((num_tests, A))
            W = E / E.sum(axis=1, keepdims=True)
            ret = W @ (ann * mu)
            vol = np.sqrt(ann * np.sum((W @ cov) * W, axis=1))
            w = W[np.argmax(ret / vol)]
            V = cash + h @ p
            o = w * V - h * p
            for j in np.argsort(o, kind="stable"):
                target = w[j] * V / p[j]
                s = target - h[j]
                if s == 0.0 or abs(s) <= 1e-9 * max(abs(target), abs(h[j])):
                    continue
                if s < 0:
                    cash += -s * p[j] * (1 - fee)
                    h[j] = target
                else:
                    cost = s * p[j] * (1 + fee)
                    if cost > cash:
                        if cash <= 0:
                            continue
                        s = cash / (p[j] * (1 + fee))
                        cost = cash
                    cash -= cost
                    h[j] += s
        values[t - start] = cash + h @ p
    r = np.diff(np.concatenate([[1.0], values])) / np.concatenate([[1.0], values[:-1]])
    return r.mean() / r.std(ddof=1) * np.sqrt(ann)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="time the plain loop on 1 in 4 combinations and scale it")
    ap.add_argument("--assets", type=int, default=20)
    ap.add_argument("--bars", type=int, default=1260)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    import numba

    import gpusim
    from gpusim.grid import Param
    from gpusim.walkforward.api import walkforward

    m = gpusim.synthetic_market(n_assets=args.assets, n_bars=args.bars, seed=7)
    close = m.prices.to_numpy()
    kw = {"every": Param(EVERY), "lookback": Param(LOOKBACK), "num_tests": Param(NUM_TESTS),
          "fees": FEE, "backend": "cpu", "gap": False, "progress": False}
    walkforward(gpusim.synthetic_market(n_assets=args.assets, n_bars=300, seed=1),
                every="M", lookback=63, num_tests=100, backend="cpu", progress=False)  # compile
    combos = [(e, lb, n) for e in EVERY for lb in LOOKBACK for n in NUM_TESTS]
    picked = combos[::4] if args.quick else combos
    # rounds interleave the two, so that both see the same machine (a shared VM drifts)
    fast_t, plain_t, res = [], [], None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = walkforward(m, **kw)
        fast_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for e, lb, n in picked:
            plain_loop(close, m.prices.index, e, lb, n, FEE, res.summary["start_bar"], m.ann)
        plain_t.append((time.perf_counter() - t0) * len(combos) / len(picked))
    ratios = [p / f for p, f in zip(plain_t, fast_t)]
    fast, plain = float(np.median(fast_t)), float(np.median(plain_t))
    s = res.summary
    start = s["start_bar"]

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"numba {numba.__version__} ({numba.get_num_threads()} threads), numpy "
          f"{np.__version__}")
    print(f"market: {args.assets} assets x {args.bars} bars; simulated bars {start}.."
          f"{args.bars - 1}; {len(combos)} combinations, {s['n_weight_sets']} weight sets, "
          f"{s['n_dates']} rebalance dates, {s['n_windows']} (date, lookback) windows")
    print(f"candidates: generated {s['candidates_generated']:,}, scored "
          f"{s['candidates_scored']:,} (plain loop scores "
          f"{_plain_candidates(m.prices.index, start):,})")
    t = s["timings_s"]
    print(f"gpusim CPU fast path: {fast:.3f} s median of {args.repeats} rounds (min "
          f"{min(fast_t):.3f}; last run: statistics {t['statistics']:.3f} s, search "
          f"{t['choose']:.3f} s, execution {t['execution']:.3f} s)")
    print(f"plain Python/NumPy loop: {plain:.2f} s median (min {min(plain_t):.2f})" +
          (" (scaled from 1 in 4 combinations)" if args.quick else ""))
    print(f"speed ratio: {np.median(ratios):.1f}x median of the rounds (each round: "
          f"{', '.join(f'{r:.1f}' for r in ratios)}; target >= 20x)")
    return 0


def _plain_candidates(index, start):
    from gpusim.specs import rebalance_mask

    tot = 0
    for e in EVERY:
        _, mk = rebalance_mask(e, index)
        k = 1 + int(mk[start + 1:].sum())
        tot += k * len(LOOKBACK) * sum(NUM_TESTS)
    return tot


if __name__ == "__main__":
    sys.exit(main())
