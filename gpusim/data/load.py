"""Loading price tables: CSV / CSV.gz / Parquet files (one wide table, or one file per symbol)
or a DataFrame into a validated :class:`~gpusim.data.market.Market` (:func:`load_prices`), and
the two shortcuts built on it (:func:`market_from_spec` for command-line specs, :func:`as_market`
for API arguments).

Dates come from a DatetimeIndex, a named date column or the first column (read by
:mod:`gpusim.data.dates`); files, symbol names, sorting and de-duplication are
:mod:`gpusim.data.files`. Nothing is sorted, de-duplicated or filled silently (DESIGN.md section
5): the opt-in options say what they did in ``Market.load_notes``. Everything lives on the host.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from gpusim.data.files import (
    DEDUPE,
    combine,
    expand_sources,
    read_table,
    series_tables,
    symbol_names,
)
from gpusim.data.market import (
    Market,
    _check_values,
    _pick,
    _to_float,
    as_timestamp,
    infer_ann,
    synthetic_market,
)
from gpusim.errors import DataError, GpusimError
from gpusim.validate import check_ann, check_choice, date_text, listing

__all__ = ["FILE_OPTIONS", "as_market", "load_prices", "market_from_spec"]

_ALIGNS = ("common", "none")
_FILLS = (None, "ffill")
#: load_prices options that only apply to files and frames (not to the synthetic market), with
#: their defaults
FILE_OPTIONS = {"date_col": None, "column": None, "symbol_from": "name", "sort": False,
                "dedupe": False, "date_format": None, "dayfirst": None, "align": "common",
                "fill": None}


def load_prices(
    source, *, align="common", fill=None, ann=None, date_col=None, symbols=None, name=None,
    column=None, symbol_from="name", sort=False, dedupe=False, start=None, end=None,
    date_format=None, dayfirst=None,
) -> Market:
    """Load and validate a wide price table (dates x symbols) into a :class:`Market`.

    Every option has a command-line twin (``--align``, ``--fill``, ``--ann``, ``--date-col``,
    ``--symbols``, ``--column``, ``--symbol-from``, ``--sort``, ``--dedupe``, ``--start``,
    ``--end``, ``--date-format``, ``--dayfirst``/``--monthfirst``).

    Parameters
    ----------
    source : str, pathlib.Path, pandas.DataFrame or a list of them
        A ``.csv`` / ``.csv.gz`` / ``.parquet`` file, a glob such as ``"dir/*.csv"`` (e.g. one
        file per symbol), a list of files/globs, or a DataFrame. Dates come from a
        DatetimeIndex, else from ``date_col``, else from the first column named date, datetime,
        time or timestamp (any case), else from a non-numeric index or first column. How text
        and integer dates are read (``YYYYMMDD``, Unix time, ``HH-AM``, day first, UTC
        offsets): :mod:`gpusim.data.dates`. Several files are joined on the union of their
        dates.
    align : {"common", "none"}
        ``"common"``: keep the window where every chosen column has a price (latest first-valid
        date .. earliest last-valid date), which handles late-listed assets; the window and the
        symbols that set it are kept in ``Market.window_info`` and said in
        ``Market.load_notes``. ``"none"``: keep every row; any NaN is an error.
    fill : {None, "ffill"}
        ``"ffill"`` carries the last price forward over NaNs inside the kept rows (counted in a
        note); with None such NaNs are an error. Leading NaNs (before a column's first price)
        are never filled.
    ann : float, optional
        Bars per year. Default: inferred from the index with :func:`infer_ann`.
    date_col : str, optional
        Name of the date column.
    symbols : list of str, optional
        Columns to use, in this order (default: all), chosen **before** alignment: the window
        is the one of these symbols.
    name : str, optional
        Label of the market (default: the file name, or ``""`` for a DataFrame).
    column : str, optional
        The price column of every file (OHLCV files: ``"close"``); each file (or each value
        of a ``symbol_from="column:NAME"`` column) then gives one symbol.
    symbol_from : str
        How a file read with ``column=`` is named: ``"name"`` (default: the part of the file
        names that differs between the files, e.g. ``Binance_BTCUSDT_1h.csv`` ->
        ``BTCUSDT``), ``"stem"``, ``"re:PATTERN"`` or ``"column:NAME"``; see
        :mod:`gpusim.data.files`.
    sort : bool
        Sort each file's rows by date (stable) when they are not ascending; says so in a note.
    dedupe : {False, True, "exact", "first", "last"}
        Drop rows that repeat a date: ``True``/``"exact"`` only when their prices agree
        (different prices stay an error); ``"first"``/``"last"`` keep the first/last row of
        each date in file order. Says how many rows it dropped.
    start, end : date-like, optional
        Keep dates ``start <= date <= end`` (before alignment).
    date_format : str, optional
        ``strftime`` format of text dates, e.g. ``"%d/%m/%Y"``.
    dayfirst : bool, optional
        Read ``NN/NN/YYYY`` dates day first (True) or month first (False); by default the
        values decide when they can (a field above 12) and ambiguous ones are refused.

    Returns
    -------
    Market
        Host-side float64 prices, shape (n_bars, n_assets), with ``load_notes`` (what the
        loader did, the window last) and ``window_info`` (the window and what set it).

    Raises
    ------
    DataError
        One line naming the problem, the file or column and the first bad date where
        applicable, and the fix: missing file, non-numeric or datetime column, NaN / inf / <= 0
        prices inside the kept window, duplicate or unsorted dates, an all-NaN column, fewer
        than 2 rows, unknown symbol, dates that cannot be read, or an invalid option.
    """
    align = check_choice(align, "align", _ALIGNS, cli="--align", error=DataError)
    fill = check_choice(fill, "fill", _FILLS, cli="--fill", error=DataError)
    dedupe = check_choice("exact" if dedupe is True else dedupe, "dedupe", (None, *DEDUPE),
                          cli="--dedupe", error=DataError)
    for key, val in (("sort", sort), ("dayfirst", dayfirst)):
        if val is not None and not isinstance(val, bool):
            raise DataError(f"{key}={val!r} must be True or False")
    for key, val in (("date_col", date_col), ("column", column), ("symbol_from", symbol_from),
                     ("date_format", date_format), ("name", name)):
        if val is not None and not isinstance(val, str):
            raise DataError(f"{key}={val!r} must be a string")
    if ann is not None:
        ann = check_ann(ann)
    if isinstance(symbols, str):
        symbols = [symbols]
    items = expand_sources(source)
    if name is None:
        name = _default_name(items)
    notes: list[str] = []
    tables, labels, seen = [], [], []
    for item, sym in zip(items, symbol_names(items, symbol_from)):
        label = item.name if isinstance(item, Path) else "the DataFrame"
        raw = read_table(item) if isinstance(item, Path) else item
        for t in series_tables(raw, label, sym, column=column, symbol_from=symbol_from,
                               symbols=symbols, sort=bool(sort), dedupe=dedupe, notes=notes,
                               seen=seen, date_col=date_col, date_format=date_format,
                               dayfirst=dayfirst):
            tables.append(t)
            labels.append(label)
    df = combine(tables, labels)
    what = name or "the table"
    if df.shape[1] == 0:
        raise DataError(f"{what} has no price columns (only dates); give a table with one "
                        "column per symbol, or name the price column with column= (--column)")
    if len(df) < 2:
        raise DataError(f"{what} has {len(df)} row(s); need at least 2 dates for a return")
    if symbols is not None:
        _pick(list(dict.fromkeys(seen)), symbols)  # unknown names: list every column offered
    chosen = _pick(list(df.columns), symbols if symbols is not None else list(df.columns))
    raw = _to_float(df[chosen])
    orig = _slice(raw, start, end)
    for col in orig.columns:
        if orig[col].isna().all():
            raise DataError(f"column {col!r} has no prices (all NaN){_in_range(start, end)}; "
                            "drop it with symbols=[...] (--symbols) or fix it")
    # ffill runs on the whole table, so a price known before start= carries into the window
    filled = raw.ffill().loc[orig.index] if fill == "ffill" else orig
    prices, info = _align(orig, filled, align)
    if len(prices) < 2:
        raise DataError(
            f"only {len(prices)} row(s) left after align={align!r}; need at least 2 - "
            "check the date ranges of the columns or drop late-listed ones with symbols=[...]")
    _check_leading(prices, align)
    if fill == "ffill":
        _fill_note(orig.loc[prices.index], prices, notes)
    span = f"{date_text(prices.index[0])} .. {date_text(prices.index[-1])}"
    where = f" inside the used window {span} (align={align!r})"
    if align == "none":
        nan_fix = ("try align='common' (--align common: dates where all columns have prices) "
                   "or fill='ffill' (--fill ffill)")
    else:
        nan_fix = ("pass fill='ffill' (--fill ffill) to carry the last price forward, or clean "
                   "the data")
    _check_values(prices, where, nan_fix)
    info.update(rows=len(prices), of_rows=len(orig), start=date_text(prices.index[0]),
                end=date_text(prices.index[-1]))
    notes.append(_window_note(info))
    if ann is None:
        ann, desc = infer_ann(prices.index)
        source_txt = f"inferred: {desc}"
    else:
        source_txt = "given"
    return Market(prices, ann, source_txt, name, load_notes=tuple(notes), window_info=info)


def _default_name(items: list) -> str:
    paths = [p for p in items if isinstance(p, Path)]
    if len(items) == 1:
        return paths[0].name if paths else ""
    if paths:
        return f"{len(items)} files ({paths[0].name}, ...)"
    return ""


def _in_range(start, end) -> str:
    return "" if start is None and end is None else f" between start={start} and end={end}"


def _slice(prices: pd.DataFrame, start, end) -> pd.DataFrame:
    if start is None and end is None:
        return prices
    s = as_timestamp(start, "start", prices.index)
    e = as_timestamp(end, "end", prices.index)
    if s is not None and e is not None and s > e:
        raise DataError(f"start={start} is after end={end}; swap them")
    out = prices.loc[s:e]
    if len(out) < 2:
        first, last = date_text(prices.index[0]), date_text(prices.index[-1])
        raise DataError(f"start={start} .. end={end} keeps {len(out)} row(s) of the dates "
                        f"{first} .. {last}; need at least 2 - widen the window")
    return out


def _align(orig: pd.DataFrame, filled: pd.DataFrame, align: str) -> tuple[pd.DataFrame, dict]:
    """The rows of ``filled`` kept by ``align`` and what set the window: the latest first price
    (of ``filled``: a price carried forward from before ``start`` counts) and the earliest last
    price (of ``orig``: nothing is carried past a column's last price).
    """
    info: dict = {"align": align, "start_set_by": [], "end_set_by": []}
    if align != "common":
        return filled, info
    firsts = {c: filled[c].first_valid_index() for c in filled.columns}
    lasts = {c: orig[c].last_valid_index() for c in orig.columns}
    c0 = max(firsts, key=lambda c: firsts[c])
    c1 = min(lasts, key=lambda c: lasts[c])
    if firsts[c0] > lasts[c1]:
        raise DataError(
            f"no common window: column {c0!r} starts on {date_text(firsts[c0])} after "
            f"column {c1!r} ends on {date_text(lasts[c1])}; drop one of them with "
            "symbols=[...] (--symbols)")
    if firsts[c0] > filled.index[0]:
        info["start_set_by"] = [c for c in filled.columns if firsts[c] == firsts[c0]]
    if lasts[c1] < filled.index[-1]:
        info["end_set_by"] = [c for c in filled.columns if lasts[c] == lasts[c1]]
    return filled.loc[firsts[c0]: lasts[c1]], info


def _window_note(info: dict) -> str:
    """E.g. ``window 2014-09-19 .. 2018-04-11 (896 of 7,126 rows; set by BABA, the latest
    listing)``.
    """
    text = f"window {info['start']} .. {info['end']} ("
    if info["rows"] == info["of_rows"]:
        text += f"all {info['rows']:,} rows"
    else:
        text += f"{info['rows']:,} of {info['of_rows']:,} rows"
    if info["align"] != "common":
        return text + f", align={info['align']!r})"
    if info["start_set_by"]:
        text += f"; set by {listing(info['start_set_by'], 3)}, the latest listing"
    if info["end_set_by"]:
        text += f"; ended by {listing(info['end_set_by'], 3)}, the first to end"
    return text + ")"


def _check_leading(prices: pd.DataFrame, align: str) -> None:
    """Leading NaNs (before a column's first price) cannot be forward-filled: say what can."""
    if align != "none":
        return
    for col in prices.columns:
        first = prices[col].first_valid_index()
        if first is not None and first > prices.index[0]:
            d = date_text(first)
            raise DataError(
                f"column {col!r} has no price before {d} (its first price; the table starts "
                f"{date_text(prices.index[0])}): leading NaNs cannot be forward-filled - use "
                f"align='common' (--align common) or start='{d}' (--start {d}), or drop the "
                "column with symbols=[...] (--symbols)")


def _fill_note(orig: pd.DataFrame, filled: pd.DataFrame, notes: list[str]) -> None:
    n = (orig.isna() & filled.notna()).sum()
    if n.sum():
        per = ", ".join(f"{c} {int(k):,}" for c, k in n.items() if k)
        notes.append(f"fill='ffill': carried {int(n.sum()):,} price(s) forward over missing "
                     f"rows ({per})")


def market_from_spec(spec=None, *, ann=None, symbols=None, start=None, end=None,
                     **options) -> Market:
    """A Market from a command-line spec: CSV/Parquet path(s) or glob(s) (a string or a list),
    or ``synthetic[:ASSETS[:BARS[:SEED]]]`` (``None`` = the built-in synthetic market: 5 assets
    x 756 business days, seed 0).

    ``symbols`` are chosen before alignment; ``options`` are the other :func:`load_prices`
    keywords (:data:`FILE_OPTIONS`), which the synthetic market refuses unless they keep their
    defaults. ``start`` / ``end`` apply to both.
    """
    unknown = sorted(set(options) - set(FILE_OPTIONS))
    if unknown:
        raise GpusimError(f"unknown loader option(s) {', '.join(unknown)}; use "
                          f"{', '.join(FILE_OPTIONS)}")
    if spec is None or isinstance(spec, (str, Path)):
        specs = [spec]
    elif isinstance(spec, (list, tuple)) and spec:
        specs = list(spec)
    else:
        raise DataError(f"--prices: {spec!r} is not a file, a glob, a list of them or "
                        "synthetic[:ASSETS[:BARS[:SEED]]]")
    synth = [s for s in specs if s is None or str(s).lower().startswith("synthetic")]
    if synth and len(specs) > 1:
        raise DataError(f"--prices: {synth[0] or 'synthetic'!r} cannot be combined with other "
                        "files; give the synthetic spec alone")
    if not synth:
        for s in specs:
            text = str(s)
            if not any(ch in text for ch in "*?[") and not _is_file(text):
                raise DataError(f"--prices: file {text!r} not found; give a CSV/Parquet file of "
                                "close prices (or a quoted glob), or omit --prices for the "
                                "synthetic market")
        return load_prices(specs[0] if len(specs) == 1 else specs, ann=ann, symbols=symbols,
                           start=start, end=end, **options)
    spec = specs[0]
    parts = [] if spec is None else str(spec).split(":")[1:]
    if len(parts) > 3 or not all(p.isdigit() for p in parts) or (
            spec is not None and str(spec).split(":")[0].lower() != "synthetic"):
        raise DataError(f"--prices: {spec!r} is not synthetic[:ASSETS[:BARS[:SEED]]]")
    given = [k for k, v in options.items() if v != FILE_OPTIONS[k]]
    if given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise DataError(f"{flags} apply to price files, not the synthetic market; give "
                        "--prices FILE or drop them")
    kw = dict(zip(("n_assets", "n_bars", "seed"), map(int, parts)))
    m = synthetic_market(**kw, ann=ann)
    if symbols is not None:
        m = m.subset(list(symbols))
    return m if start is None and end is None else m.window(start, end)


def _is_file(text: str) -> bool:
    try:
        return Path(text).expanduser().is_file()
    except (OSError, ValueError, RuntimeError):
        return False


def as_market(market) -> Market:
    """A Market from a Market (returned as is) or a prices DataFrame (:func:`load_prices`)."""
    if isinstance(market, pd.DataFrame):
        return load_prices(market)
    if hasattr(market, "prices") and hasattr(market, "ann"):
        return market
    raise GpusimError(f"market must be a gpusim Market or a prices DataFrame, got "
                      f"{type(market).__name__}; see gpusim.load_prices")
