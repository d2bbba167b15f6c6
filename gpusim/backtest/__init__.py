"""gpusim.backtest."""
