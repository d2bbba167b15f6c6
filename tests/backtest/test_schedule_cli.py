"""Schedules and bands from the shell and from sweep job files (issue 11): ``gpusim backtest
--schedule FILE --band ... --threshold-abs ...`` and ``weights = {schedule = FILE}`` give the
numbers of the equivalent ``gpusim.backtest`` call."""

import json

import numpy as np
import pandas as pd
import pytest

import gpusim
from gpusim.cli.main import main


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("sched")
    m = gpusim.synthetic_market(n_assets=3, n_bars=120, seed=8)
    m.prices.to_csv(d / "prices.csv", index_label="date")
    rng = np.random.default_rng(2)
    idx = m.prices.index
    sched = pd.DataFrame(rng.dirichlet(np.ones(3), 3), index=idx[[0, 40, 80]],
                         columns=m.prices.columns)
    sched.to_csv(d / "targets.csv", index_label="date")
    prices = gpusim.load_prices(d / "prices.csv")
    return d, prices, sched


def test_cli_schedule_hybrid_band_equals_api(data, capsys):
    d, prices, sched = data
    rc = main(["backtest", "--prices", str(d / "prices.csv"), "--schedule",
               str(d / "targets.csv"), "--band", "hybrid", "--threshold", "0.3",
               "--threshold-abs", "0.01,0.04", "--fees", "0.001", "--json", "--no-progress",
               "--top-k", "2", "--sort-by", "final_value"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["band"] == "hybrid" and out["n_combinations"] == 2
    ref = gpusim.backtest(prices, weights=sched, band="hybrid", threshold=0.3,
                          threshold_abs=gpusim.Param([0.01, 0.04]), fees=0.001,
                          progress=False).metrics
    best = {r["threshold_abs"]: r["final_value"] for r in out["best"]}
    for tau in (0.01, 0.04):
        assert best[tau] == pytest.approx(ref.xs(tau, level="threshold_abs")["final_value"]
                                          .iloc[0], rel=1e-9)


def test_cli_weights_file_with_date_labels_is_constant_portfolios(data, capsys):
    d, _, _ = data
    rc = main(["backtest", "--prices", str(d / "prices.csv"), "--weights",
               str(d / "targets.csv"), "--json", "--no-progress"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_combinations"] == 3 and out["weights"] == "3 vector(s)"


def test_cli_schedule_and_weights_conflict(data, capsys):
    d, _, _ = data
    rc = main(["backtest", "--prices", str(d / "prices.csv"), "--schedule",
               str(d / "targets.csv"), "--weights", "random:5"])
    assert rc != 0 and "--schedule replaces --weights" in capsys.readouterr().err


def test_sweep_job_schedule_key_equals_api(data, tmp_path):
    from gpusim.sweep.api import load_job, run_job

    d, prices, sched = data
    job = tmp_path / "job.toml"
    job.write_text(f"""
task = "backtest"
out = "o"
[data]
path = "{d / 'prices.csv'}"
[fixed]
weights = {{ schedule = "{d / 'targets.csv'}" }}
band = "relative"
[grid]
threshold = [0.1, 0.3]
fees = [0.0, 0.002]
""")
    res = run_job(load_job(job), progress=False)
    assert res.ok
    t = res.table
    ref = gpusim.backtest(prices, weights=sched, relative=True,
                          threshold=gpusim.Param([0.1, 0.3]), fees=gpusim.Param([0.0, 0.002]),
                          progress=False).metrics
    np.testing.assert_array_equal(t["final_value"].to_numpy(), ref["final_value"].to_numpy())
    assert set(t.index.get_level_values("weights")) == {"targets"}


def test_sweep_grid_of_schedules_and_hybrid_band_split_in_pieces(data, tmp_path):
    from gpusim.sweep.api import load_job, run_job

    d, prices, sched = data
    other = sched.iloc[::-1].set_axis(sched.index)            # same dates, rows reversed
    other.to_csv(tmp_path / "other.csv", index_label="date")
    job = tmp_path / "job.toml"
    job.write_text(f"""
task = "backtest"
out = "o"
chunk_size = 3
[data]
path = "{d / 'prices.csv'}"
[fixed]
band = "hybrid"
threshold = 0.02
[grid]
weights = [{{ schedule = "{d / 'targets.csv'}" }}, {{ schedule = "{tmp_path / 'other.csv'}" }}]
threshold_abs = [0.003, 0.01, 0.03]
fees = [0.0, 0.003]
""")
    res = run_job(load_job(job), progress=False)
    assert res.ok and res.summary["n_chunks"] > 2
    t = res.table
    ref = gpusim.backtest(prices, weights=gpusim.Param([gpusim.Schedule(sched, "targets"),
                                                        gpusim.Schedule(other, "other")]),
                          band="hybrid", threshold=0.02,
                          threshold_abs=gpusim.Param([0.003, 0.01, 0.03]),
                          fees=gpusim.Param([0.0, 0.003]), progress=False).metrics
    assert t.index.get_level_values("weights").tolist() == \
        ref.index.get_level_values("weights").tolist()
    np.testing.assert_array_equal(t[ref.columns].to_numpy(), ref.to_numpy())
    assert ref["n_rebalances"].nunique() > 1


def test_cli_and_job_per_asset_band_equal_api(data, tmp_path, capsys):
    from gpusim.sweep.api import load_job, run_job

    d, prices, _ = data
    sym = [str(s) for s in prices.symbols]
    band = {sym[0]: 0.004, sym[2]: 0.01}
    ref = gpusim.backtest(prices, threshold=band, fees=0.001, progress=False).metrics
    assert ref["n_rebalances"].iloc[0] != gpusim.backtest(
        prices, threshold=0.004, fees=0.001, progress=False).metrics["n_rebalances"].iloc[0]
    rc = main(["backtest", "--prices", str(d / "prices.csv"), "--threshold",
               f"{sym[0]}=0.004,{sym[2]}=0.01", "--fees", "0.001", "--json", "--no-progress"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["best"][0]["final_value"] == pytest.approx(ref["final_value"].iloc[0], rel=1e-9)
    job = tmp_path / "job.toml"
    job.write_text(f"""
task = "backtest"
out = "o"
[data]
path = "{d / 'prices.csv'}"
[fixed]
threshold = {{ {sym[0]} = 0.004, {sym[2]} = 0.01 }}
[grid]
fees = [0.001]
""")
    res = run_job(load_job(job), progress=False)
    assert res.ok
    np.testing.assert_array_equal(res.table["final_value"].to_numpy(),
                                  ref["final_value"].to_numpy())
    rc = main(["backtest", "--prices", str(d / "prices.csv"), "--threshold", "SPY=x"])
    assert rc != 0 and "SYMBOL=VALUE" in capsys.readouterr().err
