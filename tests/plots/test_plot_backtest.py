"""gpusim.plots.backtest: allocations (20 distinct colours, legend in stacking order, "other"
bucket, rebalance markers) and equity curves with drawdowns."""

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("matplotlib")

from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.colors import to_hex

import gpusim
from gpusim.errors import GpusimError
from gpusim.plots import backtest as P

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def drifting_allocations(n_assets=20, every=63):
    """(T, A) daily allocations of equal weights rebalanced every `every` bars, and the dates."""
    prices = gpusim.synthetic_market(n_assets=n_assets, n_bars=400).prices
    p = prices.to_numpy()
    alloc = np.empty_like(p)
    for s in range(0, len(p), every):
        h = (1.0 / n_assets) / p[s]
        v = p[s:s + every] * h
        alloc[s:s + every] = v / v.sum(1, keepdims=True)
    return pd.DataFrame(alloc, index=prices.index, columns=prices.columns), prices.index[::every]


def bands(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def test_allocations_20_distinct_colours_and_legend_in_stacking_order(tmp_path):
    alloc, reb = drifting_allocations(20)
    fig = P.allocations_figure(alloc, reb, params={"rebalance": 63, "fees": 0.001})
    ax = fig.axes[0]
    polys = bands(ax)
    assert [p.get_label() for p in polys] == list(alloc.columns)  # bottom of the stack first
    faces = {to_hex(p.get_facecolor()[0]) for p in polys}
    assert len(faces) == 20
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:20] == list(alloc.columns)[::-1]  # the top of the stack first
    assert labels[20] == f"rebalance ({len(reb)})"
    # legend colours match the bands
    legend_faces = [to_hex(h.get_facecolor()) for h in ax.get_legend().legend_handles[:20]]
    assert legend_faces == [to_hex(p.get_facecolor()[0]) for p in polys][::-1]
    assert ax.get_title() == "rebalancing every 63 bars, 0.1% fees"
    assert ax.get_ylim() == (0.0, 1.0)
    ticks = [c for c in ax.collections if c.get_gid() == "rebalance_ticks"]
    assert len(ticks) == 1 and len(ticks[0].get_segments()) == len(reb)
    out = P.plot_allocations(tmp_path / "alloc.png", alloc, reb, title="Equal weights")
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 20_000


def test_allocations_other_bucket_and_cash():
    alloc, _ = drifting_allocations(30)
    alloc = alloc * 0.9
    alloc["cash"] = 0.1
    fig = P.allocations_figure(alloc, max_series=20)
    ax = fig.axes[0]
    polys = bands(ax)
    names = [p.get_label() for p in polys]
    assert len(names) == 21 and names[-2:] == ["other", "cash"]
    faces = [to_hex(p.get_facecolor()[0]) for p in polys]
    assert len(set(faces)) == 21
    # the bands still add up to 1 on every day (top edge of the last band)
    top = polys[-1].get_paths()[0].vertices[:, 1].max()
    assert top == pytest.approx(1.0)
    assert [t.get_text() for t in ax.get_legend().get_texts()][:2] == ["cash", "other"]


def test_allocations_zero_cash_dropped_many_rebalances_no_lines():
    alloc, _ = drifting_allocations(5, every=1)
    alloc["cash"] = 0.0
    fig = P.allocations_figure(alloc, alloc.index)
    ax = fig.axes[0]
    assert "cash" not in [p.get_label() for p in bands(ax)]
    gids = {c.get_gid() for c in ax.collections if isinstance(c, LineCollection)}
    assert gids == {"rebalance_ticks"}  # 400 dates: ticks only, no full-height lines


def test_allocations_shorts_stack_below_zero():
    alloc = pd.DataFrame({"A": [1.2, 1.1], "B": [-0.2, -0.1]},
                         index=pd.date_range("2024-01-01", periods=2))
    ax = P.allocations_figure(alloc).axes[0]
    assert ax.get_ylim() == pytest.approx((-0.2, 1.2))


def test_allocations_errors():
    with pytest.raises(GpusimError, match="alloc must be a pandas DataFrame"):
        P.allocations_figure(np.ones((3, 2)))
    with pytest.raises(GpusimError, match="max_series"):
        P.allocations_figure(pd.DataFrame({"a": [1.0]}), max_series=40)


def test_equity_normalised_and_drawdowns(tmp_path):
    idx = pd.date_range("2024-01-01", periods=5)
    values = pd.DataFrame({("M", 0.05): [2.0, 2.2, 1.1, 2.4, 3.0],
                           ("Q", "none"): [10.0, 9.0, 9.5, 12.0, 11.0]}, index=idx)
    fig = P.equity_figure(values, title="Best 2", params={"fees": 0.001})
    top, bottom = fig.axes
    lines = top.get_lines()
    np.testing.assert_allclose(lines[0].get_ydata(), [1.0, 1.1, 0.55, 1.2, 1.5])
    np.testing.assert_allclose(bottom.get_lines()[0].get_ydata(), [0, 0, -0.5, 0, 0])
    np.testing.assert_allclose(bottom.get_lines()[1].get_ydata(),
                               [0, -0.1, -0.05, 0, -1 / 12])
    labels = [t.get_text() for t in top.get_legend().get_texts()]
    assert labels == ["M, 0.05: ends at 1.50, max drawdown -50.0%",
                      "Q, none: ends at 1.10, max drawdown -10.0%"]
    assert top.get_title() == "Best 2\n0.1% fees"
    assert bottom.get_ylim()[1] == 0.0 and bottom.get_ylabel() == "drawdown"
    assert lines[0].get_color() != lines[1].get_color()
    out = P.plot_equity(tmp_path / "eq.png", values, logy=True)
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 10_000


def test_equity_late_start_and_errors():
    idx = pd.date_range("2024-01-01", periods=4)
    late = pd.DataFrame({"a": [np.nan, 2.0, 4.0, 3.0], "b": [1.0, 1.0, 1.0, 1.0]}, index=idx)
    line = P.equity_figure(late).axes[0].get_lines()[0]
    np.testing.assert_allclose(line.get_ydata(), [1.0, 2.0, 1.5])
    with pytest.raises(GpusimError, match="positive first value"):
        P.equity_figure(pd.DataFrame({"a": [0.0, 1.0]}))
    with pytest.raises(GpusimError, match="at least 2 row"):
        P.equity_figure(pd.DataFrame({"a": [1.0]}))
    with pytest.raises(GpusimError, match="curves"):
        P.equity_figure(pd.DataFrame(np.ones((3, 40))))
