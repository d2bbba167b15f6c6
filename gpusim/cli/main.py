"""The ``gpusim`` command line: search, backtest, walkforward, dynopt, sweep, verify, bench,
info.

Every command prints one line ``error: ...`` on stderr and exits with status 2 on bad input
(never a traceback); Ctrl-C exits with 130 (a search interrupted mid-way still prints and saves
the best so far, marked partial).
"""

from __future__ import annotations

import argparse
import json
import sys

from gpusim.errors import GpusimError


def _count(text: str) -> int:
    """Parse counts like 100000000, 1e8, 10^8 or 100_000_000."""
    t = str(text).replace("_", "").strip()
    try:
        if "^" in t:
            b, e = t.split("^")
            v = float(b) ** float(e)
        else:
            v = float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count (e.g. 1000000, 1e6, 10^6)")
    if v != int(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(v)


def _floats(text: str):
    """A number or a comma list of numbers (per-asset bounds)."""
    try:
        vals = [float(x) for x in str(text).split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or a comma list of numbers")
    return vals[0] if len(vals) == 1 else vals


def _add_search(sub) -> None:
    p = sub.add_parser(
        "search", help="score random weight vectors by ex-ante Sharpe, keep the best",
        description="Score n candidate weight vectors (drawn from a counter-based stream) by "
        "ex-ante Sharpe from the mean and covariance of returns, keep the top k, and compare "
        "with the exact max-Sharpe and min-variance portfolios (cvxpy).")
    p.add_argument("--prices", metavar="FILE", default=None,
                   help="close prices (CSV/Parquet, dates x symbols) or "
                   "synthetic[:ASSETS[:BARS[:SEED]]] (default: synthetic, 5 assets x 756 days)")
    p.add_argument("--symbols", default=None, help="comma list of columns to use")
    p.add_argument("--ann", type=float, default=None, help="periods per year (default: inferred)")
    p.add_argument("--n", type=_count, default=1_000_000,
                   help="number of candidates (default 1e6; e.g. 1e8 or 10^8)")
    p.add_argument("--sampler", default="dirichlet", help="dirichlet (default) or uniform")
    p.add_argument("--alpha", type=float, default=1.0, help="Dirichlet concentration (1 = flat)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--lo", type=_floats, default=None, help="lower bound(s): one or A numbers")
    p.add_argument("--hi", type=_floats, default=None, help="upper bound(s): one or A numbers")
    p.add_argument("--rf", type=float, default=0.0, help="annual risk-free rate")
    p.add_argument("--backend", default=None, help="auto (default), gpu or cpu")
    p.add_argument("--dtype", default="float64", choices=("float64", "float32"),
                   help="scoring precision (float32: GPU only)")
    p.add_argument("--chunk-size", type=_count, default=None)
    p.add_argument("--solver", default=None, help="cvxpy solver (default Clarabel)")
    p.add_argument("--no-baselines", action="store_true", help="skip the cvxpy baselines")
    p.add_argument("--out", metavar="DIR", default=None, help="write top_k + summary.json here")
    p.add_argument("--format", default="parquet", choices=("parquet", "csv"))
    p.add_argument("--plot", metavar="PNG", default=None, help="write the frontier plot here")
    p.add_argument("--json", action="store_true", help="print the JSON summary to stdout")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_search)


def _cmd_search(args) -> int:
    from gpusim.data.load import market_from_spec
    from gpusim.search.api import search

    symbols = args.symbols.split(",") if args.symbols else None
    market = market_from_spec(args.prices, ann=args.ann, symbols=symbols)
    bounds = None if args.lo is None and args.hi is None else (args.lo, args.hi)
    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    say(market.describe())
    res = search(market, n=args.n, sampler=args.sampler, alpha=args.alpha, seed=args.seed,
                 top_k=args.top_k, bounds=bounds, rf=args.rf, backend=args.backend,
                 dtype=args.dtype, chunk_size=args.chunk_size,
                 progress=False if args.no_progress else None,
                 baselines=not args.no_baselines, solver=args.solver)
    if res.top.empty:
        say("no candidate satisfied the upper bounds: widen --hi or raise --n")
    say(res.to_text())
    if args.out:
        out = res.save(args.out, fmt=args.format)
        say(f"\nwrote {out}/top_k.{args.format} and {out}/summary.json")
    if args.plot:
        say(f"wrote {res.plot(args.plot)}")
    if args.json:
        print(json.dumps({k: v for k, v in res.summary.items() if k not in ("mu", "cov")},
                         indent=2))
    return 0


def _add_verify(sub) -> None:
    p = sub.add_parser("verify", help="re-check a saved search result on the CPU reference")
    p.add_argument("out", metavar="DIR", help="folder written by `gpusim search --out`")
    p.add_argument("--sample", type=_count, default=20_000,
                   help="also re-run candidates 0..sample-1 on both (default 20000)")
    p.set_defaults(func=_cmd_verify)


def _cmd_verify(args) -> int:
    from gpusim.search.api import SearchResult, verify

    v = verify(SearchResult.load(args.out), sample=args.sample)
    print(json.dumps(v, indent=2))
    if not v["ok"]:
        print(f"error: verification failed: largest relative difference {v['max_rel_diff']:.3g}",
              file=sys.stderr)
        return 1
    return 0


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="backends available on this machine, and why not")
    p.set_defaults(func=_cmd_info)


def _cmd_info(args) -> int:
    from gpusim.backend import info

    for name, d in info().items():
        print(f"{name:14s} {'yes' if d['available'] else 'no ':3s}  {d['detail']}")
    return 0


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="quick throughput table for each backend vs plain NumPy")
    p.add_argument("--assets", default="5,20,100", help="comma list of asset counts")
    p.add_argument("--seconds", type=float, default=1.0, help="target seconds per measurement")
    p.add_argument("--backend", default=None, help="limit to one backend (cpu or gpu)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args) -> int:
    from gpusim.search.bench import bench_search, format_table

    try:
        assets = [int(a) for a in args.assets.split(",")]
    except ValueError:
        raise GpusimError(f"--assets {args.assets!r} must be a comma list of integers") from None
    res = bench_search(assets, seconds=args.seconds, backends=args.backend)
    print(json.dumps(res, indent=2) if args.json else format_table(res))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from gpusim._version import __version__
    from gpusim.cli.backtest import add_parser as add_backtest
    from gpusim.cli.dynopt import add_parser as add_dynopt
    from gpusim.cli.sweep import add_parser as add_sweep
    from gpusim.cli.walkforward import add_parser as add_walkforward

    p = argparse.ArgumentParser(prog="gpusim", description="Batch simulator for portfolio "
                                "research on CUDA GPUs, with a CPU fallback.")
    p.add_argument("--version", action="version", version=f"gpusim {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    _add_search(sub)
    add_backtest(sub)
    add_walkforward(sub)
    add_dynopt(sub)
    add_sweep(sub)
    _add_verify(sub)
    _add_bench(sub)
    _add_info(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    import warnings

    from gpusim.backend import BackendFallbackWarning

    warnings.simplefilter("ignore", BackendFallbackWarning)  # `gpusim info` says why
    try:
        return int(args.func(args) or 0)
    except GpusimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
