"""Shared plumbing of the figures: the lazy matplotlib import (object-oriented Agg rendering, no
pyplot global state), the palette, the "other" bucket, stacked areas with legends in stacking
order, percent axes, titles in words and saving.

matplotlib is an optional extra (``pip install 'gpusim[plot]'``); nothing here imports it at
module level, so ``import gpusim.plots`` stays cheap and works without it.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpusim.errors import GpusimError

__all__ = [
    "CASH_COLOUR",
    "OTHER_COLOUR",
    "PALETTE",
    "as_frame",
    "bucket_other",
    "describe_params",
    "format_param",
    "make_title",
    "new_figure",
    "palette",
    "param_label",
    "percent_axis",
    "save_figure",
    "stack_areas",
    "stack_limits",
]

DPI = 120
"""Resolution of every PNG (pixels per inch)."""

# tab20 without its grey pair, dark shades first then light shades in an order where no two
# neighbours are similar (light blue moved away from light cyan and from dark cyan), then the
# darkest and middle shades of tab20b: 28 distinct colours. Greys are reserved for "other" and
# "cash" so that a bucket is never mistaken for an asset.
_TAB20 = ["#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896",
          "#9467bd", "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7",
          "#bcbd22", "#dbdb8d", "#17becf", "#9edae5"]
_TAB20B = ["#393b79", "#5254a3", "#6b6ecf", "#9c9ede", "#637939", "#8ca252", "#b5cf6b", "#cedb9c",
           "#8c6d31", "#bd9e39", "#e7ba52", "#e7cb94", "#843c39", "#ad494a", "#d6616b", "#e7969c",
           "#7b4173", "#a55194", "#ce6dbd", "#de9ed6"]
_HUES = [0, 1, 2, 3, 4, 5, 6, 8, 9]  # tab20 hue 7 is grey
_LIGHT_HUES = [1, 2, 0, 3, 4, 5, 6, 8, 9]
PALETTE: tuple[str, ...] = tuple(
    [_TAB20[2 * h] for h in _HUES] + [_TAB20[2 * h + 1] for h in _LIGHT_HUES]
    + [_TAB20B[4 * g] for g in range(5)] + [_TAB20B[4 * g + 2] for g in range(5)])
"""28 distinct qualitative colours (no greys); series beyond that share an "other" bucket."""
OTHER_COLOUR = "#7f7f7f"
CASH_COLOUR = "#d9d9d9"
OTHER = "other"
CASH = "cash"


def matplotlib():
    """``(Figure, FigureCanvasAgg)`` imported lazily; a clear error naming the extra if missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise GpusimError("plotting needs matplotlib, which is not installed; "
                          "pip install 'gpusim[plot]'") from None
    return Figure, FigureCanvasAgg


