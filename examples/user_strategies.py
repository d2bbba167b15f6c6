"""Strategies the user writes (issue 11): runs in about a minute on a laptop (most of it
compiling the allocation function once for the CPU).

1. an allocation function compiled for the CPU (and the GPU): new random targets each time the
   portfolio drifts past tau, swept over tau x fees, with the orders of one combination;
2. a table of dated target weights (a target schedule);
3. a plain-Python optimiser (PyPortfolioOpt max-Sharpe) called weekly with the live portfolio.

    python examples/user_strategies.py          # small=True: a tiny market, for the tests
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gpusim


def band_rebalance(c, params, targets):          # compiled for the CPU and for the GPU
    tau = params[0]
    drift = 0.0
    for j in range(c.n_assets):
        drift = max(drift, abs(c.weights[j] - c.targets[j]))
    if c.t == 0 or drift >= tau:
        for j in range(c.n_assets):                # new random targets at each trigger
            targets[j] = -np.log(c.uniform(j, 0))
        s = targets.sum()
        for j in range(c.n_assets):
            targets[j] /= s
        return True
    return False


def main(small: bool = False) -> dict:
    market = gpusim.synthetic_market(n_assets=5, n_bars=252 if small else 504, seed=3)
    out: dict = {"market": market}

    # 1. a user allocation function over a grid
    res = gpusim.backtest(market, alloc=band_rebalance,
                          params={"tau": gpusim.Param(np.arange(1, 16) / 100)},
                          fees=gpusim.Param([0.0, 0.005]), seed=7, backend="auto",
                          progress=not small)
    rec = res.records(tau=0.05, fees=0.005)
    print(res.metrics[["cagr", "sharpe", "n_rebalances", "fees_paid"]].head(6))
    print(rec.orders.head(8))
    out.update(alloc=res, records=rec)

    # 2. targets that change over time
    symbols = list(market.prices.columns)
    T = len(market.prices)
    dates = market.prices.index[[0, T // 4, T // 2, 3 * T // 4]]
    schedule = pd.DataFrame(np.random.default_rng(0).dirichlet(np.ones(5), size=4),
                            index=pd.DatetimeIndex(dates), columns=symbols)
    sch = gpusim.backtest(market, weights=schedule, threshold=0.05, progress=not small)
    print(sch.metrics.T)
    out["schedule"] = sch

    # 3. a Python optimiser that sees the simulated portfolio
    try:
        from pypfopt import EfficientFrontier
        from pypfopt.expected_returns import mean_historical_return
        from pypfopt.risk_models import sample_cov
    except ImportError:
        print("(install PyPortfolioOpt for the optimiser example)")
        return out

    def optimize(state):                                # plain Python, e.g. PyPortfolioOpt
        if state.bar > 63 and np.abs(state.weights - state.targets).max() < 0.03:
            return None                                 # keep the current targets
        h = state.history.iloc[-252:]
        mu = mean_historical_return(h)
        if (mu <= 0).all():
            return None
        return EfficientFrontier(mu, sample_cov(h)).max_sharpe(risk_free_rate=0.0)

    sim = gpusim.simulate(market, optimize=optimize, every="W", warmup=63, fees=0.001,
                          progress=not small)
    print(sim.metrics.T)
    print(sim.schedule().round(3).head())
    out["simulate"] = sim
    return out


if __name__ == "__main__":
    main()
