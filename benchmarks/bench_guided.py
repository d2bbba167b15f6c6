"""Guided vs random search: gap to cvxpy's exact max Sharpe against time, and ex-post Sharpe.

    python benchmarks/bench_guided.py                # A = 20 (real prices), A = 100 (synthetic)
    python benchmarks/bench_guided.py --max-n 1e8    # random ladder up to 10^8 at both sizes
    python benchmarks/bench_guided.py --json out.json

Ex-ante part: the fused random search (``method="random"``) for n = 10^5, 10^6, ... up to
``--max-n`` candidates (its wall time, compile excluded), beside guided runs (``method="guided"``,
default population, several seeds) read off their per-generation trace: the time and number of
evaluations at which each gap threshold was first reached, and where they stopped. 20 assets:
PyPortfolioOpt's stock_prices.csv on its common window (896 bars; no 100-asset price set ships in
../shared/data, so 100 assets is a seeded synthetic market, 1260 bars).

Ex-post part: Sharpe of a monthly-rebalanced portfolio with 0.1% fees on the 20 stocks, random
with a budget of B evaluations vs guided with B / 10.

Figures are outputs, not truth: this project's machines are shared and noisy; re-run them.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

import gpusim

THRESHOLDS = (0.99, 0.999, 0.9999, 0.99999)
DATA = "../shared/data/pypfopt/stock_prices.csv"


def markets(data: str) -> dict:
    return {20: gpusim.load_prices(data, align="common"),
            100: gpusim.synthetic_market(n_assets=100, n_bars=1260, seed=3)}


def random_ladder(m, max_n: int, exact: float) -> list[dict]:
    gpusim.search(m, n=1000, progress=False, baselines=False, backend="cpu")  # compile
    rows, n = [], 10**5
    while n <= max_n:
        r = gpusim.search(m, n=n, seed=1, progress=False, baselines=False, backend="cpu")
        rows.append({"n": n, "seconds": r.summary["elapsed_s"],
                     "gap": float(r.best["sharpe"]) / exact})
        n *= 10
    return rows


def guided_runs(m, exact: float, seeds, budget: int) -> list[dict]:
    gpusim.search(m, method="guided", budget=2000, progress=False, baselines=False,
                  backend="cpu")  # compile
    out = []
    for seed in seeds:
        r = gpusim.search(m, method="guided", budget=budget, seed=seed, progress=False,
                          baselines=False, backend="cpu")
        tr = r.trace
        row = {"seed": seed, "final_gap": float(tr["best"].iloc[-1]) / exact,
               "evaluations": r.summary["n_evaluated"], "seconds": r.summary["elapsed_s"],
               "stopped": r.summary["stopped"], "population": r.summary["population"]}
        for thr in THRESHOLDS:
            hit = tr[tr["best"] / exact >= thr]
            row[str(thr)] = (None if hit.empty else
                             (int(hit["n_evaluated"].iloc[0]), float(hit["elapsed_s"].iloc[0])))
        out.append(row)
    return out


def ex_post(m, budgets, seeds) -> list[dict]:
    kw = dict(rebalance="M", fees=0.001, backend="cpu", progress=False)
    gpusim.search(m, method="guided", budget=400, **kw)  # compile
    rows = []
    for B in budgets:
        for seed in seeds:
            t = time.perf_counter()
            r = gpusim.search(m, method="random", budget=B, seed=seed, **kw)
            tr = time.perf_counter() - t
            t = time.perf_counter()
            g = gpusim.search(m, method="guided", budget=B // 10, seed=seed, **kw)
            tg = time.perf_counter() - t
            rows.append({"budget_random": B, "budget_guided": B // 10, "seed": seed,
                         "random_sharpe": float(r.best["sharpe"]), "random_s": tr,
                         "guided_sharpe": float(g.best["sharpe"]), "guided_s": tg})
    return rows


def _fmt_hit(h):
    return "-" if h is None else f"{h[1]:6.2f} s ({h[0]:>9,})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=DATA)
    p.add_argument("--max-n", type=float, default=1e7, help="largest random n (default 1e7)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--budget", type=float, default=1e7, help="guided budget (evaluations)")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    warnings.simplefilter("ignore")
    seeds = [int(s) for s in a.seeds.split(",")]
    out = {"ex_ante": {}, "ex_post": None}
    for A, m in markets(a.data).items():
        mu, cov = m.stats()
        exact = gpusim.max_sharpe(mu, cov, ann=m.ann).sharpe
        rnd = random_ladder(m, int(a.max_n), exact)
        gd = guided_runs(m, exact, seeds, int(a.budget))
        out["ex_ante"][A] = {"exact": exact, "random": rnd, "guided": gd}
        print(f"\nA = {A} ({m.describe()}), exact max Sharpe {exact:.6f}")
        print("  random (fused CPU kernel):")
        for r in rnd:
            print(f"    n = {r['n']:>11,}: {r['seconds']:7.2f} s   gap {r['gap']:.6f}")
        print("  guided (CEM): time (evaluations) to reach each gap, then where it stopped")
        print("    seed  " + "  ".join(f"{t:>22}" for t in THRESHOLDS) + "   final")
        for g in gd:
            print(f"    {g['seed']:>4}  " + "  ".join(f"{_fmt_hit(g[str(t)]):>22}"
                                                    for t in THRESHOLDS)
                  + f"   {g['final_gap']:.7f} after {g['evaluations']:,} in "
                    f"{g['seconds']:.2f} s ({g['stopped']})")
    m20 = markets(a.data)[20]
    out["ex_post"] = ex_post(m20, [10**4, 10**5], seeds)
    print("\nEx-post Sharpe, 20 stocks, monthly rebalance, fees 0.1%: random B vs guided B/10")
    for r in out["ex_post"]:
        print(f"  B = {r['budget_random']:>7,} seed {r['seed']}: random {r['random_sharpe']:.4f} "
              f"({r['random_s']:.2f} s)   guided {r['guided_sharpe']:.4f} ({r['guided_s']:.2f} s)")
    wins = np.mean([r["guided_sharpe"] > r["random_sharpe"] for r in out["ex_post"]])
    print(f"  guided beats random in {wins:.0%} of the pairs")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=2, default=str)


if __name__ == "__main__":
    main()
