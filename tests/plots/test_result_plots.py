"""Result methods that draw figures: the right data reaches the plotting functions."""

import numpy as np
import pandas as pd
import pytest

import gpusim
from gpusim.errors import GpusimError

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def bt():
    m = gpusim.synthetic_market(n_assets=4, n_bars=120, seed=3)
    return gpusim.backtest(m, weights=gpusim.RandomWeights(3, seed=1),
                           rebalance=gpusim.Param(["M", "W"]),
                           threshold=gpusim.Param([0.02, 0.1]), backend="cpu")


def test_equity_plot_uses_the_reference_value_paths(bt, tmp_path, monkeypatch):
    seen = {}
    import gpusim.plots as plots

    def fake(path, values, title=None, **kw):
        seen["values"], seen["title"] = values, title
        return path

    monkeypatch.setattr(plots, "plot_equity", fake)
    bt.plot_equity(tmp_path / "e.png", k=3)
    best = bt.best("sharpe", 3)
    assert seen["values"].shape == (120, 3)
    for col, key in zip(seen["values"].columns, best.index, strict=True):
        np.testing.assert_array_equal(seen["values"][col].to_numpy(),
                                      bt.records(key).value.to_numpy())
    assert seen["title"] == "best 3 by sharpe"


def test_heatmap_picks_two_swept_levels_and_writes_png(bt, tmp_path):
    p = bt.plot_heatmap(tmp_path / "h.png", "sharpe")
    assert p.exists() and p.stat().st_size > 5000
    with pytest.raises(GpusimError, match="x='nope' is not a level"):
        bt.plot_heatmap(tmp_path / "h2.png", "sharpe", x="nope", y="threshold")
    with pytest.raises(GpusimError, match="metric='nope' is unknown"):
        bt.plot_heatmap(tmp_path / "h3.png", "nope")


def test_heatmap_needs_two_swept_levels(tmp_path):
    m = gpusim.synthetic_market(n_assets=3, n_bars=60, seed=0)
    r = gpusim.backtest(m, weights=np.full(3, 1 / 3), threshold=gpusim.Param([0.01, 0.05]),
                        backend="cpu")
    with pytest.raises(GpusimError, match="needs two swept levels"):
        r.plot_heatmap(tmp_path / "h.png")


def test_dynopt_positions_plot_and_value_path(tmp_path):
    f = gpusim.synthetic_futures(n_instruments=4, n_days=200, seed=2)
    d = gpusim.dynopt(f, capital=gpusim.Param([1e5, 1e6]), backend="cpu")
    key = d.best().index[0]
    assert d.plot_positions(tmp_path / "p.png", key).exists()
    v = d._value_path(key)
    np.testing.assert_allclose(v.to_numpy(), np.cumprod(1 + d.daily(key)["return"].to_numpy()))
    assert isinstance(v, pd.Series)
