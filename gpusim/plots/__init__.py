"""Figures (PNG) from plain pandas/numpy inputs; matplotlib (``pip install 'gpusim[plot]'``) is
imported only when a figure is drawn, with the object-oriented Agg canvas (no pyplot state).

Each ``plot_*`` function writes a PNG and returns its Path; the matching ``*_figure`` function
returns the matplotlib ``Figure`` without saving it (for notebooks and tests).

- :func:`plot_search`: frontier, candidate cloud, risk-free rate, capital market line, top-k.
- :func:`plot_allocations`: stacked daily allocations with rebalance markers.
- :func:`plot_equity`: equity curves (start = 1) and drawdowns of a few portfolios.
- :func:`plot_heatmap`: one metric over two swept parameters.
- :func:`plot_weights_over_time`: walk-forward target weights held between rebalance dates.
- :func:`plot_positions`: dynopt integer positions vs optimal unrounded positions.
- :func:`describe_params`: parameters in words, for titles.
"""

from gpusim.plots._common import PALETTE, describe_params, make_title
from gpusim.plots.backtest import allocations_figure, equity_figure, plot_allocations, plot_equity
from gpusim.plots.dynopt import plot_positions, positions_figure
from gpusim.plots.heatmap import heatmap_figure, heatmap_table, plot_heatmap
from gpusim.plots.search import plot_search, search_figure
from gpusim.plots.walkforward import plot_weights_over_time, weights_over_time_figure

__all__ = [
           "PALETTE",
           "allocations_figure",
           "describe_params",
           "equity_figure",
           "heatmap_figure",
           "heatmap_table",
           "make_title",
           "plot_allocations",
           "plot_equity",
           "plot_heatmap",
           "plot_positions",
           "plot_search",
           "plot_weights_over_time",
           "positions_figure",
           "search_figure",
           "weights_over_time_figure",
]
