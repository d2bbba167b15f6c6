"""Swept per-asset and dated drift bands in sweep jobs, and job-relative file paths (issue 11):
the rows equal one ``gpusim.backtest(threshold=Param([...]))`` call bit for bit, the band levels
carry readable labels, every relative path of a job value is read from the job file's folder
(the jobs below run from another working folder), and bad bands are one-line errors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import gpusim
from gpusim import Param
from gpusim.errors import GpusimError
from gpusim.sweep.api import load_job, plan_job, run_job
from gpusim.sweep.job import fingerprint

SYMS = ["A00", "A01", "A02", "A03"]


@pytest.fixture(scope="module")
def mkt():
    return gpusim.synthetic_market(4, 100, seed=3)


@pytest.fixture
def folder(tmp_path, mkt, monkeypatch):
    """A job folder with prices, band files and a target schedule; the tests run from another
    working folder, so that a path read relative to it would not be found.
    """
    d = tmp_path / "jobs"
    d.mkdir()
    mkt.prices.to_csv(d / "prices.csv")
    idx = mkt.prices.index
    pd.DataFrame({"date": [idx[0], idx[40]], "band": [0.01, 0.02]}).to_csv(
        d / "bands.csv", index=False)                               # one band for every asset
    pd.DataFrame({"date": [idx[10], idx[60]], "A00": [0.005, 0.01],
                  "A01": [0.01, np.nan]}).to_csv(d / "bysym.csv", index=False)
    pd.DataFrame({"date": [idx[0]], "band": [0.02]}).to_csv(d / "flat.csv", index=False)
    pd.DataFrame({"date": [idx[0], idx[50]], "A00": [0.4, 0.1], "A01": [0.2, 0.3],
                  "A02": [0.2, 0.3], "A03": [0.2, 0.3]}).to_csv(d / "targets.csv", index=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return d


def _job(folder, body: str, name: str = "job.toml"):
    path = folder / name
    path.write_text(f'task = "backtest"\nbackend = "cpu"\nchunk_size = 3\nout = "{path.stem}"\n'
                    '[data]\npath = "prices.csv"\n' + body)
    return path


def _csv(folder, name):
    s = pd.read_csv(folder / name, index_col=0, parse_dates=True)
    return s.iloc[:, 0] if s.shape[1] == 1 else s


def test_swept_bands_equal_one_backtest_call_bit_for_bit(folder, mkt):
    path = _job(folder, """
[fixed]
weights = { schedule = "targets.csv" }
[grid]
threshold = [0.02, "none", { A00 = 0.01, A02 = 0.02 }, { file = "bands.csv" },
             { file = "bysym.csv" }]
fees = [0.0, 0.001]
""")
    res = run_job(load_job(path), progress=False)
    # chunks of one band value each: the number and none chunks take the scalar band path
    assert res.ok and res.summary["n_chunks"] == 5
    t = res.table
    ref = gpusim.backtest(mkt, weights=gpusim.Schedule(_csv(folder, "targets.csv")),
                          threshold=Param([0.02, None, {"A00": 0.01, "A02": 0.02},
                                           _csv(folder, "bands.csv"),
                                           _csv(folder, "bysym.csv")]),
                          fees=Param([0.0, 0.001]), backend="cpu", progress=False).metrics
    np.testing.assert_array_equal(t.to_numpy(), ref.to_numpy())
    # readable labels, one type per column: the band level is text, fees stay numbers
    labels = ["0.02", "none", "A00=0.01 A02=0.02", "bands", "bysym"]
    assert t.index.get_level_values("threshold").tolist() == [x for x in labels
                                                              for _ in range(2)]
    disk = pd.read_parquet(folder / "job" / "results.parquet")
    assert disk["threshold"].tolist() == t.index.get_level_values("threshold").tolist()
    assert pd.api.types.is_string_dtype(disk["threshold"]) and disk["fees"].dtype == np.float64
    # the bands really trigger: every band rebalances more than the schedule alone does
    n = t["n_rebalances"].xs(0.0, level="fees")
    assert (n.drop("none", level="threshold") > n.xs("none", level="threshold").iloc[0]).all()


def test_a_band_that_never_triggers_is_no_band_on_that_asset(folder):
    # |a_j - w_j| <= 1, so a band of 10 on A01 never triggers: the same rows as leaving A01
    # out; a dated file of one row from the first bar, and the same band on every symbol, are
    # the plain number; all in one sweep
    path = _job(folder, """
[fixed]
rebalance = "never"
[grid]
threshold = [{ A00 = 0.01, A02 = 0.02 }, { A00 = 0.01, A01 = 10.0, A02 = 0.02 }, 0.02,
             { file = "flat.csv" }, { A00 = 0.02, A01 = 0.02, A02 = 0.02, A03 = 0.02 }]
