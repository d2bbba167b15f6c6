"""Sweeps (issue 4): job files, chunked execution, checkpoint/resume after SIGKILL, refusals,
failure handling, and bit-identity with single backtest()/search() calls."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gpusim
from gpusim import Param, RandomWeights
from gpusim.cli.sweep import main as sweep_main
from gpusim.errors import GpusimError
from gpusim.sweep import tasks as sweep_tasks
from gpusim.sweep.api import SweepResult, load_job, plan_job, run_job
from gpusim.sweep.api import sweep as run_sweep
from gpusim.sweep.job import parse_grid
from gpusim.sweep.tasks import TaskRunner, register_task

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mkt():
    return gpusim.synthetic_market(4, 260, seed=2)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


# ---------------------------------------------------------------------------------------------
# Equality with single calls
# ---------------------------------------------------------------------------------------------

def test_backtest_sweep_equals_single_backtest_calls(mkt, tmp_path):
    grid = {"init_cash": [1.0, 100.0], ("rebalance", "threshold"): [("M", None), (21, 0.05)],
            "fees": [0.0, 0.002]}
    res = run_sweep("backtest", grid, market=mkt, weights=RandomWeights(37, seed=4),
                    out=tmp_path / "bt", chunk_size=9, backend="cpu", progress=False)
    assert res.ok and res.summary["n_chunks"] > 8
    t = res.table
    assert t.index.names == ["init_cash", "weights", "rebalance", "threshold", "fees"]
    assert len(t) == 2 * 37 * 2 * 2
    for cash in (1.0, 100.0):
        ref = gpusim.backtest(mkt, weights=RandomWeights(37, seed=4),
                              rebalance=Param(["M", 21], level="z"),
                              threshold=Param([None, 0.05], level="z"),
                              fees=Param([0.0, 0.002]), init_cash=cash, backend="cpu",
                              progress=False).metrics
        got = t.xs(cash, level="init_cash")
        np.testing.assert_array_equal(got.to_numpy(), ref.to_numpy())
        assert got.index.get_level_values("weights").tolist() == \
            ref.index.get_level_values("weights").tolist()
        assert got.index.get_level_values("rebalance").tolist() == ["M", "M", "21", "21"] * 37
    # the chunks are rectangular sub-grids: each chunk file holds whole rows of the plan
    m = _manifest(tmp_path / "bt")
    assert sum(c["size"] for c in m["plan"]["chunks"]) == len(t)


def test_search_sweep_merges_ranges_bit_identically(mkt, tmp_path):
    grid = {"seed": [3, 4], "zip": [{"sampler": ["dirichlet", "uniform"], "alpha": [0.5, 1.0]}]}
    res = run_sweep("search", grid, market=mkt, n=30_011, top_k=6, hi=0.6, chunk_size=4_099,
                    out=tmp_path / "s", backend="cpu", progress=False)
    assert res.ok and res.summary["n_chunks"] == 4 * 8
    for seed in (3, 4):
        for sampler, alpha in (("dirichlet", 0.5), ("uniform", 1.0)):
            ref = gpusim.search(mkt, n=30_011, top_k=6, seed=seed, sampler=sampler,
                                alpha=alpha, bounds=(None, 0.6), backend="cpu",
                                progress=False, baselines=False)
            got = res.table.xs((seed, sampler, alpha), level=("seed", "sampler", "alpha"))
            pd.testing.assert_frame_equal(got, ref.top, check_exact=True,
                                          check_index_type=False)
    pts = {(p["seed"], p["sampler"]): p for p in res.summary["points"]}
    assert pts[(3, "dirichlet")]["n_evaluated"] == 30_011
    assert 0 < pts[(3, "dirichlet")]["n_valid"] < 30_011


def test_gpu_backend_in_the_cuda_simulator_matches_single_gpu_calls(mkt, tmp_path):
    """The GPU paths of both tasks (numba.cuda kernels, run here in the CUDA simulator)."""
    res = run_sweep("search", {"seed": [1, 2]}, market=mkt, n=1500, top_k=4, chunk_size=700,
                    out=tmp_path / "s", backend="gpu", progress=False)
    assert res.summary["backend"] in ("gpu-simulator", "gpu") and res.summary["n_chunks"] == 6
    for seed in (1, 2):
        ref = gpusim.search(mkt, n=1500, top_k=4, seed=seed, backend="gpu", chunk_size=700,
                            baselines=False, progress=False).top
        pd.testing.assert_frame_equal(res.table.xs(seed, level="seed"), ref, check_exact=True,
                                      check_index_type=False)
    res = run_sweep("search", {"dtype": ["float32"]}, market=mkt, n=900, top_k=3,
                    chunk_size=400, out=tmp_path / "s32", backend="gpu", progress=False)
    ref = gpusim.search(mkt, n=900, top_k=3, dtype="float32", backend="gpu", chunk_size=400,
                        baselines=False, progress=False).top
    pd.testing.assert_frame_equal(res.table.xs("float32", level="dtype"), ref,
                                  check_exact=True, check_index_type=False)
    with pytest.raises(GpusimError, match="dtype='float32' is GPU-only"):
        run_sweep("search", None, market=mkt, n=10, dtype="float32", backend="cpu",
                  out=tmp_path / "bad")
    res = run_sweep("backtest", {"fees": [0.0, 0.001]}, market=mkt, weights=RandomWeights(30),
                    rebalance="M", threshold=0.05, chunk_size=20, out=tmp_path / "b",
                    backend="gpu", progress=False)
    ref = gpusim.backtest(mkt, weights=RandomWeights(30), rebalance="M", threshold=0.05,
                          fees=Param([0.0, 0.001]), backend="gpu", progress=False).metrics
    np.testing.assert_array_equal(res.table.to_numpy(), ref.to_numpy())


def test_sweep_without_out_keeps_nothing(mkt):
    res = run_sweep("backtest", {"fees": [0.0, 0.01]}, market=mkt, backend="cpu",
                    progress=False)
    assert res.out is None and len(res.table) == 2 and res.ok


# ---------------------------------------------------------------------------------------------
# Job files
# ---------------------------------------------------------------------------------------------

def test_job_file_grid_forms_and_paths(tmp_path):
    (tmp_path / "sub").mkdir()
    job = load_job(_write(tmp_path / "sub" / "job.toml", """