def new_figure(figsize=(10, 5.5)):
    """A new ``Figure`` attached to an Agg canvas (no pyplot, no global state)."""
    Figure, FigureCanvasAgg = matplotlib()
    fig = Figure(figsize=figsize, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path) -> Path:
    """Write ``fig`` as a PNG to ``path`` (parent directories created) and return the Path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    return path


def palette(labels) -> dict:
    """``{label: colour}``: distinct colours by position; ``"other"`` and ``"cash"`` in greys.

    Raises if more than ``len(PALETTE)`` ordinary labels are given (bucket them first with
    :func:`bucket_other`).
    """
    labels = list(labels)
    plain = [lab for lab in labels if str(lab) not in (OTHER, CASH)]
    if len(plain) > len(PALETTE):
        raise GpusimError(f"{len(plain)} series but only {len(PALETTE)} distinct colours; "
                          "bucket the smallest into 'other' first")
    colours = dict(zip(plain, PALETTE))
    for lab in labels:
        if str(lab) == OTHER:
            colours[lab] = OTHER_COLOUR
        elif str(lab) == CASH:
            colours[lab] = CASH_COLOUR
    return colours


def bucket_other(frame: pd.DataFrame, max_series: int = 20) -> pd.DataFrame:
    """Keep at most ``max_series`` columns: the largest by mean absolute value stay (in their
    original order), the rest are summed into a last column ``"other"``. A ``"cash"`` column is
    always kept and not counted.
    """
    if max_series < 2:
        raise GpusimError(f"max_series={max_series} must be >= 2 (one series and 'other')")
    cash = [c for c in frame.columns if str(c) == CASH]
    assets = frame.drop(columns=cash)
    if assets.shape[1] <= max_series:
        return frame
    size = assets.abs().mean()
    keep = set(size.sort_values(ascending=False, kind="stable").index[: max_series - 1])
    kept = [c for c in assets.columns if c in keep]
    out = assets[kept].copy()
    out[OTHER] = assets.drop(columns=kept).sum(axis=1)
    for c in cash:
        out[c] = frame[c]
    return out


def as_frame(name: str, x, *, min_rows: int = 1) -> pd.DataFrame:
    """Check that ``x`` is a non-empty numeric DataFrame (a Series becomes one column)."""
    if isinstance(x, pd.Series):
        x = x.to_frame()
    if not isinstance(x, pd.DataFrame):
        raise GpusimError(f"{name} must be a pandas DataFrame, got {type(x).__name__}")
    if x.shape[1] == 0 or x.shape[0] < min_rows:
        raise GpusimError(f"{name} needs at least {min_rows} row(s) and one column, got shape "
                          f"{x.shape}")
    try:
        return x.astype(float)
    except (TypeError, ValueError):
        raise GpusimError(f"{name} must hold numbers only") from None


def percent_axis(axis, decimals=None) -> None:
    """Format an x or y ``Axis`` as percentages of 1 (0.05 -> 5%)."""
    from matplotlib.ticker import PercentFormatter

    axis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=decimals))


def stack_areas(ax, x, frame: pd.DataFrame, colours: Mapping, *, step: str | None = None,
                legend_loc="upper left", legend_anchor=(1.0, 1.0), extra_handles=()) -> list:
    """Stacked areas of the columns of ``frame`` (first column at the bottom) and a legend in the
    order the eye sees the stack (top first).

    Positive parts stack upward from 0 and negative parts downward (short positions stay
    readable). ``step="post"`` draws piecewise-constant areas (weights held between dates).
    Returns the legend labels, top of the stack first.
    """
    from matplotlib.patches import Patch

    vals = np.nan_to_num(frame.to_numpy(dtype=float), nan=0.0)
    pos_base = np.zeros(len(x))
    neg_base = np.zeros(len(x))
    for j, col in enumerate(frame.columns):
        v = vals[:, j]
        p, n = np.clip(v, 0, None), np.clip(v, None, 0)
        for base, part in ((pos_base, p), (neg_base, n)):
            if np.any(part != 0):
                ax.fill_between(x, base, base + part, step=step, facecolor=colours[col],
                                edgecolor="white", linewidth=0.3, label=str(col))
                base += part
    handles = [Patch(facecolor=colours[c], edgecolor="white", label=str(c))
               for c in reversed(list(frame.columns))]
    handles += list(extra_handles)
    ncol = 1 if len(handles) <= 24 else 2
    ax.legend(handles=handles, loc=legend_loc, bbox_to_anchor=legend_anchor, fontsize=8,
              ncol=ncol, frameon=False)
    return [h.get_label() for h in handles[: frame.shape[1]]]


def stack_limits(frame: pd.DataFrame, tol: float = 1e-6) -> tuple[float, float]:
    """Y limits of a stack of shares: [0, 1] unless shorts or leverage go beyond (by > tol)."""
    lo = float(frame.clip(upper=0).sum(axis=1).min())
    hi = float(frame.clip(lower=0).sum(axis=1).max())
    return (lo if lo < -tol else 0.0), (hi if hi > 1.0 + tol else 1.0)


# ---- titles in words ----

_RULES = {"D": "daily", "W": "weekly", "M": "monthly", "Q": "quarterly", "Y": "yearly"}
_WORDS = {"rebalance": "rebalancing", "every": "rebalancing", "threshold": "drift band",
          "fees": "fees", "lookback": "lookback", "num_tests": "candidates", "weights": "weights",
          "capital": "capital", "shadow_cost": "shadow cost", "buffer": "buffer",
          "relative": "relative band"}


def _pct(v: float) -> str:
    return f"{v * 100:.4g}%"


def _num(v: float) -> str:
    """Compact number: 100000 -> 100k, 2.5e6 -> 2.5M, 0.5 -> 0.5."""
    a = abs(v)
    for div, suffix in ((1e9, "bn"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{v / div:.4g}{suffix}"
    return f"{v:.4g}"


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _rule(v, params: Mapping | None = None) -> str:
    if _is_missing(v) or str(v).lower() == "never":
        banded = params is not None and not _is_missing(params.get("threshold"))
        return "no scheduled rebalancing" if banded else "buy and hold"
    if isinstance(v, (int, np.integer)) or str(v).isdigit():
        k = int(v)
        return "rebalancing every bar" if k == 1 else f"rebalancing every {k} bars"
    if str(v).upper() in _RULES:
        return f"{_RULES[str(v).upper()]} rebalancing"
    if str(v) == "mask":
        return "rebalancing on given dates"
    return f"rebalancing {v}"


def format_param(name: str, value: Any, params: Mapping | None = None) -> str:
    """One parameter in words, e.g. ``("threshold", 0.05)`` -> ``"5% band"``.

    Known names: rebalance/every, threshold (``relative=True`` in ``params`` makes it a relative
    band), fees, weights, lookback, num_tests, capital, shadow_cost, buffer; anything else
    reads ``"name value"``.
    """
    n = str(name)
    if n in ("rebalance", "every"):
        return _rule(value, params)
    if n == "threshold":
        if _is_missing(value):
            return "no drift band"
        rel = " relative" if params and params.get("relative") else ""
        return f"{_pct(float(value))}{rel} band"
    if n == "fees":
        return "no fees" if not value else f"{_pct(float(value))} fees"
    if n == "weights":
        return f"weights {value}" if isinstance(value, (int, np.integer)) else f"{value} weights"
    if n == "lookback":
        return "all past returns" if _is_missing(value) else f"{int(value)}-bar lookback"
    if n == "num_tests":
        return f"{int(value):,} candidates"
    if n == "init_cash":
        return f"initial cash {_num(float(value))}"
    if n == "capital":
        return f"capital {_num(float(value))}"
    if n == "shadow_cost":
        return f"shadow cost {float(value):g}"
    if n == "buffer":
        return "no buffer" if not value else f"{_pct(float(value))} buffer"
    if isinstance(value, (float, np.floating)):
        value = f"{float(value):.4g}"
    return f"{n.replace('_', ' ')} {value}"


def param_label(name: str) -> str:
    """A parameter's name in words, for axis labels (``"threshold"`` -> ``"drift band"``)."""
    return _WORDS.get(str(name), str(name).replace("_", " "))


def describe_params(params: Mapping | None) -> str:
    """Parameters in words, comma separated.

    ``{"rebalance": "M", "threshold": 0.05, "fees": 0.001}`` ->
    ``"monthly rebalancing, 5% band, 0.1% fees"``. The ``relative`` flag is folded into the
    threshold; a missing threshold is left out unless it is the only parameter, and so is
    ``init_cash`` when it is 1 (values are then fractions of the initial capital).
    """
    if not params:
        return ""
    parts = []
    for k, v in params.items():
        if (k == "relative" or (k == "threshold" and _is_missing(v) and len(params) > 1)
                or (k == "init_cash" and v == 1)):
            continue
        parts.append(format_param(k, v, params))
    return ", ".join(parts)


def make_title(title: str | None = None, params: Mapping | None = None, width: int = 90) -> str:
    """The title of a figure: ``title``, then the parameters in words on the next line(s)."""
    lines = [t for t in (title, describe_params(params)) if t]
    return "\n".join(textwrap.fill(t, width) for t in lines)
