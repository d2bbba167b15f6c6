"""Loading price tables: a CSV / CSV.gz / Parquet file or a DataFrame into a validated
:class:`~gpusim.data.market.Market` (:func:`load_prices`), and the two shortcuts built on it
(:func:`market_from_spec` for command-line specs, :func:`as_market` for API arguments).

Dates come from a DatetimeIndex, a named date column or the first column; nothing is sorted,
de-duplicated or filled silently (DESIGN.md section 5). Everything lives on the host.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from gpusim.data.market import (
    Market,
    _check_index,
    _check_values,
    _pick,
    _to_float,
    infer_ann,
    synthetic_market,
)
from gpusim.errors import DataError, GpusimError
from gpusim.validate import check_ann, date_text, listing

__all__ = ["load_prices", "market_from_spec", "as_market"]


_DATE_NAMES = ("date", "datetime", "time", "timestamp")
_ALIGNS = ("common", "none")
_FILLS = (None, "ffill")


def _read(source) -> pd.DataFrame:
    """A path or DataFrame as a DataFrame (no validation yet)."""
    if isinstance(source, pd.DataFrame):
        return source
    if not isinstance(source, (str, Path)):
        raise DataError(f"source must be a path or a DataFrame, got {type(source).__name__}")
    path = Path(source).expanduser()
    if not path.is_file():
        raise DataError(f"price file not found: {path}; check the path")
    suffixes = "".join(path.suffixes[-2:]).lower()
    try:
        if suffixes.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        if ".csv" in suffixes or ".txt" in suffixes:
            return pd.read_csv(path)
    except (OSError, ValueError, ImportError) as e:
        msg = str(e).splitlines()[0] if str(e) else ""
        msg = f"cannot read {path}: {type(e).__name__}: {msg}; check the file format"
        raise DataError(msg) from None
    raise DataError(f"unknown file type {path.name!r}; use .csv, .csv.gz, .parquet or a DataFrame")


def _parse_dates(values, what: str) -> pd.DatetimeIndex:
    values = pd.Index(values)
    try:
        return pd.DatetimeIndex(pd.to_datetime(values))
    except (TypeError, ValueError):
        pass
    try:
        return pd.DatetimeIndex(pd.to_datetime(values, format="mixed"))
    except (TypeError, ValueError):
        pass
    for i, v in enumerate(values):  # name the first value that does not parse
        try:
            pd.Timestamp(v)
        except (TypeError, ValueError):
            raise DataError(f"{what}: cannot parse {v!r} (row {i}) as a date; fix it") from None
    raise DataError(f"{what}: cannot parse the values as dates; pass date_col= naming the dates")


def _with_dates(df: pd.DataFrame, date_col) -> pd.DataFrame:
    """Put the dates into a DatetimeIndex (explicit date_col, named column, index, first column)."""
    if date_col is None and isinstance(df.index, pd.DatetimeIndex):
        return df
    if date_col is not None:
        if date_col not in df.columns:
            cols = listing(df.columns)
            raise DataError(f"date_col={date_col!r} is not a column; columns: {cols}")
    else:
        named = [c for c in df.columns if str(c).strip().lower() in _DATE_NAMES]
        if named:
            date_col = named[0]
        elif not pd.api.types.is_numeric_dtype(df.index.dtype):
            out = df.copy()
            out.index = _parse_dates(df.index, "index")
            return out
        elif len(df.columns) and not pd.api.types.is_numeric_dtype(df[df.columns[0]].dtype):
            date_col = df.columns[0]  # e.g. 'Unnamed: 0' written by DataFrame.to_csv()
        else:
            raise DataError(
                "no dates found: no DatetimeIndex and no column named date/datetime/time/"
                "timestamp; pass date_col= naming the date column"
            )
    out = df.drop(columns=[date_col])
    out.index = _parse_dates(df[date_col].to_numpy(), f"date column {date_col!r}")
    out.index.name = str(date_col)
    return out


def load_prices(
    source, *, align="common", fill=None, ann=None, date_col=None, symbols=None, name=None
) -> Market:
    """Load and validate a wide price table (dates x symbols) into a :class:`Market`.

    Parameters
    ----------
    source : str, pathlib.Path or pandas.DataFrame
        A ``.csv`` / ``.csv.gz`` / ``.parquet`` file, or a DataFrame. Dates come from a
        DatetimeIndex, else from ``date_col``, else from the first column named date, datetime,
        time or timestamp (any case), else from a non-numeric index or first column.
    align : {"common", "none"}
        ``"common"``: keep the window where every chosen column has a price (latest first-valid
        date .. earliest last-valid date), which handles late-listed assets. ``"none"``: keep
        every row; any NaN is an error.
    fill : {None, "ffill"}
        ``"ffill"`` carries the last price forward over NaNs inside the kept rows; with None such
        NaNs are an error. Leading NaNs are never filled.
    ann : float, optional
        Bars per year. Default: inferred from the index with :func:`infer_ann`.
    date_col : str, optional
        Name of the date column.
    symbols : list of str, optional
        Columns to use, in this order (default: all non-date columns).
    name : str, optional
        Label of the market (default: the file name, or ``""`` for a DataFrame).

    Returns
    -------
    Market
        Host-side float64 prices, shape (n_bars, n_assets).

    Raises
    ------
    DataError
        One line naming the problem, the column and the first bad date where applicable, and the
        fix: missing file, non-numeric column, NaN / inf / <= 0 prices inside the kept window,
        duplicate or unsorted dates, an all-NaN column, fewer than 2 rows, unknown symbol, or an
        invalid ``align`` / ``fill`` / ``ann``.
    """
    if align not in _ALIGNS:
        raise DataError(f"align={align!r} is not valid; use one of {', '.join(map(repr, _ALIGNS))}")
    if fill not in _FILLS:
        raise DataError(f"fill={fill!r} is not valid; use one of {', '.join(map(repr, _FILLS))}")
    if ann is not None:
        ann = check_ann(ann)
    if name is None:
        name = "" if isinstance(source, pd.DataFrame) else Path(source).name
    df = _with_dates(_read(source), date_col)
    df = df.set_axis([str(c) for c in df.columns], axis=1)  # never mutate the caller's frame
    if df.columns.has_duplicates:
        dup = df.columns[df.columns.duplicated()][0]
        raise DataError(f"column {dup!r} appears more than once; keep one column per symbol")
    _check_index(df.index)
    chosen = _pick(list(df.columns), symbols if symbols is not None else list(df.columns))
    prices = _to_float(df[chosen])

    for col in prices.columns:
        if prices[col].isna().all():
            raise DataError(
                f"column {col!r} has no prices (all NaN); drop it with symbols=[...] or fix it"
            )
    if align == "common":
        firsts = {c: prices[c].first_valid_index() for c in prices.columns}
        lasts = {c: prices[c].last_valid_index() for c in prices.columns}
        c0 = max(firsts, key=lambda c: firsts[c])
        c1 = min(lasts, key=lambda c: lasts[c])
        if firsts[c0] > lasts[c1]:
            raise DataError(
                f"no common window: column {c0!r} starts on {date_text(firsts[c0])} after "
                f"column {c1!r} ends on {date_text(lasts[c1])}; drop one of them with "
                "symbols=[...]"
            )
        prices = prices.loc[firsts[c0] : lasts[c1]]
    if fill == "ffill":
        prices = prices.ffill()
    if len(prices) < 2:
        raise DataError(
            f"only {len(prices)} row(s) left after align={align!r}; need at least 2 - "
            "check the date ranges of the columns or drop late-listed ones with symbols=[...]"
        )
    span = f"{date_text(prices.index[0])} .. {date_text(prices.index[-1])}"
    where = f" inside the used window {span} (align={align!r})"
    if align == "none":
        nan_fix = "try align='common' (dates where all columns have prices) or fill='ffill'"
    else:
        nan_fix = "pass fill='ffill' to carry the last price forward, or clean the data"
    _check_values(prices, where, nan_fix)
    if ann is None:
        ann, desc = infer_ann(prices.index)
        source_txt = f"inferred: {desc}"
    else:
        source_txt = "given"
    return Market(prices, ann, source_txt, name)


def market_from_spec(spec=None, *, ann=None, symbols=None) -> Market:
    """A Market from a command-line spec: a CSV/Parquet path, or
    ``synthetic[:ASSETS[:BARS[:SEED]]]`` (``None`` = the built-in synthetic market: 5 assets x
    756 business days, seed 0)."""
    from pathlib import Path

    if spec is None or str(spec).lower().startswith("synthetic"):
        parts = [] if spec is None else str(spec).split(":")[1:]
        if len(parts) > 3 or not all(p.isdigit() for p in parts):
            raise DataError(f"--prices: {spec!r} is not synthetic[:ASSETS[:BARS[:SEED]]]")
        kw = dict(zip(("n_assets", "n_bars", "seed"), map(int, parts)))
        m = synthetic_market(**kw, ann=ann)
    else:
        if not Path(spec).is_file():
            raise DataError(f"--prices: file {str(spec)!r} not found; give a CSV/Parquet file of "
                            "close prices, or omit --prices for the synthetic market")
        m = load_prices(spec, ann=ann)
    return m if symbols is None else m.subset(list(symbols))


def as_market(market) -> Market:
    """A Market from a Market (returned as is) or a prices DataFrame (:func:`load_prices`)."""
    if isinstance(market, pd.DataFrame):
        return load_prices(market)
    if hasattr(market, "prices") and hasattr(market, "ann"):
        return market
    raise GpusimError(f"market must be a gpusim Market or a prices DataFrame, got "
                      f"{type(market).__name__}; see gpusim.load_prices")
