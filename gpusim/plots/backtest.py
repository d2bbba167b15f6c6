"""Backtest figures: stacked daily allocations of one combination with its rebalance dates, and
the equity curves and drawdowns of the best k combinations.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from gpusim.errors import GpusimError
from gpusim.plots._common import (
    CASH,
    PALETTE,
    as_frame,
    bucket_other,
    make_title,
    new_figure,
    palette,
    percent_axis,
    save_figure,
    stack_areas,
    stack_limits,
)

__all__ = [
    "MARKER_LINES_MAX",
    "allocations_figure",
    "equity_figure",
    "plot_allocations",
    "plot_equity",
]

MARKER_LINES_MAX = 60
"""Up to this many rebalance dates get a full-height line; more get only ticks on the top edge."""


def rebalance_markers(ax, dates, *, colour="black"):
    """Mark ``dates`` on ``ax``: ticks above the top edge, plus thin lines across the plot when
    there are at most :data:`MARKER_LINES_MAX`. Returns a legend handle (or None).
    """
    from matplotlib.lines import Line2D

    if dates is None or len(dates) == 0:
        return None
    dates = pd.DatetimeIndex(dates) if not isinstance(dates, pd.Index) else dates
    trans = ax.get_xaxis_transform()
    ax.vlines(dates, 1.0, 1.03, transform=trans, colors=colour, linewidths=0.8, clip_on=False,
              gid="rebalance_ticks")
    if len(dates) <= MARKER_LINES_MAX:
        ax.vlines(dates, 0.0, 1.0, transform=trans, colors=colour, linewidths=0.6, alpha=0.45,
                  linestyles=(0, (3, 3)), gid="rebalance_lines")
    return Line2D([], [], color=colour, lw=0.8, ls=(0, (3, 3)),
                  label=f"rebalance ({len(dates):,})")


def allocations_figure(alloc: pd.DataFrame, rebalance_dates=None, title=None, *,
                       params: Mapping | None = None, max_series: int = 20):
    """The figure of :func:`plot_allocations` (a matplotlib ``Figure``, not saved)."""
    alloc = as_frame("alloc", alloc)
    if CASH in alloc.columns and float(alloc[CASH].abs().max()) < 1e-9:
        alloc = alloc.drop(columns=CASH)
    if max_series > len(PALETTE):
        raise GpusimError(f"max_series={max_series}: at most {len(PALETTE)} distinct colours")
    alloc = bucket_other(alloc, max_series)
    fig = new_figure((11, 5.5))
    ax = fig.add_subplot()
    x = alloc.index
    extra = [h for h in [rebalance_markers(ax, rebalance_dates)] if h is not None]
    stack_areas(ax, x, alloc, palette(alloc.columns), extra_handles=extra)
    ax.set_ylim(*stack_limits(alloc))
    ax.set_xlim(x[0], x[-1])
    ax.set_ylabel("share of portfolio value")
    percent_axis(ax.yaxis)
    full = make_title(title, params)
    if full:
        ax.set_title(full, fontsize=10, pad=14)
    fig.tight_layout()
    return fig


def plot_allocations(path, alloc: pd.DataFrame, rebalance_dates=None, title=None, *,
                     params: Mapping | None = None, max_series: int = 20) -> Path:
    """Stacked daily allocations of one portfolio, with its rebalance dates, saved as a PNG.

    Parameters
    ----------
    path : str or Path
        Output file (PNG); parent directories are created.
    alloc : DataFrame, shape (T, A) or (T, A + 1)
        Share of portfolio value per asset on each date (rows sum to 1), columns labelled by
        symbol; an optional ``"cash"`` column is drawn in light grey (dropped when it is zero
        throughout). Negative shares (shorts) stack downward from 0.
    rebalance_dates : DatetimeIndex or array of dates, optional
        Dates on which the portfolio was rebalanced: ticks on the top edge, and dashed lines
        across the plot when there are at most :data:`MARKER_LINES_MAX`.
    title : str, optional
        First line of the title.
    params : dict, optional
        Parameters of the combination, shown in words under the title
        (``{"rebalance": "M", "threshold": 0.05}`` -> "monthly rebalancing, 5% band").
    max_series : int
        At most this many assets get their own colour (the largest by mean share); the rest are
        summed into a grey ``"other"`` band on top.

    Returns
    -------
    Path
        The written file. The legend lists the bands top of the stack first.
    """
    return save_figure(allocations_figure(alloc, rebalance_dates, title, params=params,
                                          max_series=max_series), path)


def _label(col) -> str:
    return ", ".join(map(str, col)) if isinstance(col, tuple) else str(col)


def equity_figure(values: pd.DataFrame, title=None, *, params: Mapping | None = None,
                  logy: bool = False):
    """The figure of :func:`plot_equity` (a matplotlib ``Figure``, not saved)."""
    values = as_frame("values", values, min_rows=2)
    if values.shape[1] > len(PALETTE):
        raise GpusimError(f"values has {values.shape[1]} columns; at most {len(PALETTE)} curves "
                          "are readable in one figure")
    first = values.bfill().iloc[0]
    if not (np.isfinite(first.to_numpy()) & (first.to_numpy() > 0)).all():
        raise GpusimError("values: every column needs a positive first value to normalise by")
    norm = values / first
    dd = norm / norm.cummax() - 1.0
    fig = new_figure((11, 6.5))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    for col, colour in zip(norm.columns, PALETTE):
        s = norm[col].dropna()
        label = f"{_label(col)}: ends at {s.iloc[-1]:.2f}, max drawdown {dd[col].min():.1%}"
        top.plot(s.index, s.to_numpy(), color=colour, lw=1.3, label=label)
        bottom.plot(dd.index, dd[col].to_numpy(), color=colour, lw=1.0)
    top.axhline(1.0, color="black", lw=0.6, alpha=0.5)
    if logy:
        top.set_yscale("log")
    top.set_ylabel("value (start = 1)")
    bottom.set_ylabel("drawdown")
    percent_axis(bottom.yaxis, decimals=0)
    bottom.set_ylim(top=0.0)
    top.grid(True, alpha=0.3)
    bottom.grid(True, alpha=0.3)
    top.set_xlim(norm.index[0], norm.index[-1])
    top.legend(loc="upper left", fontsize=8, frameon=False)
    full = make_title(title, params)
    if full:
        top.set_title(full, fontsize=10)
    fig.tight_layout()
    return fig


def plot_equity(path, values: pd.DataFrame, title=None, *, params: Mapping | None = None,
                logy: bool = False) -> Path:
    """Equity curves (normalised to 1 at the start) and drawdowns of a few portfolios, as a PNG.

    Parameters
    ----------
    path : str or Path
        Output file (PNG); parent directories are created.
    values : DataFrame, shape (T, k)
        Portfolio values (dates x combinations), e.g. the best k of a backtest; column labels
        (tuples are joined with ", ") name the curves. Each column is divided by its first
        finite value. At most ``len(PALETTE)`` columns.
    title : str, optional
        First line of the title.
    params : dict, optional
        Parameters shared by the curves, shown in words under the title.
    logy : bool
        Logarithmic value axis (for long histories).

    Returns
    -------
    Path
        The written file: values on top, drawdowns (value / running maximum - 1) below; the
        legend gives each curve's final multiple and maximum drawdown.
    """
    return save_figure(equity_figure(values, title, params=params, logy=logy), path)
