"""gpusim.load_prices options: one file per symbol, --column, symbol names, opt-in sort/dedupe,
the window and what set it, start/end, fill notes, and how dates are read (integers, 12-hour
clock, day first, UTC offsets). Real files under ../shared/data (skipped when absent) check
values against the files' own rows."""

import numpy as np
import pandas as pd
import pytest
from conftest import shared_file

from gpusim.data.dates import parse_dates
from gpusim.data.load import load_prices, market_from_spec
from gpusim.errors import DataError, GpusimError


def err(source, **kw):
    with pytest.raises(DataError) as e:
        load_prices(source, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def binance(pattern="Binance_*_1h.csv"):
    shared_file("crypto_binance/Binance_BTCUSDT_1h.csv")
    return str(shared_file("crypto_binance") / pattern)


# ---------------------------------------------------------------- symbols before alignment


def test_pypfopt_symbols_chosen_before_alignment_and_window_named():
    path = shared_file("pypfopt/stock_prices.csv")
    m = load_prices(path, symbols=["AAPL", "AMZN", "GOOG"])
    assert m.n_bars == 3435 and m.symbols == ["AAPL", "AMZN", "GOOG"]
    assert m.prices.index[0] == pd.Timestamp("2004-08-19")
    assert m.prices.index[-1] == pd.Timestamp("2018-04-11")
    assert m.window_info == {"align": "common", "start_set_by": ["GOOG"], "end_set_by": [],
                             "rows": 3435, "of_rows": 7126, "start": "2004-08-19",
                             "end": "2018-04-11"}
    assert m.load_notes[-1] == ("window 2004-08-19 .. 2018-04-11 (3,435 of 7,126 rows; set by "
                                "GOOG, the latest listing)")
    full = load_prices(path)
    assert full.load_notes == ("window 2014-09-19 .. 2018-04-11 (896 of 7,126 rows; set by "
                               "BABA, the latest listing)",)
    # the command-line spec agrees with the API (it used to align all 20 columns first)
    spec = market_from_spec(str(path), symbols=["AAPL", "AMZN", "GOOG"])
    pd.testing.assert_frame_equal(spec.prices, m.prices)
    info = spec.data_info()
    assert info["n_bars"] == 3435 and info["start"] == "2004-08-19"
    assert info["window"]["start_set_by"] == ["GOOG"]


def test_start_end_cut_before_alignment():
    path = shared_file("pypfopt/stock_prices.csv")
    m = load_prices(path, symbols=["AAPL", "GE"], start="2010-01-04", end="2010-12-31")
    assert m.prices.index[0] == pd.Timestamp("2010-01-04") and m.n_bars == 252
    assert m.load_notes[-1] == "window 2010-01-04 .. 2010-12-31 (all 252 rows)"
    raw = pd.read_csv(path, index_col="date")
    assert m.prices.loc["2010-06-01", "AAPL"] == raw.loc["2010-06-01", "AAPL"]
    assert "after end" in err(path, start="2011-01-01", end="2010-01-01")
    assert "start='soon' (--start) is not a date" in err(path, start="soon")
    assert "keeps 0 row(s)" in err(path, start="2030-01-01")


# ---------------------------------------------------------------- one file per symbol


def test_binance_glob_close_prices_equal_the_files():
    m = load_prices(binance(), column="close", sort=True, dedupe="first")
    assert m.symbols == ["ADAUSDT", "BNBUSDT", "BTCUSDT", "ETHUSDT"]
    assert m.n_bars == 7478 and m.ann == 8760.0
    assert m.prices.index[0] == pd.Timestamp("2020-08-01 23:00")
    assert m.prices.index[-1] == pd.Timestamp("2021-06-10 00:00")
    last = m.prices.loc[pd.Timestamp("2021-06-10 00:00")]
    assert last.to_dict() == {"ADAUSDT": 1.6348, "BNBUSDT": 377.0, "BTCUSDT": 37584.76,
                              "ETHUSDT": 2620.87}
    assert m.prices.loc["2021-06-09 23:00", "ETHUSDT"] == 2610.18
    assert m.prices.loc["2020-08-01 23:00", "BTCUSDT"] == 11801.17
    # the conflicting pair of 2020-11-20 07:00: 'first' keeps the first row of the file
    assert m.prices.loc["2020-11-20 07:00", "BTCUSDT"] == 18212.0
    notes = "\n".join(m.load_notes)
    assert "sorted 36,062 rows of Binance_BTCUSDT_1h.csv (BTCUSDT) by date (the file was " \
           "newest first)" in notes
    assert "dropped 2,649 repeated-date rows of Binance_BTCUSDT_1h.csv (BTCUSDT); 1 date(s) " \
           "had different prices (first 2020-11-20 07:00:00): kept the first row" in notes
    assert "28,584 dates like '2020-11-20 07-AM' read as a 12-hour clock" in notes
    assert m.load_notes[-1] == ("window 2020-08-01 23:00:00 .. 2021-06-10 (7,478 of 33,413 "
                                "rows; set by ADAUSDT, BNBUSDT, the latest listing)")
    last = load_prices(binance("Binance_BTCUSDT_1h.csv"), column="close", sort=True,
                       dedupe="last")
    assert last.prices.loc["2020-11-20 07:00", last.symbols[0]] == 18143.03


def test_binance_older_rows_12_hour_clock():
    m = load_prices(binance("Binance_[BE]T*_1h.csv"), column="close", sort=True, dedupe="first")
    assert m.symbols == ["BTCUSDT", "ETHUSDT"] and m.prices.index[0] == pd.Timestamp(
        "2017-08-17 04:00")
    assert m.prices.loc["2019-03-10 12:00"].to_dict() == {"BTCUSDT": 3905.01, "ETHUSDT": 135.35}
    assert m.prices.loc["2018-01-01 00:00"].to_dict() == {"BTCUSDT": 13529.01, "ETHUSDT": 727.62}


def test_binance_errors_name_the_opt_in():
    msg = err(binance(), column="close")
    assert "Binance_ADAUSDT_1h.csv" in msg and "not ascending" in msg and "newest first" in msg
    assert "sort=True (--sort)" in msg
    msg = err(binance(), column="close", sort=True)
    assert "duplicate date 2020-08-01 23:00:00 in Binance_BTCUSDT_1h.csv" in msg
    assert "dedupe=True (--dedupe)" in msg
    msg = err(binance(), column="close", sort=True, dedupe=True)
    assert "2020-11-20 07:00:00" in msg and "18212, 18143" in msg and "--dedupe first|last" in msg
    # without --column, the OHLCV columns of one file: the text column is named
    msg = err(binance("Binance_BNBUSDT_1h.csv"), sort=True)
    assert "'symbol'" in msg and "--column" in msg


def test_symbol_from_rules():
    one = binance("Binance_BNBUSDT_1h.csv")
    assert load_prices(one, column="close", sort=True).symbols == ["Binance_BNBUSDT_1h"]
    ada = binance("Binance_ADAUSDT_1h.csv")
    kw = {"column": "close", "sort": True}
    assert load_prices([one, ada], symbol_from="stem", **kw).symbols == [
        "Binance_BNBUSDT_1h", "Binance_ADAUSDT_1h"]
    assert load_prices([one, ada], symbol_from=r"re:_(\w+?)USDT", **kw).symbols == ["BNB", "ADA"]
    m = load_prices([one, ada], symbol_from="column:symbol", **kw)
    assert m.symbols == ["BNB/USDT", "ADA/USDT"]
    assert m.prices.loc[pd.Timestamp("2021-06-10"), "ADA/USDT"] == 1.6348
    assert "does not match" in err(one, symbol_from="re:XYZ(.)", **kw)
    assert "is not valid" in err(one, symbol_from="file", **kw)
    assert "needs column=" in err(one, symbol_from="column:symbol", sort=True)
    assert "given twice" in err([one, one], **kw)
    assert "matches no file" in err(str(shared_file("crypto_binance")) + "/*.xlsx")


def test_long_table_with_a_symbol_column(tmp_path):
    rows = ["date,symbol,close,volume"]
    for d, a, b in [("2021-01-04", 10, 20), ("2021-01-05", 11, 21), ("2021-01-06", 12, 19)]:
        rows += [f"{d},AAA,{a},1", f"{d},BBB,{b},2"]
    p = tmp_path / "long.csv"
    p.write_text("\n".join(rows) + "\n")
    m = load_prices(p, column="close", symbol_from="column:symbol", ann=252)
    assert m.symbols == ["AAA", "BBB"] and m.n_bars == 3
    assert m.prices["BBB"].tolist() == [20.0, 21.0, 19.0]


def test_two_wide_files_join_on_the_union_of_dates(tmp_path):
    pd.DataFrame({"date": ["2021-01-04", "2021-01-05", "2021-01-06"], "A": [1.0, 2, 3]}).to_csv(
        tmp_path / "a.csv", index=False)
    pd.DataFrame({"date": ["2021-01-05", "2021-01-06", "2021-01-07"], "B": [5.0, 6, 7]}).to_csv(
        tmp_path / "b.csv", index=False)
    m = load_prices(str(tmp_path / "*.csv"), ann=252)
    assert m.symbols == ["A", "B"] and m.n_bars == 2 and m.name == "2 files (a.csv, ...)"
    assert m.window_info["start_set_by"] == ["B"] and m.window_info["end_set_by"] == ["A"]
    assert m.load_notes[-1] == ("window 2021-01-05 .. 2021-01-06 (2 of 4 rows; set by B, the "
                                "latest listing; ended by A, the first to end)")
    pd.DataFrame({"date": ["2021-01-05"], "A": [9.0]}).to_csv(tmp_path / "c.csv", index=False)
    assert "symbol 'A' comes from both a.csv and c.csv" in err(str(tmp_path / "*.csv"))


# ---------------------------------------------------------------- sort, dedupe, fill


def test_sort_and_dedupe_say_what_they_did():
    df = pd.DataFrame({"date": ["2021-01-06", "2021-01-05", "2021-01-05", "2021-01-04"],
                       "A": [3.0, 2.0, 2.0, 1.0], "note": ["x", "y", "z", "w"]})
    assert "not ascending" in err(df, symbols=["A"])
    assert "duplicate date 2021-01-05" in err(df, symbols=["A"], sort=True)
    m = load_prices(df, symbols=["A"], sort=True, dedupe=True, ann=252)
    assert m.prices["A"].tolist() == [1.0, 2.0, 3.0]
    assert m.load_notes[:2] == ("sorted 4 rows of the DataFrame by date (the file was newest "
                                "first)", "dropped 1 repeated-date rows of the DataFrame (same "
                                "prices)")
    df.loc[2, "A"] = 2.5  # now the repeated date disagrees
    assert "different prices" in err(df, symbols=["A"], sort=True, dedupe="exact")
    assert load_prices(df, symbols=["A"], sort=True, dedupe="last", ann=252).prices[
        "A"].tolist() == [1.0, 2.5, 3.0]
    assert "dedupe='maybe' (--dedupe) is not valid" in err(df, dedupe="maybe")
    assert "sort=1 must be True or False" in err(df, sort=1)


def test_fill_counts_what_it_filled_and_leading_nans_say_why():
    idx = pd.date_range("2021-01-04", periods=5, freq="B")
    df = pd.DataFrame({"A": [1.0, np.nan, np.nan, 4, 5], "B": [np.nan, 2, 3, np.nan, 5]},
                      index=idx)
    m = load_prices(df, fill="ffill")
    assert m.prices.index[0] == idx[1] and m.prices["A"].tolist() == [1.0, 1.0, 4.0, 5.0]
    assert m.prices["B"].tolist() == [2.0, 3.0, 3.0, 5.0]
    assert m.load_notes[0] == ("fill='ffill': carried 3 price(s) forward over missing rows "
                               "(A 2, B 1)")
    msg = err(df, align="none", fill="ffill")
    assert "column 'B' has no price before 2021-01-05" in msg
    assert "leading NaNs cannot be forward-filled" in msg and "align='common'" in msg
    assert "--start 2021-01-05" in msg and "fill='ffill'" not in msg
    m = load_prices(df, align="none", fill="ffill", start="2021-01-05")
    assert m.prices["A"].tolist() == [1.0, 1.0, 4.0, 5.0]
    assert m.load_notes[-1] == "window 2021-01-05 .. 2021-01-08 (all 4 rows, align='none')"


# ---------------------------------------------------------------- inputs that were nonsense


def test_none_and_other_sources_are_one_line():
    assert "source is None" in err(None)
    assert "source must be a path" in err(42)
    assert "empty list" in err([])


def test_datetime_column_is_not_a_price(tmp_path):
    idx = pd.date_range("2021-01-04", periods=4, freq="B", name="date")
    df = pd.DataFrame({"A": [1.0, 2, 3, 4], "updated": idx + pd.Timedelta(hours=1)}, index=idx)
    df.to_parquet(tmp_path / "p.parquet")
    msg = err(tmp_path / "p.parquet")
    assert "column 'updated' holds dates/times" in msg and "--symbols" in msg
    m = load_prices(tmp_path / "p.parquet", symbols=["A"])
    assert m.symbols == ["A"] and m.prices["A"].tolist() == [1.0, 2, 3, 4]
    assert "'flag' is boolean" in err(df.assign(flag=True).drop(columns="updated"))


def test_integer_dates_yyyymmdd_and_unix(tmp_path):
    days = pd.date_range("2021-01-01", "2021-06-30", freq="B")
    px = 100 + np.arange(len(days), dtype=float)
    p = tmp_path / "ints.csv"
    pd.DataFrame({"date": days.strftime("%Y%m%d").astype(int), "A": px}).to_csv(p, index=False)
    m = load_prices(p)
    assert list(m.prices.index) == list(days) and m.ann == 252.0 and m.load_notes == (
        f"window 2021-01-01 .. 2021-06-30 (all {len(days)} rows)",)
    secs = (days - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)
    for unit, mult in (("seconds", 1), ("milliseconds", 1000)):
        df = pd.DataFrame({"unix": np.asarray(secs) * mult, "A": px})
        m = load_prices(df, date_col="unix")
        assert list(m.prices.index) == list(days)
        assert m.load_notes[0] == f"date column 'unix' of the DataFrame: integers read as Unix " \
                                  f"time in {unit}"
    bad = pd.DataFrame({"date": np.arange(1, 5), "A": [1.0, 2, 3, 4]})
    msg = err(bad)
    assert "integer 1 (row 0) is neither a YYYYMMDD date nor Unix time" in msg
    assert "not read as nanoseconds since 1970" in msg


def test_integer_yyyymmdd_dates_rebalance_monthly(tmp_path):
    from gpusim.backtest.api import backtest

    days = pd.date_range("2021-01-01", "2021-06-30", freq="B")
    p = tmp_path / "ints.csv"
    pd.DataFrame({"date": days.strftime("%Y%m%d").astype(int), "A": np.linspace(100, 120, len(
        days)), "B": np.linspace(50, 40, len(days))}).to_csv(p, index=False)
    res = backtest(load_prices(p), weights="equal", rebalance="M", backend="cpu",
                   progress=False)
    assert int(res.metrics["n_rebalances"].iloc[0]) == 6  # one per month, Jan..Jun


def test_day_first_dates_are_read_or_refused_with_the_option():
    df = pd.DataFrame({"date": ["30/12/2020", "31/12/2020", "04/01/2021", "05/01/2021"],
                       "A": [1.0, 2, 3, 4]})
    m = load_prices(df, ann=252)
    assert [d.strftime("%Y-%m-%d") for d in m.prices.index] == [
        "2020-12-30", "2020-12-31", "2021-01-04", "2021-01-05"]
    assert "dates read day first (dd/mm/yyyy), as '30/12/2020' shows" in m.load_notes[0]
    amb = df.iloc[2:]
    msg = err(amb)
    assert "read both day first and month first" in msg and "--dayfirst" in msg
    assert "--date-format" in msg
    assert load_prices(amb, dayfirst=True, ann=252).prices.index[0] == pd.Timestamp("2021-01-04")
    assert load_prices(amb, dayfirst=False, ann=252).prices.index[0] == pd.Timestamp("2021-04-01")
    assert load_prices(amb, date_format="%d/%m/%Y", ann=252).prices.index[1] == pd.Timestamp(
        "2021-01-05")
    assert "date_format='%Y' (--date-format) does not fit" in err(amb, date_format="%Y")


def test_utc_offsets_with_daylight_saving_become_utc():
    df = pd.DataFrame({"date": ["2021-03-26 17:00+01:00", "2021-03-29 17:00+02:00",
                                "2021-03-30 17:00+02:00"], "A": [1.0, 2, 3]})
    m = load_prices(df, ann=252)
    assert list(m.prices.index) == list(pd.to_datetime(["2021-03-26 16:00", "2021-03-29 15:00",
                                                        "2021-03-30 15:00"]))
    assert "different UTC offsets (+01:00, +02:00" in m.load_notes[0]
    assert "converted to UTC" in m.load_notes[0]


def test_parse_dates_rules_directly():
    idx, notes = parse_dates(np.array([1605855600.0, 1623283200000.0]), "unix")
    assert list(idx) == [pd.Timestamp("2020-11-20 07:00"), pd.Timestamp("2021-06-10")]
    assert notes == ["unix: integers read as Unix time in seconds and milliseconds (mixed "
                     "units, each value by its size)"]
    idx, _ = parse_dates(["2019-03-10 12-PM", "2018-01-01 12-AM"], "d")
    assert list(idx) == [pd.Timestamp("2019-03-10 12:00"), pd.Timestamp("2018-01-01 00:00")]
    with pytest.raises(DataError, match=r"2\.5 \(row 0\) is a fraction"):
        parse_dates([2.5, 3.0], "x")
    with pytest.raises(DataError, match="both '13/01/2021' .day first. and '01/13/2021'"):
        parse_dates(["13/01/2021", "01/13/2021"], "x")
    with pytest.raises(DataError, match="booleans"):
        parse_dates([True, False], "x")


def test_market_from_spec_refuses_file_options_for_synthetic():
    with pytest.raises(DataError, match="--column, --sort apply to price files"):
        market_from_spec("synthetic:3:100:1", column="close", sort=True)
    m = market_from_spec("synthetic:3:100:1", symbols=["A02"], start="2020-02-03")
    assert m.symbols == ["A02"] and m.prices.index[0] == pd.Timestamp("2020-02-03")
    with pytest.raises(GpusimError, match="unknown loader option"):
        market_from_spec(None, colum="close")
    with pytest.raises(DataError, match="synthetic:x"):
        market_from_spec("synthetic:x")


def test_sweep_job_data_section_passes_the_loader_options(tmp_path):
    from gpusim.sweep.job import load_market

    (tmp_path / "p.csv").write_text("date,close,symbol\n2021-01-06,3,X\n2021-01-05,2,X\n"
                                    "2021-01-05,2,X\n2021-01-04,1,X\n")
    spec = {"path": "p.csv", "column": "close", "sort": True, "dedupe": True, "ann": 252}
    m = load_market(spec, base_dir=tmp_path)
    assert m.symbols == ["p"] and m.prices["p"].tolist() == [1.0, 2.0, 3.0]
    assert m.load_notes[0] == "sorted 4 rows of p.csv (p) by date (the file was newest first)"
