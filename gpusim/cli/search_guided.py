"""``gpusim search`` options of the guided and batched searches (``--method guided``, ex-post
objectives, constraints, holdout); thin: parsed here, passed to :func:`gpusim.search`.
"""

from __future__ import annotations

import argparse


def _holdout(text: str):
    """A fraction (0.3) or a date (2017-06-01)."""
    try:
        return float(text)
    except ValueError:
        return str(text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the guided-search options to the ``search`` sub-command parser."""
    g = p.add_argument_group("guided search, ex-post objectives and constraints")
    g.add_argument("--method", default="random", choices=("random", "guided"),
                   help="random (default: the fused kernel, --n candidates) or guided "
                   "(cross-entropy method; --n is then its budget of evaluations)")
    g.add_argument("--objective", default=None,
                   choices=("sharpe", "sortino", "calmar", "max_drawdown", "cagr"),
                   help="sharpe (ex-ante unless --rebalance/--threshold/--fees) or an ex-post "
                   "backtest metric")
    g.add_argument("--rebalance", default=None, help="ex-post: never, k bars, D/W/M/Q/Y")
    g.add_argument("--threshold", type=float, default=None, help="ex-post: drift band")
    g.add_argument("--fees", type=float, default=None, help="ex-post: proportional fee")
    g.add_argument("--max-assets", type=int, default=None, help="hold at most K assets")
    g.add_argument("--min-weight", type=float, default=None,
                   help="every held weight at least this")
    g.add_argument("--holdout", type=_holdout, default=None,
                   help="fraction (0.3) or date: search the bars before it, report both")
    g.add_argument("--population", type=int, default=None,
                   help="guided: candidates per generation (default max(200, 5 A))")


def options(args) -> dict:
    """The keyword arguments of :func:`gpusim.search` set on the command line (only those, so
    a plain ``gpusim search`` still runs the fused random kernel).
    """
    names = ("objective", "rebalance", "threshold", "fees", "max_assets", "min_weight",
             "holdout", "population")
    out = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    if args.method != "random":
        out["method"] = args.method
    return out
