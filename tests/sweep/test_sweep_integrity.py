"""Sweep folder integrity (issue 16): damaged chunks, manifests of the wrong shape, --force in
folders that are not gpusim's, the folder lock, huge grids, --resume with --force, the
summary's contents, and SIGKILL / SIGINT at random points of a run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import gpusim
from gpusim import RandomWeights
from gpusim.cli.sweep import main as sweep_main
from gpusim.errors import GpusimError
from gpusim.sweep.api import plan_job
from gpusim.sweep.api import sweep as run_sweep


@pytest.fixture(scope="module")
def mkt():
    return gpusim.synthetic_market(3, 120, seed=3)


def _bt(mkt, out, **kw):
    return run_sweep("backtest", {"fees": [0.0, 0.001]}, market=mkt,
                     weights=RandomWeights(60, seed=2), rebalance="M", out=out, chunk_size=15,
                     backend="cpu", progress=False, **kw)


def test_resume_and_force_together_are_refused(mkt, tmp_path):
    with pytest.raises(GpusimError, match="resume=True and force=True contradict each other"):
        _bt(mkt, tmp_path / "o", resume=True, force=True)
    assert not (tmp_path / "o").exists()


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
