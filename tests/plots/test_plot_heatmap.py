"""gpusim.plots.heatmap: cell values equal a pandas pivot of the metrics, aggregated over the
other levels; NaN labels, annotations, colour bar and errors."""

import numpy as np
import pandas as pd
import pytest

from gpusim.errors import GpusimError
from gpusim.plots import heatmap as H

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def metrics():
    idx = pd.MultiIndex.from_product(
        [["equal", "inv_vol"], ["never", 5, "M", "Q"], [np.nan, 0.02, 0.05], [0.0, 0.001]],
        names=["weights", "rebalance", "threshold", "fees"])
    rng = np.random.default_rng(3)
    return pd.DataFrame({"sharpe": rng.normal(0.8, 0.2, len(idx)),
                         "cagr": rng.normal(0.1, 0.03, len(idx)),
                         "turnover": rng.uniform(0, 3, len(idx))}, index=idx)


@pytest.mark.parametrize("agg", ["max", "min", "mean", "median"])
def test_table_equals_pandas_pivot(metrics, agg):
    t = H.heatmap_table(metrics, "sharpe", x="rebalance", y="fees", agg=agg)
    pivot = metrics.reset_index().pivot_table(index="fees", columns="rebalance",
                                              values="sharpe", aggfunc=agg)
    assert list(t.columns) == ["never", 5, "M", "Q"]  # order of first appearance
    np.testing.assert_allclose(t.to_numpy(), pivot.loc[t.index, t.columns].to_numpy())


def test_nan_level_values_are_a_row(metrics):
    t = H.heatmap_table(metrics, "turnover", x="fees", y="threshold", agg="mean")
    assert t.shape == (3, 2) and np.isnan(t.index[0])
    want = metrics.xs(0.001, level="fees")["turnover"]
    want = want[want.index.get_level_values("threshold").isna()].mean()
    assert t.iloc[0, 1] == pytest.approx(want)


def test_errors(metrics):
    with pytest.raises(GpusimError, match="metric 'calmar' is not a column"):
        H.heatmap_table(metrics, "calmar", "rebalance", "fees")
    with pytest.raises(GpusimError, match="x='every' is not an index level"):
        H.heatmap_table(metrics, "sharpe", "every", "fees")
    with pytest.raises(GpusimError, match="two different levels"):
        H.heatmap_table(metrics, "sharpe", "fees", "fees")
    with pytest.raises(GpusimError, match="must be a DataFrame"):
        H.heatmap_table(metrics["sharpe"], "sharpe", "fees", "rebalance")


def test_labels_in_words():
    assert H.metric_label("sharpe") == "Sharpe ratio"
    assert H.metric_label("some_metric") == "some metric"
    assert [H._tick("rebalance", v) for v in ("never", 5, "M")] \
        == ["buy and hold", "every 5 bars", "monthly"]
    assert [H._tick("threshold", v) for v in (np.nan, 0.05)] == ["none", "5%"]
    assert [H._tick("fees", v) for v in (0.0, 0.001)] == ["0%", "0.1%"]


def test_figure_cells_colourbar_and_annotations(metrics, tmp_path):
    pytest.importorskip("matplotlib")
    fig = H.heatmap_figure(metrics, "cagr", x="rebalance", y="threshold",
                           agg="max", params={"weights": "equal"})
    ax, cax = fig.axes
    (im,) = ax.get_images()
    pivot = metrics.reset_index().pivot_table(index="threshold", columns="rebalance",
                                              values="cagr", aggfunc="max",
                                              dropna=False)
    cells = np.ma.filled(im.get_array(), np.nan)
    t = H.heatmap_table(metrics, "cagr", "rebalance", "threshold")
    np.testing.assert_allclose(cells[1:], pivot.loc[[0.02, 0.05], t.columns].to_numpy())
    assert np.isfinite(cells).all()
    assert cax.get_ylabel() == "CAGR"
    assert [tk.get_text() for tk in ax.get_xticklabels()] == \
        ["buy and hold", "every 5 bars", "monthly", "quarterly"]
    assert [tk.get_text() for tk in ax.get_yticklabels()] == ["none", "2%", "5%"]
    assert ax.get_xlabel() == "rebalancing" and ax.get_ylabel() == "drift band"
    title = ax.get_title().replace(",\n", ", ")  # wrapped at 70 characters
    assert title == ("CAGR by drift band and rebalancing (max over weights, "
                     "fees)\nequal weights")
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 12 and texts[0] == f"{cells[0, 0]:.1%}"
    out = H.plot_heatmap(tmp_path / "h.png", metrics, "sharpe", x="fees", y="rebalance")
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 10_000


def test_lower_is_better_reverses_the_colours_and_big_tables_are_not_annotated(metrics):
    pytest.importorskip("matplotlib")
    ax = H.heatmap_figure(metrics, "turnover", x="rebalance", y="fees").axes[0]
    assert ax.get_images()[0].get_cmap().name == "viridis_r"
    big = pd.DataFrame({"sharpe": np.arange(400.0)},
                       index=pd.MultiIndex.from_product([range(20), range(20)], names=["a", "b"]))
    ax = H.heatmap_figure(big, "sharpe", x="a", y="b").axes[0]
    assert len(ax.texts) == 0 and ax.get_images()[0].get_cmap().name == "viridis"
    # missing cells are masked and drawn light grey
    sparse = metrics.copy()
    sparse.loc[sparse.index.get_level_values("rebalance") == "M", "sharpe"] = np.nan
    (im,) = H.heatmap_figure(sparse, "sharpe", x="rebalance", y="fees").axes[0].get_images()
    assert im.get_array().mask[:, 2].all() and not im.get_array().mask[:, [0, 1, 3]].any()
    assert im.get_cmap().get_bad().tolist() == pytest.approx([0xee / 255] * 3 + [1.0])
    np.testing.assert_allclose(ax.get_images()[0].get_array(),
                               np.arange(400.0).reshape(20, 20).T)
