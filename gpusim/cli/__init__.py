"""gpusim.cli."""
