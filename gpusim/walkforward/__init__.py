"""gpusim.walkforward."""
