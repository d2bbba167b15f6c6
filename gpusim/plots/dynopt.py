"""Dynamic optimisation figure: the integer positions held against the optimal unrounded
positions, one panel per instrument.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from gpusim.errors import GpusimError
from gpusim.plots._common import as_frame, make_title, new_figure, save_figure

__all__ = [
    "DEFAULT_PANELS",
    "MAX_PANELS",
    "pick_instruments",
    "plot_positions",
    "positions_figure",
]

DEFAULT_PANELS = 6
"""Instruments drawn when none are named."""
MAX_PANELS = 12
"""Most instruments one figure takes."""
HELD_COLOUR = "#d62728"
OPTIMAL_COLOUR = "#1f77b4"


def pick_instruments(positions: pd.DataFrame, n: int = DEFAULT_PANELS) -> list:
    """The ``n`` instruments whose held position changes on the most days (ties: column
    order), in column order.
    """
    changes = positions.fillna(0).diff().ne(0).iloc[1:].sum()
    order = np.argsort(-changes.to_numpy(), kind="stable")[:n]
    return [positions.columns[i] for i in sorted(order)]


def _chosen(positions, optimal, instruments) -> list:
    if instruments is None:
        return pick_instruments(positions)
    if isinstance(instruments, (str, bytes)) or not isinstance(instruments, Sequence):
        instruments = [instruments]
    missing = [i for i in instruments if i not in positions.columns]
    if missing:
        raise GpusimError(f"instruments {missing} are not columns of positions")
    if not 1 <= len(instruments) <= MAX_PANELS:
        raise GpusimError(f"instruments: between 1 and {MAX_PANELS} panels, got "
                          f"{len(instruments)}")
    return list(instruments)


def positions_figure(positions: pd.DataFrame, optimal: pd.DataFrame, instruments=None,
                     title=None, *, params: Mapping | None = None):
    """The figure of :func:`plot_positions` (a matplotlib ``Figure``, not saved)."""
    positions = as_frame("positions", positions, min_rows=2)
    optimal = as_frame("optimal", optimal, min_rows=2)
    if positions.shape != optimal.shape or not positions.columns.equals(optimal.columns) \
            or not positions.index.equals(optimal.index):
        raise GpusimError(f"positions {positions.shape} and optimal {optimal.shape} must have "
                          "the same dates and instruments")
    names = _chosen(positions, optimal, instruments)
    n = len(names)
    ncols = 1 if n <= 3 else 2
    nrows = -(-n // ncols)
    fig = new_figure((11 if ncols == 2 else 10, 1.2 + 2.0 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, squeeze=False)).ravel()
    for k, (ax, name) in enumerate(zip(axes, names)):
        opt, held = optimal[name], positions[name]
        ax.plot(opt.index, opt.to_numpy(), color=OPTIMAL_COLOUR, lw=0.9, alpha=0.8,
                label="optimal (unrounded)")
        ax.step(held.index, held.to_numpy(), where="post", color=HELD_COLOUR, lw=1.3,
                label="held (integer contracts)")
        ax.axhline(0.0, color="black", lw=0.5, alpha=0.5)
        trades = int(held.fillna(0).diff().ne(0).iloc[1:].sum())
        days = "day" if trades == 1 else "days"
        ax.set_title(f"{name}: {trades:,} {days} with trades", fontsize=9, loc="left")
        ax.grid(True, alpha=0.3)
        if k % ncols == 0:
            ax.set_ylabel("contracts")
    for ax in axes[n:]:
        ax.set_visible(False)
    for ax in axes[max(0, n - ncols):n]:
        ax.tick_params(labelbottom=True)
    axes[0].set_xlim(positions.index[0], positions.index[-1])
    head = title or "Positions held vs optimal"
    fig.suptitle(make_title(head, params), fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def plot_positions(path, positions: pd.DataFrame, optimal: pd.DataFrame, instruments=None,
                   title=None, *, params: Mapping | None = None) -> Path:
    """Integer positions held vs optimal unrounded positions, one panel per instrument, as a PNG.

    Parameters
    ----------
    path : str or Path
        Output file (PNG); parent directories are created.
    positions : DataFrame, shape (T, N)
        Contracts held after each day's trades (dates x instruments), e.g.
        ``DynoptResult.positions(...)``; drawn as a step line.
    optimal : DataFrame, shape (T, N)
        Optimal unrounded contracts on the same dates and instruments, e.g.
        ``DynoptResult.optimal_positions(capital)``; drawn as a thin line.
    instruments : label or list of labels, optional
        Instruments to draw (1 to :data:`MAX_PANELS`); default the :data:`DEFAULT_PANELS` whose
        position changes on the most days (:func:`pick_instruments`), in column order.
    title : str, optional
        First line of the title (default "Positions held vs optimal").
    params : dict, optional
        Parameters of the combination, shown in words under the title (``{"capital": 1e5,
        "shadow_cost": 50, "buffer": 0.0125}`` -> "capital 100k, shadow cost 50, 1.25% buffer").

    Returns
    -------
    Path
        The written file; each panel's title gives the number of days with trades.
    """
    fig = positions_figure(positions, optimal, instruments, title, params=params)
    return save_figure(fig, path)
