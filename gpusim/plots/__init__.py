"""gpusim.plots."""
