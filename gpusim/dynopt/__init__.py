"""gpusim.dynopt."""