""")
    t = run_job(load_job(path), progress=False).table.droplevel("weights")
    assert t.index.tolist() == ["A00=0.01 A02=0.02", "A00=0.01 A01=10.0 A02=0.02", "0.02",
                                "flat", "A00=0.02 A01=0.02 A02=0.02 A03=0.02"]
    rows = t.to_numpy()
    np.testing.assert_array_equal(rows[0], rows[1])
    np.testing.assert_array_equal(rows[2], rows[3])
    np.testing.assert_array_equal(rows[2], rows[4])
    n = t["n_rebalances"].tolist()
    assert n[0] > 1 and n[2] > 1 and n[0] != n[2]          # the bands do trigger


def test_hybrid_numbers_stay_numbers_and_zip_with_a_call_level(folder, mkt):
    # numbers and none only: a float column (none = NaN); a band zipped with a call-level
    # parameter is that point's fixed band
    path = _job(folder, """
[fixed]
band = "hybrid"
threshold = 0.25
[grid]
threshold_abs = [0.02, "none"]
[[grid.zip]]
rf = [0.0, 0.01]
init_cash = [1.0, 2.0]
""")
    t = run_job(load_job(path), progress=False).table
    assert t.index.get_level_values("threshold_abs").dtype == np.float64
    assert np.isnan(t.index.get_level_values("threshold_abs")[1])
    path = _job(folder, """
[fixed]
rebalance = "M"
[[grid.zip]]
threshold = [{ A00 = 0.01 }, { file = "bands.csv" }]
init_cash = [1.0, 100.0]
""", "zip.toml")
    t = run_job(load_job(path), progress=False).table
    for i, (thr, cash) in enumerate([({"A00": 0.01}, 1.0),
                                     (_csv(folder, "bands.csv"), 100.0)]):
        ref = gpusim.backtest(mkt, rebalance="M", threshold=thr, init_cash=cash,
                              backend="cpu", progress=False).metrics
        np.testing.assert_array_equal(t.iloc[[i]].to_numpy(), ref.to_numpy())


def test_relative_paths_of_job_values_are_read_from_the_job_folder(folder, mkt):
    (folder / "w.csv").write_text("A00,A01,A02,A03\n0.1,0.2,0.3,0.4\n")
    (folder / "w2.csv").write_text("name,A00,A01,A02,A03\nlo,0.4,0.3,0.2,0.1\n"
                                   "mid,0.25,0.25,0.25,0.25\n")
    path = _job(folder, """
[fixed]
threshold = { file = "bysym.csv" }
[grid]
weights = [{ schedule = "targets.csv" }, "w.csv", { file = "w2.csv" }]
""")
    job = load_job(path)
    assert job.grid[0].values[1] == (str(folder / "w.csv"),)
    assert job.fixed["threshold"] == {"file": str(folder / "bysym.csv")}
    t = run_job(job, progress=False).table
    # a file of portfolios gives one level value per row
    assert t.index.get_level_values("weights").tolist() == ["targets", "w", "w2:lo", "w2:mid"]
    thr = _csv(folder, "bysym.csv")
    for i, w in enumerate([gpusim.Schedule(_csv(folder, "targets.csv")), [0.1, 0.2, 0.3, 0.4],
                           [0.4, 0.3, 0.2, 0.1], "equal"]):
        ref = gpusim.backtest(mkt, weights=w, threshold=thr, backend="cpu", progress=False)
        np.testing.assert_array_equal(t.iloc[[i]].to_numpy(), ref.metrics.to_numpy())
    # an absolute path stays as it is; nested tables (a tune sweep's args) are resolved too
    (folder / "sub").mkdir()
    nested = folder / "sub" / "tune.toml"
    nested.write_text(f"""task = "tune"
[fixed]
target = "backtest"
space = {{ fees = [0.0, 0.001] }}
args = {{ threshold = {{ file = "../bands.csv" }}, weights = "{folder / 'w.csv'}" }}
""")
    args = load_job(nested).fixed["args"]
    assert args == {"threshold": {"file": str(folder / "sub" / "../bands.csv")},
                    "weights": str(folder / "w.csv")}
    # a changed band file changes the job hash (a resume refuses to mix results)
    fp = fingerprint(job, mkt, "cpu")["job_hash"]
    (folder / "bysym.csv").write_text((folder / "bysym.csv").read_text() + "")
    assert fingerprint(job, mkt, "cpu")["job_hash"] == fp
    grid_job = load_job(_job(folder, '[grid]\nthreshold = [0.1, { file = "bands.csv" }]\n',
                             "g.toml"))
    fp = fingerprint(grid_job, mkt, "cpu")["job_hash"]
    (folder / "bands.csv").write_text((folder / "bands.csv").read_text().replace("0.02",
                                                                                 "0.03"))
    assert fingerprint(grid_job, mkt, "cpu")["job_hash"] != fp


def test_tune_job_reads_band_and_schedule_files_from_its_folder(folder, mkt):
    pytest.importorskip("optuna")
    from gpusim.tune.job import load_tune_job, run_tune_job

    path = folder / "tune.toml"
    path.write_text("""
