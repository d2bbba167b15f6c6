"""gpusim.data."""
