"""Backtest sweeps of a user allocation function (issue 11): ``alloc = "strategies.py:fn"`` in a
job file gives gpusim.backtest(alloc=...)'s rows bit for bit, resumes (the function loaded again
in a fresh process), refuses an edited strategy file, and reports keys the alloc path does not
take in one line."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gpusim
from gpusim import Param
from gpusim.cli.sweep import main as sweep_main
from gpusim.errors import GpusimError
from gpusim.strategy import alloc_sweep
from gpusim.strategy.loader import load_function
from gpusim.sweep.api import SweepResult, load_job, run_job
from gpusim.sweep.plan import _setup

ROOT = Path(__file__).resolve().parents[2]
STRATEGIES = ROOT / "tests" / "user_strategies.py"
TAUS = [0.01, 0.03, 0.08]

JOB = """
task = "backtest"
out = "out"
backend = "cpu"
chunk_size = {chunk}
[data]
synthetic = {{ n_assets = 4, n_bars = 100, seed = 3 }}
[fixed]
alloc = "{alloc}"
params = ["tau", "k"]
k = 3
seed = 7
weights = {{ random = 3, seed = 2 }}
{extra}
[grid]
tau = [0.01, 0.03, 0.08]
fees = [0.0, 0.005]
init_cash = [1.0, 100.0]
"""


def _job(tmp_path: Path, chunk: int = 4, extra: str = "", copy: bool = False) -> Path:
    """A job folder naming tests/user_strategies.py by a path relative to it (the same module
    as the CLI tests', so the function compiles once), or its own copy of the file.
    """
    d = tmp_path / "job"
    d.mkdir(exist_ok=True)
    if copy:
        shutil.copy(STRATEGIES, d / "strategies.py")
    alloc = "strategies.py:band" if copy else f"{os.path.relpath(STRATEGIES, d)}:band"
    (d / "job.toml").write_text(JOB.format(chunk=chunk, extra=extra, alloc=alloc))
    return d / "job.toml"


def _reference(init_cash: float, **kw) -> pd.DataFrame:
    mkt = gpusim.synthetic_market(n_assets=4, n_bars=100, seed=3)
    fn = load_function(f"{STRATEGIES}:band")
    return gpusim.backtest(mkt, alloc=fn, params={"tau": Param(TAUS), "k": 3},
                           weights=gpusim.RandomWeights(3, seed=2), fees=Param([0.0, 0.005]),
                           seed=7, init_cash=init_cash, backend="cpu", progress=False,
                           **kw).metrics


def test_alloc_job_equals_the_direct_call_bit_for_bit(tmp_path):
    job = _job(tmp_path, chunk=4, extra='share_draws = ["tau"]')
    res = run_job(job, progress=False)
    assert res.ok and res.summary["n_chunks"] == 2 * 5          # 18 combinations per point
    t = res.table
    assert t.index.names == ["init_cash", "weights", "tau", "fees"] and len(t) == 36
    for cash in (1.0, 100.0):
        ref = _reference(cash, share_draws=["tau"])
        got = t.xs(cash, level="init_cash")
        np.testing.assert_array_equal(got.to_numpy(), ref.to_numpy())
        assert got.index.tolist() == ref.index.tolist()
    # the random streams are the whole grid's: without share_draws the rows differ
    other = _reference(1.0)
    assert not np.array_equal(other.to_numpy(), t.xs(1.0, level="init_cash").to_numpy())
    fixed = res.summary["fixed"]
    assert fixed["alloc"] == {"alloc": f"{STRATEGIES.resolve()}:band",
                              "sha256": fixed["alloc"]["sha256"]}
    assert len(fixed["alloc"]["sha256"]) == 64


def test_context_pickles_without_the_function_and_reloads_it(tmp_path):
    """What a Dask worker gets: the context without the compiled function, loaded again from
    its spec on first use; its chunks equal the original's."""
    s = _setup(load_job(_job(tmp_path)))
    ctx = s.ctx
    assert isinstance(ctx, alloc_sweep.AllocCtx) and ctx.base.alloc is not None
    clone = pickle.loads(pickle.dumps(ctx))
    assert clone.base.alloc is None
    part = s.runner.split(ctx, {}, 5)[1]
    a, _ = s.runner.run(ctx, {"init_cash": 100.0}, part)
    b, _ = s.runner.run(clone, {"init_cash": 100.0}, part)
    assert clone.base.alloc is not None and a.equals(b) and a.num_rows == 5
    # a function loaded from a file ships as its file's spec (its module has no importable name)
    assert alloc_sweep._fn_spec(load_function(f"{STRATEGIES}:band")) == f"{STRATEGIES}:band"
    assert s.runner.describe(ctx, {}, part) == {
        "combinations": "4..8 of 18", "first": "(weights=0, tau=0.08, fees=0.0)",
        "last": "(weights=1, tau=0.03, fees=0.0)"}


@pytest.mark.slow
def test_interrupted_sweep_resumes_in_a_fresh_process(tmp_path, monkeypatch):
    job = _job(tmp_path, chunk=3)
    calls = {"n": 0}
    real = alloc_sweep.run

    def stop_after_two(ctx, point, part):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(ctx, point, part)

    monkeypatch.setattr(alloc_sweep, "run", stop_after_two)
    res = run_job(job, progress=False)
    monkeypatch.undo()
    out = job.parent / "out"
    m = json.loads((out / "manifest.json").read_text())
    assert res.status == "interrupted" and sorted(m["done"], key=int) == ["0", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.run([sys.executable, "-m", "gpusim.cli.sweep", str(job), "--resume",
                        "--no-progress"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "complete" and m["runs"][1]["resumed"]
    assert m["runs"][1]["computed"] == m["plan"]["n_chunks"] - 2
    resumed = SweepResult.load(out).table
    straight = run_job(load_job(job, out=tmp_path / "straight"), progress=False).table
    pd.testing.assert_frame_equal(resumed, straight, check_exact=True)
    for cash in (1.0, 100.0):
        np.testing.assert_array_equal(resumed.xs(cash, level="init_cash").to_numpy(),
                                      _reference(cash).to_numpy())


def test_resume_refuses_an_edited_strategy_file(tmp_path, monkeypatch, capsys):
    job = _job(tmp_path, chunk=18, copy=True)

    def interrupted(ctx, point, part):       # stopped before any chunk: nothing compiled
        raise KeyboardInterrupt

    monkeypatch.setattr(alloc_sweep, "run", interrupted)
    assert sweep_main([str(job), "--no-progress"]) == 130
    capsys.readouterr()
    f = job.parent / "strategies.py"
    f.write_text(f.read_text() + "\n# edited\n")
    assert sweep_main([str(job), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: cannot resume") and \
        "fixed.alloc" in err, err


@pytest.mark.parametrize("fixed,grid,needle", [
    ('threshold = 0.05', "", "threshold is not used with alloc (nor threshold_abs, band, "
                             "relative): test the drift inside the function"),
    ("", "band = ['hybrid']", "band is not used with alloc"),
    ("", "tau = [0.01]\nk = [1, 2]", 'alloc: tau, k are parameters of the function; give '
                                      'their order in its params row under [fixed], e.g. '
                                      'params = ["tau", "k"]'),
    ('params = ["tau"]\nfee = 0.001', "tau = [0.01]", "fee is not an argument of a backtest "
                                                       "with alloc nor a name of params"),
    ('params = ["tau", "k"]', "tau = [0.01]", "params names k but the job gives no value"),
    ('share_draws = ["x"]', "tau = [0.01, 0.02]", "share_draws: 'x' is not a level of the grid"),
    ("seed = 1.5", "tau = [0.01]", "seed=1.5 must be an integer >= 0"),
    ("", "tau = [0.01]\nseed = [1, -1]", "seed=-1 must be an integer >= 0"),
    ("", "tau = [0.01]\nshare_draws = [['tau'], []]", "grid: share_draws cannot be swept"),
])
def test_alloc_job_errors_are_one_line(tmp_path, fixed, grid, needle):
    d = tmp_path / "j"
    d.mkdir()
    shutil.copy(STRATEGIES, d / "strategies.py")
    (d / "job.toml").write_text(
        "task = 'backtest'\nout = 'o'\nbackend = 'cpu'\n[data]\nsynthetic = { n_assets = 3, "
        f"n_bars = 60 }}\n[fixed]\nalloc = 'strategies.py:band'\n{fixed}\n[grid]\n{grid}\n")
    with pytest.raises(GpusimError) as e:
        run_job(d / "job.toml", progress=False)
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_alloc_keys_without_alloc_and_bad_specs(tmp_path):
    text = ("task = 'backtest'\nout = 'o'\nbackend = 'cpu'\n[data]\n"
            "synthetic = {{ n_assets = 3, n_bars = 60 }}\n[fixed]\n{fixed}\n")
    for fixed, needle in (("seed = 3", "seed is for alloc: give the allocation function too"),
                          ("alloc = 'nofile.py:band'", "nofile.py' not found"),
                          ("alloc = 'x'", "alloc 'x' has no ':NAME' part"),
                          ("alloc = 3", "alloc=3 must be"),
                          ("alloc = 'strategies.py:two_args'", "alloc function 'two_args' "
                                                               "takes 2 argument(s)")):
        shutil.copy(STRATEGIES, tmp_path / "strategies.py")
        (tmp_path / "job.toml").write_text(text.format(fixed=fixed))
        with pytest.raises(GpusimError) as e:
            run_job(tmp_path / "job.toml", progress=False)
        assert needle in str(e.value), (fixed, str(e.value))
    # a target schedule is for the built-in rules (the function sets the targets)
    mkt = gpusim.synthetic_market(n_assets=3, n_bars=60)
    mkt.prices.iloc[[0, 30]].div(mkt.prices.iloc[[0, 30]].sum(axis=1), axis=0).to_csv(
        tmp_path / "sched.csv")
    (tmp_path / "job.toml").write_text(text.format(
        fixed="alloc = 'strategies.py:band'\nweights = { schedule = 'sched.csv' }"))
    with pytest.raises(GpusimError, match="a dated table is a schedule, which only the "
                                          "built-in rules run"):
        run_job(tmp_path / "job.toml", progress=False)


def test_example_job_plans(capsys):
    """examples/sweep_alloc.toml: the function found next to the job file (nothing compiled
    for a dry run)."""
    assert sweep_main([str(ROOT / "examples" / "sweep_alloc.toml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "30 combinations in 1 point(s)" in out, out


def test_python_sweep_with_a_function_and_zipped_levels(tmp_path):
    """gpusim.sweep(alloc=fn): a function object (fingerprinted by its source), zipped tau and
    fees, swept weight vectors; chunks of 2 combinations."""
    mkt = gpusim.synthetic_market(n_assets=4, n_bars=100, seed=3)
    fn = load_function(f"{STRATEGIES}:band")
    W = [[0.25] * 4, [0.4, 0.3, 0.2, 0.1]]
    res = gpusim.sweep("backtest", {"zip": [{"tau": TAUS, "fees": [0.0, 0.001, 0.002]}],
                                    "weights": W},
                       market=mkt, alloc=fn, k=2.0, params=["tau", "k"], seed=3,
                       backend="cpu", chunk_size=2, out=tmp_path / "o", progress=False)
    ref = gpusim.backtest(mkt, alloc=fn, params={"tau": Param(TAUS, level="z"), "k": 2.0},
                          fees=Param([0.0, 0.001, 0.002], level="z"), weights=Param(W), seed=3,
                          backend="cpu", progress=False).metrics
    assert res.summary["n_chunks"] == 3 and res.table.index.tolist() == ref.index.tolist()
    np.testing.assert_array_equal(res.table.to_numpy(), ref.to_numpy())
    assert res.summary["fixed"]["alloc"]["function"].endswith("_user_strategies:band")
