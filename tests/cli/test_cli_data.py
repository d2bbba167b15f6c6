"""The data options of search, backtest and walkforward (gpusim.cli.common.add_data_options):
the same loader as gpusim.load_prices, the same window, one line for bad data."""

import json

import pandas as pd
import pytest
from conftest import shared_file

from gpusim.cli.main import main
from gpusim.data.load import load_prices

DATA_FLAGS = ("--prices", "--symbols", "--ann", "--date-col", "--column", "--symbol-from",
              "--sort", "--dedupe", "--align", "--fill", "--date-format", "--dayfirst",
              "--monthfirst")


@pytest.mark.parametrize("cmd,window", [("search", ("--start", "--end")),
                                        ("backtest", ("--start", "--end")),
                                        ("walkforward", ("--data-start", "--data-end"))])
def test_every_price_command_has_the_data_options(cmd, window, capsys):
    with pytest.raises(SystemExit):
        main([cmd, "--help"])
    text = capsys.readouterr().out
    for flag in DATA_FLAGS + window:
        assert flag in text, (cmd, flag)
    assert "Binance_BTCUSDT_1h.csv -> BTCUSDT" in " ".join(text.split())


def test_symbols_before_alignment_cli_equals_api(capsys):
    path = shared_file("pypfopt/stock_prices.csv")
    api = load_prices(path, symbols=["AAPL", "AMZN", "GOOG"])
    assert api.n_bars == 3435 and api.prices.index[0] == pd.Timestamp("2004-08-19")
    rc = main(["backtest", "--prices", str(path), "--symbols", "AAPL,AMZN,GOOG", "--json",
               "--no-progress", "--backend", "cpu"])
    assert rc == 0
    cap = capsys.readouterr()
    s = json.loads(cap.out)
    assert s["n_bars"] == 3435 and s["symbols"] == ["AAPL", "AMZN", "GOOG"]
    assert s["start"].startswith("2004-08-19")
    assert ("data: window 2004-08-19 .. 2018-04-11 (3,435 of 7,126 rows; set by GOOG, the "
            "latest listing)") in cap.err
    rc = main(["search", "--prices", str(path), "--symbols", "AAPL,AMZN,GOOG", "--n", "1000",
               "--no-progress", "--no-baselines", "--json"])
    assert rc == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["symbols"] == ["AAPL", "AMZN", "GOOG"]
    assert "3 assets x 3435 bars, 2004-08-19 .. 2018-04-11" in cap.err


BINANCE = ["--column", "close", "--sort", "--dedupe", "first"]


def _binance_glob():
    shared_file("crypto_binance/Binance_BTCUSDT_1h.csv")
    return str(shared_file("crypto_binance") / "Binance_*_1h.csv")


def test_binance_coins_search_backtest_walkforward(tmp_path, capsys):
    prices = _binance_glob()
    rc = main(["search", "--prices", prices, *BINANCE, "--n", "2000", "--top-k", "2",
               "--no-progress", "--json", "--out", str(tmp_path / "s")])
    assert rc == 0
    cap = capsys.readouterr()
    s = json.loads(cap.out)
    assert s["symbols"] == ["ADAUSDT", "BNBUSDT", "BTCUSDT", "ETHUSDT"] and s["ann"] == 8760.0
    assert "data: sorted 36,062 rows of Binance_BTCUSDT_1h.csv (BTCUSDT)" in cap.err
    assert "data: dropped 2,649 repeated-date rows of Binance_ETHUSDT_1h.csv" in cap.err
    assert ("data: window 2020-08-01 23:00:00 .. 2021-06-10 (7,478 of 33,413 rows; set by "
            "ADAUSDT, BNBUSDT, the latest listing)") in cap.err

    rc = main(["backtest", "--prices", prices, *BINANCE, "--rebalance", "never,M", "--json",
               "--no-progress", "--backend", "cpu"])
    assert rc == 0
    b = json.loads(capsys.readouterr().out)
    assert b["n_bars"] == 7478 and b["n_assets"] == 4 and b["n_done"] == 2

    rc = main(["walkforward", "--prices", prices, *BINANCE, "--data-start", "2021-04-01",
               "--every", "M", "--lookback", "240", "--num-tests", "50", "--no-gap",
               "--no-progress", "--json", "--backend", "cpu"])
    assert rc == 0
    w = json.loads(capsys.readouterr().out)
    assert w["n_assets"] == 4 and w["n_combinations"] == 1
    assert str(w["end"]).startswith("2021-06-10")


