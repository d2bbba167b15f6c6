"""gpusim.sweep."""
