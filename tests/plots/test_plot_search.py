"""gpusim.plots.search: a real PNG of a search cloud against the exact baselines, the risk-free
rate, the capital market line and the top-k."""

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("matplotlib")

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


def _by_label(ax, start):
    return [c for c in ax.collections if str(c.get_label()).startswith(start)]


def test_rf_cml_and_top_k(search, tmp_path):
    mu, cov, vol, ret, shp = search
    rf = 0.02
    ms = max_sharpe(mu, cov, ann=252, rf=rf)
    f = efficient_frontier(mu, cov, ann=252, n_points=25, rf=rf)
    order = np.argsort(-(ret - rf) / vol)[:10]
    top = pd.DataFrame({"expected_volatility": vol[order], "expected_return": ret[order]})
    fig = plots.search_figure(cloud_vol=vol, cloud_ret=ret, cloud_sharpe=(ret - rf) / vol,
                              frontier=f, exact=(ms.vol, ms.ret), rf=rf, top=top,
                              params={"num_tests": 3000})
    ax = fig.axes[0]
    (cml,) = [ln for ln in ax.get_lines() if ln.get_gid() == "cml"]
    (x1, y1), (x2, y2) = cml.get_xy1(), cml.get_xy2()
    assert (x1, y1) == (0.0, rf) and (x2, y2) == pytest.approx((ms.vol, ms.ret))
    # the line from rf through the exact optimum has the max-Sharpe slope
    assert (y2 - y1) / x2 == pytest.approx(ms.sharpe, rel=1e-9)
    (rf_pt,) = _by_label(ax, "risk-free rate")
    assert rf_pt.get_offsets().tolist() == [[0.0, rf]] and ax.get_xlim()[0] == 0.0
    (top_pts,) = _by_label(ax, "top 10 candidates")
    np.testing.assert_allclose(top_pts.get_offsets(), np.c_[vol[order], ret[order]])
    # no candidate lies above the capital market line
    assert np.all(ret <= rf + ms.sharpe * vol + 1e-12)
    assert ax.xaxis.get_major_formatter().__class__.__name__ == "PercentFormatter"
    assert ax.get_xlabel() == "expected volatility (annualised)"
    assert ax.get_title() == "3,000 candidates"
    out = plots.plot_search(tmp_path / "cml.png", cloud_vol=vol, cloud_ret=ret,
                            cloud_sharpe=shp, frontier=f, exact=(ms.vol, ms.ret), rf=rf,
                            top=(vol[order], ret[order]))
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 10_000


def test_cml_without_exact_goes_through_the_best_frontier_point(search):
    mu, cov, vol, ret, shp = search
    f = efficient_frontier(mu, cov, ann=252, n_points=25)
    fig = plots.search_figure(cloud_vol=vol, cloud_ret=ret, cloud_sharpe=shp, frontier=f,
                              rf=0.0)
    (cml,) = [ln for ln in fig.axes[0].get_lines() if ln.get_gid() == "cml"]
    i = int(np.argmax(f["ret"] / f["vol"]))
    assert cml.get_xy2() == pytest.approx((f["vol"][i], f["ret"][i]))


def test_top_forms_and_errors(search):
    _, _, vol, ret, shp = search
    k = dict(cloud_vol=vol, cloud_ret=ret, cloud_sharpe=shp)
    pts = np.c_[vol[:5], ret[:5]]
    for top in (pts, (vol[:5], ret[:5]), pd.DataFrame(pts, columns=["vol", "ret"])):
        (c,) = _by_label(plots.search_figure(top=top, **k).axes[0], "top 5")
        np.testing.assert_allclose(c.get_offsets(), pts)
    with pytest.raises(GpusimError, match="top must be"):
        plots.search_figure(top=[1.0, 2.0, 3.0], **k)
    with pytest.raises(GpusimError, match="top as a DataFrame"):
        plots.search_figure(top=pd.DataFrame({"a": [1.0]}), **k)
