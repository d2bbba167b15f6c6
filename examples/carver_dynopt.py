"""Carver's dynamic optimisation of whole futures contracts (AFTS ch. 25).

Small accounts cannot hold fractional contracts: each day, greedily pick the whole-contract
positions that track the optimal (vol-targeted) portfolio, penalising trading costs, with a
tracking-error buffer; swept over capital x shadow cost x buffer. On pysystemtrade's futures
when ``../shared/data`` is present, else on synthetic futures.

    python examples/carver_dynopt.py [--small] [--out DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cli, shared

import gpusim
from gpusim import Param


def main(small: bool = False, out: str | None = None) -> dict:
    """Run the grid; returns the result and the tracking error by capital."""
    data = (gpusim.load_futures().last_years(10) if not small and shared("pysystemtrade")
            else gpusim.synthetic_futures(n_instruments=6 if small else 12,
                                          n_days=500 if small else 2520, seed=1))
    print(data.describe())
    res = gpusim.dynopt(data, idm=2.0,
                        capital=Param([1e5, 1e6] if small else [1e5, 5e5, 1e6, 5e6]),
                        shadow_cost=Param([10, 100] if small else [10, 50, 100]),
                        buffer=Param([0.0, 0.02] if small else [0.0, 0.0125, 0.02]),
                        backend="cpu" if small else "auto", progress=not small)
    m = res.metrics
    print(m[["sharpe", "avg_tracking_error", "contracts_per_year", "annual_cost"]])
    te = m.groupby(level="capital")["avg_tracking_error"].mean()
    print("mean tracking error by capital (more capital, finer positions):\n", te)
    print(f"holding nothing would track with TE {res.summary['avg_optimal_risk']:.3f}")
    key = m["avg_tracking_error"].idxmin()
    print(f"positions of {dict(zip(m.index.names, key))}:\n", res.positions(key).tail())
    if out:
        res.save(out)
        print(f"wrote {out}")
    return {"result": res, "te_by_capital": te}


if __name__ == "__main__":
    args = cli(__doc__)
    main(args.small, args.out)
