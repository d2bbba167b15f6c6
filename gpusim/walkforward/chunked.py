"""Ctrl-C during a walk-forward run (issue 16): choose the weights block of dates by block of
dates, and on an interrupt return the walk-forward up to the last finished date, marked partial.

The choosing step (random search and exact solves) is most of a run's time. Its decisions are
processed in date order, in blocks of consecutive rebalance dates (:func:`date_batches`; one
date per block when a constraint is a callable, which must see the previous weights); SIGINT
only sets a flag (:mod:`gpusim.interrupt`) that is checked between blocks. When it is set, the
dates not yet chosen are dropped (:func:`trim`) and every combination is executed on the bars
before the first of them: the result equals a full run on the prices cut at that bar (same
``start``, same grid), with ``summary["partial"]`` True and ``summary["end"]`` the last bar
simulated. Blocks do not change any result: each date's candidates come from their own stream
and the fallbacks carry the previous weights across blocks exactly as within one.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from gpusim.interrupt import Interrupt

__all__ = ["MAX_BLOCKS", "MIN_BLOCK_WORK", "SOLVE_WORK", "date_batches", "interruptible",
           "stop_before", "stopped", "trim", "work"]

MAX_BLOCKS = 64
"""At most this many blocks of dates (when no constraint is a callable)."""
MIN_BLOCK_WORK = 2 ** 21
"""A block holds at least this much work (candidate scorings; about 0.1 s of one CPU core at 20
assets), so that small runs stay one call of the search kernel."""
SOLVE_WORK = 2 ** 16
"""Work counted for one exact solve (a cvxpy solve costs about as much as this many scorings)."""


@contextmanager
def interruptible(ctx):
    """Route SIGINT to ``ctx.stop`` (an :class:`~gpusim.interrupt.Interrupt`) for the block."""
    ctx.stop = Interrupt().install()
    try:
        yield ctx.stop
    finally:
        ctx.stop.restore()


def work(method: str, do_gap: bool, n) -> np.ndarray:
    """(D,) float64 cost of each decision: ``n`` candidates (random), plus SOLVE_WORK per solve."""
    n = np.asarray(n, dtype=np.float64)
    return ((n if method == "random" else np.zeros_like(n))
            + (SOLVE_WORK if method == "exact" or do_gap else 0.0))


def stop_before(ctx, dates) -> bool:
    """True when Ctrl-C arrived: records the first date index of the batch not run."""
    if ctx.stop:
        ctx.H["next_date"] = int(dates.min())
        return True
    return False


def stopped(ctx) -> bool:
    """Whether the choosing loop stopped early (the result is then partial)."""
    return "next_date" in ctx.H


def date_batches(bd, bw, work, per_date: bool) -> list[np.ndarray]:
    """Decision batches in date order.

    Parameters
    ----------
    bd : (D,) int64 date index of each decision; bw : (D,) int64 its weight set.
    work : (D,) float64 cost of each decision (candidates scored, plus ``SOLVE_WORK`` a solve).
    per_date : one batch per date (callable constraints) instead of blocks of dates.

    Returns
    -------
    list of (d_i,) int64 arrays of decision indices; every date lies in one batch, and the
    batches follow each other in date order.
    """
    order = np.lexsort((bw, bd))
    cuts = np.flatnonzero(np.diff(bd[order])) + 1          # first decision of each new date
    if per_date or len(order) == 0:
        return np.split(order, cuts)
    cum = np.cumsum(work[order])
    total = float(cum[-1])
    size = max(total / MAX_BLOCKS, MIN_BLOCK_WORK)
    if total <= size:
        return [order]
    before = np.concatenate([[0.0], cum])[cuts]            # work before each date boundary
    keep = cuts[np.diff(np.floor(np.concatenate([[0.0], before]) / size)) > 0]
    return np.split(order, keep)


def trim(dec: list, ws_bars: list, masks: np.ndarray, close: np.ndarray, ctx, s0: int):
    """Drop every decision at a bar >= ``cut`` (the first date not chosen) and the bars from
    ``cut`` on.

    Returns ``(close[:cut], masks[:, :cut - s0], ws_bars trimmed)``; ``dec`` entries are sliced
    in place and ``ctx.index``/``ctx.U`` cut to the simulated bars. Raises KeyboardInterrupt
    when fewer than 2 bars were chosen (nothing worth returning).
    """
    cut = int(ctx.U[ctx.H["next_date"]])
    if cut - s0 < 2:
        raise KeyboardInterrupt
    new_bars = []
    for D, b in zip(dec, ws_bars):
        keep = b < cut
        K = len(b)
        for k, v in list(D.items()):
            if isinstance(v, np.ndarray) and v.shape[:1] == (K,):
                D[k] = v[keep]
        if "cbounds" in D:
            D["cbounds"] = {k: v for k, v in D["cbounds"].items() if b[k] < cut}
        new_bars.append(b[keep])
    ctx.index = ctx.index[:cut]
    ctx.U = ctx.U[ctx.U < cut]
    return np.ascontiguousarray(close[:cut]), np.ascontiguousarray(masks[:, :cut - s0]), new_bars
