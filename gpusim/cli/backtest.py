"""``gpusim backtest``: rebalancing backtests over grids from the shell.

    gpusim backtest --prices prices.csv --weights random:2000:7 --rebalance M --fees 0.001
    gpusim backtest --threshold 0.01:0.15:0.01 --fees 0.005 --out runs/thr --top-k 5
    gpusim backtest --schedule targets.csv --threshold 0.05 --fees 0.001
    gpusim backtest --band hybrid --threshold 0.25 --threshold-abs 0.01,0.02,0.05
    gpusim backtest --alloc strategies.py:band --param tau=0.01,0.02,0.05 --seed 7

Runs on its own as ``python -m gpusim.cli.backtest``; wiring and exit codes:
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
    grid_run_line,
    load_market,
    partial_exit,
    print_json,
    print_table,
    records,
    table_format,
)
from gpusim.errors import GpusimError
from gpusim.parse import as_axis, parse_rebalance, parse_values, parse_weights

__all__ = ["add_parser", "main", "parse_rebalance", "parse_values", "parse_weights", "run"]

DESCRIPTION = (
    "Simulate portfolios that start from target weights and rebalance by a rule (never, every k "
    "bars, calendar D/W/M/Q/Y, or when an asset drifts past a threshold), with proportional "
    "fees, over the grid of every weights x rebalance x threshold x fees combination. Prints "
    "the best combinations; --out writes metrics (Parquet, CSV fallback), best.csv and "
    "summary.json.")

EPILOG = """value lists: a single value (0.005), a comma list (0,0.001,0.005) or an inclusive
range start:stop:step (0.01:0.15:0.01). --weights: equal | random:N[:seed] | a CSV or Parquet
file with one column per symbol and one row per weight vector (an optional first column of
labels). --schedule: a CSV/Parquet table of target weights that change over time, a first
column of dates then one column per symbol; row d is in force from the first bar >= d, which
rebalances to it (a comma list of files sweeps them).

--alloc FILE.py:NAME (or package.module:NAME): a user allocation function
alloc(c, params, targets) -> bool, compiled for the CPU and the GPU (see docs/strategies.md),
called at every bar (or at the bars of --rebalance); --param NAME=VALUES gives its parameter
row params[0], params[1], ... in the order of the --param options (a comma list or a range
sweeps it), --seed the seed of c.uniform, --share-draws the levels that share one random
stream. --threshold, --relative, --band, --threshold-abs and --schedule do not apply: the
function tests the drift itself.

