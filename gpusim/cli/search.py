"""``gpusim search``, ``gpusim verify`` and ``gpusim bench``: the weight search from the shell.

    gpusim search --prices prices.csv --n 1e8 --top-k 20 --out runs/s1
    gpusim verify runs/s1
    gpusim bench --assets 5,20,100

Wiring: ``add_parser``, ``add_verify_parser`` and ``add_bench_parser`` add the sub-commands to
an ``argparse`` subparsers object (each sets ``func``); :func:`gpusim.cli.main.main` runs them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from gpusim.cli.common import (
    DATA_EPILOG,
    add_data_options,
    check_output_paths,
    load_market,
    printer,
)
from gpusim.errors import GpusimError

__all__ = ["add_bench_parser", "add_parser", "add_verify_parser"]


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
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a count (e.g. 1000000, 1e6, 10^6)") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite count >= 0 (e.g. 1e6)")
    if v != int(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(v)


def _floats(text: str):
    """A number or a comma list of numbers (per-asset bounds)."""
    try:
        vals = [float(x) for x in str(text).split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number or a comma list of numbers") from None
    return vals[0] if len(vals) == 1 else vals


def add_parser(sub: Any) -> None:
    """Add ``gpusim search`` to an ``argparse`` subparsers object."""
    p = sub.add_parser(
        "search", help="score random weight vectors by ex-ante Sharpe, keep the best",
        description="Score n candidate weight vectors (drawn from a counter-based stream) by "
        "ex-ante Sharpe from the mean and covariance of returns, keep the top k, and compare "
        "with the exact max-Sharpe and min-variance portfolios (cvxpy).",
        epilog=DATA_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_options(p)
    p.add_argument("--n", type=_count, default=1_000_000,
                   help="number of candidates (default 1e6; e.g. 1e8 or 10^8)")
    p.add_argument("--sampler", default="dirichlet", help="dirichlet (default) or uniform")
    p.add_argument("--alpha", type=float, default=1.0, help="Dirichlet concentration (1 = flat)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the candidate stream (same seed, same candidates on every "
                        "backend; default 0)")
    p.add_argument("--top-k", type=int, default=10,
                   help="best candidates kept and printed (default 10)")
    p.add_argument("--lo", type=_floats, default=None, help="lower bound(s): one or A numbers")
    p.add_argument("--hi", type=_floats, default=None, help="upper bound(s): one or A numbers")
    p.add_argument("--rf", type=float, default=0.0, help="annual risk-free rate")
    p.add_argument("--backend", default=None, help="auto (default), gpu or cpu")
    p.add_argument("--dtype", default="float64", choices=("float64", "float32"),
                   help="scoring precision (float32: GPU only)")
    p.add_argument("--chunk-size", type=_count, default=None,
                   help="candidates per kernel call (default: adaptive, ~0.5 s per chunk on "
                        "the CPU)")
    p.add_argument("--path", default="auto", choices=("auto", "fused", "gemm"),
                   help="fused kernel, GEMM tiles (BLAS/cuBLAS), or auto by asset count")
    p.add_argument("--solver", default=None, help="cvxpy solver (default Clarabel)")
    p.add_argument("--no-baselines", action="store_true", help="skip the cvxpy baselines")
    p.add_argument("--out", metavar="DIR", default=None, help="write top_k + summary.json here")
    p.add_argument("--format", default="parquet", choices=("parquet", "csv"),
                   help="format of top_k under --out (default parquet)")
    p.add_argument("--plot", metavar="PNG", default=None, help="write the frontier plot here")
    p.add_argument("--json", action="store_true", help="print the JSON summary to stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    from gpusim.cli.search_guided import add_arguments

    add_arguments(p)
    p.set_defaults(func=_cmd_search)


def _cmd_search(args) -> int:
    from gpusim.cli.search_guided import options
    from gpusim.search.api import search

    check_output_paths(args.out, args.plot)
    market = load_market(args)
    bounds = None if args.lo is None and args.hi is None else (args.lo, args.hi)
    say = printer(args.json)
    say(market.describe())
    res = search(market, n=args.n, sampler=args.sampler, alpha=args.alpha, seed=args.seed,
                 top_k=args.top_k, bounds=bounds, rf=args.rf, backend=args.backend,
                 dtype=args.dtype, chunk_size=args.chunk_size, path=args.path,
                 progress=False if args.no_progress else None,
                 baselines=not args.no_baselines, solver=args.solver, **options(args))
    if res.top.empty:
        say("no valid candidate: " + ("none satisfied the upper bounds (widen --hi or raise --n)"
                                      if args.hi is not None else
                                      "every score was undefined (check --alpha and the data)"))
    say(res.to_text())
    for w in res.summary.get("warnings") or ():
        print(f"warning: {w}", file=sys.stderr)
    if args.out:
        out = res.save(args.out, fmt=args.format)
        say(f"\nwrote {out}/top_k.{args.format} and {out}/summary.json")
    if args.plot and hasattr(res, "plot"):
        say(f"wrote {res.plot(args.plot)}")
    if args.json:
        print(json.dumps({k: v for k, v in res.summary.items() if k not in ("mu", "cov")},
                         indent=2))
    if res.partial:
        done = res.summary.get("n_evaluated", res.summary.get("evaluated"))
        print(f"warning: interrupted; best of the {done:,} candidates evaluated "
              "(partial result)" if isinstance(done, int) else
              "warning: interrupted (partial result)", file=sys.stderr)
        return 130
    return 0


def add_verify_parser(sub: Any) -> None:
    """Add ``gpusim verify`` to an ``argparse`` subparsers object."""
    p = sub.add_parser("verify", help="re-check a saved search result on the CPU reference",
                       description="Re-check a folder written by `gpusim search --out` on the "
                       "CPU reference (cpu_ref): regenerate every top-k candidate from (seed, "
                       "index) and re-score it, and re-run the first --sample candidates on "
                       "both. Prints a JSON report; exit 1 when a check fails.")
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


def add_bench_parser(sub: Any) -> None:
    """Add ``gpusim bench`` to an ``argparse`` subparsers object."""
    p = sub.add_parser("bench", help="quick throughput table for each backend vs plain NumPy",
                       description="Measure the weight search's throughput (candidates/s, "
                       "median of repeated calls after a warm-up, compilation excluded) on "
                       "each available backend and on plain NumPy, for each asset count. For "
                       "the full suites see benchmarks/.")
    p.add_argument("--assets", default="5,20,100", help="comma list of asset counts")
    p.add_argument("--seconds", type=float, default=1.0, help="target seconds per measurement")
    p.add_argument("--backend", default=None, help="limit to one backend (cpu or gpu)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args) -> int:
    from gpusim.search.bench import bench_search, format_table

    try:
        assets = [int(a) for a in args.assets.split(",")]
    except ValueError:
        raise GpusimError(f"--assets {args.assets!r} must be a comma list of integers") from None
    if not assets or min(assets) < 1:
        raise GpusimError(f"--assets {args.assets!r}: every asset count must be >= 1 "
                          "(e.g. --assets 5,20,100)")
    if not (math.isfinite(args.seconds) and args.seconds > 0):
        raise GpusimError(f"--seconds {args.seconds:g} must be > 0 (e.g. --seconds 1)")
    res = bench_search(assets, seconds=args.seconds, backends=args.backend)
    print(json.dumps(res, indent=2) if args.json else format_table(res))
    return 0
