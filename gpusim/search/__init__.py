"""gpusim.search."""
