"""The walk-forward command line (--objective, --estimator, --risk-aversion, --max-vol,
--max-te, --method lists) and the sweep / tune job keys for them equal the Python calls."""

import numpy as np
import pandas as pd
import pytest

import gpusim
from gpusim.cli.walkforward import main
from gpusim.grid import Param
from gpusim.walkforward.api import walkforward
from gpusim.walkforward.constraints import TrackingError, Volatility


@pytest.fixture(scope="module")
def mkt():
    return gpusim.synthetic_market(n_assets=4, n_bars=220, seed=11)


def _bench(mkt, tmp_path):
    b = (mkt.prices.mean(axis=1) * np.linspace(1.0, 1.05, len(mkt.prices))).rename("BM")
    path = tmp_path / "bm.csv"
    b.to_frame().to_csv(path, index_label="date")
    return b, path


def test_cli_lists_and_caps_equal_the_python_call(mkt, tmp_path, capsys):
    b, path = _bench(mkt, tmp_path)
    rc = main(["--prices", "synthetic:4:220:11", "--every", "M", "--lookback", "60",
               "--num-tests", "400", "--objective", "max_sharpe,max_utility",
               "--estimator", "sample,ewma:30", "--risk-aversion", "3", "--max-vol", "0.3",
               "--max-te", f"{path}:BM<=0.25", "--method", "random,exact",
               "--out", str(tmp_path / "cli"), "--format", "csv", "--no-progress",
               "--backend", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0 and "best" in out
    assert "constraints binding (max_utility): volatility" in out and "te_BM" in out
    cm = pd.read_csv(tmp_path / "cli" / "metrics.csv")
    assert list(cm.columns[:3]) == ["method", "estimator", "objective"] and len(cm) == 8
    py = walkforward(mkt, every="M", lookback=60, num_tests=400,
                     objective=Param(["max_sharpe", "max_utility"]),
                     estimator=Param(["sample", "ewma:30"]), risk_aversion=3.0,
                     method=Param(["random", "exact"]),
                     constraints=[Volatility(max=0.3), TrackingError(b, max=0.25)],
                     progress=False, backend="cpu")
    np.testing.assert_allclose(cm["sharpe"].to_numpy(), py.metrics["sharpe"].to_numpy(),
                               rtol=1e-9)
    rep = pd.read_csv(tmp_path / "cli" / "report.csv")
    assert "bound_volatility" in rep.columns and "bound_te_BM" in rep.columns
    rc = main(["--prices", "synthetic:4:220:11", "--objective", "max_sortino", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "objective=" in err and err.count("\n") == 1
    rc = main(["--prices", "synthetic:4:220:11", "--max-te", "nofile.csv<=0.1",
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "--max-te" in err and err.count("\n") == 1


def test_sweep_job_keys(mkt, tmp_path):
    from gpusim.sweep.api import sweep

    b, path = _bench(mkt, tmp_path)
    res = sweep("walkforward", {"objective": ["min_variance", "max_return"], "seed": [0, 1]},
                market=mkt, every="M", lookback=60, num_tests=300, estimator="ledoit_wolf",
                max_vol=0.3, max_te=f"{path}:BM<=0.25", risk_aversion=2.0,
                out=tmp_path / "sw", backend="cpu", progress=False)
    t = res.table
    assert t.index.names == ["seed", "objective"] and len(t) == 4
    one = walkforward(mkt, every="M", lookback=60, num_tests=300, estimator="ledoit_wolf",
                      objective=Param(["min_variance", "max_return"]), seed=1,
                      risk_aversion=2.0,
                      constraints=[Volatility(max=0.3), TrackingError(b, max=0.25)],
                      progress=False, backend="cpu")
    np.testing.assert_array_equal(t.xs(1, level="seed")["sharpe"].to_numpy(),
                                  one.metrics["sharpe"].to_numpy())
    assert "bound_volatility" in t.columns


def test_tune_batches_objectives_estimators_and_methods_into_one_call(mkt):
    import itertools

    from gpusim.tune.targets import evaluate, get_target

    rows = [dict(objective=o, estimator=e, method=m) for o, e, m in itertools.product(
        ["max_sharpe", "min_variance"], ["sample", "ewma:30"], ["random", "exact"])]
    fixed = {"every": "M", "lookback": 60, "num_tests": 200, "gap": False}
    table, calls, _ = evaluate(get_target("walkforward"), mkt, rows, fixed, "cpu")
    assert calls == 1 and len(table) == 8            # all sweepable: one call
    for r, (_, got) in zip(rows, table.iterrows()):
        one = walkforward(mkt, progress=False, backend="cpu", **fixed, **r).metrics
        np.testing.assert_allclose(got[list(one.columns)].to_numpy(float),
                                   one.iloc[0].to_numpy(float), rtol=1e-12)
