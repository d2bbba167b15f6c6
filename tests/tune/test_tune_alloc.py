"""gpusim.tune over the parameters of a user allocation function (``alloc`` fixed): each trial
equals a direct ``gpusim.backtest(alloc=...)`` call of its values bit for bit (a batch is one
zipped call whose draws are shared across trials), compare_grid, tune job files with the
function's file relative to the job's folder, one-line errors."""

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gpusim
from cpu_ref.backtest import METRICS
from gpusim import Param
from gpusim.cli.main import main
from gpusim.errors import GpusimError
from gpusim.strategy.loader import load_function

pytest.importorskip("optuna")

ROOT = Path(__file__).resolve().parents[2]
STRATEGIES = ROOT / "tests" / "user_strategies.py"   # the sweep and CLI tests' module: one compile
FEES = [0.0, 0.002]


@pytest.fixture(scope="module")
def market():
    return gpusim.synthetic_market(n_assets=3, n_bars=100, seed=1)


@pytest.fixture(scope="module")
def band():
    return load_function(f"{STRATEGIES}:band")


def _direct(market, band, tau, k=3.0, fees=0.0, seed=7) -> np.ndarray:
    return gpusim.backtest(market, alloc=band, params={"tau": tau, "k": k}, fees=fees,
                           seed=seed, backend="cpu", progress=False).metrics.iloc[0].to_numpy()


def test_trials_equal_direct_calls_bit_for_bit(market, band):
    res = gpusim.tune("backtest", market, space={"tau": (0.005, 0.2), "fees": FEES},
                      fixed={"alloc": band, "params": ["tau", "k"], "k": 3, "seed": 7},
                      n_trials=10, batch=4, objective="sharpe", seed=0, backend="cpu",
                      progress=False)
    t = res.trials
    s = res.summary
    assert len(t) == 10 and s["n_batches"] == 3 and s["n_calls"] == 3     # a batch: one call
    assert s["fixed"] == {"alloc": f"{STRATEGIES}:band", "params": ["tau", "k"], "k": 3,
                          "seed": 7}
    cols = list(METRICS)
    for _, row in t.iterrows():
        want = _direct(market, band, row["tau"], fees=row["fees"])
        assert np.array_equal(row[cols].to_numpy(float), want, equal_nan=True)
    assert t["value"].nunique() > 2                         # the tuned values matter
    best = t.loc[res.best_trial]
    assert res.best_value == best["sharpe"] == t["value"].max()
    # the stream decision matters: the same batch as a plain zipped grid (no shared draws)
    # gives its later rows other draws, so they differ from the direct calls
    first = t[t["batch"] == 0]
    plain = gpusim.backtest(market, alloc=band, params={
        "tau": Param(list(first["tau"]), level="z"), "k": 3}, fees=Param(
        list(first["fees"]), level="z"), seed=7, backend="cpu", progress=False).metrics
    assert np.array_equal(plain.iloc[0].to_numpy(), first[cols].iloc[0].to_numpy(float))
    assert not np.array_equal(plain.iloc[1:].to_numpy(), first[cols].iloc[1:].to_numpy(float))


def test_order_of_the_params_row_and_compare_grid(market, band):
    taus = [0.01, 0.05, 0.12]
    # k tuned, tau fixed, the row order given as ["tau", "k"]: params[1] is k
    res = gpusim.tune("backtest", market, space={"k": [1.0, 2.0], "tau": taus},
                      fixed={"alloc": band, "params": ["tau", "k"], "seed": 3, "fees": 0.001},
                      n_trials=8, batch=8, sampler="random", seed=1, backend="cpu",
                      progress=False)
    assert res.summary["n_calls"] == 1
    c = res.compare_grid()                                  # the 6-point grid in one call
    assert c.summary["n_grid"] == 6 and c.summary["n_calls"] == 1 and c.rank >= 1
    full = gpusim.backtest(market, alloc=band, params={"tau": Param(taus), "k": Param([1.0,
                           2.0])}, fees=0.001, seed=3, share_draws=["tau", "k"],
                           backend="cpu", progress=False).metrics
    for (k, tau), row in c.table.iterrows():
        assert np.array_equal(row.to_numpy(float), full.loc[("equal", tau, k)].to_numpy(),
                              equal_nan=True)
    assert np.array_equal(c.table.loc[(2.0, 0.05)].to_numpy(float),
                          _direct(market, band, 0.05, k=2.0, fees=0.001, seed=3))


JOB = """
task = "backtest"
out = "out"
backend = "cpu"
n_trials = 6
batch = 3
seed = 0
[data]
synthetic = {{ n_assets = 3, n_bars = 100, seed = 1 }}
[space]
tau = {{ low = 0.005, high = 0.2 }}
fees = [0.0, 0.002]
[fixed]
alloc = "{alloc}"
params = ["tau", "k"]
k = 3
seed = 7
"""


