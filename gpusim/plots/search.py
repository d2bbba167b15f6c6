"""Figures. matplotlib is an optional extra (``pip install 'gpusim[plot]'``), imported lazily with
the non-interactive "Agg" backend, so plotting works on headless machines and never changes the
backend of a session that already imported pyplot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gpusim.errors import GpusimError

__all__ = ["plot_search"]


def _matplotlib():
    """(Figure, FigureCanvasAgg): object-oriented Agg rendering, no pyplot global state."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise GpusimError("plotting needs matplotlib, which is not installed; "
                          "pip install 'gpusim[plot]'") from None
    return Figure, FigureCanvasAgg


def _point(name, p):
    if p is None:
        return None
    try:
        vol, ret = (float(v) for v in p)
    except (TypeError, ValueError):
        raise GpusimError(f"{name} must be a (vol, ret) pair of numbers, got {p!r}") from None
    return vol, ret


def plot_search(path, *, cloud_vol, cloud_ret, cloud_sharpe, frontier=None, best=None,
                exact=None, min_var=None, title=None) -> Path:
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
        Figure title.

    Returns
    -------
    Path
        The written file.
    """
    Figure, FigureCanvasAgg = _matplotlib()
    vol = np.asarray(cloud_vol, dtype=float).ravel()
    ret = np.asarray(cloud_ret, dtype=float).ravel()
    shp = np.asarray(cloud_sharpe, dtype=float).ravel()
    if not (vol.size == ret.size == shp.size):
        raise GpusimError(f"cloud_vol, cloud_ret and cloud_sharpe must have the same length, got "
                          f"{vol.size}, {ret.size}, {shp.size}")
    keep = np.isfinite(vol) & np.isfinite(ret) & np.isfinite(shp)
    vol, ret, shp = vol[keep], ret[keep], shp[keep]
    points = {k: _point(k, v) for k, v in (("best", best), ("exact", exact), ("min_var", min_var))}
    if frontier is not None and not {"vol", "ret"} <= set(getattr(frontier, "columns", ())):
        raise GpusimError("frontier must be a DataFrame with columns 'vol' and 'ret' "
                          "(as returned by gpusim.efficient_frontier)")

    fig = Figure(figsize=(8, 6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if vol.size:
        sc = ax.scatter(vol, ret, c=shp, cmap="viridis", s=6, alpha=0.6, linewidths=0,
                        label=f"candidates (n={vol.size:,})", rasterized=True)
        fig.colorbar(sc, ax=ax, label="Sharpe ratio")
    if frontier is not None:
        ax.plot(frontier["vol"], frontier["ret"], color="black", lw=1.8,
                label="efficient frontier (exact)")
    styles = {
        "exact": dict(marker="*", s=260, color="red", label="max Sharpe (exact)"),
        "best": dict(marker="o", s=90, facecolors="none", edgecolors="orange", linewidths=2,
                     label="best found"),
        "min_var": dict(marker="D", s=70, color="royalblue", label="min variance (exact)"),
    }
    for key, style in styles.items():
        if points[key] is not None:
            ax.scatter(*points[key], zorder=5, **style)
    ax.set_xlabel("annualised volatility")
    ax.set_ylabel("annualised return")
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
