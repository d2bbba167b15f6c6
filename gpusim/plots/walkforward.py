"""Walk-forward figure: the target weights chosen at each rebalance date, held until the next,
as a stacked step area with a marker at every rebalance date.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from gpusim.errors import GpusimError
from gpusim.plots._common import (
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
from gpusim.plots.backtest import rebalance_markers

__all__ = ["plot_weights_over_time", "weights_over_time_figure"]


def _held(weights: pd.DataFrame, end) -> pd.DataFrame:
    """Weights with one more row at ``end`` (repeating the last) so the last period shows."""
    idx = weights.index
    if end is None:
        if len(idx) >= 2 and isinstance(idx, pd.DatetimeIndex):
            end = idx[-1] + pd.Series(idx).diff().median()
        elif len(idx) >= 2:
            end = idx[-1] + np.median(np.diff(np.asarray(idx, dtype=float)))
        else:
            return weights
    if not end > idx[-1]:
        raise GpusimError(f"end={end!r} must come after the last rebalance date {idx[-1]!r}")
    last = weights.iloc[[-1]].copy()
    last.index = pd.Index([end], dtype=idx.dtype) if not isinstance(idx, pd.DatetimeIndex) \
        else pd.DatetimeIndex([end])
    return pd.concat([weights, last])


def weights_over_time_figure(weights: pd.DataFrame, title=None, *, end=None,
                             params: Mapping | None = None, max_series: int = 20):
    """The figure of :func:`plot_weights_over_time` (a matplotlib ``Figure``, not saved)."""
    weights = as_frame("weights", weights)
    if not weights.index.is_monotonic_increasing or weights.index.has_duplicates:
        raise GpusimError("weights: the rebalance dates must be increasing and unique")
    if max_series > len(PALETTE):
        raise GpusimError(f"max_series={max_series}: at most {len(PALETTE)} distinct colours")
    weights = bucket_other(weights, max_series)
    held = _held(weights, end)
    fig = new_figure((11, 5.5))
    ax = fig.add_subplot()
    dates = weights.index
    extra = [h for h in [rebalance_markers(ax, dates)] if h is not None]
    stack_areas(ax, held.index, held, palette(held.columns), step="post", extra_handles=extra)
    ax.set_ylim(*stack_limits(held))
    ax.set_xlim(held.index[0], held.index[-1])
    ax.set_ylabel("target weight")
    percent_axis(ax.yaxis)
    full = make_title(title or f"Weights chosen at {len(dates):,} rebalance dates", params)
    ax.set_title(full, fontsize=10, pad=14)
    fig.tight_layout()
    return fig


def plot_weights_over_time(path, weights: pd.DataFrame, title=None, *, end=None,
                           params: Mapping | None = None, max_series: int = 20) -> Path:
    """Walk-forward target weights over time, held between rebalance dates, saved as a PNG.

    Parameters
    ----------
    path : str or Path
        Output file (PNG); parent directories are created.
    weights : DataFrame, shape (K, A)
        Target weights chosen at each rebalance date (increasing dates x symbols), e.g.
        ``WalkforwardResult.allocations(...)``. Each row is held until the next date: a
        stacked step area, negative weights stacked below 0.
    title : str, optional
        First line of the title (default: "Weights chosen at K rebalance dates").
    end : date, optional
        Where the last row's period ends (e.g. the last date of the market); default one median
        spacing after the last rebalance date.
    params : dict, optional
        Parameters of the combination, shown in words under the title (``{"every": "M",
        "lookback": 252}`` -> "monthly rebalancing, 252-bar lookback").
    max_series : int
        At most this many symbols get their own colour (the largest by mean absolute weight);
        the rest are summed into a grey ``"other"`` band on top.

    Returns
    -------
    Path
        The written file, with ticks (and, when few, dashed lines) at the rebalance dates and a
        legend listing the bands top of the stack first.
    """
    fig = weights_over_time_figure(weights, title, end=end, params=params,
                                   max_series=max_series)
    return save_figure(fig, path)
