"""Sweeps on Dask (issue 4): identical tables to the local engine, retries across processes,
resume across engines. Skipped when the optional ``dask[distributed]`` extra is absent."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")

from gpusim.cli.sweep import main as sweep_main  # noqa: E402
from gpusim.sweep.api import SweepResult, load_job, run_job  # noqa: E402
from gpusim.sweep.tasks import TaskRunner, register_task  # noqa: E402

BT_JOB = """
task = "backtest"
out = "{out}"
backend = "cpu"
chunk_size = 600
[data]
synthetic = {{ n_assets = 4, n_bars = 300, seed = 4 }}
[fixed]
weights = {{ random = 1500, seed = 2 }}
[grid]
rebalance = ["M", 21]
threshold = ["none", 0.04]
[[grid.zip]]
init_cash = [1.0, 100.0]
rf = [0.0, 0.03]
"""

SEARCH_JOB = """
task = "search"
out = "{out}"
backend = "cpu"
chunk_size = 9_000
[data]
synthetic = {{ n_assets = 6, n_bars = 300, seed = 8 }}
[fixed]
n = 50_000
top_k = 8
hi = 0.45
[grid]
seed = [0, 7]
sampler = ["dirichlet", "uniform"]
"""


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_cli_dask_local_cluster_matches_local(tmp_path, capsys):
    job = tmp_path / "job.toml"
    job.write_text(BT_JOB.format(out="local"))
    assert sweep_main([str(job), "--no-progress"]) == 0
    capsys.readouterr()
    assert sweep_main([str(job), "--no-progress", "--engine", "dask", "--out",
                       str(tmp_path / "dask"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["engine"] == "dask" and s["workers"] == 2 and s["status"] == "complete"
    local, dask = SweepResult.load(tmp_path / "local"), SweepResult.load(tmp_path / "dask")
    assert dask.summary["n_chunks"] > 10
    pd.testing.assert_frame_equal(dask.table, local.table, check_exact=True)
    workers = {r["worker"] for r in _manifest(tmp_path / "dask")["done"].values()}
    assert all(int(w.rsplit(":", 1)[1]) != os.getpid() for w in workers)


def test_search_on_dask_matches_local_and_resumes_across_engines(client, tmp_path):
    job = tmp_path / "job.toml"
    job.write_text(SEARCH_JOB.format(out="local"))
    local = run_job(job, progress=False)
    dask = run_job(load_job(job, out=tmp_path / "dask"), engine="dask", scheduler=client,
                   progress=False)
    assert dask.summary["engine"] == "dask" and dask.ok
    pd.testing.assert_frame_equal(dask.table, local.table, check_exact=True)
    # lose two chunks of the Dask run, finish it locally: same table, only those recomputed
    for f in sorted((tmp_path / "dask" / "chunks").glob("c*.parquet"))[3:5]:
        f.unlink()
    again = run_job(load_job(job, out=tmp_path / "dask"), resume=True, progress=False)
    assert again.summary["computed_this_run"] == 2
    pd.testing.assert_frame_equal(again.table, local.table, check_exact=True)


class FlakyDaskTask(TaskRunner):
    """x -> one row; x == 2 always raises, x == 4 raises on its first attempt (a marker file
    tells the second attempt, wherever it runs, that the first one happened)."""

    name = "flaky_dask_test"
    params = {"x": "a number", "marker_dir": "folder for attempt markers"}

    def prepare(self, market, fixed, native_axes, backend):
        return {"dir": fixed["marker_dir"]}

    def split(self, ctx, point, chunk_size):
        return [{"size": 1}]

    def run(self, ctx, point, part):
        x = point["x"]
        marker = Path(ctx["dir"]) / f"x{x}"
        first = not marker.exists()
        marker.touch()
        if x == 2:
            raise ValueError("always fails")
        if x == 4 and first:
            raise RuntimeError(f"first attempt in pid {os.getpid()}")
        return pd.DataFrame({"y": [10.0 * x]}), {"pid": os.getpid()}


def test_failing_chunk_on_dask_is_retried_once_and_reported(client, tmp_path):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    register_task(FlakyDaskTask(), replace=True)
    from gpusim.sweep.api import sweep

    res = sweep("flaky_dask_test", {"x": range(6)}, market="synthetic:2:10",
                marker_dir=str(tmp_path), out=tmp_path / "o", engine="dask", scheduler=client,
                backend="cpu", progress=False)
    assert res.status == "incomplete"
    assert [(f["chunk"], f["attempts"], f["params"], f["error"]) for f in res.failures] == [
        (2, 2, {"x": 2}, "ValueError: always fails")]
    m = _manifest(tmp_path / "o")
    assert m["done"]["4"]["attempts"] == 2 and len(m["done"]) == 5
    assert res.table["y"].tolist() == [0.0, 10.0, 30.0, 40.0, 50.0]
    assert res.table.index.names == ["x"]
