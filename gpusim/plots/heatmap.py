"""Heatmap of one metric over two swept parameters (levels of a result's MultiIndex), the other
levels aggregated away.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from gpusim.errors import GpusimError
from gpusim.plots._common import (
    format_param,
    make_title,
    new_figure,
    param_label,
    percent_axis,
    save_figure,
)

__all__ = ["ANNOTATE_MAX", "heatmap_figure", "heatmap_table", "metric_label", "plot_heatmap"]

ANNOTATE_MAX = 150
"""Cells are annotated with their values when the table has at most this many cells."""

LOWER_IS_BETTER = frozenset({"volatility", "expected_volatility", "turnover", "fees_paid",
                             "n_rebalances", "avg_tracking_error", "tracking_error", "costs",
                             "annual_cost", "contracts_per_year"})
"""Metrics drawn with the reversed colour map, so that the bright end is always the good end."""

_METRIC_WORDS = {"sharpe": "Sharpe ratio", "sortino": "Sortino ratio", "calmar": "Calmar ratio",
                 "cagr": "CAGR", "total_return": "total return", "max_drawdown": "max drawdown",
                 "volatility": "volatility (annualised)",
                 "expected_return": "expected return (annualised)",
                 "expected_volatility": "expected volatility (annualised)",
                 "mean_return": "mean return (annualised)", "turnover": "turnover (per year)",
                 "fees_paid": "fees paid (fraction of capital)",
                 "n_rebalances": "number of rebalances",
                 "final_value": "final value", "gap": "gap (best found / exact optimum)",
                 "avg_tracking_error": "average tracking error",
                 "costs": "costs (fraction of capital)",
                 "annual_cost": "costs per year", "contracts_per_year": "contracts traded per year"}
_PERCENT = frozenset({"cagr", "total_return", "max_drawdown", "volatility", "expected_return",
                      "expected_volatility", "mean_return", "fees_paid", "costs", "annual_cost",
                      "avg_tracking_error", "tracking_error"})


def metric_label(metric: str) -> str:
    """A metric's name in words (``"sharpe"`` -> ``"Sharpe ratio"``)."""
    return _METRIC_WORDS.get(metric, metric.replace("_", " "))


def heatmap_table(metrics: pd.DataFrame, metric: str, x: str, y: str,
                  agg: str | Callable = "max") -> pd.DataFrame:
    """The (y values x x values) table drawn by :func:`plot_heatmap`.

    ``metrics[metric]`` grouped by the levels ``y`` and ``x`` and aggregated with ``agg`` over
    every other level (NaN values skipped); rows and columns in the order the values first
    appear in the index.
    """
    if not isinstance(metrics, pd.DataFrame):
        raise GpusimError(f"metrics must be a DataFrame, got {type(metrics).__name__}")
    if metric not in metrics.columns:
        raise GpusimError(f"metric {metric!r} is not a column of metrics; choose from "
                          f"{list(metrics.columns)}")
    names = [n for n in metrics.index.names if n is not None]
    for which, lev in (("x", x), ("y", y)):
        if lev not in names:
            raise GpusimError(f"{which}={lev!r} is not an index level; levels: {names}")
    if x == y:
        raise GpusimError(f"x and y must be two different levels, got {x!r} twice")
    idx = metrics.index
    order = {lev: pd.unique(idx.get_level_values(lev)) for lev in (x, y)}
    s = pd.to_numeric(metrics[metric], errors="coerce")
    keys = [idx.get_level_values(y), idx.get_level_values(x)]
    # dropna=False keeps NaN labels (e.g. "no threshold") as their own row or column
    table = s.groupby(keys, sort=False, dropna=False).agg(agg).unstack(1)
    return table.reindex(index=order[y], columns=order[x])


def _tick(name: str, value) -> str:
    """A level value in words without the level's name (the axis label says it)."""
    if isinstance(value, float) and np.isnan(value) and name == "threshold":
        return "none"
    if name in ("fees", "buffer") and value == 0:
        return "0%"
    text = format_param(name, value)
    for word in (param_label(name), "band", name.replace("_", " ")):
        text = text.replace(f" {word}", "").replace(f"{word} ", "")
    return text or str(value)


def _cell(value: float, metric: str) -> str:
    if not np.isfinite(value):
        return ""
    if metric in _PERCENT:
        return f"{value:.1%}"
    return f"{value:.3g}" if abs(value) < 1e4 else f"{value:,.0f}"


