"""Specs that change over time (DESIGN §6): target schedules and drift bands.

A **target schedule** is a table dates x symbols: row d is the target from the first bar >= d
on, and that bar rebalances to it (a row of NaN means no change). A DataFrame with a
DatetimeIndex given as ``weights=`` is a schedule; a table whose index is not dates is a set of
constant-target portfolios, one per row. A table that could be either (row labels that look
like dates but are not a DatetimeIndex) is an error naming :class:`Schedule` and
:class:`Portfolios`, which say which one is meant.

A **drift band** value (``threshold=``, ``threshold_abs=``) is a number, a vector per asset
(array or dict/Series by symbol; a symbol left out has no band), a Series by date (a band that
changes over time; none before its first date) or a DataFrame dates x symbols; job files give
a table by symbol or a dated band file (:func:`band_arg`, :func:`read_bands`). Bands are
``"absolute"`` (|a_j - w_j| >= tau_j), ``"relative"`` (>= tau_j w_j) or ``"hybrid"``
(>= max(tau_rel_j w_j, tau_abs_j)).

Both resolve to stacked rows and switch bars: the kernels' ``(W, wid, wnxt)`` and
``(B, bid, bnxt)`` (:mod:`gpusim.backtest.steps`).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gpusim.errors import GpusimError
from gpusim.grid import Param
from gpusim.specs import Weights, _align, _check_vectors, resolve_weights
from gpusim.validate import date_text, listing, number, py_scalar

__all__ = ["BANDS", "NEVER", "Portfolios", "ResolvedWeights", "Schedule", "band_arg",
           "band_table", "band_value", "read_bands", "read_schedule", "resolve_initial",
           "resolve_targets"]

NEVER = np.iinfo(np.int64).max
"""A switch bar that never comes (the last row of a schedule)."""

BANDS = ("absolute", "relative", "hybrid")
_DATE_TEXT = re.compile(r"^\s*\d{4}-\d{1,2}-\d{1,2}")


@dataclass(frozen=True)
class Schedule:
    """Targets that change over time: ``table`` dates x symbols (any date-like index), row d in
    force from the first bar >= d; ``name`` labels it in a ``Param`` sweep.
    """

    table: pd.DataFrame
    name: Any = None

    def __post_init__(self):
        if not isinstance(self.table, pd.DataFrame):
            raise GpusimError(f"Schedule(table=...) takes a DataFrame (dates x symbols), got "
                              f"{type(self.table).__name__}")


@dataclass(frozen=True)
class ResolvedWeights:
    """Weights already resolved (e.g. one piece of a sweep's level), with the level's name and
    zip key: passed through by :func:`resolve_targets` without a DataFrame round trip.
    """

    weights: Weights
    name: str | None = None
    level: Any = None


@dataclass(frozen=True)
class Portfolios:
    """Constant-target portfolios, one per row of ``table`` (symbols as columns), whatever its
    row labels are (dates included); the labels name the ``weights`` level.
    """

    table: pd.DataFrame


def _looks_dated(index: pd.Index) -> bool:
    """Row labels that are dates but not a DatetimeIndex (text such as '2020-01-31', date or
    Timestamp objects).
    """
    if isinstance(index, pd.DatetimeIndex) or len(index) == 0 or index.dtype.kind in "iufb":
        return False
    x = index[0]
    return isinstance(x, (_dt.date, np.datetime64, pd.Period)) or (
        isinstance(x, str) and bool(_DATE_TEXT.match(x)))


def _naive(index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    return index.tz_localize(None) if index.tz is not None else index


def _dates(labels, what: str) -> pd.DatetimeIndex:
    try:
        d = pd.DatetimeIndex(pd.to_datetime(labels))
    except (TypeError, ValueError) as exc:
        raise GpusimError(f"{what}: cannot read the row labels as dates ({exc})") from None
    if d.hasnans:
        raise GpusimError(f"{what}: a row label is not a date (NaT)")
    if d.has_duplicates:
        raise GpusimError(f"{what}: the date {date_text(d[d.duplicated()][0])} appears twice; "
                          "give one row per date")
    return d


def _bars(dates: pd.DatetimeIndex, index: pd.Index, what: str) -> np.ndarray:
    """First bar >= each date (T when after the last bar)."""
    if not isinstance(index, pd.DatetimeIndex):
        raise GpusimError(f"{what}: dated rows need prices with a DatetimeIndex")
    return np.searchsorted(_naive(index).asi8, _naive(dates).asi8, side="left")


def _in_force(rows: np.ndarray, bars: np.ndarray, T: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows before the end, the last one of each bar kept (sorted by date beforehand)."""
    keep = bars < T
    rows, bars = rows[keep], bars[keep]
    last = np.r_[bars[1:] != bars[:-1], True] if bars.size else bars.astype(bool)
    return rows[last], bars[last]


def schedule_rows(table: pd.DataFrame, symbols: list[str], index: pd.Index,
                  what: str = "weights") -> tuple[np.ndarray, np.ndarray]:
    """``(rows (S, A), bars (S,))`` of a target schedule on the bars of ``index``: row k from
    bar ``bars[k]`` on (``bars[0] == 0``); NaN rows dropped (no change), several rows before
    one bar: the last wins.
    """
    pos = _align(table.columns, symbols)
    dates = _dates(table.index, what)
    vals = table.to_numpy(dtype=float)[:, pos]
    order = np.argsort(dates.asi8, kind="stable")
    dates, vals = dates[order], vals[order]
    empty = np.isnan(vals).all(axis=1)
    part = np.isnan(vals).any(axis=1) & ~empty
    if part.any():
        raise GpusimError(f"{what}: the schedule row {date_text(dates[np.argmax(part)])} has "
                          "NaN for some symbols only; give every weight (0 for none), or a "
                          "whole row of NaN for no change")
    dates, vals = dates[~empty], vals[~empty]
    if not len(dates):
        raise GpusimError(f"{what}: the schedule has no row of weights")
    _check_vectors(vals, [date_text(d) for d in dates], symbols)
    bars = _bars(dates, index, what)
    if bars[0] > 0:
        raise GpusimError(f"{what}: the schedule starts on {date_text(dates[0])}, after the "
                          f"first bar {date_text(index[0])}, so no target is in force before "
                          f"it; add a row dated on or before {date_text(index[0])}, or start "
                          "the prices at the schedule")
    return _in_force(vals, bars, len(index))


def _read_dated(path, what: str, form: str) -> tuple[pd.DataFrame, Any]:
    """The table of a CSV or Parquet file indexed by its first column, read as dates
    (``form`` says in messages what the columns after the dates are).
    """
    from pathlib import Path

    p = Path(str(path))
    if not p.is_file():
        raise GpusimError(f"{what}: {str(path)!r} is not a file; give a CSV/Parquet table with "
                          f"a first column of dates and {form}")
    try:
        df = (pd.read_parquet(p) if p.suffix.lower() in (".parquet", ".pq")
              else pd.read_csv(p))
    except Exception as exc:
        raise GpusimError(f"{what}: cannot read {str(path)!r}: {exc}".splitlines()[0]) from None
    if (len(df.columns) < 2 and not isinstance(df.index, pd.DatetimeIndex)) or len(df) == 0:
        raise GpusimError(f"{what}: {str(path)!r} needs a first column of dates, {form} and at "
                          "least one row")
    if not isinstance(df.index, pd.DatetimeIndex):
        df = df.set_index(df.columns[0])
    df.index = _dates(df.index, f"{what} {p.name}")
    df.columns = [str(c) for c in df.columns]
    return df, p


def read_schedule(path, what: str = "--schedule") -> Schedule:
    """A :class:`Schedule` from a CSV or Parquet file: a first column of dates, then one column
    per symbol (a row of empty cells: no change at that date).
    """
    df, p = _read_dated(path, what, "one column per symbol")
    return Schedule(df, name=p.stem)


def read_bands(path, what: str = "threshold") -> pd.Series | pd.DataFrame:
    """A dated band (``threshold=``, ``threshold_abs=``) from a CSV or Parquet file.

    The first column holds dates; then either one column (the band of every asset: a Series
    by date) or one column per symbol (a DataFrame dates x symbols; a symbol left out, or an
    empty cell, has no band). Each row is in force from the first bar >= its date; there is
    no band before the first date. The values are checked by :func:`band_value`; a Series
    is named after the file's stem.
    """
    df, p = _read_dated(path, what, "one band column (every asset) or one column per symbol")
    bad = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        raise GpusimError(f"{what}: {str(path)!r} has column(s) {listing(bad, 8)} that are not "
                          "numbers; give one band per cell (e.g. 0.05), an empty cell for none")
    return df.iloc[:, 0].astype(float).rename(p.stem) if len(df.columns) == 1 else \
        df.astype(float)


def band_arg(v, what: str = "threshold") -> Any:
    """The :func:`gpusim.backtest` band argument of a job-file value (``threshold``,
    ``threshold_abs``): ``"none"``/``"off"``/``""`` -> None, a table by symbol -> dict (a
    per-asset band), ``{file = PATH}`` -> :func:`read_bands` (a dated band); numbers, lists
    (one band per symbol), Series and DataFrames as they are.
    """
    from collections.abc import Mapping

    if isinstance(v, str) and v.strip().lower() in ("none", "off", ""):
        return None
    if not isinstance(v, Mapping):
        return v
    if "file" in v:
        extra = sorted(set(v) - {"file"})
        if extra:
            raise GpusimError(f"{what}: unknown key(s) {extra} next to file; give "
                              "{file = \"bands.csv\"} (dates, then one band column or one "
                              "column per symbol)")
        return read_bands(str(v["file"]), what)
    out = {}
    for k, x in v.items():
        if isinstance(x, (bool, str)) or not isinstance(x, (int, float, np.number)):
            raise GpusimError(f"{what}: the band of {k!r} is {x!r}; give a number per symbol, "
                              "e.g. {SPY = 0.05, TLT = 0.10} (a symbol left out has no band), "
                              "or {file = \"bands.csv\"} for dated bands")
        out[str(k)] = float(x)
    if not out:
        raise GpusimError(f"{what}: an empty table has no band; give a number per symbol, e.g. "
                          "{SPY = 0.05}, or none")
    return out


def _as_schedule(v) -> Schedule | None:
    if isinstance(v, Schedule):
        return v
    if isinstance(v, pd.DataFrame) and isinstance(v.index, pd.DatetimeIndex):
        return Schedule(v)
    if isinstance(v, pd.DataFrame) and _looks_dated(v.index):
        raise GpusimError(
            f"weights: the row labels look like dates ({listing(v.index[:3], 3)}) but are not a "
            "DatetimeIndex; say what the table is: weights=gpusim.Schedule(df) for targets "
            "that change over time (row d from the first bar >= d), or "
            "weights=gpusim.Portfolios(df) for constant portfolios, one per row")
    return None


def resolve_targets(weights, symbols: list[str], index: pd.Index
                    ) -> tuple[Weights, str | None, Any]:
    """:func:`gpusim.specs.resolve_weights` with schedules: (source, level name, zip key).

    A :class:`Schedule`, a DataFrame with a DatetimeIndex, or a ``Param`` with such values
    gives one level entry per schedule (a constant vector in the same Param is a schedule of
    one row); :class:`Portfolios` forces constant portfolios.
    """
    if isinstance(weights, ResolvedWeights):
        return weights.weights, weights.name, weights.level
    name = level = None
    values = weights
    if isinstance(weights, Param):
        name, level, values = weights.name, weights.level, weights.values
    if isinstance(values, Portfolios):
        return resolve_weights(Param(values.table, name, level), symbols)
    one = _as_schedule(values)
    if one is not None:
        values = [one]
    elif isinstance(values, pd.DataFrame) or not isinstance(weights, Param):
        return resolve_weights(weights, symbols)
    values = list(values)
    scheds = [_as_schedule(v) for v in values]
    if not any(s is not None for s in scheds):
        return resolve_weights(weights, symbols)
    labels, blocks, bars = [], [], []
    for i, (v, s) in enumerate(zip(values, scheds)):
        if s is None:
            one_w, _, _ = resolve_weights(Param([v]), symbols)
            rows, b = one_w.dense, np.zeros(1, dtype=np.int64)
            labels.append(i if one_w.labels[0] == 0 else one_w.labels[0])
        else:
            rows, b = schedule_rows(s.table, symbols, index)
            labels.append(i if s.name is None else s.name)
        blocks.append(rows)
        bars.append(b)
    first = np.cumsum([0] + [b.size for b in bars])
    nxt = np.concatenate([np.r_[b[1:], NEVER] for b in bars]).astype(np.int64)
    W = np.ascontiguousarray(np.concatenate(blocks))
    return Weights(pd.Index(labels, tupleize_cols=False), W, first=first, nxt=nxt), name, level


# --------------------------------------------------------------------------------------------
# Drift bands
# --------------------------------------------------------------------------------------------

def _tau(x, what: str) -> float:
    v = float(py_scalar(x))
    if math.isnan(v):
        return v
    if not (v > 0 and math.isfinite(v)):
        raise GpusimError(f"{what}: band {py_scalar(x)!r} must be > 0 (e.g. 0.05), or NaN for "
                          "no band on that asset")
    return v


def band_value(x, symbols: list[str], index: pd.Index, what: str = "threshold"
               ) -> tuple[np.ndarray, np.ndarray]:
    """``(rows (S, A), bars (S,))`` of one band value (NaN: no band on that asset; ``bars[0]
    == 0``): None, a number, a vector per asset (array, or dict/Series by symbol), a Series by
    date, or a DataFrame dates x symbols.
    """
    A = len(symbols)
    if x is None:
        return np.full((1, A), np.nan), np.zeros(1, dtype=np.int64)
    if isinstance(x, dict):
        x = pd.Series(x, dtype=float)
    dated = isinstance(x, (pd.Series, pd.DataFrame)) and isinstance(x.index, pd.DatetimeIndex)
    if dated:
        dates = _dates(x.index, what)
        if isinstance(x, pd.DataFrame):
            unknown = [c for c in map(str, x.columns) if c not in symbols]
            if unknown:
                raise GpusimError(f"{what}: {listing(unknown, 8)} not in the prices")
            rows = x.rename(columns=str).reindex(columns=symbols).to_numpy(dtype=float)
        else:
            rows = np.repeat(x.to_numpy(dtype=float)[:, None], A, axis=1)
        order = np.argsort(dates.asi8, kind="stable")
        rows, bars = _in_force(rows[order], _bars(dates[order], index, what), len(index))
        if not bars.size or bars[0] > 0:                  # no band before the first date
            rows = np.r_[np.full((1, A), np.nan), rows]
            bars = np.r_[0, bars]
    elif isinstance(x, pd.Series):
        unknown = [c for c in map(str, x.index) if c not in symbols]
        if unknown:
            raise GpusimError(f"{what}: {listing(unknown, 8)} not in the prices; give bands by "
                              f"symbol ({listing(symbols, 8)})")
        rows = x.rename(index=str).reindex(symbols).to_numpy(dtype=float)[None, :]
        bars = np.zeros(1, dtype=np.int64)
    elif isinstance(x, (list, tuple, np.ndarray)):
        rows = np.asarray(x, dtype=float).reshape(1, -1)
        if np.ndim(x) != 1 or rows.shape[1] != A:
            raise GpusimError(f"{what}: a vector of bands needs one value per symbol ({A}); "
                              f"to sweep several bands use Param([...])")
        bars = np.zeros(1, dtype=np.int64)
    else:
        v = number(x, what, expect="a band: a number > 0, a vector or dict by symbol, a Series "
                   "by date, or None")
        if not (v > 0 and math.isfinite(v)):
            raise GpusimError(f"{what}={x!r} must be > 0 (a drift band such as 0.05); use None "
                              "for no threshold rule")
        rows = np.full((1, A), v)
        bars = np.zeros(1, dtype=np.int64)
    for v in rows.ravel():
        _tau(v, what)
    return np.ascontiguousarray(rows), np.asarray(bars, dtype=np.int64)


def band_table(band: str, rel: tuple, ab: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Kernel band rows ``(B (S, 2A) = [rel | abs], bnxt (S,))`` of one combination's band.

    ``rel``/``ab``: ``(rows, bars)`` of :func:`band_value` for ``threshold`` and
    ``threshold_abs``. Absolute: lim_j = tau_j; relative: tau_j w_j; hybrid:
    max(tau_rel_j w_j, tau_abs_j); an asset without a band gets rel 0, abs inf.
    """
    bars = np.union1d(rel[1], ab[1]) if band == "hybrid" else rel[1]
    r = rel[0][np.searchsorted(rel[1], bars, side="right") - 1]
    a = ab[0][np.searchsorted(ab[1], bars, side="right") - 1]
    if band == "absolute":
        lo, hi = np.zeros_like(r), np.where(np.isnan(r), np.inf, r)
    elif band == "relative":
        lo, hi = np.nan_to_num(r, nan=0.0), np.where(np.isnan(r), np.inf, 0.0)
    else:
        none = np.isnan(r) & np.isnan(a)
        lo, hi = np.nan_to_num(r, nan=0.0), np.where(none, np.inf, np.nan_to_num(a, nan=0.0))
    B = np.ascontiguousarray(np.concatenate([lo, hi], axis=1))
    return B, np.r_[bars[1:], NEVER].astype(np.int64)


def resolve_initial(weights, symbols: list[str], who: str) -> tuple[Weights, str | None, Any]:
    """:func:`gpusim.specs.resolve_weights` for calls whose ``weights=`` are the initial targets
    (``backtest(alloc=)``, ``simulate``): a schedule (a :class:`Schedule` or a table with dated
    rows) is a one-line error there instead of being read as constant portfolios.
    """
    values = weights.values if isinstance(weights, Param) else weights
    if isinstance(values, Portfolios):
        return resolve_weights(Param(values.table, getattr(weights, "name", None),
                                     getattr(weights, "level", None)), symbols)
    items = list(values) if isinstance(weights, Param) else [values]
    if any(_as_schedule(v) is not None for v in items if not isinstance(v, str)):
        raise GpusimError(
            f"weights: {who} takes the initial targets (a vector, dict, 'equal' or "
            "gpusim.Portfolios(df)); a dated table is a schedule, which only the built-in rules "
            "run: gpusim.backtest(market, weights=schedule, ...), or let the function set the "
            "targets at those dates")
    return resolve_weights(weights, symbols)
