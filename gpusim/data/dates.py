"""Reading a column of dates: text in the usual layouts, integers, datetimes.

:func:`parse_dates` turns the values of a date column (or an index) into a ``DatetimeIndex`` and
returns, beside it, the lines that say how it read them when that was not obvious. The rules
(documented in ``load_prices``):

- **datetimes** are used as they are; tz-aware values with one time zone keep it.
- **text**: ISO and the other layouts pandas reads; ``YYYY-MM-DD HH-AM`` / ``HH-PM`` (older
  CryptoDataDownload rows, e.g. ``2020-11-20 07-AM``) is read as a 12-hour clock; text with
  different UTC offsets (daylight saving, e.g. ``+01:00`` and ``+02:00``) is converted to UTC
  (naive) and says so. ``NN/NN/YYYY`` (or ``.``, ``-``) dates are read month first only when the
  values prove it (a second field above 12), day first when they prove that (a first field above
  12, said in a note); values that fit both need ``dayfirst=`` or ``date_format=``.
- **integers** (or floats with whole values): ``YYYYMMDD`` when every value is a valid date of
  that form (1900..2199), else Unix time in seconds, milliseconds, microseconds or nanoseconds,
  chosen per value by its size (1e8..9.2e9 s, 1e11.. ms, 1e14.. us, 1e17.. ns: 1973..2261; a column
  that mixes units says so). Anything else is refused: integers are never read as nanoseconds
  since 1970 silently.

Errors are :class:`~gpusim.errors.DataError` with one line naming the column, the first value
that does not fit and the option that fixes it (API name and CLI flag).
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd

from gpusim.errors import DataError
from gpusim.validate import py_scalar as py

__all__ = ["parse_dates"]

_AMPM = re.compile(r"^\s*(\d{4}-\d{1,2}-\d{1,2})\s+(\d{1,2})-?\s*([AaPp][Mm])\s*$")
_NUMERIC_DMY = re.compile(r"^\s*(\d{1,2})[/.-](\d{1,2})[/.-](\d{2}|\d{4})(?:[ T].*)?$")
_OFFSET = re.compile(r"(?:[+-]\d{2}:?\d{2}|Z)\s*$")
# Unix time units by the size of the value: [lower, upper) bounds, unit, name (1973 .. 2261)
_UNIX = ((1e8, 9.2e9, "s", "seconds"), (1e11, 9.2e12, "ms", "milliseconds"),
         (1e14, 9.2e15, "us", "microseconds"), (1e17, 9.2e18, "ns", "nanoseconds"))


def _fix_hint() -> str:
    return "name the date column with date_col= (--date-col) or give date_format= (--date-format)"


def parse_dates(values, what: str, *, date_format: str | None = None,
                dayfirst: bool | None = None) -> tuple[pd.DatetimeIndex, list[str]]:
    """``(dates, notes)`` from the values of a date column or index.

    Parameters
    ----------
    values : array-like, length n
        Text, integers, floats with whole values, or datetimes.
    what : str
        How messages name the values, e.g. ``"date column 'date' of p.csv"``.
    date_format : str, optional
        A ``strftime`` format every text value follows (e.g. ``"%d/%m/%Y"``).
    dayfirst : bool, optional
        Read ``NN/NN/YYYY`` dates day first (True) or month first (False).

    Returns
    -------
    dates : pandas.DatetimeIndex, length n (NaT where a value was missing)
    notes : list of str
        One line per reading that needed a rule (day first, mixed offsets, Unix units, 12-hour
        clock); empty when the dates were plain.
    """
    idx = pd.Index(values)
    if isinstance(idx, pd.DatetimeIndex):
        return idx, []
    if pd.api.types.is_bool_dtype(idx.dtype):
        raise DataError(f"{what} holds booleans, not dates; {_fix_hint()}")
    if pd.api.types.is_numeric_dtype(idx.dtype):
        return _numeric_dates(idx, what)
    if pd.api.types.is_datetime64_any_dtype(idx.dtype):
        return pd.DatetimeIndex(idx), []
    return _text_dates(idx, what, date_format, dayfirst)


# ----------------------------------------------------------------------------- integers
def _numeric_dates(idx: pd.Index, what: str) -> tuple[pd.DatetimeIndex, list[str]]:
    v = np.asarray(idx, dtype=np.float64)
    ok = np.isfinite(v)
    if not ok.any():
        raise DataError(f"{what} has no values that could be dates; {_fix_hint()}")
    whole = ok & (v == np.floor(np.where(ok, v, 0)))
    if not whole[ok].all():
        i = int(np.flatnonzero(ok & ~whole)[0])
        raise DataError(f"{what}: {py(idx[i])!r} (row {i}) is a fraction, not a date (YYYYMMDD "
                        f"or Unix time); {_fix_hint()}")
    # exact integers where the column holds them (nanoseconds do not fit a float64 exactly)
    vals = (np.asarray(idx)[ok].astype(np.int64) if idx.dtype.kind in "iu"
            and np.abs(v[ok]).max() < 9e18 else v[ok])
    ymd = _yyyymmdd(vals)
    out = np.full(len(v), np.datetime64("NaT"), dtype="datetime64[ns]")
    if ymd is not None:
        out[ok] = ymd
        return pd.DatetimeIndex(out), []
    size = v[ok]  # negative values fit no unit: refused
    units = np.full(size.shape, -1)
    for k, (lo, hi, _, _) in enumerate(_UNIX):
        units[(size >= lo) & (size < hi)] = k
    if (units < 0).any():
        i = int(np.flatnonzero(ok)[np.flatnonzero(units < 0)[0]])
        raise DataError(
            f"{what}: integer {py(idx[i])!r} (row {i}) is neither a YYYYMMDD date nor Unix time "
            "(seconds, milliseconds, microseconds or nanoseconds between 1973 and 2261); "
            f"integers are not read as nanoseconds since 1970 - {_fix_hint()}")
    ns = np.empty(size.shape, dtype=np.int64)
    for k, (_, _, unit, _) in enumerate(_UNIX):
        sel = units == k
        if sel.any():
            ns[sel] = pd.to_datetime(vals[sel].astype(np.int64), unit=unit).as_unit("ns").asi8
    out[ok] = ns.view("datetime64[ns]")
    used = [_UNIX[k][3] for k in sorted(set(units.tolist()))]
    note = f"{what}: integers read as Unix time in {' and '.join(used)}"
    if len(used) > 1:
        note += " (mixed units, each value by its size)"
    return pd.DatetimeIndex(out), [note]


def _yyyymmdd(vals: np.ndarray):
    """datetime64[ns] values when every integer is a valid YYYYMMDD date, else None."""
    if vals.min() < 19000101 or vals.max() > 21991231:
        return None
    vals = vals.astype(np.int64)
    _y, md = np.divmod(vals, 10000)
    m, d = np.divmod(md, 100)
    if not ((m >= 1) & (m <= 12) & (d >= 1) & (d <= 31)).all():
        return None
    parsed = pd.to_datetime(vals.astype(str), format="%Y%m%d", errors="coerce")
    if parsed.isna().any():
        return None
    return parsed.as_unit("ns").to_numpy()


# ----------------------------------------------------------------------------- text
def _text_dates(idx: pd.Index, what: str, date_format, dayfirst) -> tuple[pd.DatetimeIndex,
                                                                         list[str]]:
    s = pd.Series(idx, dtype=object)
    present = s.notna().to_numpy()
    if not all(isinstance(x, str) for x in s[present]):
        try:  # e.g. datetime.date objects, Timestamps mixed with text
            return pd.DatetimeIndex(pd.to_datetime(s.to_numpy())), []
        except (TypeError, ValueError, OverflowError):
            return _first_bad(s, what)
    text = s.where(present, None)
    if date_format is not None:
        try:
            return pd.DatetimeIndex(pd.to_datetime(text, format=date_format)), []
        except (TypeError, ValueError) as e:
            raise DataError(f"{what}: date_format={date_format!r} (--date-format) does not fit: "
                            f"{str(e).splitlines()[0]}") from None
    notes: list[str] = []
    strs = text[present].astype(str)
    if len(strs) and strs.str.fullmatch(r"\s*[-+]?\d+(?:\.\d*)?\s*").all():
        # numbers written as text: the integer rules (YYYYMMDD, Unix time), never day-of-month
        return _numeric_dates(pd.Index(pd.to_numeric(text, errors="coerce")), what)
    ampm = strs.str.match(_AMPM)
    rest = strs[~ampm.to_numpy()]
    parsed = None
    if len(rest):
        kw = _dayfirst_choice(rest, what, dayfirst, notes)
        parsed = _to_datetime(rest, what, kw, notes)
        if parsed.tz is not None and ampm.any():
            raise DataError(f"{what}: some dates carry a UTC offset ({rest.iloc[0]!r}) and some "
                            f"do not ({strs[ampm].iloc[0]!r}); give every date an offset, or "
                            "none")
    dtype = parsed.dtype if parsed is not None else "datetime64[ns]"
    out = pd.Series(pd.NaT, index=text.index, dtype=dtype)
    if parsed is not None:
        out[rest.index] = parsed
    if ampm.any():
        m = strs[ampm].str.extract(_AMPM)
        clock = m[0] + " " + m[1].str.zfill(2) + "-" + m[2].str.upper()
        out[strs.index[ampm]] = pd.to_datetime(clock, format="%Y-%m-%d %I-%p").to_numpy()
        notes.append(f"{what}: {int(ampm.sum()):,} dates like {strs[ampm].iloc[0]!r} read as "
                     "a 12-hour clock (YYYY-MM-DD HH-AM/PM)")
    return pd.DatetimeIndex(out), notes


def _dayfirst_choice(strs: pd.Series, what: str, dayfirst, notes: list[str]) -> dict:
    """Pandas keyword arguments for ``NN/NN/YYYY`` text: month or day first, by the evidence."""
    m = strs.str.extract(_NUMERIC_DMY)
    if m[0].isna().all():
        return {}
    a = pd.to_numeric(m[0], errors="coerce")
    b = pd.to_numeric(m[1], errors="coerce")
    if dayfirst is not None:
        return {"dayfirst": bool(dayfirst)}
    day_first, month_first = (a > 12).any(), (b > 12).any()
    if day_first and month_first:
        i, j = int(np.argmax((a > 12).to_numpy())), int(np.argmax((b > 12).to_numpy()))
        raise DataError(f"{what}: both {strs.iloc[i]!r} (day first) and {strs.iloc[j]!r} (month "
                        "first) appear; make the dates consistent or give date_format= "
                        "(--date-format)")
    if day_first:
        i = int(np.argmax((a > 12).to_numpy()))
        notes.append(f"{what}: dates read day first (dd/mm/yyyy), as {strs.iloc[i]!r} shows; "
                     "pass dayfirst=False (--monthfirst) or date_format= to override")
        return {"dayfirst": True}
    if month_first:
        return {"dayfirst": False}
    raise DataError(f"{what}: dates such as {strs.iloc[0]!r} read both day first and month first "
                    "(no field above 12); pass dayfirst=True (--dayfirst), dayfirst=False "
                    "(--monthfirst) or date_format= (--date-format), e.g. '%d/%m/%Y'")


def _to_datetime(strs: pd.Series, what: str, kw: dict, notes: list[str]) -> pd.DatetimeIndex:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "could not infer format": we try "mixed"
        for extra in ({}, {"format": "mixed"}):
            try:
                return pd.DatetimeIndex(pd.to_datetime(strs, **kw, **extra))
            except (TypeError, ValueError, OverflowError) as e:
                if "Mixed timezones" in str(e) or "mixed time zones" in str(e).lower():
                    break
        else:
            _first_bad(strs, what, kw)
        if strs.str.contains(_OFFSET).all():
            try:
                dates = pd.DatetimeIndex(pd.to_datetime(strs, utc=True, format="mixed", **kw))
            except (TypeError, ValueError, OverflowError):
                _first_bad(strs, what, kw)
            offs = strs.str.extract(r"([+-]\d{2}:?\d{2}|Z)\s*$")[0].unique()
            notes.append(f"{what}: dates carry different UTC offsets ({', '.join(offs[:4])}; "
                         "e.g. daylight saving): converted to UTC")
            return dates.tz_convert(None)
        raise DataError(f"{what}: some dates carry a UTC offset and some do not (e.g. "
                        f"{strs.iloc[0]!r}); give every date an offset, or none")


def _first_bad(s: pd.Series, what: str, kw: dict | None = None):
    for i, v in enumerate(s):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                pd.to_datetime([v], **(kw or {}))
        except (TypeError, ValueError, OverflowError):
            raise DataError(f"{what}: cannot parse {v!r} (row {i}) as a date; fix it, or "
                            f"{_fix_hint()}") from None
    raise DataError(f"{what}: cannot parse the values as dates; {_fix_hint()}")

