"""The example scripts of examples/ run (at tiny size, ``main(small=True)``) and their numbers
make sense, so that they cannot rot: each is checked against a property it demonstrates."""

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(name, **kw):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mod.main(small=True, **kw)


TESTED = {"random_search", "threshold_rebalancing", "walkforward_grid", "carver_dynopt",
          "constraints_three_forms", "user_strategies"}


def test_every_example_with_a_small_mode_is_tested_here():
    """A script with ``main(small=...)`` must be run below (others have their own tests)."""
    small = {p.stem for p in EXAMPLES.glob("*.py")
             if not p.stem.startswith("_") and "def main(small" in p.read_text()}
    assert small == TESTED


def test_random_search(tmp_path):
    r = _run("random_search", out=str(tmp_path / "rs"))
    assert r["verified"]
    assert 0.5 < r["gap"] <= 1.0
    assert r["best_sharpe"] == pytest.approx(r["gap"] * r["exact_max_sharpe"], rel=1e-12)
    assert r["weights"].sum() == pytest.approx(1.0, abs=1e-12) and (r["weights"] >= 0).all()
    assert (tmp_path / "rs" / "summary.json").exists()


def test_threshold_rebalancing():
    r = _run("threshold_rebalancing")
    band = r["by_band"]
    assert len(band) == 15 and band["n_rebalances"].iloc[0] > band["n_rebalances"].iloc[-1]
    assert band["turnover"].iloc[0] > band["turnover"].iloc[-1]
    rec, res = r["records"], r["result"]
    row = res.metrics.loc[r["best"].index[0]]
    np.testing.assert_allclose(rec.metrics.to_numpy(), row.to_numpy(), rtol=1e-10)
    assert len(rec.rebalance_bars) == row["n_rebalances"]


def test_walkforward_grid():
    r = _run("walkforward_grid")
    assert r["verified"]
    rep = r["result"].report
    assert (rep["gap_mean"] <= 1 + 1e-9).all()
    # num_tests=n is candidates 0..n-1 of each date's stream: 300 can never do worse than 30
    g = rep["gap_mean"].unstack("num_tests")
    assert (g[300] >= g[30] - 1e-12).all() and (g[300] > g[30]).any()


def test_carver_dynopt():
    r = _run("carver_dynopt")
    te = r["te_by_capital"]
    assert te.iloc[0] > te.iloc[-1] > 0           # more capital tracks the optimum better
    res = r["result"]
    assert (res.metrics["avg_tracking_error"] <= res.summary["avg_optimal_risk"] + 1e-12).all()


def test_constraints_three_forms():
    r = _run("constraints_three_forms")
    a, mid = r["allocations"], r["mid"]
    assert a["scalar"].to_numpy().max() <= 0.4 + 1e-9
    ts = a["time series"]
    assert ts[ts.index < mid].to_numpy().max() <= 0.5 + 1e-9
    assert ts[ts.index >= mid].to_numpy().max() <= 0.3 + 1e-9
    assert ts[ts.index < mid].to_numpy().max() > 0.4            # the looser cap was used
    moves = a["callable"].diff().abs().to_numpy()[1:]
    assert moves.max() <= 0.10 + 1e-9


def test_user_strategies():
    r = _run("user_strategies")
    res, rec = r["alloc"], r["records"]
    assert len(res.metrics) == 30 and res.metrics["n_rebalances"].iloc[0] > 2
    row = res.metrics.loc[("equal", 0.05, 0.005)]
    np.testing.assert_allclose(rec.metrics.to_numpy(), row.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(rec.orders["fee"].sum(), row["fees_paid"], rtol=1e-9)
    sch = r["schedule"].metrics                 # a dated table is one schedule, not 4 rows
    assert len(sch) == 1 and sch["n_rebalances"].iloc[0] >= 4
    if "simulate" in r:          # PyPortfolioOpt installed
        sim = r["simulate"]
        sched = sim.schedule()
        assert len(sched) >= 2 and sched.index[1] >= r["market"].prices.index[63]
        np.testing.assert_allclose(sched.sum(axis=1), 1.0, atol=1e-6)
