"""Property-based tests (Hypothesis) of the loaders and the argument checks.

Random malformed tables (NaN / inf / <= 0 / text / booleans in price columns, duplicate,
unsorted, missing or mixed dates, empty frames, one row, all-NaN columns, random column names)
and random option values must give either a valid :class:`Market` whose every price is one the
input holds at that date (or, with ``fill='ffill'``, the last one before it), or a
:class:`GpusimError` with a one-line message; never another exception, never a silent fix. The
same for the argument checks of :mod:`gpusim.validate`. Bounded: the file runs in a few seconds
(``derandomize`` keeps CI reproducible).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpusim import validate as V
from gpusim.data.dates import parse_dates
from gpusim.data.load import load_prices, market_from_spec
from gpusim.data.market import Market
from gpusim.errors import GpusimError

# HYP_N=3000 runs a longer random search locally; CI runs 150 derandomized examples per test
_N = os.environ.get("HYP_N")
SETTINGS = settings(max_examples=int(_N or 150), deadline=None, derandomize=not _N,
                    suppress_health_check=[HealthCheck.too_slow])

DAYS = pd.date_range("2021-01-04", periods=6, freq="D")
CELLS = st.one_of(
    st.floats(min_value=-5, max_value=1e6),
    st.sampled_from([np.nan, 0.0, -1.0, 1.5, 100.0, np.inf]),
    st.sampled_from(["abc", "1.5", "", "nan", "1e3", " 7 "]),
    st.booleans(),
    st.none(),
)
NAMES = st.text(alphabet="abcXYZ_ 1", min_size=0, max_size=4)


@st.composite
def frames(draw):
    """A frame indexed by dates: usually clean (ascending, unique), else drawn with repeats, in
    any order, sometimes with NaT; columns usually well named, sometimes not."""
    if draw(st.integers(0, 9)) < 6:
        least = draw(st.sampled_from([0, 1, 3, 3, 3, 4, 4, 5]))  # empty and one row too
        dates = sorted(draw(st.sets(st.sampled_from(list(DAYS)), min_size=least, max_size=6)))
    else:
        dates = draw(st.lists(st.sampled_from([*list(DAYS), pd.NaT]), max_size=7))
    n = len(dates)
    if draw(st.integers(0, 9)) < 8:
        names = draw(st.lists(NAMES, min_size=1, max_size=4, unique=True))
    else:
        names = draw(st.lists(NAMES, max_size=4))
    data = {}
    for j in range(len(names)):
        kind = draw(st.sampled_from(["good", "good", "good", "gappy", "mixed", "nan"]))
        if kind == "good":
            col = draw(st.lists(st.floats(0.5, 1e4), min_size=n, max_size=n))
        elif kind == "gappy":
            col = draw(st.lists(st.one_of(st.floats(0.5, 1e4), st.just(np.nan)), min_size=n,
                                max_size=n))
        elif kind == "nan":
            col = [np.nan] * n
        else:
            col = draw(st.lists(CELLS, min_size=n, max_size=n))
        data[j] = col
    df = pd.DataFrame(data, index=pd.DatetimeIndex(dates, name="date"))
    df.columns = names[: len(df.columns)]
    return df


def _mostly(good, bad):
    return st.sampled_from(list(good) * 4 + list(bad))


OPTIONS = st.fixed_dictionaries({}, optional={
    "align": _mostly(["common", "none"], ["outer", None]),
    "fill": _mostly([None, "ffill"], ["bfill"]),
    "sort": _mostly([False, True], [1]),
    "dedupe": _mostly([False, True, "first", "last"], ["maybe"]),
    "ann": _mostly([None, 252], [0, -1, float("nan"), "x", 1e308]),
    "start": _mostly([None, "2021-01-05"], ["soon", 20210106]),
    "end": _mostly([None, "2021-01-08"], ["2020-01-01"]),
    "symbols": st.one_of(st.none(), st.lists(NAMES, max_size=3)),
})


def _input_values(df: pd.DataFrame, col_pos: int, date) -> list[float]:
    """The numbers the input holds for one column on one date (text read as pandas does)."""
    rows = df.iloc[np.flatnonzero(df.index == date), col_pos]
    return [float(v) for v in pd.to_numeric(rows, errors="coerce") if not pd.isna(v)]


def _assert_valid(m: Market, df: pd.DataFrame, opts: dict) -> None:
    p = m.prices
    v = p.to_numpy()
    assert v.dtype == np.float64 and np.isfinite(v).all() and (v > 0).all()
    assert len(p) >= 2 and p.index.is_monotonic_increasing and p.index.is_unique
    assert m.n_assets >= 1 and math.isfinite(m.ann) and m.ann > 0
    if not opts.get("sort"):
        assert df.index.is_monotonic_increasing  # nothing sorted silently
    if not opts.get("dedupe"):
        assert df.index.is_unique  # nothing de-duplicated silently
    names = [str(c) for c in df.columns]
    for sym in m.symbols:
        j = names.index(sym)
        last = None
        for d in sorted(set(df.index.dropna())):
            have = _input_values(df, j, d)
            if d in p.index:
                got = float(p.loc[d, sym])
                if opts.get("fill") == "ffill" and not have:
                    assert last is not None and got == last, (sym, d)
                else:
                    assert got in have, (sym, d, got, have)  # a value of the input, not made up
            if have:
                last = p.loc[d, sym] if d in p.index else have[-1]


@SETTINGS
@given(frames(), OPTIONS)
def test_load_prices_gives_a_market_or_one_line(df, opts):
    try:
        m = load_prices(df, **opts)
    except GpusimError as e:
        assert str(e) and "\n" not in str(e)
        return
    _assert_valid(m, df, opts)


DATE_VALUES = st.one_of(
    st.integers(-10**19, 10**19),
    st.integers(19000101, 21991231),
    st.integers(10**8, 2 * 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["2021-01-04", "04/01/2021", "13/01/2021", "01/13/2021", "2020-11-20 07-AM",
                     "2021-03-27 10:00+01:00", "2021-03-29 10:00+02:00", "x", "", "2021-02-30"]),
    st.text(max_size=12),
    st.none(),
)


@SETTINGS
@given(st.lists(DATE_VALUES, min_size=1, max_size=6), st.sampled_from([None, True, False]))
def test_parse_dates_reads_or_refuses(values, dayfirst):
    kinds = {type(v) for v in values if v is not None}
    if len(kinds) > 1:
        values = [str(v) for v in values]  # a column holds one kind once read from a file
    try:
        idx, notes = parse_dates(values, "d", dayfirst=dayfirst)
    except GpusimError as e:
        assert "\n" not in str(e)
        return
    assert isinstance(idx, pd.DatetimeIndex) and len(idx) == len(values)
    assert all(isinstance(n, str) and "\n" not in n for n in notes)
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if nums and len(nums) == len(values):  # integers are never nanoseconds since 1970
        assert (idx.dropna().year >= 1900).all()


@SETTINGS
@given(st.one_of(st.none(), st.text(max_size=20), st.integers(), st.lists(st.text(max_size=8),
                 max_size=2), st.sampled_from(["synthetic", "synthetic:3", "synthetic:2:30:1",
                                               "synthetic:0", "synthetic:1:1", "synthetic:x",
                                               "synthetic:2:30:1:9", "Synthetic:2"])))
def test_market_from_spec_gives_a_market_or_one_line(spec):
    try:
        m = market_from_spec(spec)
    except GpusimError as e:
        assert "\n" not in str(e)
        return
    assert isinstance(m, Market) and m.n_bars >= 2


ANY = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
                st.lists(st.integers(), max_size=2), st.just(np.float64(2.5)),
                st.just(np.int64(3)), st.just(np.bool_(True)), st.just(object()))


def _ok_or_gpusim(fn, *a, **kw):
    try:
        return True, fn(*a, **kw)
    except GpusimError as e:
        assert str(e) and "\n" not in str(e)
        return False, None


@SETTINGS
@given(ANY, st.integers(-3, 3), st.booleans())
def test_validate_checks_return_checked_values_or_gpusim_errors(x, lo, allow_zero):
    ok, v = _ok_or_gpusim(V.number, x, "x")
    if ok:
        assert isinstance(v, float)
    ok, v = _ok_or_gpusim(V.positive, x, "x", allow_zero=allow_zero)
    if ok:
        assert math.isfinite(v) and (v >= 0 if allow_zero else v > 0)
    ok, v = _ok_or_gpusim(V.check_ann, x)
    if ok:
        assert math.isfinite(v) and v > 0
    ok, v = _ok_or_gpusim(V.integer, x, "x", lo)
    if ok:
        assert type(v) is int and v >= lo and not isinstance(x, (bool, np.bool_))
    ok, v = _ok_or_gpusim(V.whole_number, x, "x", lo)
    if ok:
        assert type(v) is int and v >= lo and v == x
    ok, v = _ok_or_gpusim(V.check_chunk_size, x)
    if ok:
        assert v is None or (type(v) is int and v >= 1)
    ok, v = _ok_or_gpusim(V.cash_and_rate, x, x)
    if ok:
        assert v[0] > 0 and math.isfinite(v[0]) and math.isfinite(v[1])
    ok, v = _ok_or_gpusim(V.check_choice, x, "x", ("a", None, False))
    if ok:
        assert v is None or v is False or v == "a"


@pytest.mark.parametrize("bad", [None, 3, [], object(), pd.DataFrame()])
def test_odd_sources_are_one_line(bad):
    with pytest.raises(GpusimError):
        load_prices(bad)


@SETTINGS
@given(st.lists(DATE_VALUES, min_size=0, max_size=6), OPTIONS, st.booleans())
def test_date_columns_of_any_kind_load_or_refuse(dates, opts, as_text):
    if as_text or len({type(v) for v in dates if v is not None}) > 1:
        dates = [None if v is None else str(v) for v in dates]
    df = pd.DataFrame({"date": pd.Series(dates, dtype=object),
                       "A": np.linspace(1.0, 2.0, len(dates))})
    opts = {k: v for k, v in opts.items() if k != "symbols"}
    try:
        m = load_prices(df, **opts)
    except GpusimError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert m.prices.index.is_monotonic_increasing and m.prices.index.is_unique
    assert set(m.prices["A"]) <= set(df["A"])  # only the file's own prices


@settings(max_examples=int(_N or 40), deadline=None, derandomize=not _N,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.text(alphabet="AB_x1", min_size=1, max_size=5),
                          st.sampled_from(["date,close\n2021-01-04,1\n2021-01-05,2\n",
                                           "date,close\n2021-01-05,2\n2021-01-04,1\n",
                                           "date,close\n2021-01-04,1\n2021-01-04,1\n",
                                           "date,close\n", "close\n1\n2\n", "",
                                           "date,close,symbol\n2021-01-04,1,X\n2021-01-05,x,X\n",
                                           "date,close\n20210104,1\n20210105,2\n"])),
                min_size=1, max_size=3),
       st.sampled_from(["name", "stem", "re:(A+)", "column:symbol", "bad"]),
       st.sampled_from([None, "close"]), st.booleans(), st.sampled_from([False, True]))
def test_one_file_per_symbol_loads_or_refuses(files, symbol_from, column, sort, dedupe):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        for stem, text in files:
            Path(d, f"{stem}.csv").write_text(text)
        try:
            m = load_prices(str(Path(d) / "*.csv"), symbol_from=symbol_from, column=column,
                            sort=sort, dedupe=dedupe, ann=252)
        except GpusimError as e:
            assert str(e) and "\n" not in str(e)
            return
    assert m.n_bars == 2 and set(m.prices.to_numpy().ravel()) <= {1.0, 2.0}