task = "backtest"
out = "../o"
[data]
synthetic = { n_assets = 3, n_bars = 50 }
[fixed]
weights = "w.csv"
[grid]
threshold = { start = 0.02, stop = 0.1, step = 0.02 }
fees = { start = 0.0, stop = 0.01, num = 3 }
k = { start = 1, stop = 7, step = 3 }
[[grid.zip]]
init_cash = [1.0, 100.0]
rf = [0.0, 0.02]
"""))
    assert job.out == (tmp_path / "o").resolve()
    assert job.fixed["weights"] == {"file": str((tmp_path / "sub" / "w.csv").resolve())}
    axes = {a.names: [v[0] if len(v) == 1 else v for v in a.values] for a in job.grid}
    assert axes[("threshold",)] == [0.02, 0.04, 0.06, 0.08, 0.1]
    assert axes[("fees",)] == [0.0, 0.005, 0.01]
    assert axes[("k",)] == [1, 4, 7]
    assert axes[("init_cash", "rf")] == [(1.0, 0.0), (100.0, 0.02)]


@pytest.mark.parametrize("text,match", [
    ("task = 'backtest'\nfoo = 1\n", r"unknown key\(s\) foo"),
    ("out = 'x'\n", r"names no task"),
    ("task = 'backtest'\n[fixed]\nfees = 0.1\n[grid]\nfees = [0.1]\n",
     r"fees is both fixed and in the grid"),
    ("task = 'backtest'\n[grid]\nfees = 0.1\n", r"grid.fees = 0.1 is a single value"),
    ("task = 'backtest'\n[[grid.zip]]\nfees = [0.1, 0.2]\nrf = [0.0]\n",
     r"same number of values \(fees: 2, rf: 1\)"),
    ("task = 'backtest'\n[grid]\nfees = [0.1, 0.1]\n", r"repeats the value"),
    ("task = 'backtest'\n[grid]\nfees = { start = 1 }\n", r"range table needs start and stop"),
    ("task = [", r"is not valid TOML"),
])
def test_job_file_errors(tmp_path, text, match):
    with pytest.raises(GpusimError, match=match):
        load_job(_write(tmp_path / "job.toml", text))


def test_grid_python_forms():
    axes = parse_grid({"a": range(3), ("b", "c"): [(1, "x"), (2, "y")],
                       "d": np.array([0.5, 1.5])})
    assert [a.names for a in axes] == [("a",), ("b", "c"), ("d",)]
    assert axes[2].values == [(0.5,), (1.5,)] and isinstance(axes[2].values[0][0], float)


def test_unknown_and_planned_tasks_and_params(tmp_path, capsys, monkeypatch):
    job = _write(tmp_path / "j.toml", "task = 'nosuchtask'\nout = 'o'\n")
    assert sweep_main([str(job)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: task 'nosuchtask' is unknown; available tasks: backtest")
    assert err.count("\n") == 1
    # a task whose provider module does not (yet) register it
    monkeypatch.setitem(sweep_tasks.PROVIDERS, "later", ("gpusim.no_such_module", "a plan"))
    job = _write(tmp_path / "j.toml", "task = 'later'\nout = 'o'\n")
    assert sweep_main([str(job)]) == 2
    assert "task 'later' (a plan) cannot be swept yet" in capsys.readouterr().err
    job = _write(tmp_path / "j.toml", "task = 'backtest'\nout = 'o'\n[grid]\nfee = [0.1, 0.2]\n")
    assert sweep_main([str(job)]) == 2
    assert "has no parameter 'fee'; use weights, rebalance" in capsys.readouterr().err
    assert sweep_main([str(tmp_path / "missing.toml")]) == 2
    assert "not found" in capsys.readouterr().err
    job = _write(tmp_path / "j.toml", "task = 'backtest'\nout = 'o'\n[grid]\nfees = [0.1, 2]\n")
    assert sweep_main([str(job)]) == 2
    assert "fees=2 must be in [0, 1)" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()          # validated before anything is written


def test_dry_run_plans_without_writing(tmp_path, capsys):
    job = _write(tmp_path / "j.toml", """
