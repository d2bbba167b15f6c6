"""gpusim.plots.walkforward: weights held between rebalance dates as a stacked step area."""

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("matplotlib")

from matplotlib.collections import PolyCollection
from matplotlib.colors import to_hex

from gpusim.errors import GpusimError
from gpusim.plots import walkforward as W

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def monthly_weights(n_assets=20, n_dates=24, seed=0):
    dates = pd.date_range("2020-01-31", periods=n_dates, freq="ME")
    w = np.random.default_rng(seed).dirichlet(np.ones(n_assets), size=n_dates)
    return pd.DataFrame(w, index=dates, columns=[f"S{i:02d}" for i in range(n_assets)])


def test_step_area_markers_and_legend(tmp_path):
    w = monthly_weights()
    end = pd.Timestamp("2022-01-31")
    fig = W.weights_over_time_figure(w, end=end, params={"every": "M", "lookback": 252})
    ax = fig.axes[0]
    polys = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len({to_hex(p.get_facecolor()[0]) for p in polys}) == 20
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [*list(w.columns)[::-1], "rebalance (24)"]
    # the bottom band is a step: constant between dates, up to `end`
    v = polys[0].get_paths()[0].vertices
    upper = v[(v[:, 1] > 0)]
    x0 = ax.convert_xunits(w.index[0])
    assert upper[:, 0].min() == pytest.approx(x0)
    for i in range(len(w)):
        t0 = ax.convert_xunits(w.index[i])
        t1 = ax.convert_xunits(w.index[i + 1] if i + 1 < len(w) else end)
        inside = upper[(upper[:, 0] > t0) & (upper[:, 0] < t1)]
        assert np.allclose(inside[:, 1], w.iloc[i, 0])
    assert ax.get_xlim()[1] == pytest.approx(ax.convert_xunits(end))
    (lines,) = [c for c in ax.collections if c.get_gid() == "rebalance_lines"]
    assert len(lines.get_segments()) == 24
    assert ax.get_title() == ("Weights chosen at 24 rebalance dates\n"
                              "monthly rebalancing, 252-bar lookback")
    out = W.plot_weights_over_time(tmp_path / "wf.png", w, title="Walk-forward")
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 20_000


def test_default_end_is_one_median_spacing_and_other_bucket():
    w = monthly_weights(30, 6)
    ax = W.weights_over_time_figure(w, max_series=12).axes[0]
    spacing = pd.Series(w.index).diff().median()
    assert ax.get_xlim()[1] == pytest.approx(ax.convert_xunits(w.index[-1] + spacing))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "other" and len(labels) == 13


def test_integer_index_and_shorts():
    w = pd.DataFrame({"A": [0.7, 1.3], "B": [0.3, -0.3]}, index=[10, 20])
    ax = W.weights_over_time_figure(w).axes[0]
    assert ax.get_ylim() == pytest.approx((-0.3, 1.3)) and ax.get_xlim() == (10, 30)


def test_errors():
    w = monthly_weights(3, 3)
    with pytest.raises(GpusimError, match="increasing and unique"):
        W.weights_over_time_figure(w.iloc[::-1])
    with pytest.raises(GpusimError, match="must come after"):
        W.weights_over_time_figure(w, end=w.index[0])
    with pytest.raises(GpusimError, match="max_series"):
        W.weights_over_time_figure(w, max_series=50)
