"""gpusim.data.market: loading, validation, ann inference, returns/stats, synthetic market."""

import numpy as np
import pandas as pd
import pytest
from conftest import shared_file

from gpusim.data.load import load_prices
from gpusim.data.market import Market, infer_ann, synthetic_market
from gpusim.errors import DataError

# A: 100 -> 110 -> 99 -> 108.9 gives returns +0.1, -0.1, +0.1
# B:  50 ->  50 -> 55 ->  44   gives returns  0.0, +0.1, -0.2
DATES4 = pd.to_datetime(["2021-01-04", "2021-01-05", "2021-01-06", "2021-01-07"])


def frame4():
    data = {"A": [100.0, 110.0, 99.0, 108.9], "B": [50.0, 50.0, 55.0, 44.0]}
    return pd.DataFrame(data, index=DATES4)


def bdays(n, start="2021-01-04"):
    return pd.date_range(start, periods=n, freq="B")


# ---------------------------------------------------------------- returns and stats by hand


def test_returns_mu_cov_by_hand():
    m = Market(frame4(), ann=252.0)
    r = m.returns
    assert list(r.index) == list(DATES4[1:])
    np.testing.assert_allclose(r["A"].to_numpy(), [0.1, -0.1, 0.1], rtol=0, atol=1e-14)
    np.testing.assert_allclose(r["B"].to_numpy(), [0.0, 0.1, -0.2], rtol=0, atol=1e-14)
    mu, cov = m.stats()
    assert mu.dtype == np.float64 and cov.to_numpy().dtype == np.float64
    assert mu.shape == (2,) and cov.shape == (2, 2)
    # labelled by symbol (issue 15)
    assert list(mu.index) == ["A", "B"] and list(cov.index) == list(cov.columns) == ["A", "B"]
    assert cov.loc["A", "B"] == cov.loc["B", "A"]
    # means: 0.1/3 and -0.1/3; deviations A: 1/15, -2/15, 1/15; B: 1/30, 4/30, -5/30
    np.testing.assert_allclose(mu, [0.1 / 3, -0.1 / 3], rtol=1e-12)
    var_a = ((1 / 15) ** 2 + (2 / 15) ** 2 + (1 / 15) ** 2) / 2  # = 1/75
    var_b = ((1 / 30) ** 2 + (4 / 30) ** 2 + (5 / 30) ** 2) / 2  # = 7/300
    cov_ab = ((1 / 15) * (1 / 30) + (-2 / 15) * (4 / 30) + (1 / 15) * (-5 / 30)) / 2  # = -1/75
    np.testing.assert_allclose(cov, [[var_a, cov_ab], [cov_ab, var_b]], rtol=1e-10)
    np.testing.assert_allclose(cov, [[1 / 75, -1 / 75], [-1 / 75, 7 / 300]], rtol=1e-10)


def test_market_properties_subset_window_describe():
    m = Market(frame4(), ann=252.0, name="toy")
    assert m.symbols == ["A", "B"] and m.n_assets == 2 and m.n_bars == 4
    assert m.ann_source == "given"
    s = m.subset(["B"])
    assert s.symbols == ["B"] and s.ann == 252.0 and s.name == "toy"
    assert m.subset("A").prices["A"].tolist() == [100.0, 110.0, 99.0, 108.9]
    w = m.window("2021-01-05", "2021-01-06")
    assert w.n_bars == 2 and w.prices.index[0] == pd.Timestamp("2021-01-05")
    assert m.window(start="2021-01-06").n_bars == 2
    d = m.describe()
    assert "\n" not in d
    for part in ("toy", "2 assets", "4 bars", "2021-01-04", "2021-01-07", "252", "given"):
        assert part in d
    with pytest.raises(DataError, match=r"unknown symbol.*'?C'?.*available: A, B"):
        m.subset(["C"])
    with pytest.raises(DataError, match="1 bar"):
        m.window("2021-01-07")
    with pytest.raises(DataError, match="at least 3 bars"):
        m.window("2021-01-06").stats()


def test_market_constructor_validates_and_converts():
    df = pd.DataFrame({"X": [1, 2, 3]}, index=bdays(3))
    m = Market(df, 12)
    assert m.prices["X"].dtype == np.float64 and m.ann == 12.0
    bad = frame4()
    bad.iloc[2, 1] = np.nan
    with pytest.raises(DataError, match=r"column 'B'.*NaN.*2021-01-06"):
        Market(bad, 252)
    with pytest.raises(DataError, match="ann"):
        Market(frame4(), 0)
    with pytest.raises(DataError, match="not ascending"):
        Market(frame4().iloc[::-1], 252)


