"""gpusim.validate: the shared argument checks and their one-line messages."""

import math

import numpy as np
import pandas as pd
import pytest

from gpusim.errors import DataError, GpusimError
from gpusim.validate import (
    cash_and_rate,
    check_ann,
    check_chunk_size,
    date_text,
    integer,
    listing,
    number,
    positive,
    py_scalar,
    whole_number,
)


def test_py_scalar():
    assert py_scalar(np.float64(1.5)) == 1.5 and type(py_scalar(np.float64(1.5))) is float
    assert type(py_scalar(np.int64(3))) is int
    assert py_scalar("a") == "a" and py_scalar(None) is None


def test_date_text():
    assert date_text(pd.Timestamp("2024-01-02")) == "2024-01-02"
    assert date_text("2024-01-02 13:30") == "2024-01-02 13:30:00"
    assert date_text(np.datetime64("2024-01-02T23:00"), time=False) == "2024-01-02"
    assert date_text(pd.Timestamp("2024-01-02", tz="UTC")) == "2024-01-02"


def test_listing():
    assert listing(["a", 1]) == "a, 1"
    assert listing(range(10), 3) == "0, 1, 2, ... (10 in total)"


def test_number_and_positive():
    assert number("2.5", "x") == 2.5
    with pytest.raises(GpusimError, match=r"^fees='x' must be a number in \[0, 1\)$"):
        number("x", "fees", expect="a number in [0, 1)")
    assert positive(np.float64(2.0), "capital") == 2.0
    assert positive(0, "buffer", allow_zero=True) == 0.0
    with pytest.raises(GpusimError, match=r"^risk_target=0 must be a finite number > 0$"):
        positive(0, "risk_target")
    with pytest.raises(GpusimError, match=r"^capital=-1\.0 must be a finite number > 0$"):
        positive(np.float64(-1.0), "capital")
    with pytest.raises(GpusimError, match=r"^buffer=nan must be a finite number >= 0$"):
        positive(math.nan, "buffer", allow_zero=True)
    with pytest.raises(DataError, match=r"^fx=None must be a number$"):
        positive(None, "fx", error=DataError)


def test_check_ann():
    assert check_ann("252") == 252.0
    for bad in (0, -1, math.inf, "x", None):
        with pytest.raises(DataError, match=r"^ann=.* must be a .*; pass bars per year, e\.g\. "
                                            r"ann=252"):
            check_ann(bad)
    with pytest.raises(GpusimError) as e:
        check_ann(0, error=GpusimError)
    assert type(e.value) is GpusimError


def test_cash_and_rate():
    assert cash_and_rate(100, np.float64(0.02)) == (100.0, 0.02)
    with pytest.raises(GpusimError, match=r"^init_cash=0\.0 must be a finite number > 0$"):
        cash_and_rate(0, 0.0)
    with pytest.raises(GpusimError, match=r"^init_cash='x' must be a number$"):
        cash_and_rate("x", 0.0)
    for bad in ("x", math.inf):
        with pytest.raises(GpusimError, match=r"^rf=.* must be a finite annual rate$"):
            cash_and_rate(1.0, bad)


def test_integer():
    assert integer(np.int64(3), "k", 1) == 3
    for bad in (0, 2.0, True, "3", None):
        with pytest.raises(GpusimError, match=r"^k=.* must be an int >= 1$"):
            integer(bad, "k", 1)
    with pytest.raises(GpusimError, match=r"^m=5 must be an int in 2\.\.4$"):
        integer(5, "m", 2, 4)
    with pytest.raises(GpusimError, match=r"^lookback=1 must be an int >= 2 \(days\)$"):
        integer(1, "lookback", 2, fix=" (days)")
    with pytest.raises(GpusimError, match=r"^min_periods=9 must be an int in 2\.\.lookback$"):
        integer(9, "min_periods", 2, 5, expect="an int in 2..lookback")


def test_whole_number():
    assert whole_number(5.0, "n", 1) == 5 and type(whole_number(5.0, "n", 1)) is int
    for bad in (0, 2.5, "3", None, math.nan, math.inf):
        with pytest.raises(DataError, match=r"^n=.* must be an integer >= 1$"):
            whole_number(bad, "n", 1, error=DataError)


def test_check_chunk_size():
    assert check_chunk_size(None) is None and check_chunk_size(np.int32(8)) == 8
    for bad in (0, 1.0, True):
        with pytest.raises(GpusimError, match=r"must be an int >= 1 \(or None to plan it\)"):
            check_chunk_size(bad)