def test_tune_job_with_alloc_relative_to_the_job_folder(tmp_path, monkeypatch, capsys, market,
                                                        band):
    d = tmp_path / "job"
    d.mkdir()
    (d / "job.toml").write_text(JOB.format(alloc=f"{os.path.relpath(STRATEGIES, d)}:band"))
    elsewhere = tmp_path / "a" / "b" / "c"        # deeper: the job's relative path fails here
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    assert main(["tune", str(d / "job.toml"), "--no-progress"]) == 0
    assert "tune backtest: 6 of 6 trials in 2 batches (2 calls" in capsys.readouterr().out
    s = json.loads((d / "out" / "summary.json").read_text())
    assert s["fixed"]["alloc"] == f"{STRATEGIES}:band" and s["fixed"]["k"] == 3
    t = pd.read_parquet(d / "out" / "trials.parquet")
    for _, row in t.iterrows():
        want = _direct(market, band, row["tau"], fees=row["fees"])
        assert np.array_equal(row[list(METRICS)].to_numpy(float), want, equal_nan=True)
    # a spec the job's folder does not have: one error line, exit status 2
    (d / "bad.toml").write_text(JOB.format(alloc="strategies.py:band"))
    assert main(["tune", str(d / "bad.toml"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "fixed.alloc" in err and "not found" in err
    assert str(d) in err


@pytest.mark.parametrize("space, fixed, match", [
    ({"tau": (0.0, 0.1)}, {}, r"space: tau is not an argument of gpusim.backtest.*alloc"),
    ({"fees": [0.0]}, {"params": ["tau"], "tau": 0.1},
     r"fixed: params is the parameter row of an allocation function"),
    ({"tau": (0.0, 0.1)}, {"alloc": "BAND", "k": 3},
     r"alloc: tau, k are parameters of the function; give the order.*params=\[\"tau\", \"k\"\]"),
    ({"tau": (0.0, 0.1)}, {"alloc": "BAND", "threshold": 0.05},
     r"fixed: threshold is not used with alloc"),
    ({"relative": [True, False]}, {"alloc": "BAND"}, r"space: relative is not used with alloc"),
    ({"tau": (0.0, 0.1)}, {"alloc": "BAND", "share_draws": ["tau"]},
     r"fixed: share_draws is not taken by a study"),
    ({"alloc": ["a.py:f"]}, {"alloc": "BAND"}, r"space: alloc cannot be tuned"),
    ({"tau": (0.0, 0.1)}, {"alloc": "BAND", "params": {"k": 3}},
     r"fixed: params=\{'k': 3\} must be the list"),
    ({"tau": (0.0, 0.1)}, {"alloc": "BAND", "params": ["tau", "k"]},
     r"params names k but the study gives it no value"),
    ({"tau": (0.0, 0.1)}, {"alloc": "BAND", "params": ["tau"], "k": 3},
     r"k is not an argument of gpusim.backtest nor a name of params"),
    ({"tau": (0.0, 0.1)}, {"alloc": "no_such_file.py:band"},
     r"fixed.alloc 'no_such_file.py:band': file .* not found"),
    ({"tau": (0.0, 0.1)}, {"alloc": "strategies_band"}, r"fixed.alloc .* has no ':NAME'"),
    ({"tau": (0.0, 0.1)}, {"alloc": 3}, r"fixed.alloc=3 must be a function"),
    ({"tau": (0.0, 0.1)}, {"alloc": f"{STRATEGIES}:two_args"},
     r"fixed.alloc function 'two_args' takes 2 argument"),
])
def test_errors_are_one_line_naming_the_key(market, space, fixed, match):
    fixed = {k: (f"{STRATEGIES}:band" if v == "BAND" else v) for k, v in fixed.items()}
    with pytest.raises(GpusimError, match=match) as e:
        gpusim.tune("backtest", market, space=space, fixed=fixed, n_trials=2, progress=False)
    assert "\n" not in str(e.value)


def test_example_job_loads_its_function_from_its_own_folder(tmp_path, monkeypatch):
    from gpusim.tune.job import fixed_args, load_tune_job
    from gpusim.tune.space import parse_space
    from gpusim.tune.targets import check_names, get_target

    monkeypatch.chdir(tmp_path)
    job = load_tune_job(ROOT / "examples" / "tune_alloc.toml")
    assert job.fixed["alloc"] == f"{ROOT / 'examples' / 'user_strategies.py'}:band_rebalance"
    fixed = fixed_args("backtest", job.fixed, job.base_dir, [])
    check_names(get_target("backtest"), parse_space(job.space), fixed)   # loads the function


SWEEP = """
task = "tune"
out = "out"
backend = "cpu"
[data]
synthetic = {{ n_assets = 3, n_bars = 100, seed = 1 }}
[fixed]
target = "backtest"
space = {{ tau = {{ low = 0.005, high = 0.2 }} }}
n_trials = 4
batch = 4
args = {{ alloc = "{alloc}", seed = 7 }}
[grid]
seed = [0, 1]
"""


def test_a_sweep_of_studies_loads_the_function_from_the_job_folder(tmp_path, monkeypatch,
                                                                     market):
    from gpusim.sweep.api import run_job

    d = tmp_path / "job"
    d.mkdir()
    alloc = f"{os.path.relpath(ROOT / 'examples' / 'user_strategies.py', d)}:band_rebalance"
    (d / "job.toml").write_text(SWEEP.format(alloc=alloc))
    elsewhere = tmp_path / "a" / "b" / "c"        # deeper: the job's relative path fails here
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    res = run_job(d / "job.toml", progress=False)
    assert res.ok and len(res.table) == 2
    one = gpusim.tune("backtest", market, space={"tau": (0.005, 0.2)}, n_trials=4, batch=4,
                      seed=1, fixed={"alloc": f"{ROOT / 'examples'}/user_strategies.py:"
                                     "band_rebalance", "seed": 7}, backend="cpu",
                      progress=False)
    row = res.table.loc[1]
    assert row["best_value"] == one.best_value and row["n_calls"] == 1
    assert json.loads(row["best_params"]) == one.best_params
