"""Tables for people: every command prints its tables through :func:`format_table` (rounded,
missing parameters in words); files keep full precision.

Each float column gets one number of decimals, chosen from its largest magnitude so that it
shows about :data:`SIGNIFICANT` significant digits (at most :data:`MAX_DECIMALS` decimals, no
exponent: a fee of 3.06e-05 prints as ``0.000031``); whole-number columns print as integers.
A missing parameter (``None`` / NaN in an index level or a parameter column) prints as a word:
``lookback`` -> ``all`` (the whole history), anything else -> ``none``; a missing metric
prints as ``n/a``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["MISSING_WORDS", "format_table", "round_for_people"]

SIGNIFICANT = 4
"""Significant digits shown of each float column's largest value."""
MAX_DECIMALS = 6
"""Most decimals shown (smaller values print as 0.000000)."""
MISSING_WORDS = {"lookback": "all", "window": "all", "threshold": "none", "buffer": "none"}
"""What a missing value means in a parameter of that name (default ``"none"`` in index levels
and text columns; a missing metric prints as ``n/a``)."""


def _decimals(values: np.ndarray) -> int:
    """Decimals that show :data:`SIGNIFICANT` digits of the largest finite magnitude."""
    finite = np.abs(values[np.isfinite(values)])
    if finite.size == 0 or finite.max() == 0:
        return 0 if finite.size else 2
    if np.all(finite == np.round(finite)) and finite.max() >= 1:
        return 0
    top = math.floor(math.log10(finite.max()))
    return int(min(MAX_DECIMALS, max(0, SIGNIFICANT - 1 - top)))


def _column_text(s: pd.Series, name, decimals: int | None = None) -> pd.Series:
    word = MISSING_WORDS.get(str(name), "none")
    if pd.api.types.is_bool_dtype(s):
        return s.astype(str)
    if pd.api.types.is_float_dtype(s):
        word = MISSING_WORDS.get(str(name), "n/a")
        d = _decimals(s.to_numpy(dtype=np.float64)) if decimals is None else decimals
        return s.map(lambda x: word if x is None or (isinstance(x, float) and math.isnan(x))
                     else f"{x:,.{d}f}")
    if pd.api.types.is_integer_dtype(s):
        big = len(s) > 0 and int(s.abs().max()) >= 100_000   # one rule for the whole column
        return s.map(lambda x: f"{x:,}" if big else str(x))
    return s.map(lambda x: word if x is None or (isinstance(x, float) and math.isnan(x))
                 else str(x))


def _index_text(idx: pd.Index) -> pd.Index:
    if isinstance(idx, pd.MultiIndex):
        levels = [_index_text(idx.get_level_values(i)) for i in range(idx.nlevels)]
        return pd.MultiIndex.from_arrays(levels, names=idx.names)
    if pd.api.types.is_float_dtype(idx) or idx.dtype == object:
        word = MISSING_WORDS.get(str(idx.name), "none")
        return pd.Index([word if v is None or (isinstance(v, float) and math.isnan(v))
                         else (f"{v:g}" if isinstance(v, float) else str(v)) for v in idx],
                        name=idx.name, dtype=object)
    return idx


def round_for_people(df: pd.DataFrame, groups=()) -> pd.DataFrame:
    """``df`` as text cells: floats rounded per column, missing parameters in words (see the
    module docstring). The columns of each list in ``groups`` (e.g. the weights) share one
    number of decimals. Same shape, index and columns; for printing only.
    """
    shared = {}
    for g in groups:
        g = [c for c in g if c in df.columns and pd.api.types.is_float_dtype(df[c])]
        if g:
            d = _decimals(df[g].to_numpy(dtype=np.float64).ravel())
            shared.update(dict.fromkeys(g, d))
    out = pd.DataFrame({c: _column_text(df[c], c, shared.get(c)) for c in df.columns},
                       index=df.index)
    out.columns = df.columns
    out.index = _index_text(df.index)
    return out


def format_table(df: pd.DataFrame | pd.Series, *, width: int = 200,
                 max_rows: int | None = None, groups=()) -> str:
    """The text of a table for people: :func:`round_for_people` (``groups`` of columns share
    their decimals), right-aligned, every column shown (wrapped at ``width`` characters), at
    most ``max_rows`` rows (default: all).
    """
    if isinstance(df, pd.Series):
        df = df.to_frame()
    with pd.option_context("display.width", width, "display.max_columns", None,
                           "display.max_rows", max_rows, "display.max_colwidth", 60):
        return round_for_people(df, groups).to_string(max_rows=max_rows, justify="right")
