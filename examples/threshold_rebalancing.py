"""Threshold rebalancing over a grid, with post-analysis.

Backtest random target portfolios that rebalance only when an asset drifts past a band
(1%..15%), for several fee levels, then analyse: the best combinations, how Sharpe, turnover and
the number of rebalances change with the band, and one combination re-run through the
reference (rebalance dates, target vs realised allocations, orders). On PyPortfolioOpt's stocks
when ``../shared/data`` is present, else on the synthetic market.

    python examples/threshold_rebalancing.py [--small] [--out DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import can_plot, cli, shared

import gpusim


def main(small: bool = False, out: str | None = None) -> dict:
    """Run the grid; returns the per-band table, the best rows and one combination's records."""
    path = None if small else shared("pypfopt/stock_prices.csv")
    market = (gpusim.load_prices(path, symbols=["AAPL", "AMZN", "GOOG", "JPM", "XOM"]) if path
              else gpusim.synthetic_market(n_assets=5, n_bars=252 if small else 756, seed=0))
    bands = np.arange(1, 16) / 100
    res = gpusim.backtest(market, weights=gpusim.RandomWeights(20 if small else 2000, seed=7),
                          rebalance="never", threshold=gpusim.Param(bands, name="threshold"),
                          fees=gpusim.Param([0.0, 0.001, 0.005], name="fees"), init_cash=100,
                          backend="cpu" if small else "auto", progress=not small)
    print(f"{len(res.metrics):,} combinations")
    best = res.best("sharpe", k=5)
    print("best 5 by Sharpe:\n", best[["sharpe", "cagr", "turnover", "n_rebalances"]])
    by_band = res.metrics.groupby(level="threshold")[
        ["sharpe", "turnover", "n_rebalances", "fees_paid"]].mean()
    print("mean over targets and fees, by band:\n", by_band)
    rec = res.records(best.index[0])             # the best combination, re-run by cpu_ref
    print(f"best combination {rec.params}: {len(rec.rebalance_bars)} rebalances on",
          list(rec.rebalance_bars.date[:5]), "...")
    drift = (rec.realised - rec.target).abs().max(axis=1)
    print("largest |realised - target| after each rebalance (fees leave a little cash):\n",
          drift.head())
    if out:
        res.save(out)
        if can_plot():
            res.plot_heatmap(Path(out) / "sharpe.png", "sharpe", x="threshold", y="fees")
            res.plot_allocations(Path(out) / "allocations.png", best.index[0])
        print(f"wrote {out}")
    return {"result": res, "by_band": by_band, "best": best, "records": rec}


if __name__ == "__main__":
    args = cli(__doc__)
    main(args.small, args.out)
