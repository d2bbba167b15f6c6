"""Walk-forward objectives, estimators and risk caps (issue 12): what they cost, side by side
with the peers a researcher would call per window.

* Estimators of every monthly window (lookback 252) at once: gpusim's batched ``sample``,
  ``ewma:63``, ``ledoit_wolf`` vs a per-window loop of pandas ``ewm(halflife=63)`` and
  scikit-learn ``LedoitWolf``.
* Exact method, per objective (one walk-forward call, monthly, lookback 252): gpusim's
  parametrised cvxpy problem vs a fresh PyPortfolioOpt ``EfficientFrontier`` per date
  (``max_sharpe``, ``min_volatility``, ``max_quadratic_utility``, ``efficient_risk``).
* Random search, per objective and with a volatility cap (10 000 candidates per date).

    python benchmarks/bench_walkforward_objectives.py [--assets 20] [--years 5] [--rounds 3]

Prints medians (seconds) and writes nothing; numbers are outputs of this machine, not truth.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LOOKBACK = 252


def _median(fn, rounds):
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def _windows(m):
    from gpusim.specs import rebalance_mask

    _, mask = rebalance_mask("M", m.prices.index)
    t = np.flatnonzero(mask)
    t = t[t > LOOKBACK + 1]
    return t - LOOKBACK, t


def bench_estimators(m, rounds):
    from gpusim.walkforward.estimators import estimate, parse_estimator

    close = np.ascontiguousarray(m.prices.to_numpy())
    a, t = _windows(m)
    R = m.prices.pct_change()
    rows = []
    for name in ("sample", "ewma:63", "ledoit_wolf"):
        e = parse_estimator(name)
        rows.append((f"gpusim {name} ({len(t)} windows at once)",
                     _median(lambda e=e: estimate(np, close, a, t, e, close.shape[1]), rounds)))

    def pandas_ewm():
        for lo, hi in zip(a, t):
            w = R.iloc[lo - 1:hi - 1].ewm(halflife=63)
            w.mean().iloc[-1]
            w.cov().iloc[-close.shape[1]:]

    rows.append(("pandas ewm(halflife=63) per window", _median(pandas_ewm, rounds)))
    try:
        from sklearn.covariance import LedoitWolf

        def sk():
            for lo, hi in zip(a, t):
                LedoitWolf().fit(R.iloc[lo - 1:hi - 1].to_numpy())

        rows.append(("scikit-learn LedoitWolf per window", _median(sk, rounds)))
    except ImportError:
        pass
    return rows


def bench_exact(m, rounds):
    import gpusim

    a, t = _windows(m)
    R = m.prices.pct_change()
    rows = []
    cases = [("max_sharpe", None, "max_sharpe"), ("min_variance", None, "min_volatility"),
             ("max_utility", None, "max_quadratic_utility"),
             ("max_return", 0.2, "efficient_risk")]
    for obj, cap, peer in cases:
        cons = [gpusim.Volatility(max=cap)] if cap else None
        rows.append((f"gpusim exact {obj}{' vol<=0.2' if cap else ''} ({len(t)} dates)",
                     _median(lambda o=obj, c=cons: gpusim.walkforward(
                         m, every="M", lookback=LOOKBACK, method="exact", objective=o,
                         constraints=c, risk_aversion=2.0, progress=False, backend="cpu"),
                         rounds)))
        try:
            from pypfopt.efficient_frontier import EfficientFrontier
        except ImportError:
            continue

        def pp(peer=peer):
            for lo, hi in zip(a, t):
                win = R.iloc[lo - 1:hi - 1]
                ef = EfficientFrontier(m.ann * win.mean(), m.ann * win.cov(),
                                       weight_bounds=(0, 1))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        if peer == "max_sharpe":
                            ef.max_sharpe(risk_free_rate=0.0)
                        elif peer == "min_volatility":
                            ef.min_volatility()
                        elif peer == "max_quadratic_utility":
                            ef.max_quadratic_utility(risk_aversion=2.0)
                        else:
                            ef.efficient_risk(0.2)
                    except Exception:  # infeasible dates (e.g. a cap below the minimum)
                        pass

        rows.append((f"PyPortfolioOpt {peer} per date", _median(pp, rounds)))
    return rows


def bench_random(m, rounds):
    import gpusim

    rows = []
    for obj, cons in (("max_sharpe", None), ("min_variance", None), ("max_utility", None),
                      ("max_return", [gpusim.Volatility(max=0.2)]),
                      ("max_sharpe", [gpusim.Volatility(max=0.2)])):
        label = f"gpusim random {obj}{' vol<=0.2' if cons else ''} (10 000 per date)"
        rows.append((label, _median(lambda o=obj, c=cons: gpusim.walkforward(
            m, every="M", lookback=LOOKBACK, num_tests=10_000, objective=o, constraints=c,
            risk_aversion=2.0, progress=False, backend="cpu"), rounds)))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--assets", type=int, default=20)
    p.add_argument("--years", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    import gpusim

    m = gpusim.synthetic_market(n_assets=args.assets, n_bars=252 * args.years, seed=1)
    gpusim.walkforward(m, every="M", lookback=LOOKBACK, num_tests=100, progress=False,
                       backend="cpu", objective=gpusim.Param(["max_sharpe", "min_variance"]),
                       constraints=[gpusim.Volatility(max=0.2)])        # compile the kernels
    print(f"{args.assets} assets x {args.years} years, monthly, lookback {LOOKBACK}; "
          f"{platform.processor() or platform.machine()}, medians of {args.rounds}")
    for title, fn in (("estimators", bench_estimators), ("exact", bench_exact),
                      ("random", bench_random)):
        print(f"\n{title}")
        for label, s in fn(m, args.rounds):
            print(f"  {label:<58} {s:8.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
