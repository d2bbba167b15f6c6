"""Exact max Sharpe: gpusim.max_sharpe (active-set solver) vs PyPortfolioOpt + Clarabel.

    python benchmarks/bench_exact.py                    # A = 20, 100, 400; 1 and 2 BLAS threads
    python benchmarks/bench_exact.py --assets 20,100 --reps 21 --json out.json

Both solve the same long-only max-Sharpe problem (annualised mean and covariance of a synthetic
market, seed 0, 1000 bars) side by side in one process, under ``threadpoolctl`` limits of 1 and 2
BLAS threads. Figures are medians of ``--reps`` calls (PyPortfolioOpt: building the
``EfficientFrontier`` and ``max_sharpe()``, as a user calls it; "tight": with Clarabel tolerances
1e-10, the optimality gpusim reaches). Optimality is the natural KKT
residual of the weights, max(|min(w_i, -g_i)|, |sum(w) - 1|), with g the gradient of the Sharpe
ratio scaled by vol / max|mu| (scale-free). They are outputs, not truth: re-run on your machine.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

TIGHT = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}
"""Clarabel tolerances for PyPortfolioOpt at gpusim's optimality (its defaults stop near 1e-7)."""


def kkt_residual(w, mu, cov):
    """Natural KKT residual of long-only max Sharpe at weights w (A,)."""
    s = np.sqrt(w @ cov @ w)
    g = (mu / s - (mu @ w) * (cov @ w) / s**3) * s / np.abs(mu).max()
    return float(max(np.abs(np.minimum(w, -g)).max(), abs(w.sum() - 1.0)))


def problem(A, seed=0):
    import gpusim

    r = gpusim.synthetic_market(n_assets=A, n_bars=1000, seed=seed).prices.pct_change().dropna()
    return r.mean().to_numpy() * 252, r.cov().to_numpy() * 252


def median_ms(fn, reps):
    out, times = None, []
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times)), out


def bench(assets, reps, threads=(1, 2)):
    from pypfopt import EfficientFrontier
    from threadpoolctl import threadpool_limits

    import gpusim

    def pypfopt(mu, cov, **options):
        ef = EfficientFrontier(mu, cov, solver="CLARABEL", solver_options=options)
        ef.max_sharpe(risk_free_rate=0.0)
        return np.asarray(ef.weights, dtype=float)

    rows = []
    for A in assets:
        mu, cov = problem(A)
        gpusim.max_sharpe(mu, cov)  # first call: imports
        pypfopt(mu, cov)
        for nt in threads:
            with threadpool_limits(limits=nt, user_api="blas"):
                tg, b = median_ms(lambda m=mu, c=cov: gpusim.max_sharpe(m, c), reps)
                tp, wp = median_ms(lambda m=mu, c=cov: pypfopt(m, c), reps)
                tt, wt = median_ms(lambda m=mu, c=cov: pypfopt(m, c, **TIGHT), reps)
            rows.append({"assets": A, "blas_threads": nt, "gpusim_ms": tg, "pypfopt_ms": tp,
                         "pypfopt_tight_ms": tt, "pypfopt_tight_kkt": kkt_residual(wt, mu, cov),
                         "gpusim_solver": b.solver, "gpusim_kkt": kkt_residual(b.weights, mu, cov),
                         "pypfopt_kkt": kkt_residual(wp, mu, cov),
                         "max_abs_weight_diff": float(np.abs(b.weights - wp).max()),
                         "sharpe_gpusim": b.sharpe,
                         "sharpe_pypfopt": float(mu @ wp / np.sqrt(wp @ cov @ wp))})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--assets", default="20,100,400")
    p.add_argument("--reps", type=int, default=11)
    p.add_argument("--json", default=None, help="write the figures to this JSON file")
    a = p.parse_args()
    warnings.simplefilter("ignore")
    rows = bench([int(x) for x in a.assets.split(",")], a.reps)
    print(f"{'A':>4} {'BLAS':>4} | {'gpusim ms':>9} {'KKT':>7} | {'pypfopt ms':>10} {'KKT':>7} | "
          f"{'tight ms':>8} {'KKT':>7} | {'max |dw|':>8}")
    for r in rows:
        print(f"{r['assets']:>4} {r['blas_threads']:>4} | {r['gpusim_ms']:>9.2f} "
              f"{r['gpusim_kkt']:>7.0e} | {r['pypfopt_ms']:>10.2f} {r['pypfopt_kkt']:>7.0e} | "
              f"{r['pypfopt_tight_ms']:>8.2f} {r['pypfopt_tight_kkt']:>7.0e} | "
              f"{r['max_abs_weight_diff']:>8.0e}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
