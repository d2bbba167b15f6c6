"""Walk-forward with your own optimiser, over a grid.

At each rebalance date, estimate mean and covariance on a lookback window, pick the best
ex-ante Sharpe of ``num_tests`` random candidates (the "own optimiser"), and trade to it with
fees; swept over rebalance frequency x lookback x num_tests. The in-sample gap (Sharpe of the
chosen weights / exact max Sharpe on the same window, <= 1) shows how many candidates are
enough. On PyPortfolioOpt's 20 stocks when ``../shared/data`` is present, else synthetic.

    python examples/walkforward_grid.py [--small] [--out DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import can_plot, cli, shared

import gpusim
from gpusim import Param


def main(small: bool = False, out: str | None = None) -> dict:
    """Run the grid; returns the result, its best rows and the verification."""
    path = None if small else shared("pypfopt/stock_prices.csv")
    market = (gpusim.load_prices(path) if path else
              gpusim.synthetic_market(n_assets=4 if small else 10, n_bars=300 if small else 1260,
                                      seed=3))
    res = gpusim.walkforward(
        market, every=Param(["W", "M"]), lookback=Param([60, 120] if small else [63, 126, 252]),
        num_tests=Param([30, 300] if small else [100, 1000, 10_000]), fees=0.001, gap=True,
        seed=0, backend="cpu" if small else "auto", progress=not small)
    cols = ["sharpe", "cagr", "max_drawdown", "turnover"]
    table = res.metrics[cols].join(res.report[["gap_mean", "n_rebalances"]])
    print(table.sort_values("sharpe", ascending=False).head(10))
    print("mean in-sample gap by num_tests:\n",
          res.report.groupby(level="num_tests")["gap_mean"].mean())
    check = res.verify()
    print(f"re-checked on the CPU reference: ok={check['ok']}")
    best = res.best("sharpe", k=1).index[0]
    print("weights chosen by the best combination:\n", res.allocations(best).tail())
    if out:
        res.save(out)
        if can_plot():
            res.plot_weights(Path(out) / "weights.png", best)
        print(f"wrote {out}")
    return {"result": res, "table": table, "verified": check["ok"]}


if __name__ == "__main__":
    args = cli(__doc__)
    main(args.small, args.out)
