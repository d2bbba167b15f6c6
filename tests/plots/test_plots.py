"""gpusim.plots.search: a real PNG of a search cloud against the exact baselines."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpusim.errors import GpusimError
from gpusim.mvo import efficient_frontier, max_sharpe, min_variance
from gpusim.plots import search as plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def search():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 6))
    cov = a.T @ a / 40 * 1e-4
    mu = rng.normal(5e-4, 3e-4, size=6)
    w = rng.dirichlet(np.ones(6), size=3000)  # (N, A) long-only candidates
    ret = 252 * w @ mu
    vol = np.sqrt(252 * np.einsum("na,ab,nb->n", w, cov, w))
    return mu, cov, vol, ret, ret / vol


def test_plot_search_writes_png(search, tmp_path):
    mu, cov, vol, ret, shp = search
    ms, mv = max_sharpe(mu, cov, ann=252), min_variance(mu, cov, ann=252)
    f = efficient_frontier(mu, cov, ann=252, n_points=25)
    i = int(np.argmax(shp))
    assert shp[i] <= ms.sharpe + 1e-12  # no candidate beats the exact optimum
    out = plots.plot_search(tmp_path / "a" / "b" / "search.png", cloud_vol=vol, cloud_ret=ret,
                            cloud_sharpe=shp, frontier=f, best=(vol[i], ret[i]),
                            exact=(ms.vol, ms.ret), min_var=(mv.vol, mv.ret), title="test")
    assert out == tmp_path / "a" / "b" / "search.png" and out.is_file()
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 10_000
    import matplotlib.image as mpimg

    img = mpimg.imread(out)
    assert img.shape[:2] == (720, 960)  # 8 x 6 inches at 120 dpi
    assert img[..., :3].std() > 0.05  # not a blank canvas


def test_plot_cloud_only_and_non_finite_points(search, tmp_path):
    _, _, vol, ret, shp = search
    shp = shp.copy()
    shp[:10] = np.nan
    out = plots.plot_search(str(tmp_path / "cloud.png"), cloud_vol=vol, cloud_ret=ret,
                            cloud_sharpe=shp)
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 10_000


def test_plot_bad_inputs(tmp_path):
    with pytest.raises(GpusimError, match="same length"):
        plots.plot_search(tmp_path / "x.png", cloud_vol=[0.1, 0.2], cloud_ret=[0.1],
                          cloud_sharpe=[1.0, 2.0])
    with pytest.raises(GpusimError, match="best must be a \\(vol, ret\\) pair"):
        plots.plot_search(tmp_path / "x.png", cloud_vol=[0.1], cloud_ret=[0.1],
                          cloud_sharpe=[1.0], best=0.3)
    with pytest.raises(GpusimError, match="columns 'vol' and 'ret'"):
        plots.plot_search(tmp_path / "x.png", cloud_vol=[0.1], cloud_ret=[0.1],
                          cloud_sharpe=[1.0], frontier=np.zeros((3, 2)))
    assert not (tmp_path / "x.png").exists()


def test_missing_matplotlib_names_the_extra(monkeypatch, tmp_path):
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(GpusimError, match=r"pip install 'gpusim\[plot\]'"):
        plots.plot_search(tmp_path / "x.png", cloud_vol=[0.1], cloud_ret=[0.1], cloud_sharpe=[1])


def test_matplotlib_imported_lazily():
    code = "import sys, gpusim.plots.search; assert 'matplotlib' not in sys.modules"
    root = Path(__file__).resolve().parents[2]
    path = os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env=env)