@pytest.mark.parametrize("argv,needles", [
    (["search", "--prices", "/nonexistent/*.csv", "--n", "10"], ["matches no file"]),
    (["backtest", "--prices", "synthetic:3:100", "--column", "close"],
     ["--column apply to price files"]),
    (["search", "--prices", "synthetic", "--start", "2030-01-01", "--n", "10"],
     ["window 2030-01-01"]),
    (["walkforward", "--data-start", "soon"], ["start='soon'", "is not a date"]),
])
def test_bad_data_options_one_line(argv, needles, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    for n in needles:
        assert n in err, err


def test_binance_without_opt_ins_names_the_flags(capsys):
    prices = _binance_glob()
    assert main(["search", "--prices", prices, "--column", "close", "--n", "10"]) == 2
    err = capsys.readouterr().err
    assert "not ascending" in err and "--sort" in err and err.count("\n") == 1
    assert main(["search", "--prices", prices, "--column", "close", "--sort", "--n", "10"]) == 2
    err = capsys.readouterr().err
    assert "duplicate date" in err and "--dedupe" in err


def test_several_files_day_first_and_fill(tmp_path, capsys):
    (tmp_path / "x_AAA.csv").write_text("date,close\n30/12/2020,10\n31/12/2020,11\n04/01/2021,"
                                        "12\n05/01/2021,13\n06/01/2021,14\n")
    (tmp_path / "x_BBB.csv").write_text("date,close\n30/12/2020,20\n04/01/2021,21\n05/01/2021,"
                                        "22\n06/01/2021,23\n")
    argv = ["backtest", "--prices", str(tmp_path / "x_AAA.csv"), str(tmp_path / "x_BBB.csv"),
            "--column", "close", "--ann", "252", "--json", "--no-progress", "--backend", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "'BBB': missing price (NaN) on 2020-12-31" in err and "--fill ffill" in err
    assert main([*argv, "--fill", "ffill"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["n_bars"] == 5
    assert "data: fill='ffill': carried 1 price(s) forward over missing rows (BBB 1)" in cap.err
    assert "dates read day first (dd/mm/yyyy), as '30/12/2020' shows" in cap.err


def test_dynopt_futures_files_out_of_order_need_sort(tmp_path, capsys):
    from gpusim.cli.dynopt import build_parser, load_data

    root = tmp_path / "pst"
    (root / "adjusted_prices_csv").mkdir(parents=True)
    (root / "csvconfig").mkdir()
    days = pd.bdate_range("2023-01-02", periods=60)
    rows = [f"{d:%Y-%m-%d} 23:00:00,{100 + i}" for i, d in enumerate(days)]
    rows[10], rows[11] = rows[11], rows[10]
    (root / "adjusted_prices_csv" / "AAA.csv").write_text("DATETIME,price\n" + "\n".join(rows))
    (root / "csvconfig" / "instrumentconfig.csv").write_text(
        "Instrument,Pointsize,Currency\nAAA,5,USD\n")
    from gpusim.cli.main import main as gmain

    assert gmain(["dynopt", "--data", str(root), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "AAA.csv: timestamps are not in order: 2023-01-16 23:00:00 (row 11)" in err
    assert "--sort" in err and err.count("\n") == 1
    data, note = load_data(build_parser().parse_args(["--data", str(root), "--sort"]))
    assert note == "data: sorted the 60 rows of AAA.csv by time\n"
    assert data.prices["AAA"].iloc[9:13].tolist() == [109.0, 110.0, 111.0, 112.0]
    assert gmain(["dynopt", "--synthetic", "3:100:0", "--sort"]) == 2
    assert "--sort/--dedupe apply to --data files" in capsys.readouterr().err