task = "backtest"
backend = "cpu"
n_trials = 2
batch = 2
[data]
path = "prices.csv"
[space]
fees = [0.0, 0.001]
[fixed]
weights = { schedule = "targets.csv" }
threshold = { file = "bands.csv" }
threshold_abs = { A00 = 0.01 }
band = "hybrid"
""")
    res = run_tune_job(load_tune_job(path), progress=False)
    ref = gpusim.backtest(mkt, weights=gpusim.Schedule(_csv(folder, "targets.csv")),
                          threshold=_csv(folder, "bands.csv"), threshold_abs={"A00": 0.01},
                          band="hybrid", fees=Param([0.0, 0.001]), backend="cpu",
                          progress=False).metrics
    assert sorted(res.trials["value"]) == sorted(ref["sharpe"])
    assert res.summary["fixed"]["threshold"] == {"file": str(folder / "bands.csv")}


@pytest.mark.parametrize("value, msg", [
    ("{ A00 = 0.03, XYZ = 0.1 }", "grid.threshold: XYZ not in the prices; give bands by "
                                  "symbol"),
    ("{ A00 = -0.03 }", "grid.threshold: band -0.03 must be > 0"),
    ("{ A00 = 'wide' }", "grid.threshold: the band of 'A00' is 'wide'; give a number per"),
    ("{ file = 'nope.csv' }", "grid.threshold: '{d}/nope.csv' is not a file; give a CSV"),
    ("{ file = 'bad.csv' }", "grid.threshold: 'bad.csv' has column(s) band that are not "
                             "numbers"),
    ("{ file = 'nodates.csv' }", "grid.threshold bands.csv: cannot read the row labels as "
                                 "dates"),
    ("{ file = 'neg.csv' }", "grid.threshold: band -0.02 must be > 0"),
    ("{ file = 'bands.csv', kind = 1 }", "grid.threshold: unknown key(s) ['kind'] next to "
                                         "file"),
    ("-0.05", "grid.threshold=-0.05 must be > 0"),
])
def test_bad_bands_are_one_line_errors(folder, value, msg):
    (folder / "bad.csv").write_text("date,band\n2020-01-01,wide\n")
    (folder / "neg.csv").write_text("date,band\n2020-01-01,-0.02\n")
    (folder / "nodates.csv").write_text("sym,band\nA00,0.05\n")
    path = _job(folder, f"[grid]\nthreshold = [0.05, {value}]\n")
    if "nodates" in value:
        msg = msg.replace("bands.csv", "nodates.csv")
    with pytest.raises(GpusimError) as e:
        plan_job(path)
    text = str(e.value)
    assert msg.replace("{d}", str(folder)).replace("'bad.csv'", repr(str(folder / "bad.csv"))) \
        in text and "\n" not in text
    # the same value as a fixed band names the fixed key
    path = _job(folder, f"[fixed]\nthreshold = {value}\n", "f.toml")
    with pytest.raises(GpusimError, match=r"fixed\.threshold"):
        plan_job(path)


def test_swept_bands_on_the_gpu_path_equal_one_gpu_call(folder, mkt):
    # the CUDA kernel (in the simulator here): chunks of one band value each, mixing the
    # scalar band rows with per-asset and dated ones
    text = _job(folder, """
[fixed]
rebalance = 21
[grid]
threshold = [0.02, { A00 = 0.01, A02 = 0.02 }, { file = "bysym.csv" }]
""", "gpu.toml").read_text()
    (folder / "gpu.toml").write_text(text.replace('backend = "cpu"', 'backend = "gpu"').replace(
        "chunk_size = 3", "chunk_size = 1"))
    res = run_job(load_job(folder / "gpu.toml"), progress=False)
    assert res.summary["backend"] in ("gpu-simulator", "gpu") and res.summary["n_chunks"] == 3
    ref = gpusim.backtest(mkt, rebalance=21, threshold=Param([0.02, {"A00": 0.01, "A02": 0.02},
                                                             _csv(folder, "bysym.csv")]),
                          backend="gpu", progress=False).metrics
    np.testing.assert_array_equal(res.table.to_numpy(), ref.to_numpy())
