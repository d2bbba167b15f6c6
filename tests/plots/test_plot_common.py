"""gpusim.plots._common: titles in words, the palette, the "other" bucket, the lazy import and
the error without matplotlib (none of these tests needs matplotlib)."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpusim.errors import GpusimError
from gpusim.plots import _common as C


def test_describe_params_reads_like_words():
    assert (C.describe_params({"rebalance": "M", "threshold": 0.05, "fees": 0.001})
            == "monthly rebalancing, 5% band, 0.1% fees")
    assert C.describe_params({"weights": "equal", "rebalance": "never", "threshold": math.nan,
                              "fees": 0.0, "relative": False, "init_cash": 1.0}) \
        == "equal weights, buy and hold, no fees"
    assert C.describe_params({"rebalance": "never", "threshold": 0.02, "relative": True}) \
        == "no scheduled rebalancing, 2% relative band"
    assert C.describe_params({"rebalance": 5, "fees": 0.0025, "init_cash": 1e6}) \
        == "rebalancing every 5 bars, 0.25% fees, initial cash 1M"
    assert C.describe_params({"every": "Q", "lookback": 252, "num_tests": 1000}) \
        == "quarterly rebalancing, 252-bar lookback, 1,000 candidates"
    assert C.describe_params({"lookback": None}) == "all past returns"
    assert C.describe_params({"capital": 1e5, "shadow_cost": 50.0, "buffer": 0.0125}) \
        == "capital 100k, shadow cost 50, 1.25% buffer"
    assert C.describe_params({"risk_target": 0.2, "idm": 2}) == "risk target 0.2, idm 2"
    assert C.describe_params({"threshold": None}) == "no drift band"
    assert C.describe_params({}) == "" and C.describe_params(None) == ""
    for rule, word in [("D", "daily"), ("W", "weekly"), ("Y", "yearly"), ("m", "monthly")]:
        assert C.describe_params({"rebalance": rule}) == f"{word} rebalancing"


def test_make_title_joins_title_and_params_on_two_lines():
    assert C.make_title("Best run", {"fees": 0.001}) == "Best run\n0.1% fees"
    assert C.make_title(None, {"fees": 0.001}) == "0.1% fees"
    assert C.make_title("Only", None) == "Only"
    assert C.make_title() == ""
    long = C.make_title("x", {f"p{i}": i for i in range(30)}, width=40)
    assert all(len(line) <= 40 for line in long.splitlines())


def test_palette_has_at_least_20_distinct_non_grey_colours():
    assert len(C.PALETTE) >= 20 and len(set(C.PALETTE)) == len(C.PALETTE)
    rgb = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in C.PALETTE])
    assert (rgb.max(1) - rgb.min(1) > 20).all()  # no greys: they mean "other" and "cash"
    # neighbours differ clearly (the stack puts them side by side)
    assert (np.abs(np.diff(rgb, axis=0)).sum(1) > 60).all()


def test_palette_mapping_and_reserved_greys():
    labels = [f"A{i}" for i in range(20)] + ["other", "cash"]
    col = C.palette(labels)
    assert len({col[f"A{i}"] for i in range(20)}) == 20
    assert col["other"] == C.OTHER_COLOUR and col["cash"] == C.CASH_COLOUR
    assert C.OTHER_COLOUR not in C.PALETTE and C.CASH_COLOUR not in C.PALETTE
    with pytest.raises(GpusimError, match="bucket the smallest"):
        C.palette(range(len(C.PALETTE) + 1))


def test_bucket_other_keeps_the_largest_and_sums_the_rest():
    rng = np.random.default_rng(1)
    w = pd.DataFrame(rng.dirichlet(np.ones(25), size=50), columns=[f"S{i}" for i in range(25)])
    w["cash"] = 0.0
    out = C.bucket_other(w, max_series=10)
    assert list(out.columns[-2:]) == ["other", "cash"] and out.shape[1] == 11
    kept = list(out.columns[:9])
    assert kept == [c for c in w.columns if c in kept]  # original order
    top9 = set(w.drop(columns="cash").abs().mean().nlargest(9).index)
    assert set(kept) == top9
    np.testing.assert_allclose(out.sum(axis=1), w.sum(axis=1))
    assert C.bucket_other(w, max_series=25) is w  # nothing to bucket
    with pytest.raises(GpusimError, match="max_series"):
        C.bucket_other(w, max_series=1)


PLOT_CALLS = {
    "plot_search": lambda p, P: P.plot_search(p, cloud_vol=[0.1], cloud_ret=[0.1],
                                               cloud_sharpe=[1.0]),
    "plot_allocations": lambda p, P: P.plot_allocations(p, pd.DataFrame({"a": [1.0, 1.0]})),
    "plot_equity": lambda p, P: P.plot_equity(p, pd.DataFrame({"a": [1.0, 2.0]})),
    "plot_heatmap": lambda p, P: P.plot_heatmap(
        p, pd.DataFrame({"m": [1.0]}, index=pd.MultiIndex.from_tuples([(1, 2)], names=["x", "y"])),
        "m", "x", "y"),
    "plot_weights_over_time": lambda p, P: P.plot_weights_over_time(
        p, pd.DataFrame({"a": [1.0, 1.0]})),
    "plot_positions": lambda p, P: P.plot_positions(p, pd.DataFrame({"a": [1.0, 1.0]}),
                                                     pd.DataFrame({"a": [1.0, 1.0]})),
}


@pytest.mark.parametrize("name", sorted(PLOT_CALLS))
def test_missing_matplotlib_names_the_extra(name, monkeypatch, tmp_path):
    import gpusim.plots as P

    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(GpusimError, match=r"pip install 'gpusim\[plot\]'"):
        PLOT_CALLS[name](tmp_path / "x.png", P)
    assert not (tmp_path / "x.png").exists()


def test_matplotlib_imported_lazily():
    code = ("import sys, gpusim.plots, gpusim.plots.search, gpusim.plots.heatmap; "
            "assert 'matplotlib' not in sys.modules")
    root = Path(__file__).resolve().parents[2]
    path = os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env=env)
