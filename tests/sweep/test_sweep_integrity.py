"""Sweep folder integrity (issue 16): damaged chunks, manifests of the wrong shape, --force in
folders that are not gpusim's, the folder lock, huge grids, --resume with --force, the
summary's contents, and SIGKILL / SIGINT at random points of a run."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import gpusim
from gpusim import RandomWeights
from gpusim.cli.sweep import main as sweep_main
from gpusim.errors import GpusimError
from gpusim.sweep.api import SweepResult, load_job, plan_job, run_job
from gpusim.sweep.api import sweep as run_sweep
from gpusim.sweep.store import SweepWarning

ROOT = Path(__file__).resolve().parents[2]
SLOW = Path(__file__).with_name("_slow_task.py")


def _load_slow_task():
    spec = importlib.util.spec_from_file_location("_slow_task", SLOW)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)          # registers the task "slow_test"
    return mod


@pytest.fixture(scope="module")
def mkt():
    return gpusim.synthetic_market(3, 120, seed=3)


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def _bt(mkt, out, **kw):
    return run_sweep("backtest", {"fees": [0.0, 0.001]}, market=mkt,
                     weights=RandomWeights(60, seed=2), rebalance="M", out=out, chunk_size=15,
                     backend="cpu", progress=False, **kw)


def _overwrite_middle(path: Path, n: int = 4096) -> None:
    """Overwrite up to ``n`` bytes inside the data of the file's middle column (not its
    footer: the file still opens)."""
    import pyarrow.parquet as pq

    md = pq.ParquetFile(path).metadata
    col = md.row_group(0).column(md.num_columns // 2)
    start = col.data_page_offset + col.total_compressed_size // 4
    n = min(n, col.total_compressed_size // 2)
    with open(path, "r+b") as fh:
        fh.seek(start)
        fh.write(b"\xff" * n)


# ---------------------------------------------------------------------------------------------
# Damaged chunks
# ---------------------------------------------------------------------------------------------

def test_damaged_chunks_are_detected_and_computed_again(mkt, tmp_path):
    out = tmp_path / "o"
    ref = _bt(mkt, out).table
    assert _manifest(out)["plan"]["n_chunks"] == 9
    chunks = out / "chunks"
    os.truncate(chunks / "c000005.parquet", 1000)          # truncated
    _overwrite_middle(chunks / "c000002.parquet")          # 4 KB overwritten inside
    m = _manifest(out)                                     # and a chunk the manifest missed,
    del m["done"]["6"]                                     # damaged inside: its page CRCs
    (out / "manifest.json").write_text(json.dumps(m))
    _overwrite_middle(chunks / "c000006.parquet", 64)
    # the results parts are the chunk files (hard links): reading them names the damage
    with pytest.raises(GpusimError, match=r"part-00000[25]\.parquet is damaged"):
        SweepResult.load(out).table                        # noqa: B018
    with pytest.warns(SweepWarning) as warned:
        res = _bt(mkt, out, resume=True)
    msgs = [str(w.message) for w in warned]
    assert any("chunk 5 " in x and "truncated: 1,000 bytes" in x for x in msgs)
    assert any("chunk 2 " in x and "checksum mismatch" in x for x in msgs)
    assert any("chunk 6 " in x and "unreadable" in x for x in msgs)
    run = _manifest(out)["runs"][-1]
    assert [x["chunk"] for x in run["damaged"]] == [2, 5, 6] and run["computed"] == 3
    assert res.summary["computed_this_run"] == 3
    assert [x["chunk"] for x in res.summary["damaged_this_run"]] == [2, 5, 6]
    pd.testing.assert_frame_equal(res.table, ref, check_exact=True)
    pd.testing.assert_frame_equal(SweepResult.load(out).table, ref, check_exact=True)


def test_cli_resume_recomputes_a_truncated_chunk_with_one_warning_line(tmp_path, capsys):
    job = tmp_path / "job.toml"
    job.write_text("task = 'backtest'\nout = 'o'\nbackend = 'cpu'\nchunk_size = 2\n"
                   "[data]\nsynthetic = { n_assets = 2, n_bars = 60 }\n[fixed]\n"
                   "rebalance = 'M'\n[grid]\nfees = [0.0, 0.001, 0.002]\n"
                   "threshold = [0.02, 0.05]\n")
    assert sweep_main([str(job), "--no-progress"]) == 0
    os.truncate(tmp_path / "o" / "chunks" / "c000001.parquet", 10)
    capsys.readouterr()
    assert sweep_main([str(job), "--resume", "--no-progress"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: chunk 1 (") and "truncated" in err[0]


# ---------------------------------------------------------------------------------------------
# Manifests and folders that are not (or no longer) a gpusim sweep
# ---------------------------------------------------------------------------------------------

def test_manifest_of_the_wrong_shape_is_one_clear_line(mkt, tmp_path, capsys):
    out = tmp_path / "o"
    _bt(mkt, out)
    (out / "manifest.json").write_text("[]")
    for kw in ({"resume": True}, {}, {"force": True}):
        with pytest.raises(GpusimError, match=r"manifest.json is not a gpusim sweep manifest "
                                              r"\(a JSON list, not an object\)"):
            _bt(mkt, out, **kw)
    assert len(list((out / "chunks").iterdir())) == 9        # nothing deleted
    (out / "manifest.json").write_text('{"format": "gpusim-sweep/2", "plan": []}')
    with pytest.raises(GpusimError, match=r"is a damaged gpusim sweep manifest \(job_hash is "
                                          r"missing\); use --force to start over"):
        _bt(mkt, out, resume=True)
    job = tmp_path / "job.toml"
    job.write_text("task = 'backtest'\nout = 'o'\n[grid]\nfees = [0.0]\n")
    assert sweep_main([str(job), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a damaged gpusim sweep manifest" in err
    res = _bt(mkt, out, force=True)                          # a gpusim one: --force restarts
    assert res.ok and res.summary["computed_this_run"] == 9


def test_force_deletes_only_gpusim_files(mkt, tmp_path, capsys):
    other = tmp_path / "other"                               # someone else's manifest.json
    (other / "results.parquet").mkdir(parents=True)
    (other / "manifest.json").write_text('{"project": "mine"}')
    (other / "summary.json").write_text('{"mine": 1}')
    (other / "results.parquet" / "data.csv").write_text("1,2\n")
    job = tmp_path / "job.toml"
    job.write_text("task = 'backtest'\nout = 'other'\n[grid]\nfees = [0.0]\n")
    assert sweep_main([str(job), "--force"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a gpusim sweep manifest (it has no gpusim format " \
        "marker); give a new or empty output folder (--force deletes only" in err
    assert sorted(str(p.relative_to(other)) for p in other.rglob("*")) == [
        "manifest.json", "results.parquet", "results.parquet/data.csv", "summary.json"]

    out = tmp_path / "o"                                     # a gpusim sweep, plus user files
    _bt(mkt, out)
    (out / "notes.txt").write_text("mine")
    (out / "results.parquet" / "extra.csv").write_text("mine")
    with pytest.raises(GpusimError, match=r"holds files a sweep did not write "
                                          r"\(results.parquet/extra.csv\)"):
        _bt(mkt, out, force=True)
    assert len(list((out / "results.parquet").iterdir())) == 10
    (out / "results.parquet" / "extra.csv").unlink()
    assert _bt(mkt, out, force=True).summary["computed_this_run"] == 9
    assert (out / "notes.txt").read_text() == "mine"


def test_resume_and_force_together_are_refused(mkt, tmp_path):
    with pytest.raises(GpusimError, match="resume=True and force=True contradict each other"):
        _bt(mkt, tmp_path / "o", resume=True, force=True)
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------
# The folder lock
# ---------------------------------------------------------------------------------------------

def _lock(out: Path, **owner) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.lock").write_text(json.dumps({"started": "2026-01-01T00:00:00+00:00",
                                                **owner}))


def test_lock_held_by_a_live_run_refuses(mkt, tmp_path, capsys):
    out = tmp_path / "o"
    _lock(out, pid=os.getpid(), host=socket.gethostname())       # this process: alive
    with pytest.raises(GpusimError, match=rf"is in use by another sweep run \(pid "
                                          rf"{os.getpid()} on {socket.gethostname()}"):
        _bt(mkt, out)
    _lock(out, pid=1, host="another-host")                       # cannot be checked: refused
    job = tmp_path / "job.toml"
    job.write_text("task = 'backtest'\nout = 'o'\n[grid]\nfees = [0.0]\n")
    assert sweep_main([str(job)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pid 1 on another-host" in err and "sweep.lock" in err
    assert not (out / "manifest.json").exists()


def test_stale_lock_is_taken_over_and_locks_are_released(mkt, tmp_path):
    out = tmp_path / "o"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _lock(out, pid=dead.pid, host=socket.gethostname())
    with pytest.warns(SweepWarning, match=rf"taking over the lock .* \(pid {dead.pid} on "):
        res = _bt(mkt, out)
    assert res.ok and not (out / "sweep.lock").exists()
    assert _manifest(out)["runs"][0]["lock_taken_over"]["pid"] == dead.pid
    with pytest.raises(GpusimError, match="already holds a sweep"):
        _bt(mkt, out)                                            # released on an error too
    assert not (out / "sweep.lock").exists()


# ---------------------------------------------------------------------------------------------
# Huge grids
# ---------------------------------------------------------------------------------------------

HUGE_JOB = """
task = "backtest"
out = "huge"
backend = "cpu"
[data]
synthetic = { n_assets = 5, n_bars = 756, seed = 9 }
[fixed]
weights = { random = 100000000, seed = 1 }
rebalance = "M"
[grid]
threshold = { start = 0.001, stop = 0.05, step = 0.001 }
fees = { start = 0.0, stop = 0.0099, step = 0.0001 }
"""


def test_huge_grid_is_refused_before_planning(tmp_path, capsys):
    job = tmp_path / "job.toml"
    job.write_text(HUGE_JOB)                     # 10^8 x 50 x 100 = 5 x 10^11 combinations
    plan_job(_small(tmp_path))                                  # imports warm
    t0 = time.perf_counter()
    with pytest.raises(GpusimError, match=r"the sweep is too big: 500,000,000,000 "
                                          r"combinations in 1 point\(s\) make at least [\d,]+ "
                                          r"chunks .* use a larger chunk_size \(at least"):
        plan_job(job)
    assert time.perf_counter() - t0 < 1.0
    assert sweep_main([str(job), "--dry-run"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    job.write_text("task = 'backtest'\nout = 'o'\n[data]\nsynthetic = { n_assets = 2, "
                   "n_bars = 30 }\n[grid]\ninit_cash = { start = 1, stop = 1001 }\n"
                   "rf = { start = 0.0, stop = 0.999, step = 0.001 }\n")
    t0 = time.perf_counter()
    with pytest.raises(GpusimError, match=r"the grid crosses 1,001,000 points \(1,001 "
                                          r"init_cash x 1,000 rf\)"):
        plan_job(job)
    assert time.perf_counter() - t0 < 1.0
    assert not (tmp_path / "huge").exists() and not (tmp_path / "o").exists()


def _small(tmp_path: Path) -> Path:
    job = tmp_path / "small.toml"
    job.write_text("task = 'backtest'\nout = 's'\n[data]\nsynthetic = { n_assets = 2, "
                   "n_bars = 30 }\n[grid]\nfees = [0.0]\n")
    return job


# ---------------------------------------------------------------------------------------------
# The summary
# ---------------------------------------------------------------------------------------------

def test_summary_carries_fixed_parameters_seeds_and_versions(tmp_path):
    job = tmp_path / "job.toml"
    job.write_text("task = 'search'\nout = 's'\nbackend = 'cpu'\n[data]\n"
                   "synthetic = { n_assets = 3, n_bars = 60, seed = 5 }\n[fixed]\n"
                   "n = 500\ntop_k = 2\nhi = 0.8\n[grid]\nseed = [3, 4]\n")
    res = run_job(load_job(job), progress=False)
    s = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert s == json.loads(json.dumps(res.summary, default=str))
    assert s["fixed"] == {"hi": 0.8, "n": 500, "top_k": 2}
    assert s["seeds"] == {"data.synthetic.seed": 5, "grid.seed": [3, 4]}
    assert s["data_spec"] == {"synthetic": {"n_assets": 3, "n_bars": 60, "seed": 5},
                              "kind": "synthetic"}
    assert {"gpusim", "numpy", "numba"} <= set(s["versions"])
    res = run_sweep("backtest", {"fees": [0.0]}, market="synthetic:2:40",
                    weights=RandomWeights(5, seed=7), rebalance="M", out=tmp_path / "b",
                    backend="cpu", progress=False)
    assert res.summary["seeds"] == {"fixed.weights.seed": 7}
    assert res.summary["fixed"]["rebalance"] == "M"
    assert res.summary["fixed"]["weights"]["random"] == 5


# ---------------------------------------------------------------------------------------------
# SIGKILL and SIGINT at random points, then resume
# ---------------------------------------------------------------------------------------------

SLOW_JOB = """
task = "slow_test"
out = "{out}"
backend = "cpu"
chunk_size = 5
[data]
synthetic = {{ n_assets = 2, n_bars = 10 }}
[fixed]
rows = 100
delay = 0.02
[grid]
x = [11, 12, 13, 14]
"""


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _n_chunk_files(out: Path) -> int:
    try:
        return sum(1 for f in os.scandir(out / "chunks") if f.name.startswith("c"))
    except OSError:
        return 0


def _interrupt(job: Path, out: Path, sig: int, extra: int, pause: float, args=()) -> int:
    """Start the sweep as a subprocess, wait for ``extra`` more chunk files, then ``pause``
    seconds, send ``sig``; returns the exit code (None when it finished first)."""
    target = _n_chunk_files(out) + extra
    proc = subprocess.Popen([sys.executable, str(SLOW), str(job), "--no-progress", *args],
                            cwd=job.parent, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while _n_chunk_files(out) < target and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.005)
        time.sleep(pause)
        if proc.poll() is not None:
            return None
        os.kill(proc.pid, sig)
        return proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


@pytest.mark.slow
def test_sigkill_and_sigint_at_random_points_then_resume(tmp_path, capsys):
    _load_slow_task()
    job = tmp_path / "job.toml"
    job.write_text(SLOW_JOB.format(out="o"))
    out = tmp_path / "o"
    ref = run_job(load_job(job, out=tmp_path / "straight"), progress=False)
    assert ref.ok and ref.summary["n_chunks"] == 80
    rng = random.Random(16)
    sigs = [signal.SIGKILL, signal.SIGINT] * 5
    rng.shuffle(sigs)
    for i, sig in enumerate(sigs):                        # 10 interruptions
        extra, pause = rng.randint(1, 4), rng.uniform(0.0, 0.03)
        rc = _interrupt(job, out, sig, extra, pause, () if i == 0 else ("--resume",))
        assert rc == (-signal.SIGKILL if sig == signal.SIGKILL else 130), (i, sig, rc)
        m = _manifest(out)
        assert m["status"] == ("interrupted" if sig == signal.SIGINT else "running")
        assert (out / "sweep.lock").exists() == (sig == signal.SIGKILL)
        assert len(m["runs"]) == i + 1 and _n_chunk_files(out) < 80
    # a second run while one is going is refused, naming the owner
    n = _n_chunk_files(out)
    proc = subprocess.Popen([sys.executable, str(SLOW), str(job), "--no-progress", "--resume"],
                            cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while _n_chunk_files(out) <= n:
            assert proc.poll() is None
            time.sleep(0.005)
        capsys.readouterr()
        assert sweep_main([str(job), "--resume", "--no-progress"]) == 2
        assert f"is in use by another sweep run (pid {proc.pid} on" in capsys.readouterr().err
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    done = sorted(_manifest(out)["done"], key=int)
    os.truncate(out / "chunks" / f"c{int(done[0]):06d}.parquet", 100)     # and damage two
    _overwrite_middle(out / "chunks" / f"c{int(done[-1]):06d}.parquet")
    capsys.readouterr()
    assert sweep_main([str(job), "--resume", "--no-progress"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(x.startswith("warning: chunk ") for x in err)
    m = _manifest(out)
    assert m["status"] == "complete" and len(m["done"]) == 80 and len(m["runs"]) == 12
    assert [x["chunk"] for x in m["runs"][-1]["damaged"]] == [int(done[0]), int(done[-1])]
    assert not (out / "sweep.lock").exists() and not list(out.rglob(".*.tmp-*"))
    pd.testing.assert_frame_equal(SweepResult.load(out).table, ref.table, check_exact=True)
