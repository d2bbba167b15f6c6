"""``gpusim dynopt``: Carver's integer-position dynamic optimisation over a grid, from the shell.

    gpusim dynopt                                   # pysystemtrade data, last 10 years, 36 combos
    gpusim dynopt --instruments SP500_micro,US10,GOLD_micro --capital 5e4,1e5 --buffer 0.0125
    gpusim dynopt --synthetic 8:1260:0 --out runs/dynopt --positions
    gpusim dynopt --capital 1e7 --buffer 0.03 --no-trade-rule --static   # vs pysystemtrade/static

Runs on its own as ``python -m gpusim.cli.dynopt``; wiring and exit codes:
:class:`gpusim.cli.common.Command`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gpusim.cli.common import (
    Command,
    add_plot_option,
    check_output_paths,
    check_ranking,
    grid_run_line,
    partial_exit,
    print_json,
    print_table,
    printer,
    records,
    table_format,
)
from gpusim.errors import GpusimError
from gpusim.parse import as_axis, parse_rebalance, parse_values

__all__ = ["add_parser", "load_data", "main", "run"]

DESCRIPTION = (
    "Greedy integer-position dynamic optimisation (Carver, Advanced Futures Trading Strategies "
    "ch. 25): each rebalance day, whole-contract positions that minimise tracking error to the "
    "optimal unrounded portfolio plus a shadow-cost penalty on trading, with a tracking-error "
    "buffer; swept over capital x shadow cost x buffer (x rebalance). Optimal positions come "
    "from vol targeting (equal or given weights, risk target, IDM). Prints the metrics table; "
    "--out writes metrics (Parquet, CSV fallback), best.csv and summary.json.")

EPILOG = """data: --data DIR (pysystemtrade layout: adjusted_prices_csv/, fx_prices_csv/,
csvconfig/); default ../shared/data/pysystemtrade when present, else the synthetic futures
(--synthetic N:DAYS:SEED forces them). value lists: a single value (0.0125), a comma list
(0,0.01,0.02) or an inclusive range start:stop:step."""


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None, metavar="DIR",
                   help="pysystemtrade data folder (default: ../shared/data/pysystemtrade when "
                        "present, else synthetic futures)")
    p.add_argument("--synthetic", default=None, metavar="N[:DAYS[:SEED]]", nargs="?",
                   const="8", help="use synthetic futures (default 8 instruments x 1260 days)")
    p.add_argument("--instruments", default=None, metavar="LIST",
                   help="comma list of instruments (default: all)")
    p.add_argument("--start", default=None, help="first date (default: --years before the end)")
    p.add_argument("--end", default=None, help="last date (default: the last date of the data)")
    p.add_argument("--sort", action="store_true",
                   help="sort price/FX files whose timestamps are out of order (else an error)")
    p.add_argument("--dedupe", action="store_true",
                   help="drop rows repeating a timestamp with the same value (else an error)")
    p.add_argument("--years", type=float, default=10.0,
                   help="years of data when --start is not given (default: 10)")
    p.add_argument("--capital", default="1e5,5e5,1e6", metavar="VALUES",
                   help="account value(s), base currency (default: 1e5,5e5,1e6)")
    p.add_argument("--shadow-cost", default="10,50,100", metavar="VALUES",
                   help="shadow cost(s) (default: 10,50,100)")
    p.add_argument("--buffer", default="0,0.01,0.0125,0.02", metavar="VALUES",
                   help="tracking-error buffer(s) (default: 0,0.01,0.0125,0.02)")
    p.add_argument("--rebalance", default="D", metavar="RULES",
                   help="D | W | M | k (every k days); a comma list sweeps them (default: D)")
    p.add_argument("--risk-target", type=float, default=0.2,
                   help="annual risk target of the vol targeting (default: 0.2)")
    p.add_argument("--idm", type=float, default=1.0,
                   help="instrument diversification multiplier (default: 1; ~2-2.5 is typical "
                        "for a diversified futures portfolio)")
    p.add_argument("--cov-every", default="W", help="covariance re-estimation: D|W|M|k "
                   "(default: W)")
    p.add_argument("--lookback", type=int, default=250, help="covariance window, days "
                   "(default: 250)")
    p.add_argument("--min-periods", type=int, default=20,
                   help="returns needed for a risk estimate (default: 20)")
    p.add_argument("--shrinkage", type=float, default=0.5,
                   help="shrink correlations toward zero by this factor (default: 0.5)")
    p.add_argument("--no-trade-rule", action="store_true",
                   help="pysystemtrade's early exit: keep yesterday's positions when their TE "
                        "to the unrounded optimum is below the buffer (or the greedy answer is "
                        "all zeros)")
    p.add_argument("--static", nargs="?", const=0.1, type=float, default=None, metavar="BAND",
                   help="also report static positions (optimal positions with Carver's "
                        "position buffer of +-BAND x |optimal|, default 0.1) as static_* "
                        "columns")
    p.add_argument("--backend", default="auto", help="auto | cpu | gpu (default: auto)")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="combinations per kernel launch (default: planned)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write metrics, best.csv and summary.json to this folder")
    p.add_argument("--format", default="parquet", choices=("parquet", "csv"),
                   help="metrics file format under --out (default: parquet)")
    p.add_argument("--positions", action="store_true",
                   help="with --out, also write positions_best.csv (daily contracts of the best "
                        "combination)")
    p.add_argument("--top-k", type=int, default=10, help="rows of best.csv (default: 10)")
    p.add_argument("--sort-by", default="sharpe", metavar="METRIC",
                   help="metric that ranks best.csv (default: sharpe)")
    p.add_argument("--max-rows", type=int, default=60,
                   help="print the whole metrics table up to this many rows, else the best "
                        "--top-k (default: 60)")
    add_plot_option(p, "the positions of the best combination (by --sort-by) against the "
                       "optimal positions")
    p.add_argument("--json", action="store_true",
                   help="print the JSON summary (with the metrics rows) instead of the table")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def load_data(args: argparse.Namespace) -> tuple[Any, str]:
    """The FuturesData chosen by ``--data`` / ``--synthetic`` / ``--instruments`` and the window
    options; returns (data, note) where ``note`` says where it came from.
    """
    from gpusim.data.futures import default_data_dir, load_futures, synthetic_futures

    names = ([s.strip() for s in args.instruments.split(",") if s.strip()]
             if args.instruments else None)
    if args.synthetic is not None and args.data is not None:
        raise GpusimError("give --data or --synthetic, not both")
    if not args.years > 0:
        raise GpusimError(f"--years {args.years:g} must be > 0")
    folder = args.data if args.data is not None else (
        None if args.synthetic is not None else default_data_dir())
    if folder is None:
        if args.sort or args.dedupe:
            raise GpusimError("--sort/--dedupe apply to --data files, not synthetic futures")
        spec = args.synthetic or "8"
        parts = str(spec).split(":")
        if len(parts) > 3 or not all(x.strip().isdigit() for x in parts):
            raise GpusimError(f"--synthetic {spec!r} is not N[:DAYS[:SEED]] with integers")
        kw = dict(zip(("n_instruments", "n_days", "seed"), map(int, parts)))
        data = synthetic_futures(**kw)
        args.data_source = {"synthetic_futures": {"n_instruments": 8, "n_days": 1260,
                                                  "seed": 0, **kw}}
        note = ("" if args.synthetic is not None else
                "note: no pysystemtrade data found (../shared/data/pysystemtrade); using "
                "synthetic futures\n")
        if names:
            data = data.subset(names)
        if args.start or args.end:
            data = data.window(args.start, args.end)
        return data, note
    data = load_futures(folder, instruments=names, sort=args.sort, dedupe=args.dedupe)
    args.data_source = {"folder": str(folder), "instruments": names, "sort": args.sort,
                        "dedupe": args.dedupe}
    note = "".join(f"data: {n}\n" for n in data.notes)
    if args.start or args.end:
        data = data.window(args.start, args.end)
    else:
        data = data.last_years(args.years)
    return data, note


def _run(args: argparse.Namespace) -> int:
    from gpusim.dynopt.api import METRICS, STATIC_METRICS, dynopt
    from gpusim.results import flat_table

    check_ranking(args.sort_by, args.top_k,
                  METRICS + (STATIC_METRICS if args.static is not None else ()))
    check_output_paths(args.out, args.plot)
    capital = as_axis(parse_values(args.capital, "--capital"), "capital")
    shadow = as_axis(parse_values(args.shadow_cost, "--shadow-cost"), "shadow_cost")
    buffer = as_axis(parse_values(args.buffer, "--buffer"), "buffer")
    rebalance = as_axis(parse_rebalance(args.rebalance), "rebalance")
    cov_every = parse_rebalance(args.cov_every)
    if len(cov_every) != 1:
        raise GpusimError("--cov-every takes one rule (D, W, M or k)")
    data, note = load_data(args)
    say = printer(args.json)
    if note:
        say(note.rstrip())
    say(data.describe())
    res = dynopt(data, risk_target=args.risk_target, idm=args.idm, capital=capital,
                 shadow_cost=shadow, buffer=buffer, rebalance=rebalance,
                 cov_every=cov_every[0], lookback=args.lookback, min_periods=args.min_periods,
                 shrinkage=args.shrinkage, no_trade_rule=args.no_trade_rule,
                 compare_static=args.static is not None,
                 static_buffer=0.1 if args.static is None else args.static,
                 backend=args.backend, chunk_size=args.chunk_size,
                 progress=not args.no_progress)
    res.summary["data"] = getattr(args, "data_source", None)   # what to reload to reproduce it
    out = None
    if args.out:
        out = str(res.save(args.out, best_k=args.top_k, sort_by=args.sort_by,
                           fmt=table_format(args.format), positions=args.positions))
    s = res.summary
    if args.json:
        print_json(s, out=out, metrics=records(flat_table(res.metrics)))
    else:
        print(grid_run_line(s, "days", "instruments"))
        print(f"optimal positions: {s['optimal']}, risk target {s['risk_target']:g}, idm "
              f"{s['idm']:g}; average risk of the optimal portfolio "
              f"{(s['avg_optimal_risk'] or float('nan')):.4f}")
        table = res.metrics if len(res.metrics) <= args.max_rows else res.best(
            args.sort_by, args.top_k)
        if table is not res.metrics:
            print(f"best {len(table)} of {len(res.metrics)} by {args.sort_by}:")
        print_table(table, width=250, max_rows=max(args.max_rows, args.top_k) + 5)
        if out:
            print(f"wrote {out}")
    if args.plot and len(res.metrics):
        path = res.plot_positions(args.plot, key=res.best(args.sort_by, 1).index[0])
        print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    return partial_exit(s, res.partial)


COMMAND = Command("dynopt", "integer-position dynamic optimisation (Carver) over parameter grids",
                  DESCRIPTION, EPILOG, _add_arguments, _run)
add_parser, build_parser, run, main = COMMAND.functions()

if __name__ == "__main__":
    sys.exit(main())