task = "search"
out = "o"
chunk_size = 1000
[data]
synthetic = { n_assets = 3, n_bars = 40 }
[fixed]
n = 2500
[grid]
seed = [1, 2]
""")
    assert sweep_main([str(job), "--dry-run"]) == 0
    assert "5,000 candidates in 2 point(s) -> 6 chunk(s)" in capsys.readouterr().out
    assert plan_job(job)["n_chunks"] == 6 and not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------
# SIGKILL and resume
# ---------------------------------------------------------------------------------------------

KILL_JOB = """
task = "backtest"
out = "{out}"
backend = "cpu"
chunk_size = 4000
[data]
synthetic = {{ n_assets = 5, n_bars = 756, seed = 9 }}
[fixed]
weights = {{ random = 60000, seed = 1 }}
rebalance = "M"
[grid]
threshold = ["none", 0.05]
fees = [0.0, 0.001]
"""


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    job = _write(tmp_path / "job.toml", KILL_JOB.format(out="killed"))
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "gpusim.cli.sweep", str(job),
                             "--no-progress"], cwd=tmp_path, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if len(_manifest(out)["done"]) >= 1:
                    break
            except (OSError, ValueError):
                pass
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.01)
        time.sleep(random.uniform(0.0, 0.3))          # a random moment after the first chunk
        assert proc.poll() is None, "the sweep finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    n_chunks = _manifest(out)["plan"]["n_chunks"]
    before = sorted(int(f.stem[1:]) for f in (out / "chunks").glob("c*.parquet"))
    assert 1 <= len(before) < n_chunks == 60

    assert sweep_main([str(job), "--resume", "--no-progress"]) == 0
    m = _manifest(out)
    assert m["status"] == "complete" and len(m["done"]) == n_chunks and not m["failed"]
    assert len(m["runs"]) == 2 and m["runs"][1]["resumed"]
    # nothing finished before the kill was computed again
    assert m["runs"][1]["computed"] == n_chunks - len(before)
    assert m["runs"][1]["skipped"] == len(before)
    assert all(m["done"][str(i)]["run"] == 0 for i in before)
    assert sorted(int(k) for k, r in m["done"].items() if r["run"] == 1) == sorted(
        set(range(n_chunks)) - set(before))
    assert all(r["attempts"] == 1 for r in m["done"].values())
    assert not list(out.rglob(".*.tmp-*"))

    ref = run_job(load_job(job, out=tmp_path / "straight"), progress=False)
    resumed = SweepResult.load(out)
    assert resumed.summary["status"] == "complete"
    pd.testing.assert_frame_equal(resumed.table, ref.table, check_exact=True)
    assert len(ref.table) == 240_000


def test_resume_refuses_changed_job_or_data_then_force(tmp_path, capsys):
    prices = gpusim.synthetic_market(3, 120, seed=5).prices
    prices.to_csv(tmp_path / "prices.csv")
    text = ("task = 'backtest'\nout = 'o'\nbackend = 'cpu'\nchunk_size = 2\n"
            "[data]\npath = 'prices.csv'\n[fixed]\nrebalance = 'M'\n"
            "[grid]\nfees = [0.0, 0.001, 0.002]\nthreshold = [0.02, 0.05]\n")
    job = _write(tmp_path / "job.toml", text)
    assert sweep_main([str(job), "--no-progress"]) == 0
    capsys.readouterr()
    first = pd.read_parquet(tmp_path / "o" / "results.parquet")

    _write(job, text.replace("0.002]", "0.003]"))
    assert sweep_main([str(job), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: cannot resume")
    assert "the job changed (grid.fees: [[0.0], [0.001], [0.002]] -> [[0.0], [0.001], " \
           "[0.003]])" in err
    assert "use a new output folder, or --force" in err

    _write(job, text)
    changed = prices.copy()
    changed.iloc[60, 1] *= 1.01
    changed.to_csv(tmp_path / "prices.csv")
    assert sweep_main([str(job), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the data changed (prices hash" in err
    assert "job changed" not in err
    # unchanged folder: nothing was deleted by the refusals
    assert len(_manifest(tmp_path / "o")["done"]) == 4

    assert sweep_main([str(job), "--no-progress"]) == 2     # no --resume on an existing sweep
    assert "already holds a sweep (4 of 4 chunks done); pass --resume" in \
        capsys.readouterr().err
    # --resume with --force was accepted (and restarted); now refused in one line (issue 16)
    assert sweep_main([str(job), "--resume", "--force", "--no-progress"]) == 2
    assert "--resume and --force contradict each other" in capsys.readouterr().err
    assert sweep_main([str(job), "--force", "--no-progress"]) == 0
    m = _manifest(tmp_path / "o")
    assert len(m["runs"]) == 1 and m["runs"][0]["computed"] == 4
    again = pd.read_parquet(tmp_path / "o" / "results.parquet")
    assert not again["sharpe"].equals(first["sharpe"])

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert sweep_main([str(job), "--out", str(foreign), "--force"]) == 2
    assert "is not empty and holds no sweep" in capsys.readouterr().err
    assert (foreign / "notes.txt").exists()


def test_resume_recovers_chunks_the_manifest_missed(mkt, tmp_path):
    out = tmp_path / "o"
    kw = {"market": mkt, "weights": RandomWeights(20), "out": out, "chunk_size": 5,
          "backend": "cpu", "progress": False}
    grid = {"init_cash": [1.0, 100.0], "fees": [0.0, 0.001]}
    full = run_sweep("backtest", grid, **kw)       # results.parquet: the chunk files, linked
    assert full.summary["n_chunks"] == 20
    parts = sorted((out / "results.parquet").iterdir())
    assert [p.name for p in parts] == [f"part-{i:06d}.parquet" for i in range(20)]
    assert all(p.stat().st_ino == (out / "chunks" / f"c{i:06d}.parquet").stat().st_ino
               for i, p in enumerate(parts))            # written once: hard links
    m = _manifest(out)
    for k in ("1", "4"):                       # as if killed before the manifest was saved
        del m["done"][k]
    (out / "chunks" / "c000006.parquet").unlink()     # and as if chunk 6 never finished
    del m["done"]["6"]
    (out / "manifest.json").write_text(json.dumps(m))
    res = run_sweep("backtest", grid, resume=True, **kw)   # merged from the chunk files
    m = _manifest(out)
    assert res.summary["computed_this_run"] == 1 and res.summary["recovered"] == 2
    assert m["done"]["1"]["recovered"] and m["done"]["1"]["run"] == 0
    assert m["done"]["6"]["run"] == 1
    pd.testing.assert_frame_equal(res.table, full.table, check_exact=True)


# ---------------------------------------------------------------------------------------------
# Failures and interruptions (a test-only task)
# ---------------------------------------------------------------------------------------------

class FlakyTask(TaskRunner):
    """x -> one row; raises for chosen x (always, or on the first attempt only)."""

    name = "flaky_test"
    params = {"x": "a number"}
    rank_by = ("sharpe", False)
    always: set = {3}
    once: set = {5}
    interrupt_at: int | None = None
    attempts: dict = {}

    def prepare(self, market, fixed, native_axes, backend):
        return {"scale": fixed.get("scale", 2.0)}

    def levels(self, ctx):
        return ["part"]

    def split(self, ctx, point, chunk_size):
        return [{"size": 1}]

    def run(self, ctx, point, part):
        x = point["x"]
        n = self.attempts[x] = self.attempts.get(x, 0) + 1
        if x == self.interrupt_at:
            raise KeyboardInterrupt
        if x in self.always:
            raise ValueError(f"boom at x={x}")
        if x in self.once and n == 1:
            raise RuntimeError("transient")
        return pd.DataFrame({"part": [0], "y": [x * ctx["scale"]], "sharpe": [float(x)]}), {}


@pytest.fixture
def flaky():
    t = FlakyTask()
    FlakyTask.attempts = {}
    register_task(t, replace=True)
    yield t
    FlakyTask.always, FlakyTask.once, FlakyTask.interrupt_at = {3}, {5}, None


def test_failing_chunk_is_retried_once_and_reported(flaky, tmp_path, capsys):
    job = _write(tmp_path / "job.toml", "task = 'flaky_test'\nout = 'o'\nbackend = 'cpu'\n"
                 "[data]\nsynthetic = { n_assets = 2, n_bars = 10 }\n"
                 "[grid]\nx = { start = 0, stop = 7 }\n")
    assert sweep_main([str(job), "--no-progress"]) == 1
    cap = capsys.readouterr()
    assert "failed chunk 3 (x=3) after 2 attempts: ValueError: boom at x=3" in cap.out
    assert cap.err.strip() == ("error: 1 of 8 chunks failed (listed above; details in "
                               "manifest.json); run again with --resume to retry them")
    assert FlakyTask.attempts == {0: 1, 1: 1, 2: 1, 3: 2, 4: 1, 5: 2, 6: 1, 7: 1}
    m = _manifest(tmp_path / "o")
    assert m["status"] == "incomplete" and list(m["failed"]) == ["3"]
    f = m["failed"]["3"]
    assert f["attempts"] == 2 and f["params"] == {"x": 3} and "boom" in f["traceback"]
    assert m["done"]["5"]["attempts"] == 2 and len(m["done"]) == 7
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["failures"] == [{"chunk": 3, "run": 0, "attempts": 2,
                              "error": "ValueError: boom at x=3", "params": {"x": 3}}]
    table = SweepResult.load(tmp_path / "o").table
    assert table.index.names == ["x", "part"]
    assert table["y"].tolist() == [0.0, 2.0, 4.0, 8.0, 10.0, 12.0, 14.0]

    FlakyTask.always = set()                         # fixed: resume runs only chunk 3
    assert sweep_main([str(job), "--resume", "--no-progress"]) == 0
    m = _manifest(tmp_path / "o")
    assert m["runs"][1]["computed"] == 1 and not m["failed"] and m["status"] == "complete"
    assert SweepResult.load(tmp_path / "o").table["y"].tolist() == [2.0 * x for x in range(8)]


def test_ctrl_c_keeps_finished_chunks(flaky, tmp_path):
    FlakyTask.always, FlakyTask.once, FlakyTask.interrupt_at = set(), set(), 4
    kw = {"market": "synthetic:2:10", "out": tmp_path / "o", "progress": False}
    res = run_sweep("flaky_test", {"x": range(8)}, **kw)
    assert res.status == "interrupted" and res.table.empty
    m = _manifest(tmp_path / "o")
    assert m["status"] == "interrupted" and sorted(m["done"], key=int) == ["0", "1", "2", "3"]
    assert not (tmp_path / "o" / "summary.json").exists()
    assert not (tmp_path / "o" / "results.parquet").exists()
    assert not list((tmp_path / "o").rglob(".*.tmp-*"))
    FlakyTask.interrupt_at = None
    res = run_sweep("flaky_test", {"x": range(8)}, resume=True, **kw)
    assert res.ok and res.summary["computed_this_run"] == 4 and len(res.table) == 8


def test_import_stays_light():
    code = ("import sys, gpusim.sweep.api, gpusim.cli.sweep; "
            "bad = [m for m in ('dask', 'distributed', 'cupy', 'cvxpy') if m in sys.modules]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"


class MixedTypesTask(TaskRunner):
    """One row per x: an int column for x = 0, a float one after (types differ by chunk)."""

    name = "mixed_types_test"
    params = {"x": "a number"}

    def prepare(self, market, fixed, native_axes, backend):
        return {}

    def run(self, ctx, point, part):
        x = point["x"]
        return pd.DataFrame({"y": [x] if x == 0 else [x + 0.5]}), {}


def test_results_folder_links_chunks_or_casts_mixed_types(tmp_path, monkeypatch):
    """results.parquet is a folder of parts: the chunk files hard-linked; a part whose column
    types differ is rewritten cast to the common schema; a copy where linking fails."""
    register_task(MixedTypesTask(), replace=True)
    calls = []

    def no_link(src, dst):
        calls.append(Path(dst).name)
        raise OSError("links not supported here")

    monkeypatch.setattr(os, "link", no_link)
    res = run_sweep("mixed_types_test", {"x": [0, 1, 2]}, market=gpusim.synthetic_market(2, 10),
                    out=tmp_path / "o", backend="cpu", progress=False)
    parts = sorted(p.name for p in (tmp_path / "o" / "results.parquet").iterdir())
    assert parts == ["part-000000.parquet", "part-000001.parquet", "part-000002.parquet"]
    assert calls == ["part-000001.parquet", "part-000002.parquet"]   # part 0 was cast
    back = pd.read_parquet(tmp_path / "o" / "results.parquet")
    assert back["y"].dtype == np.float64 and back["y"].tolist() == [0.0, 1.5, 2.5]
    assert res.table["y"].tolist() == [0.0, 1.5, 2.5]
