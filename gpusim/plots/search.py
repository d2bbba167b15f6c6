"""Frontier figure of a weight search: the candidate cloud coloured by Sharpe ratio against the
exact mean-variance baselines, the risk-free rate, the capital market line and the top-k.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from gpusim.errors import GpusimError
from gpusim.plots._common import make_title, new_figure, percent_axis, save_figure

__all__ = ["plot_search", "search_figure"]


def _point(name, p):
    if p is None:
        return None
    try:
        vol, ret = (float(v) for v in p)
    except (TypeError, ValueError):
        raise GpusimError(f"{name} must be a (vol, ret) pair of numbers, got {p!r}") from None
    return vol, ret


def _top(top):
    """``(vol (k,), ret (k,))`` from a DataFrame with vol/ret columns, a (k, 2) array or a pair."""
    if top is None:
        return None
    if isinstance(top, pd.DataFrame):
        cols = [c for c in ("vol", "expected_volatility") if c in top.columns][:1]
        cols += [c for c in ("ret", "expected_return") if c in top.columns][:1]
        if len(cols) != 2:
            raise GpusimError("top as a DataFrame needs columns vol and ret (or "
                              "expected_volatility and expected_return)")
        return top[cols[0]].to_numpy(float), top[cols[1]].to_numpy(float)
    try:
        a = np.asarray(top, dtype=float)
    except (TypeError, ValueError):
        a = None
    if a is not None and a.ndim == 2 and a.shape[1] == 2 and a.shape[0] != 2:
        a = a.T
    if a is None or a.ndim != 2 or a.shape[0] != 2:
        raise GpusimError("top must be (vol array, ret array), a (k, 2) array or a DataFrame "
                          "with columns vol and ret")
    return a[0], a[1]


def _cloud(cloud_vol, cloud_ret, cloud_sharpe):
    vol = np.asarray(cloud_vol, dtype=float).ravel()
    ret = np.asarray(cloud_ret, dtype=float).ravel()
    shp = np.asarray(cloud_sharpe, dtype=float).ravel()
    if not (vol.size == ret.size == shp.size):
        raise GpusimError(f"cloud_vol, cloud_ret and cloud_sharpe must have the same length, got "
                          f"{vol.size}, {ret.size}, {shp.size}")
    keep = np.isfinite(vol) & np.isfinite(ret) & np.isfinite(shp)
    return vol[keep], ret[keep], shp[keep]


def _tangency(frontier, rf):
    """(vol, ret) of the frontier point with the highest (ret - rf) / vol (approximate)."""
    v, r = frontier["vol"].to_numpy(float), frontier["ret"].to_numpy(float)
    ok = v > 0
    if not ok.any():
        return None
    i = int(np.nanargmax(np.where(ok, (r - rf) / np.where(ok, v, 1.0), -np.inf)))
    return float(v[i]), float(r[i])


def search_figure(*, cloud_vol, cloud_ret, cloud_sharpe, frontier=None, best=None, exact=None,
                  min_var=None, title=None, rf=None, top=None, params: Mapping | None = None):
    """The figure of :func:`plot_search` (a matplotlib ``Figure``, not saved)."""
    vol, ret, shp = _cloud(cloud_vol, cloud_ret, cloud_sharpe)
    points = {k: _point(k, v) for k, v in (("best", best), ("exact", exact), ("min_var", min_var))}
    if frontier is not None and not {"vol", "ret"} <= set(getattr(frontier, "columns", ())):
        raise GpusimError("frontier must be a DataFrame with columns 'vol' and 'ret' "
                          "(as returned by gpusim.efficient_frontier)")
    top = _top(top)
    if rf is not None:
        rf = float(rf)

    fig = new_figure((8, 6))
    ax = fig.add_subplot()
    if vol.size:
        sc = ax.scatter(vol, ret, c=shp, cmap="viridis", s=6, alpha=0.6, linewidths=0,
                        label=f"candidates (n={vol.size:,})", rasterized=True)
        fig.colorbar(sc, ax=ax, label="Sharpe ratio of the candidate")
    if frontier is not None:
        ax.plot(frontier["vol"], frontier["ret"], color="black", lw=1.8,
                label="efficient frontier (exact)")
    if rf is not None:
        tangent, how = points["exact"], "exact max Sharpe"
        if tangent is None and frontier is not None:
            tangent, how = _tangency(frontier, rf), "best frontier point"
        if tangent is not None and tangent[0] > 0:
            # an unbounded line: it does not stretch the axes' limits
            ax.axline((0.0, rf), tangent, color="dimgray", lw=1.2, ls="--", gid="cml",
                      label=f"capital market line (through {how})")
        ax.scatter([0.0], [rf], marker="s", s=60, color="black", zorder=6, clip_on=False,
                   label=f"risk-free rate ({rf:.2%})")
        ax.set_xlim(left=0.0)
    if top is not None and top[0].size:
        ax.scatter(top[0], top[1], marker="s", s=40, facecolors="none", edgecolors="crimson",
                   linewidths=1.2, zorder=4, label=f"top {top[0].size} candidates")
    styles = {
        "exact": dict(marker="*", s=260, color="red", label="max Sharpe (exact)"),
        "best": dict(marker="o", s=90, facecolors="none", edgecolors="orange", linewidths=2,
                     label="best found"),
        "min_var": dict(marker="D", s=70, color="royalblue", label="min variance (exact)"),
    }
    for key, style in styles.items():
        if points[key] is not None:
            ax.scatter(*points[key], zorder=5, **style)
    ax.set_xlabel("expected volatility (annualised)")
    ax.set_ylabel("expected return (annualised)")
    percent_axis(ax.xaxis)
    percent_axis(ax.yaxis)
    full = make_title(title, params, width=70)
    if full:
        ax.set_title(full, fontsize=10)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def plot_search(path, *, cloud_vol, cloud_ret, cloud_sharpe, frontier=None, best=None,
                exact=None, min_var=None, title=None, rf=None, top=None,
                params: Mapping | None = None) -> Path:
    """Plot a weight search against the exact mean-variance baselines and save it as a PNG.

    Parameters
    ----------
    path : str or Path
        Output file (PNG); parent directories are created.
    cloud_vol, cloud_ret, cloud_sharpe : array_like, shape (N,)
        Annualised volatility, return and Sharpe ratio of the candidate portfolios (host
        arrays); the cloud is coloured by Sharpe, with a colourbar. Non-finite points are dropped.
    frontier : pandas.DataFrame, optional
        Exact efficient frontier with columns ``vol`` and ``ret`` (``gpusim.efficient_frontier``).
    best, exact, min_var : (vol, ret), optional
        Best candidate found by the search, exact max-Sharpe point, exact min-variance point.
    title : str, optional
        Figure title (first line).
    rf : float, optional
        Annual risk-free rate: drawn as a point on the return axis (volatility 0) with the capital
        market line from it through ``exact`` (or, without ``exact``, through the frontier point
        of highest Sharpe ratio).
    top : optional
        The top-k candidates, highlighted: ``(vol array (k,), ret array (k,))``, a (k, 2) array
        of (vol, ret) rows, or a DataFrame with columns ``vol``/``ret`` (or
        ``expected_volatility``/``expected_return``, as in ``SearchResult.top``).
    params : dict, optional
        Parameters shown in words under the title (see :func:`gpusim.plots.describe_params`).

    Returns
    -------
    Path
        The written file.
    """
    fig = search_figure(cloud_vol=cloud_vol, cloud_ret=cloud_ret, cloud_sharpe=cloud_sharpe,
                        frontier=frontier, best=best, exact=exact, min_var=min_var, title=title,
                        rf=rf, top=top, params=params)
    return save_figure(fig, path)