# ---------------------------------------------------------------- validation errors


def err(df, **kw):
    with pytest.raises(DataError) as e:
        load_prices(df, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_error_non_numeric_column():
    df = frame4().astype(object)
    df.iloc[2, 1] = "n/a"
    msg = err(df)
    assert "'B'" in msg and "2021-01-06" in msg and "numeric" in msg and "'n/a'" in msg
    msg = err(frame4().assign(flag=[True, False, True, True]))
    assert "'flag'" in msg and "boolean" in msg


def test_numeric_strings_are_accepted():
    df = frame4().astype(str)
    m = load_prices(df, ann=252)
    assert m.prices["A"].tolist() == [100.0, 110.0, 99.0, 108.9]


@pytest.mark.parametrize("align", ["common", "none"])
def test_error_nan_inside_window(align):
    df = frame4()
    df.iloc[2, 0] = np.nan
    msg = err(df, align=align)
    assert "'A'" in msg and "2021-01-06" in msg and "NaN" in msg and "ffill" in msg
    m = load_prices(df, align=align, fill="ffill")
    assert m.prices["A"].tolist() == [100.0, 110.0, 110.0, 108.9]


def test_error_inf_and_nonpositive():
    df = frame4()
    df.iloc[1, 1] = np.inf
    msg = err(df)
    assert "'B'" in msg and "2021-01-05" in msg and "inf" in msg
    df = frame4()
    df.iloc[3, 0] = 0.0
    msg = err(df)
    assert "'A'" in msg and "2021-01-07" in msg and "<= 0" in msg
    df = frame4()
    df.iloc[1, 1] = -3.0
    msg = err(df)
    assert "'B'" in msg and "2021-01-05" in msg and "-3" in msg


def test_error_duplicate_dates_names_first_duplicate():
    df = pd.DataFrame({"A": [1.0, 2, 3, 4, 5]}, index=pd.to_datetime(
        ["2021-01-04", "2021-01-05", "2021-01-06", "2021-01-06", "2021-01-07"]))
    msg = err(df)
    assert "duplicate date 2021-01-06" in msg and "row 3" in msg


def test_error_unsorted_dates_not_sorted_silently():
    df = pd.DataFrame({"A": [1.0, 2, 3, 4]}, index=pd.to_datetime(
        ["2021-01-04", "2021-01-06", "2021-01-05", "2021-01-07"]))
    msg = err(df)
    assert "not ascending" in msg and "2021-01-05" in msg and "2021-01-06" in msg and "sort" in msg


def test_error_all_nan_column():
    msg = err(frame4().assign(C=np.nan))
    assert "'C'" in msg and "all NaN" in msg


def test_error_too_few_rows():
    msg = err(frame4().iloc[:1])
    assert "1 row" in msg and "at least 2" in msg
    # A only in the first two rows, B only in the last two: no common window
    df = frame4()
    df.iloc[2:, 0] = np.nan
    df.iloc[:2, 1] = np.nan
    msg = err(df)
    assert "no common window" in msg and "'B'" in msg and "2021-01-06" in msg and "'A'" in msg


def test_error_options_and_symbols():
    assert "'common', 'none'" in err(frame4(), align="outer")
    assert "'ffill'" in err(frame4(), fill="bfill")
    assert "ann" in err(frame4(), ann=-1)
    msg = err(frame4(), symbols=["A", "ZZZ"])
    assert "ZZZ" in msg and "available: A, B" in msg
    assert "twice" in err(frame4(), symbols=["A", "A"])
    m = load_prices(frame4(), symbols=["B", "A"], ann=52)
    assert m.symbols == ["B", "A"] and m.ann == 52.0 and m.ann_source == "given"


def test_error_missing_file_and_bad_suffix(tmp_path):
    p = tmp_path / "nope.csv"
    with pytest.raises(DataError, match="not found.*nope.csv"):
        load_prices(p)
    q = tmp_path / "prices.xlsx"
    q.write_text("x")
    with pytest.raises(DataError, match="unknown file type"):
        load_prices(q)


def test_error_unparseable_date(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text("date,A\n2021-01-04,1\nnot-a-date,2\n2021-01-06,3\n")
    with pytest.raises(DataError, match=r"date column 'date'.*'not-a-date'.*row 1"):
        load_prices(p)


def test_caller_frame_not_mutated():
    df = frame4()
    df.columns = [1, 2]
    load_prices(df)
    assert list(df.columns) == [1, 2]


# ---------------------------------------------------------------- files and date columns


def test_csv_parquet_round_trip(tmp_path):
    df = frame4()
    df.index.name = "date"
    df.to_csv(tmp_path / "p.csv")
    df.to_csv(tmp_path / "p.csv.gz")
    df.to_parquet(tmp_path / "p.parquet")
    df.reset_index().to_parquet(tmp_path / "col.parquet", index=False)
    df.rename_axis(None).to_csv(tmp_path / "unnamed.csv")  # first column 'Unnamed: 0'
    df.reset_index().rename(columns={"date": "when"}).to_csv(tmp_path / "when.csv", index=False)
    for f, kw in [("p.csv", {}), ("p.csv.gz", {}), ("p.parquet", {}), ("col.parquet", {}),
                  ("unnamed.csv", {}), ("when.csv", {"date_col": "when"})]:
        m = load_prices(tmp_path / f, **kw)
        assert m.name == f
        assert m.symbols == ["A", "B"], f
        assert list(m.prices.index) == list(DATES4), f
        np.testing.assert_array_equal(m.prices.to_numpy(), df.to_numpy())
        assert m.ann == 252.0 and m.ann_source == "inferred: business-daily (252)"
    with pytest.raises(DataError, match="date_col='nope'.*columns"):
        load_prices(tmp_path / "when.csv", date_col="nope")


def test_dataframe_with_date_column_auto_detected():
    for col in ("date", "Date", "DATETIME", "datetime", "time", "timestamp"):
        df = frame4().rename_axis(col).reset_index()
        df[col] = df[col].dt.strftime("%Y-%m-%d")
        m = load_prices(df)
        assert m.symbols == ["A", "B"] and m.prices.index[0] == DATES4[0], col


def test_align_common_trims_late_listing():
    data = {"old": [1.0, 2, 3, 4, 5, 6], "new": [np.nan, np.nan, 7, 8, 9, np.nan]}
    df = pd.DataFrame(data, index=bdays(6))
    m = load_prices(df)
    assert m.n_bars == 3 and m.prices.index[0] == bdays(6)[2] and m.prices.index[-1] == bdays(6)[4]
    assert m.prices["old"].tolist() == [3.0, 4.0, 5.0]
    msg = err(df, align="none")
    assert "'new'" in msg and "2021-01-04" in msg and "align='common'" in msg


def test_pypfopt_common_window():
    m = load_prices(shared_file("pypfopt/stock_prices.csv"))
    assert m.n_bars == 896 and m.n_assets == 20
    assert m.prices.index[0] == pd.Timestamp("2014-09-19")
    assert m.prices.index[-1] == pd.Timestamp("2018-04-11")
    assert m.symbols[:3] == ["GOOG", "AAPL", "FB"]
    assert m.ann == 252.0
    mu, cov = m.stats()
    assert mu.shape == (20,) and np.all(np.linalg.eigvalsh(cov) > 0)
    # a subset that excludes BABA starts at FB's listing, 2012-05-18
    sub = load_prices(shared_file("pypfopt/stock_prices.csv"), symbols=["AAPL", "FB"])
    assert sub.prices.index[0] == pd.Timestamp("2012-05-18")


def test_real_files_errors_are_explicit():
    # Binance exports are newest-first: refused, not sorted silently
    with pytest.raises(DataError) as e:
        load_prices(shared_file("crypto_binance/Binance_BNBUSDT_1h.csv"), symbols=["close"])
    msg = str(e.value)
    assert "not ascending" in msg and "2021-06-09 23:00:00" in msg
    # back-adjusted futures go negative far back in history
    with pytest.raises(DataError) as e:
        load_prices(shared_file("pysystemtrade/adjusted_prices_csv/US10.csv"))
    msg = str(e.value)
    assert "'price'" in msg and "1982-08-30" in msg and "<= 0" in msg


# ---------------------------------------------------------------- ann inference


@pytest.mark.parametrize(
    "freq, ann",
    [("B", 252.0), ("D", 365.0), ("h", 8760.0), ("W", 52.0), ("W-FRI", 52.0), ("ME", 12.0),
     ("MS", 12.0), ("QE", 4.0), ("YE", 1.0)],
)
def test_infer_ann_from_freq(freq, ann):
    idx = pd.date_range("2019-01-01", periods=240, freq=freq)
    got, desc = infer_ann(idx)
    assert got == ann and str(int(ann)) in desc


def test_infer_ann_special_cases():
    weekday_hours = pd.date_range("2021-01-04", periods=24 * 60, freq="h")
    weekday_hours = weekday_hours[weekday_hours.day_of_week < 5]
    assert infer_ann(weekday_hours) == (6048.0, "hourly, weekdays only (6048 = 252*24)")
    # business days with holidays missing are still business-daily; 23:00 stamps are fine
    b = bdays(300) + pd.Timedelta(hours=23)
    assert infer_ann(b.delete([5, 50, 120]))[0] == 252.0
    with pytest.raises(DataError, match="ann="):
        infer_ann(pd.date_range("2021-01-01", periods=50, freq="15min"))
    with pytest.raises(DataError, match="ann="):
        infer_ann(pd.DatetimeIndex(["2021-01-01"]))


def test_infer_ann_real_files():
    m = load_prices(shared_file("skfolio/sp500_dataset.csv.gz"))
    assert m.ann == 252.0 and m.ann_source == "inferred: business-daily (252)" and m.n_bars == 8313
    raw = pd.read_csv(shared_file("crypto_binance_closes/Binance_ADAUSDT_1h.csv"), usecols=["date"])
    idx = pd.DatetimeIndex(pd.to_datetime(raw["date"], format="mixed"))
    assert infer_ann(idx) == (8760.0, "hourly 24/7 (8760)")
    daily = pd.read_csv(shared_file("crypto_binance/Binance_BTCUSDT_d.csv"), usecols=["date"])
    assert infer_ann(pd.to_datetime(daily["date"], format="mixed"))[0] == 365.0


# ---------------------------------------------------------------- synthetic market


def test_synthetic_deterministic_and_shape():
    a = synthetic_market(n_assets=4, n_bars=300, seed=7)
    b = synthetic_market(n_assets=4, n_bars=300, seed=7)
    c = synthetic_market(n_assets=4, n_bars=300, seed=8)
    pd.testing.assert_frame_equal(a.prices, b.prices)
    assert not np.allclose(a.prices.to_numpy(), c.prices.to_numpy())
    assert a.prices.shape == (300, 4) and a.symbols == ["A00", "A01", "A02", "A03"]
    assert np.all(a.prices.iloc[0].to_numpy() == 100.0)
    assert a.prices.index[0] == pd.Timestamp("2020-01-01") and a.ann == 252.0
    assert a.name == "synthetic(seed=7)" and "business-daily" in a.ann_source
    assert synthetic_market(n_assets=12).n_assets == 12


@pytest.mark.parametrize("freq, ann", [("B", 252.0), ("D", 365.0), ("h", 8760.0), ("W", 52.0),
                                       ("ME", 12.0), ("M", 12.0)])
def test_synthetic_freqs_match_infer_ann(freq, ann):
    m = synthetic_market(n_assets=2, n_bars=200, freq=freq)
    assert m.ann == ann and infer_ann(m.prices.index)[0] == ann
    assert synthetic_market(n_assets=2, n_bars=3, freq=freq, ann=100).ann_source == "given"


def test_synthetic_recovers_vol_and_corr():
    vol = np.array([0.10, 0.25, 0.40])
    corr = np.array([[1.0, 0.6, -0.3], [0.6, 1.0, 0.2], [-0.3, 0.2, 1.0]])
    m = synthetic_market(n_assets=3, n_bars=20000, seed=3, vol=vol, corr=corr, mu=0.05)
    _mu, cov = m.stats()
    sd = np.sqrt(np.diag(cov))
    np.testing.assert_allclose(sd * np.sqrt(m.ann), vol, rtol=0.03)
    np.testing.assert_allclose(cov / np.outer(sd, sd), corr, atol=0.03)


def test_synthetic_default_parameters():
    m = synthetic_market(n_assets=4, n_bars=20000, seed=1)
    _mu, cov = m.stats()
    sd = np.sqrt(np.diag(cov))
    np.testing.assert_allclose(sd * np.sqrt(252), np.linspace(0.10, 0.40, 4), rtol=0.03)
    load = np.linspace(0.2, 0.7, 4)
    want = np.outer(load, load)
    np.fill_diagonal(want, 1.0)
    np.testing.assert_allclose(cov / np.outer(sd, sd), want, atol=0.03)


def test_synthetic_validation():
    cases = [
        ({"n_assets": 0}, "n_assets"),
        ({"n_bars": 1}, "n_bars"),
        ({"freq": "Q"}, "freq"),
        ({"n_assets": 2, "corr": [[1, 2], [2, 1]]}, "positive definite"),
        ({"n_assets": 2, "corr": [[1, 0.5], [0.4, 1]]}, "symmetric"),
        ({"n_assets": 2, "corr": np.eye(3)}, "shape"),
        ({"n_assets": 2, "vol": [0.1, 0.2, 0.3]}, "shape"),
        ({"n_assets": 2, "vol": -0.1}, "vol"),
        ({"ann": 0}, "ann"),
    ]
    for kw, pat in cases:
        with pytest.raises(DataError, match=pat):
            synthetic_market(**kw)
