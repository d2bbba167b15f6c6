"""gpusim.plots.dynopt: held integer positions against optimal unrounded ones, one panel each."""

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("matplotlib")

from gpusim.errors import GpusimError
from gpusim.plots import dynopt as D

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def positions():
    idx = pd.date_range("2023-01-02", periods=300, freq="B")
    rng = np.random.default_rng(2)
    opt = pd.DataFrame(np.cumsum(rng.normal(0, 0.15, (300, 9)), axis=0) + 2,
                       index=idx, columns=[f"F{i}" for i in range(9)])
    opt["F8"] = 0.2  # never traded
    held = opt.round()  # a crude rounding with no buffer
    return held, opt


def test_default_panels_lines_and_titles(positions, tmp_path):
    held, opt = positions
    chosen = D.pick_instruments(held)
    changes = held.diff().ne(0).iloc[1:].sum()
    assert len(chosen) == D.DEFAULT_PANELS and "F8" not in chosen
    assert set(chosen) == set(changes.nlargest(6).index)
    fig = D.positions_figure(held, opt, params={"capital": 1e6, "buffer": 0.0})
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 6
    for ax, name in zip(axes, chosen):
        o, h = ax.get_lines()[:2]
        np.testing.assert_allclose(o.get_ydata(), opt[name])
        np.testing.assert_allclose(h.get_ydata(), held[name])
        assert h.get_drawstyle() == "steps-post"
        assert ax.get_title(loc="left") == f"{name}: {int(changes[name]):,} days with trades"
    assert fig.texts[0].get_text() == "Positions held vs optimal\ncapital 1M, no buffer"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == \
        ["optimal (unrounded)", "held (integer contracts)"]
    out = D.plot_positions(tmp_path / "pos.png", held, opt)
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 20_000


def test_named_instruments(positions):
    held, opt = positions
    fig = D.positions_figure(held, opt, instruments="F8", title="One")
    (ax,) = [a for a in fig.axes if a.get_visible()]
    assert ax.get_title(loc="left") == "F8: 0 days with trades"
    fig = D.positions_figure(held, opt, instruments=["F0", "F1", "F2", "F3", "F4"])
    assert sum(a.get_visible() for a in fig.axes) == 5 and len(fig.axes) == 6


def test_errors(positions):
    held, opt = positions
    with pytest.raises(GpusimError, match="same dates and instruments"):
        D.positions_figure(held, opt.iloc[:-1])
    with pytest.raises(GpusimError, match=r"\['ZZ'\] are not columns"):
        D.positions_figure(held, opt, instruments=["F0", "ZZ"])
    with pytest.raises(GpusimError, match="between 1 and 12"):
        D.positions_figure(held, opt, instruments=[])
