"""Futures data loading (gpusim.data.futures): daily resampling, FX, costs, alignment.

Hand-made pysystemtrade-style folders check the rules exactly; the shared pysystemtrade copy
(../shared/data/pysystemtrade, skipped when absent) checks figures quoted in its README.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import shared_file

from gpusim.data.futures import load_futures, read_daily, synthetic_futures
from gpusim.errors import GpusimError


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def mini(tmp_path):
    """Two instruments: AAA in USD (intraday rows, an empty price, a Sunday row) and BBB in EUR
    listed later, with an EURUSD file and a percentage commission."""
    root = tmp_path / "pst"
    _write(root / "adjusted_prices_csv" / "AAA.csv", "\n".join([
        "DATETIME,price",
        "2024-01-01 23:00:00,100.0",
        "2024-01-02 10:00:00,101.0",
        "2024-01-02 23:00:00,102.0",
        "2024-01-03 14:08:59,103.5",
        "2024-01-03 23:00:00,",            # empty: the 14:08:59 price is the day's last valid
        "2024-01-04 23:00:00,104.0",
        "2024-01-05 23:00:00,105.0",
        "2024-01-07 23:00:00,107.0",        # a Sunday evening session
        "2024-01-08 23:00:00,108.0",
    ]) + "\n")
    _write(root / "adjusted_prices_csv" / "BBB.csv", "\n".join([
        "DATETIME,price",
        "2024-01-03 23:00:00,50.0",
        "2024-01-05 23:00:00,51.0",
        "2024-01-08 23:00:00,49.0",
    ]) + "\n")
    _write(root / "fx_prices_csv" / "EURUSD.csv", "\n".join([
        "DATETIME,PRICE",
        "2023-12-29 00:00:00,1.10",
        "2024-01-03 00:00:00,1.09",
        "2024-01-04 00:00:00,",
        "2024-01-05 00:00:00,1.12",
    ]) + "\n")
    _write(root / "csvconfig" / "instrumentconfig_subset.csv", "\n".join([
        "Instrument,Description,Pointsize,Currency,AssetClass,Slippage,PerBlock,Percentage,"
        "PerTrade",
        "AAA,a,5,USD,Equity,0.25,1.0,0,0",
        "BBB,b,10,EUR,Bond,0.1,0.5,0.002,0",
    ]) + "\n")
    _write(root / "csvconfig" / "spreadcosts_subset.csv",
           "Instrument,SpreadCost\nAAA,0.5\n")
    return root


def test_read_daily_keeps_the_last_valid_price_of_each_date(mini):
    s = read_daily(mini / "adjusted_prices_csv" / "AAA.csv")
    assert [d.strftime("%Y-%m-%d") for d in s.index] == [
        "2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-07",
        "2024-01-08"]
    assert s.tolist() == [100.0, 102.0, 103.5, 104.0, 105.0, 107.0, 108.0]


def test_load_aligns_converts_fx_and_prices_costs(mini):
    d = load_futures(mini)
    assert d.instruments == ["AAA", "BBB"]
    # weekdays only (the Sunday row is dropped), union of dates
    assert [x.strftime("%m-%d") for x in d.prices.index] == ["01-01", "01-02", "01-03", "01-04",
                                                             "01-05", "01-08"]
    assert d.prices["AAA"].tolist() == [100.0, 102.0, 103.5, 104.0, 105.0, 108.0]
    # BBB: NaN before listing, forward-filled after (no row on 01-04)
    b = d.prices["BBB"].tolist()
    assert np.isnan(b[:2]).all() and b[2:] == [50.0, 50.0, 51.0, 49.0]
    assert d.multipliers.tolist() == [5.0, 10.0]
    assert d.currencies.tolist() == ["USD", "EUR"]
    # FX: USD -> 1; EUR: last valid per date, forward-filled (01-01, 01-02 use 12-29's 1.10;
    # 01-04 is empty -> 1.09; 01-08 -> 1.12)
    assert (d.fx["AAA"] == 1.0).all()
    assert d.fx["BBB"].tolist() == [1.10, 1.10, 1.09, 1.09, 1.12, 1.12]
    # costs in instrument currency: slippage x pointsize + max(per block, per trade,
    # percentage x |price| x pointsize). AAA takes the spreadcosts file's 0.5, BBB falls back
    # to the config's 0.1 and its percentage commission beats the 0.5 per block.
    assert d.costs["AAA"].tolist() == [0.5 * 5 + 1.0] * 6
    np.testing.assert_allclose(d.costs["BBB"].iloc[2:], 0.1 * 10 + 0.002 * np.array(
        [50.0, 50.0, 51.0, 49.0]) * 10, rtol=1e-15)
    cfg = load_futures(mini, slippage="config")
    assert cfg.costs["AAA"].iloc[0] == 0.25 * 5 + 1.0
    # windows and subsets
    w = d.window("2024-01-03", "2024-01-05")
    assert len(w.prices) == 3 and w.fx["BBB"].tolist() == [1.09, 1.09, 1.12]
    assert load_futures(mini, instruments=["BBB"]).prices.index[0] == pd.Timestamp("2024-01-03")
    assert d.subset("BBB").prices.shape == (4, 1)


def test_load_errors_name_the_fix(mini, tmp_path):
    with pytest.raises(GpusimError, match=r"no pysystemtrade data at .*nowhere"):
        load_futures(tmp_path / "nowhere")
    with pytest.raises(GpusimError, match=r"instrument 'ZZZ' has no adjusted_prices_csv/ZZZ.csv"):
        load_futures(mini, instruments=["AAA", "ZZZ"])
    (mini / "fx_prices_csv" / "EURUSD.csv").unlink()
    with pytest.raises(GpusimError, match=r"no fx_prices_csv/EURUSD.csv for \['BBB'\]"):
        load_futures(mini)
    assert load_futures(mini, instruments=["AAA"]).instruments == ["AAA"]
    with pytest.raises(GpusimError, match=r"window .* holds 0 date"):
        load_futures(mini, instruments=["AAA"]).window("2030-01-01")


def _price_file(tmp_path, *rows):
    p = tmp_path / "adjusted_prices_csv" / "CCC.csv"
    _write(p, "DATETIME,price\n" + "\n".join(rows) + "\n")
    return p


def test_read_daily_refuses_text_inf_unsorted_and_repeats(tmp_path):
    ok = ["2024-01-01 23:00:00,100.0", "2024-01-02 23:00:00,101.0"]
    p = _price_file(tmp_path, ok[0], "2024-01-02 10:00:00,abc", ok[1])
    with pytest.raises(GpusimError, match=r"^CCC.csv, column 'price': 'abc' on 2024-01-02 "
                       r"10:00:00 \(row 1\) is not a number"):
        read_daily(p)
    p = _price_file(tmp_path, ok[0], "2024-01-02 10:00:00,inf", ok[1])
    with pytest.raises(GpusimError, match=r"column 'price': inf on 2024-01-02 10:00:00 "
                       r"\(row 1\) is not finite"):
        read_daily(p)
    # an empty cell is skipped (documented pysystemtrade quirk): the day's last valid price
    assert read_daily(_price_file(tmp_path, ok[0], "2024-01-02 10:00:00,", ok[1])).tolist() == [
        100.0, 101.0]
    p = _price_file(tmp_path, ok[1], ok[0])
    with pytest.raises(GpusimError, match=r"not in order: 2024-01-01 23:00:00 \(row 1\) .*"
                       r"sort=True \(--sort\)"):
        read_daily(p)
    notes = []
    assert read_daily(p, sort=True, notes=notes).tolist() == [100.0, 101.0]
    assert notes == ["sorted the 2 rows of CCC.csv by time"]
    p = _price_file(tmp_path, ok[0], ok[0], ok[1])
    with pytest.raises(GpusimError, match=r"2024-01-01 23:00:00 repeats; pass dedupe=True"):
        read_daily(p)
    notes = []
    assert read_daily(p, dedupe=True, notes=notes).tolist() == [100.0, 101.0]
    assert notes == ["dropped 1 repeated rows of CCC.csv (same timestamp and value)"]
    p = _price_file(tmp_path, ok[0], "2024-01-01 23:00:00,99.5", ok[1])
    with pytest.raises(GpusimError, match=r"repeats with different values \(100, 99.5\)"):
        read_daily(p, dedupe=True)


def test_load_futures_opt_ins_are_recorded(mini):
    aaa = mini / "adjusted_prices_csv" / "AAA.csv"
    lines = aaa.read_text().splitlines()
    aaa.write_text("\n".join([lines[0], lines[2], lines[1], *lines[3:]]) + "\n")
    with pytest.raises(GpusimError, match="AAA.csv: timestamps are not in order"):
        load_futures(mini)
    d = load_futures(mini, sort=True)
    assert d.notes == ("sorted the 9 rows of AAA.csv by time",)
    assert d.prices["AAA"].iloc[:2].tolist() == [100.0, 102.0]
    assert d.window("2024-01-02").notes == d.notes and d.subset("AAA").notes == d.notes
    fx = mini / "fx_prices_csv" / "EURUSD.csv"
    fx.write_text(fx.read_text().replace("1.12", "-1.12"))
    with pytest.raises(GpusimError, match=r"EURUSD.csv: FX rate -1.12 on 2024-01-05 is not > 0"):
        load_futures(mini, sort=True)


def test_synthetic_futures_is_seeded_and_shaped():
    a, b = synthetic_futures(6, 100, seed=3), synthetic_futures(6, 100, seed=3)
    pd.testing.assert_frame_equal(a.prices, b.prices)
    assert a.prices.shape == (100, 6) and a.prices.iloc[:20, 1].isna().all()
    assert a.currencies.tolist().count("EUR") == 1 and (a.costs > 0).all().all()
    notional = (a.prices.iloc[-1] * a.multipliers * a.fx.iloc[-1])
    assert notional.between(1e3, 3e6).all()
    assert not synthetic_futures(6, 100, seed=4).prices.equals(a.prices)
    with pytest.raises(GpusimError, match=r"n_days=5 must be an integer >= 30"):
        synthetic_futures(3, 5)


# --------------------------------------------------------------------------------------------
# The shared pysystemtrade copy (figures from its README, section 2)
# --------------------------------------------------------------------------------------------

def test_real_data_matches_the_readme():
    shared_file("pysystemtrade/adjusted_prices_csv/SP500_micro.csv")
    base = shared_file("pysystemtrade")
    # "daily points (last valid per date)" column of the README table
    assert len(read_daily(base / "adjusted_prices_csv" / "SP500_micro.csv")) == 10713
    assert len(read_daily(base / "adjusted_prices_csv" / "EUROSTX.csv")) == 2466
    eur = read_daily(base / "fx_prices_csv" / "EURUSD.csv")
    assert eur.loc["2024-03-28"] == 1.08171 and eur.iloc[-1] == 1.077585
    d = load_futures(instruments=["SP500_micro", "EUROSTX", "KOSPI", "US10"])
    assert d.multipliers.to_dict() == {"SP500_micro": 5.0, "EUROSTX": 10.0, "KOSPI": 250000.0,
                                       "US10": 1000.0}
    assert d.currencies.to_dict() == {"SP500_micro": "USD", "EUROSTX": "EUR", "KOSPI": "KRW",
                                      "US10": "USD"}
    row = pd.Timestamp("2024-03-28")
    assert d.fx.loc[row, "EUROSTX"] == 1.08171
    # notional of one contract on 2024-03-28 = final price x Pointsize x FX
    assert d.prices.loc[row, "SP500_micro"] * 5 == 26518.75
    assert d.prices.loc[row, "EUROSTX"] * 10 * 1.08171 == pytest.approx(54572.27, rel=1e-6)
    # costs: SP500_micro 0.19 x 5 + 0.57 (spreadcosts file); KOSPI 0.026 x 250000 +
    # 0.0004 x price x 250000 (percentage commission, in KRW)
    assert d.costs.loc[row, "SP500_micro"] == pytest.approx(0.19 * 5 + 0.57, rel=1e-12)
    kp = d.prices.loc[row, "KOSPI"]
    assert d.costs.loc[row, "KOSPI"] == pytest.approx(0.026 * 250000 + 0.0004 * kp * 250000,
                                                      rel=1e-12)
    assert d.prices.index.day_of_week.max() < 5 and d.prices.index.is_unique
    assert d.prices["EUROSTX"].first_valid_index() == pd.Timestamp("2014-03-13")
