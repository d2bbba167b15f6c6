"""``gpusim simulate``: portfolios re-allocated by a Python optimiser that sees the live
portfolio (:func:`gpusim.simulate`), from the shell.

    gpusim simulate --optimize strategies.py:max_sharpe --every W --warmup 60 --fees 0.001
    gpusim simulate --prices prices.csv --optimize mypkg.opt:fn --every W,M --out runs/sim

Runs on its own as ``python -m gpusim.cli.simulate``; wiring and exit codes:
:class:`gpusim.cli.common.Command`.
"""

from __future__ import annotations

import argparse
import sys

from gpusim.cli.common import (
    DATA_EPILOG,
    Command,
    add_data_options,
    add_plot_option,
    check_output_paths,
    check_ranking,
    load_market,
    print_json,
    print_table,
    records,
    table_format,
)
from gpusim.errors import GpusimError
from gpusim.parse import as_axis, parse_params, parse_rebalance, parse_values, parse_weights

__all__ = ["add_parser", "build_parser", "main", "run"]

DESCRIPTION = (
    "Simulate portfolios whose targets come from a plain-Python optimiser (PyPortfolioOpt, "
    "cvxpy, ...): optimize(state) is called at bar 0 and at the first bar of each period of "
    "--every (after --warmup) with the simulated portfolio (date, price history, value, cash, "
    "holdings, drifted weights, targets in force, params) and returns new target weights or "
    "None (keep, no trade); trades follow the backtest's execution model with --fees. Prints "
    "the metrics; --out writes metrics, value, schedule (the dated targets traded to), "
    "segments, best.csv and summary.json.")

EPILOG = """--optimize FILE.py:NAME (relative to the current folder) or package.module:NAME: a
function optimize(state) -> weights (an array in symbol order, or a dict/Series by symbol) or
None. --every: D | W | M | Q | Y | k (bars); a comma list sweeps them. --fees: one value, a comma
list or start:stop:step. --param NAME=VALUES (repeatable) reaches the optimiser as
state.params[NAME]; several values sweep it. --weights: the targets before the first answer
(equal | random:N[:seed] | a CSV/Parquet file of vectors). See docs/strategies.md.

""" + DATA_EPILOG


def _add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_options(p)
    p.add_argument("--optimize", required=True, metavar="FILE.py:NAME",
                   help="the optimiser optimize(state) -> targets or None, from a file or "
                        "package.module:NAME")
    p.add_argument("--every", default="W", metavar="RULES",
                   help="when the optimiser is called: D | W | M | Q | Y | k (bars); a comma "
                        "list sweeps them (default: W)")
    p.add_argument("--warmup", type=int, default=0, metavar="BARS",
                   help="no call before this bar (bar 0 then trades to --weights; default: 0)")
    p.add_argument("--fees", default="0", metavar="VALUES",
                   help="proportional fee(s), e.g. 0.001 or 0,0.001 (default: 0)")
    p.add_argument("--weights", default="equal", metavar="SPEC",
                   help="targets before the first answer: equal | random:N[:seed] | "
                        "weights.csv (default: equal)")
    p.add_argument("--param", action="append", default=None, metavar="NAME=VALUES",
                   help="a number passed as state.params[NAME], e.g. lookback=252 or "
                        "risk=0.5,1,2 (repeatable; several values sweep it)")
    p.add_argument("--init-cash", type=float, default=1.0, help="starting cash (default: 1)")
    p.add_argument("--rf", type=float, default=0.0, help="annual risk-free rate (default: 0)")
    p.add_argument("--backend", default="auto", choices=("auto", "cpu"),
                   help="auto | cpu: the segments run on the CPU (default: auto)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write metrics, value, schedule, segments, best.csv and summary.json "
                        "to this folder")
    p.add_argument("--format", default="parquet", choices=("parquet", "csv"),
                   help="table format under --out (default: parquet, CSV if pyarrow is "
                        "missing)")
    p.add_argument("--top-k", type=int, default=10, help="rows of the table (default: 10)")
    p.add_argument("--sort-by", default="sharpe", metavar="METRIC",
                   help="metric that ranks the table (default: sharpe)")
    p.add_argument("--json", action="store_true",
                   help="print the JSON summary (with the best rows) instead of the table")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_plot_option(p, "the value and drawdown of the best 5 (by --sort-by)")


def _run(args: argparse.Namespace) -> int:
    import pandas as pd

    from gpusim.results import flat_table
    from gpusim.schedule import Portfolios
    from gpusim.strategy.loader import load_function
    from gpusim.strategy.simulate import METRICS, check_optimize, simulate

    check_ranking(args.sort_by, args.top_k, METRICS)
    check_output_paths(args.out, args.plot)
    if not args.init_cash > 0:
        raise GpusimError(f"--init-cash {args.init_cash:g} must be > 0")
    if args.warmup < 0:
        raise GpusimError(f"--warmup {args.warmup} must be >= 0")
    fn = load_function(args.optimize, what="--optimize")
    check_optimize(fn, "--optimize")          # before any data is read
    params = parse_params(args.param, "--param")
    every = as_axis(parse_rebalance(args.every, "--every"), "every")
    fees = as_axis(parse_values(args.fees, "--fees"), "fees")
    market = load_market(args)
    weights = parse_weights(args.weights, list(market.symbols))
    if isinstance(weights, pd.DataFrame):
        weights = Portfolios(weights)
    res = simulate(market, optimize=fn, every=every, fees=fees, weights=weights,
                   params=params or None, warmup=args.warmup, init_cash=args.init_cash,
                   rf=args.rf, backend=args.backend, progress=not args.no_progress)
    res.summary["optimize_spec"] = args.optimize
    best = res.best(args.sort_by, args.top_k)
    out = None
    if args.out:
        out = str(res.save(args.out, best_k=args.top_k, sort_by=args.sort_by,
                           fmt=table_format(args.format)))
    s = res.summary
    if args.json:
        print_json(s, out=out, sort_by=args.sort_by, best=records(flat_table(best)))
    else:
        print(f"{s['n_combinations']} combination(s) x {s['n_bars']} bars x {s['n_assets']} "
              f"assets on {s['backend']} in {s['elapsed_s']:.3f} s: {s['n_calls']} calls of "
              f"{args.optimize}, {s['n_segments']} segments")
        print(f"best {len(best)} by {args.sort_by}:" if len(res.metrics) > 1 else "metrics:")
        print_table(best)
        if out:
            print(f"wrote {out}")
    if args.plot and len(res.metrics):
        path = res.plot_equity(args.plot, k=min(5, args.top_k), metric=args.sort_by)
        print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


COMMAND = Command("simulate", "portfolios re-allocated by a Python optimiser (live portfolio)",
                  DESCRIPTION, EPILOG, _add_arguments, _run)
add_parser, build_parser, run, main = COMMAND.functions()

if __name__ == "__main__":
    sys.exit(main())
