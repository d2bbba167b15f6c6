"""Constraints in three forms: a number, a time series, and a function of (portfolio, time).

The same walk-forward (monthly, 120-return window, best of 2,000 random candidates) under a cap
on every weight given as
1. a scalar: at most 40% in any asset, at every date;
2. a time series: 50% until mid-sample, then 30% (the value in force at each date);
3. a callable ``f(state, t)``: a turnover brake that lets each weight move at most 10 points
   from the previous rebalance (it sees the previous weights in ``state.prev_weights``).
Random search rejects candidates that break a bound; the exact method imposes the same bounds.

    python examples/constraints_three_forms.py [--small] [--out DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cli, shared

import gpusim
from gpusim import WeightBounds

STEP = 0.10
"""The callable form's turnover brake: each weight within 10 points of the previous one."""


def brake(state, t):
    """Upper bounds (A,) at date ``t``: the previous weights + STEP (none at the first date)."""
    if state.prev_weights is None:
        return 1.0
    return np.minimum(state.prev_weights + STEP, 1.0)


def brake_lo(state, t):
    """Lower bounds (A,): the previous weights - STEP."""
    if state.prev_weights is None:
        return 0.0
    return np.maximum(state.prev_weights - STEP, 0.0)


def main(small: bool = False, out: str | None = None) -> dict:
    """Run the three forms; returns their allocations (dates x symbols) by form."""
    path = None if small else shared("pypfopt/stock_prices.csv")
    market = (gpusim.load_prices(path, symbols=["AAPL", "AMZN", "GOOG", "JPM", "XOM", "PFE"])
              if path else gpusim.synthetic_market(n_assets=5, n_bars=300 if small else 1260,
                                                   seed=4))
    idx = market.prices.index
    mid = idx[len(idx) // 2]
    forms = {"scalar": WeightBounds(hi=0.4),
             "time series": WeightBounds(hi=pd.Series([0.5, 0.3], index=[idx[0], mid])),
             "callable": WeightBounds(lo=brake_lo, hi=brake)}
    allocs = {}
    for name, cons in forms.items():
        res = gpusim.walkforward(market, every="M", lookback=120, num_tests=300 if small else 2000,
                                 fees=0.001, constraints=[cons], seed=0,
                                 backend="cpu" if small else "auto", progress=False)
        a = res.allocations()
        allocs[name] = a
        moved = a.diff().abs().max(axis=1).iloc[1:].max()
        print(f"{name:12s} Sharpe {res.metrics['sharpe'].iloc[0]:.3f}, largest weight "
              f"{a.to_numpy().max():.3f}, largest move between rebalances {moved:.3f}, "
              f"dates that kept the previous weights {int(res.report['n_fallback'].iloc[0])}")
        if out:
            res.save(Path(out) / name.replace(" ", "_"))
    return {"allocations": allocs, "mid": mid}


if __name__ == "__main__":
    args = cli(__doc__)
    main(args.small, args.out)
