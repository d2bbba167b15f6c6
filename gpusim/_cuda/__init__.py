"""gpusim._cuda."""
