"""User strategies from the command line (issue 11): ``gpusim backtest --alloc FILE.py:fn`` and
``gpusim simulate --optimize FILE.py:fn`` give the Python calls' results bit for bit; their
bad input is one line and exit status 2."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gpusim
from gpusim.cli.main import main
from gpusim.data.load import market_from_spec
from gpusim.grid import Param
from gpusim.strategy.loader import load_function

STRATEGIES = Path(__file__).resolve().parents[1] / "user_strategies.py"
PRICES = "synthetic:4:100:3"
TAUS = [0.01, 0.03, 0.08]


@pytest.fixture(scope="module")
def mkt():
    return market_from_spec(PRICES)


def _fn(name):
    # the same loader as the CLI: the same module, so the compiled function is shared
    return load_function(f"{STRATEGIES}:{name}")


def test_alloc_metrics_equal_the_python_call_bit_for_bit(mkt, tmp_path, capsys):
    out = tmp_path / "bt"
    rc = main(["backtest", "--prices", PRICES, "--alloc", f"{STRATEGIES}:band",
               "--param", "tau=0.01,0.03,0.08", "--param", "k=3", "--seed", "7",
               "--fees", "0,0.005", "--rebalance", "W", "--out", str(out), "--top-k", "4",
               "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "6 of 6 combinations x 100 bars x 4 assets" in text
    assert f"alloc {STRATEGIES}:band: params tau, k; seed 7" in text
    ref = gpusim.backtest(mkt, alloc=_fn("band"), params={"tau": Param(TAUS), "k": 3},
                          fees=Param([0.0, 0.005]), rebalance="W", seed=7, backend="cpu",
                          progress=False)
    got = pd.read_parquet(out / "metrics.parquet")
    assert list(got.columns[:3]) == ["weights", "tau", "fees"]
    np.testing.assert_array_equal(got[list(ref.metrics.columns)].to_numpy(),
                                  ref.metrics.to_numpy())
    assert got["tau"].tolist() == [0.01, 0.01, 0.03, 0.03, 0.08, 0.08]
    assert ref.metrics["n_rebalances"].min() >= 1 and ref.metrics["sharpe"].nunique() == 6
    best = pd.read_csv(out / "best.csv")
    assert len(best) == 4 and list(best.columns[-4:]) == list(mkt.symbols)   # initial targets
    s = json.loads((out / "summary.json").read_text())
    assert s["alloc"] == "band" and s["alloc_spec"] == f"{STRATEGIES}:band"
    assert s["params"] == ["tau", "k"] and s["seed"] == 7 and s["fixed"]["k"] == 3.0


def test_alloc_share_draws_and_json(mkt, tmp_path, capsys):
    rc = main(["backtest", "--prices", PRICES, "--alloc", f"{STRATEGIES}:band",
               "--param", "tau=0.02:0.06:0.02", "--param", "k=1", "--share-draws", "tau",
               "--weights", "random:2:5", "--json", "--top-k", "6", "--no-progress",
               "--out", str(tmp_path / "o")])
    assert rc == 0
    s = json.loads(capsys.readouterr().out)
    ref = gpusim.backtest(mkt, alloc=_fn("band"), params={"tau": Param([0.02, 0.04, 0.06]),
                                                          "k": 1},
                          weights=gpusim.RandomWeights(2, seed=5), share_draws=["tau"],
                          backend="cpu", progress=False)
    assert s["share_draws"] == ["tau"] and s["n_combinations"] == 6
    got = pd.read_parquet(tmp_path / "o" / "metrics.parquet").set_index(["weights", "tau"])
    pd.testing.assert_frame_equal(got, ref.metrics, check_exact=True)
    best = pd.DataFrame(s["best"]).set_index(["weights", "tau"])    # JSON: 10 digits
    want = ref.best("sharpe", 6)
    assert best.index.tolist() == want.index.tolist()
    np.testing.assert_allclose(best[list(want.columns)].to_numpy(), want.to_numpy(),
                               rtol=1e-9, atol=1e-12)


def test_simulate_equals_the_python_call(mkt, tmp_path, capsys):
    out = tmp_path / "sim"
    rc = main(["simulate", "--prices", PRICES, "--optimize", f"{STRATEGIES}:inverse_vol",
               "--every", "W", "--warmup", "20", "--fees", "0.001", "--param", "power=1,2",
               "--out", str(out), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "2 combination(s) x 100 bars x 4 assets on cpu" in text and "best 2 by sharpe" in text
    ref = gpusim.simulate(mkt, optimize=_fn("inverse_vol"), every="W", warmup=20, fees=0.001,
                          params={"power": Param([1.0, 2.0])}, progress=False)
    got = pd.read_parquet(out / "metrics.parquet").set_index(["weights", "power"])
    pd.testing.assert_frame_equal(got, ref.metrics, check_exact=True)
    assert ref.summary["n_calls"] > 10
    value = pd.read_parquet(out / "value.parquet")
    one = value[value["power"] == 2.0].set_index("date")["value"]
    np.testing.assert_array_equal(one.to_numpy(), ref.value(power=2.0).to_numpy())
    sched = pd.read_parquet(out / "schedule.parquet")
    one = sched[sched["power"] == 1.0].set_index("date")[list(mkt.symbols)]
    np.testing.assert_array_equal(one.to_numpy(), ref.schedule(power=1.0).to_numpy())
    assert (one.index == ref.schedule(power=1.0).index).all()
    seg = pd.read_parquet(out / "segments.parquet")
    assert len(seg) == 2 * len(ref.segments(power=1.0))
    s = json.loads((out / "summary.json").read_text())
    assert s["command"] == "simulate" and s["warmup"] == 20 and s["value_file"] == "value.parquet"


@pytest.mark.parametrize("argv,needle", [
    (["backtest", "--alloc", "strategies"],
     "--alloc 'strategies' has no ':NAME' part naming the function"),
    (["backtest", "--alloc", "missing_file.py:band"],
     "--alloc 'missing_file.py:band': file '"),
    (["backtest", "--alloc", f"{STRATEGIES}:nope"],
     f"{STRATEGIES} has no 'nope'; its functions: band, inverse_vol, optimize_two_args, "
     "two_args"),
    (["backtest", "--alloc", f"{STRATEGIES}:two_args"],
     "--alloc function 'two_args' takes 2 argument(s); it must take three: (c, params, "
     "targets)"),
    (["backtest", "--alloc", f"{STRATEGIES}:band", "--threshold", "0.05"],
     "--threshold is not used with --alloc (nor --relative, --band, --threshold-abs): test the "
     "drift inside the function (c.weights against c.targets)"),
    (["backtest", "--alloc", f"{STRATEGIES}:band", "--band", "hybrid"],
     "--band is not used with --alloc"),
    (["backtest", "--alloc", f"{STRATEGIES}:band", "--param", "tau"],
     "--param 'tau' is not NAME=VALUES"),
    (["backtest", "--alloc", f"{STRATEGIES}:band", "--param", "tau=1", "--param", "tau=2"],
     "--param tau is given twice"),
    (["backtest", "--alloc", f"{STRATEGIES}:band", "--param", "tau=x"],
     "--param tau: 'x' is not a number"),
    (["backtest", "--param", "tau=0.01"], "--param is for --alloc"),
    (["backtest", "--seed", "3"], "--seed is for --alloc"),
    (["simulate", "--optimize", f"{STRATEGIES}:optimize_two_args"],
     "--optimize function 'optimize_two_args' takes (state, extra); it must take one "
     "argument"),
    (["simulate", "--optimize", "no.such.module:f"], "--optimize 'no.such.module:f': no "
     "module 'no.such.module'"),
    (["simulate", "--optimize", f"{STRATEGIES}:inverse_vol", "--warmup", "-1"],
     "--warmup -1 must be >= 0"),
])
def test_bad_input_is_one_line(argv, needle, capsys):
    assert main([*argv, "--prices", PRICES, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and needle in err, err


def test_import_error_names_the_file_and_line(tmp_path, capsys):
    bad = tmp_path / "broken.py"
    bad.write_text("import numpy as np\n\nx = np.zeros(2)\ny = x[5]\n")
    assert main(["backtest", "--alloc", f"{bad}:f", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: --alloc '{bad}:f': importing {bad} failed: IndexError: index 5 is "
                   "out of bounds for axis 0 with size 2 (line 4)\n")