""" + DATA_EPILOG


def _add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_options(p)
    p.add_argument("--weights", default="equal", metavar="SPEC",
                   help="equal | random:N[:seed] | weights.csv (default: equal)")
    p.add_argument("--rebalance", default="never", metavar="RULES",
                   help="never | D | W | M | Q | Y | k (every k bars); a comma list sweeps "
                        "them (default: never)")
    p.add_argument("--threshold", default=None, metavar="VALUES",
                   help="drift band(s) that trigger a rebalance, e.g. 0.05 or 0.01:0.15:0.01, "
                        "or one band per asset SPY=0.05,TLT=0.02 (default: none)")
    p.add_argument("--schedule", default=None, metavar="FILES",
                   help="target schedule(s): dates x symbols (replaces --weights)")
    p.add_argument("--relative", action="store_true",
                   help="relative band |a - w| >= threshold * w instead of absolute")
    p.add_argument("--band", default=None, choices=("absolute", "relative", "hybrid"),
                   help="drift band: absolute |a - w| >= threshold, relative >= threshold * w, "
                        "hybrid >= max(threshold * w, threshold-abs) (default: absolute)")
    p.add_argument("--threshold-abs", default=None, metavar="VALUES",
                   help="absolute part of the hybrid band, e.g. 0.02 or 0.01,0.02")
    g = p.add_argument_group("user allocation function (docs/strategies.md)")
    g.add_argument("--alloc", default=None, metavar="FILE.py:NAME",
                   help="allocation function alloc(c, params, targets) -> bool, from a file "
                        "(relative to the current folder) or package.module:NAME")
    g.add_argument("--param", action="append", default=None, metavar="NAME=VALUES",
                   help="a parameter of the --alloc function, e.g. tau=0.01,0.02,0.05 or "
                        "k=3; repeat for each (their order is the function's params row)")
    g.add_argument("--seed", type=int, default=None,
                   help="seed of the function's c.uniform draws (default: 0)")
    g.add_argument("--share-draws", default=None, metavar="LEVELS",
                   help="comma list of levels whose values share one random stream, e.g. tau "
                        "(every tau sees the same draws)")
    p.add_argument("--fees", default="0", metavar="VALUES",
                   help="proportional fee(s), e.g. 0.001 or 0,0.001,0.005 (default: 0)")
    p.add_argument("--init-cash", type=float, default=1.0, help="starting cash (default: 1)")
    p.add_argument("--rf", type=float, default=0.0, help="annual risk-free rate (default: 0)")
    p.add_argument("--backend", default="auto", help="auto | cpu | gpu (default: auto)")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="combinations per kernel launch (default: planned from memory)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write metrics, best.csv and summary.json to this folder")
    p.add_argument("--format", default="parquet", choices=("parquet", "csv"),
                   help="metrics file format under --out (default: parquet, CSV if pyarrow "
                        "is missing)")
    p.add_argument("--top-k", type=int, default=10, help="rows of the best table (default: 10)")
    p.add_argument("--sort-by", default="sharpe", metavar="METRIC",
                   help="metric that ranks the best table (default: sharpe)")
    p.add_argument("--json", action="store_true",
                   help="print the JSON summary (with the best rows) instead of the table")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_plot_option(p, "the value and drawdown of the best 5 (by --sort-by)")


def _per_asset(text: str, flag: str) -> dict:
    """``SYM=0.05,SYM2=0.02`` -> a band per asset (symbols left out have none)."""
    out = {}
    for item in text.split(","):
        sym, sep, val = item.partition("=")
        try:
            out[sym.strip()] = float(val)
        except ValueError:
            sep = ""
        if not sep or not sym.strip():
            raise GpusimError(f"{flag}: {item!r} is not SYMBOL=VALUE; give a band per asset as "
                              "SPY=0.05,TLT=0.02 or values to sweep as 0.01,0.02")
    return out


_NOT_WITH_ALLOC = (("threshold", "--threshold"), ("relative", "--relative"),
                   ("band", "--band"), ("threshold_abs", "--threshold-abs"))
_ALLOC_ONLY = (("param", "--param"), ("seed", "--seed"), ("share_draws", "--share-draws"))


def _check_alloc_options(args: argparse.Namespace) -> None:
    """One-line errors for options that do not apply with (or without) --alloc."""
    if args.alloc is None:
        given = [flag for k, flag in _ALLOC_ONLY if getattr(args, k) is not None]
        if given:
            raise GpusimError(f"{given[0]} is for --alloc: give the allocation function too "
                              "(--alloc FILE.py:NAME)")
        return
    from gpusim.strategy.api import not_with_alloc

    given = [flag for k, flag in _NOT_WITH_ALLOC if getattr(args, k) not in (None, False)]
    if given:
        raise not_with_alloc(given[0], [f for _, f in _NOT_WITH_ALLOC], alloc="--alloc")
    if args.schedule is not None:
        raise GpusimError("--schedule is not used with --alloc: the function sets the targets "
                          "(--weights gives its initial targets)")


def _alloc_kwargs(args: argparse.Namespace) -> dict:
    """The ``alloc=``, ``params=``, ``seed=``, ``share_draws=`` arguments of
    :func:`gpusim.backtest` (the function loaded before any data).
    """
    from gpusim.parse import parse_params
    from gpusim.strategy.compile import prepare
    from gpusim.strategy.loader import load_function

    if args.alloc is None:
        return {}
    params = parse_params(args.param, "--param")
    shared = ([s.strip() for s in args.share_draws.split(",") if s.strip()]
              if args.share_draws else [])
    fn = load_function(args.alloc, what="--alloc")
    prepare(fn, what="--alloc")          # its signature, before any data is read
    return {"alloc": fn, "params": params,
            "seed": 0 if args.seed is None else args.seed, "share_draws": shared}


def _run(args: argparse.Namespace) -> int:
    import pandas as pd

    from gpusim.backtest.api import METRICS, backtest
    from gpusim.grid import Param
    from gpusim.results import flat_table
    from gpusim.schedule import Portfolios, read_schedule

    check_ranking(args.sort_by, args.top_k, METRICS)
    check_output_paths(args.out, args.plot)
    _check_alloc_options(args)
    alloc = _alloc_kwargs(args)
    if args.init_cash is not None and not args.init_cash > 0:
        raise GpusimError(f"--init-cash {args.init_cash:g} must be > 0")
    market = load_market(args)
    if args.schedule is not None:
        if args.weights != "equal":
            raise GpusimError("--schedule replaces --weights; give one of them")
        files = [f.strip() for f in str(args.schedule).split(",") if f.strip()]
        scheds = [read_schedule(f) for f in files]
        weights = scheds[0] if len(scheds) == 1 else Param(scheds, "weights")
    else:
        weights = parse_weights(args.weights, list(market.symbols))
        if isinstance(weights, pd.DataFrame):
            weights = Portfolios(weights)
    threshold_abs = (None if args.threshold_abs is None else
                     as_axis(parse_values(args.threshold_abs, "--threshold-abs"),
                             "threshold_abs"))
    rebalance = as_axis(parse_rebalance(args.rebalance), "rebalance")
    threshold = (None if args.threshold is None else
                 _per_asset(args.threshold, "--threshold") if "=" in args.threshold else
                 as_axis(parse_values(args.threshold, "--threshold", allow_none=True),
                         "threshold"))
    fees = as_axis(parse_values(args.fees, "--fees"), "fees")

    res = backtest(market, weights=weights, rebalance=rebalance, threshold=threshold,
                   relative=args.relative, band=args.band, threshold_abs=threshold_abs,
                   fees=fees, init_cash=args.init_cash, rf=args.rf,
                   backend=args.backend, chunk_size=args.chunk_size,
                   progress=not args.no_progress, **alloc)
    if alloc:
        res.summary["alloc_spec"] = args.alloc
    best = res.best(args.sort_by, args.top_k, weights=True)
    out = None
    if args.out:
        out = str(res.save(args.out, best_k=args.top_k, sort_by=args.sort_by,
                           fmt=table_format(args.format)))
    s = res.summary
    if args.json:
        print_json(s, out=out, sort_by=args.sort_by, best=records(flat_table(best)))
    else:
        print(grid_run_line(s, "bars", "assets"))
        if alloc:
            tgt = ("the targets in force after the last bar" if res._ctx.alloc.uses_targets
                   else "the initial targets")
            print(f"alloc {args.alloc}: params {', '.join(alloc['params']) or '(none)'}; "
                  f"seed {alloc['seed']}; weights by symbol: {tgt}")
        print(f"best {len(best)} by {args.sort_by}:")
        print_table(best, groups=[list(market.symbols)])
        if out:
            print(f"wrote {out}")
    if args.plot and len(res.metrics):
        path = res.plot_equity(args.plot, k=min(5, args.top_k), metric=args.sort_by)
        print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    return partial_exit(s, res.partial)


COMMAND = Command("backtest", "rebalancing backtests over parameter grids", DESCRIPTION, EPILOG,
                  _add_arguments, _run)
add_parser, build_parser, run, main = COMMAND.functions()

if __name__ == "__main__":
    sys.exit(main())
