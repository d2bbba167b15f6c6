"""``gpusim tune JOB.toml``: job files, outputs, exit codes."""

import json
from pathlib import Path

import pandas as pd
import pytest

from gpusim.cli.main import main
from gpusim.tune.job import load_tune_job

pytest.importorskip("optuna")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

JOB = """
task = "walkforward"
out = "out"
backend = "cpu"
n_trials = 12
batch = 6
objective = "sharpe"
seed = 0
compare_grid = true
[data]
synthetic = { n_assets = 4, n_bars = 400, seed = 1 }
[space]
every = ["W", "M"]
lookback = [42, 84]
num_tests = [50, 500]
[fixed]
fees = 0.001
seed = 2
weight_bounds = [0.0, 0.6]
"""


def test_tune_job_writes_trials_and_summary(tmp_path, capsys):
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    assert main(["tune", str(job), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "tune walkforward: 12 of 12 trials in 2 batches (2 calls" in text
    assert "full grid (8 points" in text and "wrote" in text
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["grid.parquet", "summary.json",
                                                     "trials.parquet"]
    s = json.loads((out / "summary.json").read_text())
    assert s["seed"] == 0 and s["fixed"]["seed"] == 2 and s["fixed"]["fees"] == 0.001
    assert s["fixed"]["constraints"][0].startswith("WeightBounds")
    assert s["space"]["num_tests"] == [50, 500] and s["job"]["name"] == "job"
    assert {"gpusim", "optuna", "numpy"} <= set(s["versions"])
    tr = pd.read_parquet(out / "trials.parquet")
    assert len(tr) == 12 and tr["value"].max() == s["best"]["value"]
    grid = pd.read_parquet(out / "grid.parquet")
    assert len(grid) == 8 and grid["sharpe"].max() == s["compare_grid"]["grid_best_value"]
    # overrides and --json
    assert main(["tune", str(job), "--n-trials", "4", "--batch", "4", "--seed", "3", "--json",
                 "--out", str(tmp_path / "o2"), "--format", "csv", "--no-progress"]) == 0
    j = json.loads(capsys.readouterr().out)
    assert (j["n_trials"], j["n_batches"], j["seed"]) == (4, 1, 3)
    assert j["out"] == str(tmp_path / "o2") and (tmp_path / "o2" / "trials.csv").exists()
    assert len(j["best_trials"]) >= 1 and j["best_trials"][0]["value"] == pytest.approx(
        j["best"]["value"], rel=1e-9)


@pytest.mark.parametrize("text, msg", [
    ("task = 'walkforward'\n", "has no space"),
    ("task = 'walkforward'\nspace = { every = ['W'] }\nbogus = 1\n", "unknown key"),
    ("task = 'search'\nspace = { n = [1] }\n", "cannot be tuned"),
    ("task = 'walkforward'\n[space]\nevery = { low = 1 }\n", "needs low and high"),
    ("task = = 1", "not valid TOML"),
])
def test_bad_jobs_exit_2_with_one_line(tmp_path, capsys, text, msg):
    job = tmp_path / "bad.toml"
    job.write_text(text)
    assert main(["tune", str(job), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and msg in err and "\n" not in err


def test_example_jobs_parse():
    for path in sorted(EXAMPLES.glob("tune_*.toml")):
        job = load_tune_job(path)
        assert job.task in ("walkforward", "backtest", "dynopt") and job.space
        assert job.out is not None and job.out.is_absolute()
