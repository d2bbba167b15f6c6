r"""The files behind a price table: which files, how each is read, and what each contributes.

Used by :func:`gpusim.data.load.load_prices`. A source is a path, a glob (``'dir/*.csv'``), a
list of them, or a DataFrame. Each file (or frame) becomes one or more *series tables* (dates x
columns) with ascending unique dates; :func:`combine` joins them on the union of their dates.

Symbol names for one-file-per-symbol data (``column=`` names the price column of every file):

- ``symbol_from="name"`` (default): the part of the file names that differs between the files.
  Names (without ``.csv``, ``.csv.gz``, ``.parquet``) are split at ``_``; the parts that every
  file shares at the same place are dropped: ``Binance_BTCUSDT_1h.csv`` and
  ``Binance_ETHUSDT_1h.csv`` give ``BTCUSDT`` and ``ETHUSDT``. A single file, or names with
  different numbers of parts, keep the whole name.
- ``"stem"``: the whole file name without its suffixes.
- ``"re:PATTERN"``: the first group of a regular expression searched in the file name, e.g.
  ``"re:Binance_(\\w+?)USDT"``.
- ``"column:NAME"``: the values of column ``NAME`` (e.g. ``symbol``): one series per distinct
  value, so a long table (date, symbol, close) works too.

Nothing is sorted or de-duplicated unless asked (``sort=True``, ``dedupe=``); what was done is
returned as notes. Errors are :class:`~gpusim.errors.DataError`, one line naming the file.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

import numpy as np
import pandas as pd

from gpusim.data.dates import parse_dates
from gpusim.errors import DataError
from gpusim.validate import date_text, listing

__all__ = [
    "DEDUPE",
    "combine",
    "expand_sources",
    "read_table",
    "series_tables",
    "symbol_names",
]

DATE_NAMES = ("date", "datetime", "time", "timestamp")
DEDUPE = (False, "exact", "first", "last")
_SUFFIXES = (".csv.gz", ".csv", ".txt", ".parquet", ".pq", ".gz")


def expand_sources(source) -> list:
    """The files (``Path``) or frames of ``source``, in order: a path, a glob, a list, a frame."""
    if source is None:
        raise DataError("source is None: give a price file (CSV/Parquet), a glob such as "
                        "'dir/*.csv', a list of files, or a DataFrame")
    if isinstance(source, pd.DataFrame):
        return [source]
    if isinstance(source, (str, Path)):
        items = [source]
    elif isinstance(source, (list, tuple)):
        items = list(source)
        if not items:
            raise DataError("source is an empty list; give at least one price file")
    else:
        raise DataError(f"source must be a path, a glob, a list of paths or a DataFrame, got "
                        f"{type(source).__name__}")
    out: list = []
    for item in items:
        if isinstance(item, pd.DataFrame):
            out.append(item)
            continue
        if not isinstance(item, (str, Path)):
            raise DataError(f"source item {item!r} is not a path; give file paths or globs")
        text = str(item)
        if text.startswith("~"):
            try:
                text = str(Path(text).expanduser())
            except (RuntimeError, ValueError):  # no such user / home, a NUL: keep the text
                pass
        if any(ch in text for ch in "*?["):
            try:
                hits = sorted(glob.glob(text))
            except (OSError, ValueError):
                hits = []
            if not hits:
                raise DataError(f"{text!r} matches no file; check the pattern (quote it in the "
                                "shell so that gpusim expands it)")
            out.extend(Path(h) for h in hits)
        else:
            path = Path(text)
            try:
                found = path.is_file()
            except (OSError, ValueError):  # e.g. an embedded NUL, a name too long
                raise DataError(f"{text!r} is not a valid file name; check the path") from None
            if not found:
                raise DataError(f"price file not found: {str(path)!r}; check the path")
            out.append(path)
    seen: dict = {}
    for p in out:
        if isinstance(p, Path):
            key = p.resolve()
            if key in seen:
                raise DataError(f"{str(p)!r} is given twice (also as {str(seen[key])!r}); "
                                "list each file once")
            seen[key] = p
    return out


def read_table(path: Path) -> pd.DataFrame:
    """A CSV / CSV.gz / Parquet file as a DataFrame (no validation yet)."""
    suffixes = "".join(path.suffixes[-2:]).lower()
    try:
        if suffixes.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        if ".csv" in suffixes or ".txt" in suffixes:
            return pd.read_csv(path)
    except (OSError, ValueError, ImportError, UnicodeDecodeError) as e:
        msg = str(e).splitlines()[0] if str(e) else ""
        raise DataError(f"cannot read {path}: {type(e).__name__}: {msg}; check the file "
                        "format") from None
    raise DataError(f"unknown file type {path.name!r}; use .csv, .csv.gz, .parquet or a DataFrame")


def _stem(path: Path) -> str:
    name = path.name
    for suf in _SUFFIXES:
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return path.stem


def symbol_names(items: list, symbol_from: str) -> list[str | None]:
    """One symbol name per item (None for a frame, and for ``column:NAME``)."""
    stems = [_stem(p) if isinstance(p, Path) else None for p in items]
    if symbol_from.startswith("column:"):
        return [None] * len(items)
    if symbol_from == "stem":
        return stems
    if symbol_from.startswith("re:"):
        try:
            rx = re.compile(symbol_from[3:])
        except re.error as e:
            raise DataError(f"symbol_from={symbol_from!r} (--symbol-from): bad regular "
                            f"expression: {e}") from None
        out = []
        for p in items:
            if not isinstance(p, Path):
                out.append(None)
                continue
            m = rx.search(p.name)
            if m is None or not (m.groups() and m.group(1)):
                raise DataError(f"symbol_from={symbol_from!r} (--symbol-from) does not match "
                                f"{p.name!r} with a non-empty first group; fix the pattern")
            out.append(m.group(1))
        return out
    if symbol_from != "name":
        raise DataError(f"symbol_from={symbol_from!r} (--symbol-from) is not valid; use 'name', "
                        "'stem', 're:PATTERN' or 'column:NAME'")
    named = [s for s in stems if s is not None]
    parts = [s.split("_") for s in named]
    if len(parts) < 2 or len({len(p) for p in parts}) != 1:
        return stems
    keep = [k for k in range(len(parts[0])) if len({p[k] for p in parts}) > 1]
    it = iter("_".join(p[k] for k in keep) for p in parts)
    return [next(it) if s is not None else None for s in stems]


def with_dates(df: pd.DataFrame, label: str, date_col, date_format, dayfirst,
               notes: list[str]) -> pd.DataFrame:
    """The frame indexed by its dates: a DatetimeIndex, ``date_col``, a column named
    date/datetime/time/timestamp, a non-numeric index or a non-numeric first column.
    """
    kw = {"date_format": date_format, "dayfirst": dayfirst}
    if date_col is None and isinstance(df.index, pd.DatetimeIndex):
        return df
    if date_col is not None:
        if date_col not in df.columns:
            raise DataError(f"date_col={date_col!r} (--date-col) is not a column of {label}; "
                            f"columns: {listing(df.columns)}")
    else:
        named = [c for c in df.columns if str(c).strip().lower() in DATE_NAMES]
        if named:
            date_col = named[0]
        elif not pd.api.types.is_numeric_dtype(df.index.dtype) and not isinstance(
                df.index, pd.RangeIndex):
            out = df.copy()
            idx, n = parse_dates(df.index, f"index of {label}", **kw)
            out.index = idx
            notes.extend(n)
            return out
        elif len(df.columns) and not pd.api.types.is_numeric_dtype(df[df.columns[0]].dtype):
            date_col = df.columns[0]  # e.g. 'Unnamed: 0' written by DataFrame.to_csv()
        else:
            raise DataError(f"no dates found in {label}: no DatetimeIndex and no column named "
                            "date/datetime/time/timestamp; pass date_col= (--date-col) naming "
                            "the date column")
    out = df.drop(columns=[date_col])
    idx, n = parse_dates(df[date_col].to_numpy(), f"date column {date_col!r} of {label}", **kw)
    out.index = idx
    out.index.name = str(date_col)
    notes.extend(n)
    return out


def series_tables(raw: pd.DataFrame, label: str, symbol: str | None, *, column, symbol_from,
                  symbols, sort: bool, dedupe, notes: list[str], seen: list[str],
                  **date_kw) -> list[pd.DataFrame]:
    """The tables (ascending unique dates x price columns) one file or frame contributes;
    ``seen`` collects the names of every column offered (for messages about ``symbols``).
    """
    df = with_dates(raw, label, notes=notes, **date_kw)
    df = df.set_axis([str(c) for c in df.columns], axis=1)  # never mutate the caller's frame
    if df.columns.has_duplicates:
        dup = df.columns[df.columns.duplicated()][0]
        raise DataError(f"column {dup!r} appears more than once in {label}; keep one column "
                        "per symbol")
    if symbol_from.startswith("column:"):
        key = symbol_from[len("column:"):]
        if key not in df.columns:
            raise DataError(f"symbol_from={symbol_from!r} (--symbol-from): {label} has no column "
                            f"{key!r}; columns: {listing(df.columns)}")
        if column is None:
            raise DataError(f"symbol_from={symbol_from!r} (--symbol-from) needs column= "
                            "(--column) naming the price column, e.g. column='close'")
        vals = df[key]
        if vals.isna().any():
            i = int(np.flatnonzero(vals.isna().to_numpy())[0])
            raise DataError(f"column {key!r} of {label} is empty on row {i} "
                            f"({date_text(df.index[i])}); every row needs a symbol")
        groups = [(str(v), g.drop(columns=[key])) for v, g in df.groupby(vals.astype(str),
                                                                        sort=False)]
    else:
        groups = [(symbol, df)]
    out = []
    for sym, g in groups:
        if column is not None:
            if column not in g.columns:
                raise DataError(f"column={column!r} (--column) is not a column of {label}; "
                                f"columns: {listing(g.columns)}")
            g = g[[column]].set_axis([sym if sym is not None else column], axis=1)
            seen.extend(g.columns)
        elif symbols is not None:
            seen.extend(g.columns)
            g = g[[c for c in g.columns if c in {str(s) for s in symbols}]]
        else:
            seen.extend(g.columns)
        where = label if sym is None or column is None else f"{label} ({sym})"
        out.append(tidy(g, where, sort=sort, dedupe=dedupe, notes=notes))
    return out


def tidy(g: pd.DataFrame, where: str, *, sort: bool, dedupe, notes: list[str]) -> pd.DataFrame:
    """Sort (opt-in), drop duplicate dates (opt-in), then require ascending unique dates."""
    idx = g.index
    if idx.hasnans:
        i = int(np.flatnonzero(idx.isna())[0])
        raise DataError(f"date missing (NaT) in row {i} of {where}; drop or fix that row")
    if sort and not idx.is_monotonic_increasing:
        order = np.argsort(idx.asi8, kind="stable")
        desc = idx.is_monotonic_decreasing
        g = g.iloc[order]
        notes.append(f"sorted {len(g):,} rows of {where} by date"
                     + (" (the file was newest first)" if desc else ""))
    if dedupe and g.index.has_duplicates:
        if not g.index.is_monotonic_increasing:  # an out-of-order row is not a repeat to drop
            _check_order(g.index, where)
        g = _dedupe(g, where, dedupe, notes)
    _check_order(g.index, where)
    return g


def _dedupe(g: pd.DataFrame, where: str, how, notes: list[str]) -> pd.DataFrame:
    dup = g.index.duplicated(keep=False)
    sub = g[dup]
    # rows of one date agree when every value equals the first row's (NaN equals NaN)
    first = sub.groupby(level=0, sort=False).transform("first")
    same = (sub.eq(first) | (sub.isna() & first.isna())).all(axis=1)
    conflict_dates = sub.index[~same.to_numpy()].unique()
    if len(conflict_dates) and how == "exact":
        d = conflict_dates[0]
        rows = g.loc[[d]]
        col = next(c for c in g.columns if rows[c].nunique(dropna=False) > 1)
        vals = ", ".join(f"{v:g}" if isinstance(v, float) else repr(v) for v in rows[col])
        raise DataError(f"{where}: {len(conflict_dates):,} date(s) repeat with different prices, "
                        f"first {date_text(d)} ({col}: {vals}); fix the file, or keep one row per "
                        "date with dedupe='first' or 'last' (--dedupe first|last)")
    keep = "last" if how == "last" else "first"
    n_dup = int(g.index.duplicated(keep=keep).sum())
    out = g[~g.index.duplicated(keep=keep)]
    msg = f"dropped {n_dup:,} repeated-date rows of {where}"
    if len(conflict_dates):
        msg += (f"; {len(conflict_dates):,} date(s) had different prices (first "
                f"{date_text(conflict_dates[0])}): kept the {keep} row in file order")
    else:
        msg += " (same prices)"
    notes.append(msg)
    return out


def _check_order(idx: pd.DatetimeIndex, where: str) -> None:
    if len(idx) < 2:
        return
    step = np.diff(idx.asi8)
    back = np.flatnonzero(step < 0)
    if back.size:
        i = int(back[0]) + 1
        newest = " (the file is newest first)" if idx.is_monotonic_decreasing else ""
        raise DataError(f"dates of {where} are not ascending: {date_text(idx[i])} (row {i}) "
                        f"comes after {date_text(idx[i - 1])}{newest}; pass sort=True (--sort) "
                        "to sort the rows by date (nothing is sorted silently)")
    dup = np.flatnonzero(step == 0)
    if dup.size:
        i = int(dup[0]) + 1
        raise DataError(f"duplicate date {date_text(idx[i])} in {where} (row {i}, first of "
                        f"{dup.size:,} repeated rows); pass dedupe=True (--dedupe) to drop rows "
                        "that repeat a date with the same prices, or keep one row per date first")


def combine(tables: list[pd.DataFrame], labels: list[str]) -> pd.DataFrame:
    """One wide table on the union of the tables' dates; a column name used twice is an error."""
    if len(tables) == 1:
        return tables[0]
    owner: dict[str, str] = {}
    for t, lab in zip(tables, labels):
        for c in t.columns:
            if c in owner:
                raise DataError(f"symbol {c!r} comes from both {owner[c]} and {lab}; name the "
                                "price column with column= (--column) and the symbols with "
                                "symbol_from= (--symbol-from)")
            owner[c] = lab
    try:
        return pd.concat(tables, axis=1, join="outer", sort=True)
    except (TypeError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"cannot join the dates of {listing(labels, 4)}: {msg}; give every file "
                        "dates of one kind (all with a time zone or none)") from None
