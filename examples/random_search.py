"""Random-weight search: the "random portfolios" notebook as one script.

Draw a huge population of long-only portfolios (flat Dirichlet), score each by ex-ante Sharpe,
keep the best 10, compare with the exact max-Sharpe and min-variance portfolios (cvxpy), and
re-check the result on the CPU reference. On PyPortfolioOpt's 20 stocks when
``../shared/data`` is present, else on the synthetic market.

    python examples/random_search.py [--small] [--out DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import can_plot, cli, shared

import gpusim


def main(small: bool = False, out: str | None = None) -> dict:
    """Run the search; returns the key figures (best and exact Sharpe, gap, verification)."""
    path = None if small else shared("pypfopt/stock_prices.csv")
    market = (gpusim.load_prices(path) if path else
              gpusim.synthetic_market(n_assets=5 if small else 20, n_bars=252 if small else 756,
                                      seed=0))
    print(market.describe())
    res = gpusim.search(market, n=20_000 if small else 10**7, seed=7, top_k=10,
                        backend="cpu" if small else "auto", progress=not small)
    print(res.to_text())
    check = gpusim.verify(res, sample=2_000 if small else 20_000)
    print(f"re-checked on the CPU reference: ok={check['ok']}, "
          f"largest relative difference {check['max_rel_diff']:.1e}")
    if out:
        res.save(out)
        if can_plot():
            res.plot(Path(out) / "frontier.png")
        print(f"wrote {out}")
    return {"best_sharpe": float(res.top["sharpe"].iloc[0]),
            "exact_max_sharpe": res.baselines["max_sharpe"].sharpe, "gap": res.gap,
            "verified": check["ok"], "weights": res.weights().iloc[0]}


if __name__ == "__main__":
    args = cli(__doc__)
    main(args.small, args.out)
