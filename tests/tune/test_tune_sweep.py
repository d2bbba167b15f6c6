"""The ``tune`` sweep task: one tuning study per point of a sweep."""

import json

import pytest

import gpusim
from gpusim.errors import GpusimError

pytest.importorskip("optuna")

SPACE = {"every": ["W", "M", 21], "lookback": [63, 126, 252], "num_tests": [100, 1000, 5000]}


def test_a_sweep_of_studies_over_seeds_and_samplers():
    m = gpusim.synthetic_market(n_assets=5, n_bars=756, seed=0)
    res = gpusim.sweep("tune", {"seed": [0, 1], "sampler": ["tpe", "random"]}, market=m,
                       target="walkforward", space=SPACE, n_trials=30, batch=10,
                       compare_grid=True, args={"fees": 0.001}, backend="cpu", progress=False)
    t = res.table
    assert list(t.index.names) == ["seed", "sampler"] and len(t) == 4
    assert (t["n_grid"] == 27).all() and (t["n_done"] == 30).all() and (t["n_calls"] == 3).all()
    assert (t["grid_best_value"] == 1.1592582587891211).all()
    # the same study as gpusim.tune with that seed and sampler
    one = gpusim.tune("walkforward", m, SPACE, n_trials=30, batch=10, seed=0, sampler="random",
                      fees=0.001, backend="cpu", progress=False)
    row = t.loc[(0, "random")]
    assert row["best_value"] == one.best_value and json.loads(row["best_params"]) == {
        k: v for k, v in one.best_params.items()}
    assert row["rank"] == one.compare_grid().rank == 2        # random: 21/252/5000 (1.1547)
    assert t.loc[(0, "tpe"), "rank"] == 1 and t["rank"].mean() <= 3


def test_bad_tune_sweeps_are_refused_before_running():
    m = gpusim.synthetic_market(n_assets=3, n_bars=300, seed=0)
    with pytest.raises(GpusimError, match="needs space"):
        gpusim.sweep("tune", {"seed": [0]}, market=m, target="walkforward", backend="cpu")
    with pytest.raises(GpusimError, match="space: evry is not an argument"):
        gpusim.sweep("tune", {"seed": [0]}, market=m, target="walkforward",
                     space={"evry": ["W"]}, backend="cpu")
    with pytest.raises(GpusimError, match="cannot be tuned in a sweep"):
        gpusim.sweep("tune", {"seed": [0]}, market=m, target="dynopt",
                     space={"buffer": [0.0]}, backend="cpu")