def heatmap_figure(metrics: pd.DataFrame, metric: str, x: str, y: str,
                   agg: str | Callable = "max", *, title=None, params: Mapping | None = None,
                   cmap: str | None = None):
    """The figure of :func:`plot_heatmap` (a matplotlib ``Figure``, not saved)."""
    table = heatmap_table(metrics, metric, x, y, agg)
    vals = table.to_numpy(dtype=float)
    ny, nx = vals.shape
    fig = new_figure((min(3.0 + 0.9 * nx, 14.0), min(2.2 + 0.5 * ny, 10.0)))
    ax = fig.add_subplot()
    from matplotlib import colormaps

    if cmap is None:
        cmap = "viridis_r" if metric in LOWER_IS_BETTER else "viridis"
    cmap = colormaps.get_cmap(cmap).with_extremes(bad="#eeeeee")  # missing cells light grey
    im = ax.imshow(np.ma.masked_invalid(vals), cmap=cmap, aspect="auto", origin="lower",
                   interpolation="nearest")
    xticks = [_tick(x, v) for v in table.columns]
    tilt = nx * max(map(len, xticks)) > 60
    ax.set_xticks(range(nx), xticks, rotation=30 if tilt else 0, ha="right" if tilt else "center")
    ax.set_yticks(range(ny), [_tick(y, v) for v in table.index])
    ax.set_xlabel(param_label(x))
    ax.set_ylabel(param_label(y))
    others = [n for n in metrics.index.names if n not in (x, y) and n is not None
              and metrics.index.get_level_values(n).nunique(dropna=False) > 1]
    how = agg if isinstance(agg, str) else getattr(agg, "__name__", "aggregate")
    cbar = fig.colorbar(im, ax=ax)
    cbar.set_label(metric_label(metric))
    if metric in _PERCENT:
        percent_axis(cbar.ax.yaxis)
    if nx * ny <= ANNOTATE_MAX and np.isfinite(vals).any():
        norm = im.norm
        for i in range(ny):
            for j in range(nx):
                v = vals[i, j]
                if np.isfinite(v):
                    r, g, b, _ = im.cmap(norm(v))
                    dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.55
                    ax.text(j, i, _cell(v, metric), ha="center", va="center", fontsize=8,
                            color="white" if dark else "black")
    head = title or f"{metric_label(metric)} by {param_label(y)} and {param_label(x)}"
    head = head[:1].upper() + head[1:]
    if others:
        head += f" ({how} over {', '.join(param_label(o) for o in others)})"
    ax.set_title(make_title(head, params, width=70), fontsize=10)
    fig.tight_layout()
    return fig


def plot_heatmap(path, metrics: pd.DataFrame, metric: str, x: str, y: str,
                 agg: str | Callable = "max", *, title=None, params: Mapping | None = None,
                 cmap: str | None = None) -> Path:
    """Heatmap of one metric over two swept parameters, saved as a PNG.

    Parameters
    ----------
    path : str or Path
        Output file (PNG); parent directories are created.
    metrics : DataFrame, shape (C, M)
        One row per combination, indexed by a MultiIndex of the swept levels (e.g.
        ``BacktestResult.metrics``: weights, rebalance, threshold, fees), one column per metric.
    metric : str
        The column to draw; the colour bar is named after it in words.
    x, y : str
        Index levels on the horizontal and vertical axes (values in the order they first appear).
    agg : str or callable
        How the rows sharing an (x, y) cell are combined over the other levels: ``"max"``,
        ``"min"``, ``"mean"``, ``"median"`` or any pandas ``groupby.agg`` argument. The title
        says which.
    title : str, optional
        First line of the title (default: "<metric> by <y> and <x> (<agg> over <others>)").
    params : dict, optional
        Fixed parameters, shown in words under the title.
    cmap : str, optional
        Colour map; default ``viridis``, reversed for metrics where lower is better
        (:data:`LOWER_IS_BETTER`), so bright always means good.

    Returns
    -------
    Path
        The written file. Cells are annotated with their values when there are at most
        :data:`ANNOTATE_MAX`; missing cells are light grey.
    """
    fig = heatmap_figure(metrics, metric, x, y, agg, title=title, params=params, cmap=cmap)
    return save_figure(fig, path)
