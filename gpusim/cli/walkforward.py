r"""``gpusim walkforward``: walk-forward re-optimisation over grids from the shell.

    gpusim walkforward --prices prices.csv --every D,W,M --lookback none,63,252 \\
        --num-tests 30,100,10000 --fees 0.001 --out runs/wf
    gpusim walkforward --method exact --beta spy.csv:SPY<=0.1 --cash --every M --lookback 126
    gpusim walkforward --objective max_sharpe,min_variance --estimator sample,ledoit_wolf,ewma:63 \\
        --max-vol 0.15 --max-te spy.csv:SPY<=0.05 --method random,exact --lookback 252

Runs on its own as ``python -m gpusim.cli.walkforward``; wiring and exit codes:
:class:`gpusim.cli.common.Command`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
from gpusim.parse import (
    as_axis,
    parse_beta,
    parse_lookbacks,
    parse_rebalance,
    parse_te,
    parse_values,
)

__all__ = ["add_parser", "build_parser", "main", "parse_beta", "run"]

DESCRIPTION = (
    "At each rebalance date, estimate mean and covariance on the lookback window, choose weights "
    "(best ex-ante Sharpe of num-tests random candidates, or the exact cvxpy optimum) under the "
    "constraints, and trade to them with fees; over the grid of every every x lookback x "
    "num-tests x fees combination. Prints the best combinations; --out writes metrics, report "
    "(constraint binding rates, acceptance, fallbacks, in-sample gap), allocations.csv and "
    "summary.json.")

EPILOG = """value lists: one value, a comma list (0,0.001) or start:stop:step. --every: D, W, M,
Q, Y, k (bars) or never. --lookback: returns per window, or none (all past returns).
--beta FILE[:COLUMN]OP VALUE with OP one of <=, >=, = (e.g. spy.csv:SPY<=0.1): portfolio beta to
that price series (dates must cover the prices'). --cash allows cash (weights sum <= 1), which a
low beta usually needs. --groups FILE: CSV of symbol,group rows, with --group-lo/--group-hi
bounds for every group. --objective: max_sharpe, min_variance, max_return (with --max-vol or
--max-te), max_utility (with --risk-aversion). --estimator: sample, ewma:HALFLIFE, ledoit_wolf.
--max-vol V: ex-ante annualised volatility <= V; --max-te FILE[:COLUMN]<=V: tracking error to
that price series <= V (repeatable). --method, --objective and --estimator take comma lists
(sweep axes). --start is the first simulated bar; --data-start/--data-end cut the
price data.

""" + DATA_EPILOG


def _add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_options(p, start=("--data-start",), end=("--data-end",))
    p.add_argument("--every", default="M", metavar="RULES", help="rebalance rule(s) (default M)")
    p.add_argument("--lookback", default="none", metavar="VALUES",
                   help="window length(s) in returns, or none (default none)")
    p.add_argument("--num-tests", default="1000", metavar="VALUES",
                   help="random candidates per rebalance (default 1000)")
    p.add_argument("--fees", default="0", metavar="VALUES", help="proportional fee(s)")
    p.add_argument("--method", default="random", metavar="METHODS",
                   help="random and/or exact, e.g. random,exact (default random)")
    p.add_argument("--objective", default="max_sharpe", metavar="NAMES",
                   help="max_sharpe | min_variance | max_return | max_utility (comma list)")
    p.add_argument("--estimator", default="sample", metavar="NAMES",
                   help="sample | ewma:HALFLIFE | ledoit_wolf (comma list; default sample)")
    p.add_argument("--risk-aversion", default="1", metavar="VALUES",
                   help="risk aversion(s) of max_utility (default 1)")
    p.add_argument("--max-vol", type=float, default=None, metavar="V",
                   help="cap on the ex-ante annualised volatility, e.g. 0.15")
    p.add_argument("--max-te", action="append", default=[], metavar="FILE[:COL]<=V",
                   help="cap on the tracking error to a benchmark price file (repeatable)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the random search's candidates (each rebalance date draws its "
                        "own stream from it; default 0)")
    p.add_argument("--start", default=None, help="first simulated bar (index or date)")
    p.add_argument("--sampler", default="dirichlet", help="dirichlet (default) or uniform")
    p.add_argument("--weight-bounds", default=None, metavar="LO,HI",
                   help="per-asset weight bounds, e.g. 0,0.3")
    p.add_argument("--beta", action="append", default=[], metavar="FILE[:COL]OPVALUE",
                   help="portfolio beta bound to a benchmark price file (repeatable)")
    p.add_argument("--cash", nargs="?", const=0.0, type=float, default=None, metavar="MIN",
                   help="allow cash: invest between MIN (default 0) and 100%%")
    p.add_argument("--groups", default=None, metavar="FILE", help="CSV of symbol,group")
    p.add_argument("--group-lo", type=float, default=None, help="lower bound of every group")
    p.add_argument("--group-hi", type=float, default=None, help="upper bound of every group")
    gap = p.add_mutually_exclusive_group()
    gap.add_argument("--gap", dest="gap", action="store_true", default=None,
                     help="solve the exact problem at every date for the in-sample gap report")
    gap.add_argument("--no-gap", dest="gap", action="store_false",
                     help="do not compute the gap (default)")
    p.add_argument("--solver", default=None, help="cvxpy solver (default Clarabel)")
    p.add_argument("--init-cash", type=float, default=1.0,
                   help="starting cash (default 1; 100 to compare with vectorbt)")
    p.add_argument("--rf", type=float, default=0.0, help="annual risk-free rate")
    p.add_argument("--backend", default="auto", help="auto | cpu | gpu")
    p.add_argument("--out", default=None, metavar="DIR", help="write the results here")
    p.add_argument("--format", default="parquet", choices=("parquet", "csv"),
                   help="table format under --out (default parquet, CSV if pyarrow is missing)")
    p.add_argument("--top-k", type=int, default=10, help="rows of the best table (default 10)")
    p.add_argument("--sort-by", default="sharpe", metavar="METRIC",
                   help="metric that ranks the best table (default sharpe)")
    p.add_argument("--json", action="store_true", help="print a JSON summary with the best rows")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_plot_option(p, "the weights over time of the best combination (by --sort-by), with "
                       "its rebalance dates")


def _constraints(args: argparse.Namespace, symbols: list[str]) -> list:
    import pandas as pd

    from gpusim.walkforward.constraints import Budget, GroupBounds, WeightBounds

    out = []
    if args.weight_bounds:
        v = parse_values(args.weight_bounds, "--weight-bounds")
        if len(v) != 2:
            raise GpusimError(f"--weight-bounds {args.weight_bounds!r} must be LO,HI")
        out.append(WeightBounds(lo=v[0], hi=v[1]))
    if args.groups:
        if not Path(args.groups).is_file():
            raise GpusimError(f"--groups: file {args.groups!r} not found")
        g = pd.read_csv(args.groups)
        if g.shape[1] < 2:
            raise GpusimError("--groups needs a CSV with columns symbol,group")
        out.append(GroupBounds(dict(zip(g.iloc[:, 0].astype(str), g.iloc[:, 1])),
                               lo=args.group_lo, hi=args.group_hi))
    elif args.group_lo is not None or args.group_hi is not None:
        raise GpusimError("--group-lo/--group-hi need --groups FILE")
    out += [parse_beta(b) for b in args.beta]
    if args.max_vol is not None:
        from gpusim.walkforward.constraints import Volatility

        out.append(Volatility(max=args.max_vol))
    out += [parse_te(s) for s in args.max_te]
    if args.cash is not None:
        out.append(Budget(min=args.cash))
    return out


def _names(text: str) -> list[str]:
    """A comma list of names (methods, objectives, estimators)."""
    return [x.strip() for x in str(text).split(",") if x.strip()]


def _run(args: argparse.Namespace) -> int:
    from gpusim.walkforward.api import METRICS, walkforward

    check_ranking(args.sort_by, args.top_k, METRICS)
    check_output_paths(args.out, args.plot)
    market = load_market(args)
    lookbacks = parse_lookbacks(args.lookback)
    num_tests = parse_values(str(args.num_tests).replace("_", ""), "--num-tests")
    start = args.start
    if start is not None and str(start).lstrip("-").isdigit():
        start = int(start)
    res = walkforward(
        market, every=as_axis(parse_rebalance(args.every), "every"),
        lookback=as_axis(lookbacks, "lookback"), num_tests=as_axis(num_tests, "num_tests"),
        fees=as_axis(parse_values(args.fees, "--fees"), "fees"),
        method=as_axis(_names(args.method), "method"),
        objective=as_axis(_names(args.objective), "objective"),
        estimator=as_axis(_names(args.estimator), "estimator"), risk_aversion=as_axis(
            parse_values(args.risk_aversion, "--risk-aversion"), "risk_aversion"),
        constraints=_constraints(args, market.symbols), seed=args.seed,
        init_cash=args.init_cash, rf=args.rf, start=start, sampler=args.sampler, gap=args.gap,
        solver=args.solver, backend=args.backend, progress=not args.no_progress)
    best = res.best(args.sort_by, args.top_k)
    rep = res.report
    table = best.join(rep[[c for c in rep.columns if c not in best.columns]], how="left")
    out = None
    if args.out:
        out = str(res.save(args.out, fmt=table_format(args.format)))
    s = res.summary
    png = res.plot_weights(args.plot, key=best.index[0]) if args.plot and len(best) else None
    if png and args.json:
        print(f"wrote {png}", file=sys.stderr)
    if args.json:
        print_json(s, out=out, sort_by=args.sort_by, best=records(table.reset_index()))
        return _partial_exit(s)
    t = s["timings_s"]
    print(f"{s['n_combinations']} combinations ({s['method']}), {s['n_dates']} rebalance dates, "
          f"{s['n_assets']} assets, bars {s['start']} .. {s['end']} on {s['backend']} in "
          f"{t['total']:.3f} s")
    bad = {k: v for k, v in s["statuses"].items() if k != "ok"}
    if bad:
        print(f"dates that kept the previous weights: {bad}")
    for obj, rates in s.get("bound_by_objective", {}).items():
        if rates:
            print(f"constraints binding ({obj}): " + ", ".join(
                f"{n} {r:.0%}" if r is not None else f"{n} -" for n, r in rates.items()))
    print(f"best {len(best)} by {args.sort_by}:")
    print_table(table, max_columns=30)
    if out:
        print(f"wrote {out}")
    if png:
        print(f"wrote {png}")
    return _partial_exit(s)


def _partial_exit(s: dict) -> int:
    """130 with a warning after Ctrl-C (every combination simulated up to the last chosen date)."""
    if s["partial"]:
        print(f"warning: interrupted; simulated up to {s['end']} ({s['n_dates_done']} of "
              f"{s['n_dates']} rebalance dates; partial results)", file=sys.stderr)
        return 130
    return 0


COMMAND = Command("walkforward", "walk-forward re-optimisation over grids", DESCRIPTION, EPILOG,
                  _add_arguments, _run)
add_parser, build_parser, run, main = COMMAND.functions()

if __name__ == "__main__":
    sys.exit(main())
