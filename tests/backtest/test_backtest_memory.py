"""Memory of one backtest call per combination (issue 16, item 10: a 10^7-combination threshold
grid peaked at 2.2 GB, ~190 B a combination). The metrics table (11 float64 = 88 B a row) must
wrap the kernels' output, not be a second copy of it: Python-side allocations (tracemalloc;
NumPy reports to it) peak below 150 B a combination (129 measured; 179 with the copy).
"""

import tracemalloc

import numpy as np

import gpusim

BYTES_PER_ROW = 11 * 8


def test_peak_python_memory_per_combination():
    m = gpusim.synthetic_market(n_assets=5, n_bars=60, seed=0)
    kw = dict(weights=gpusim.RandomWeights(20_000, seed=1), rebalance="never",
              threshold=gpusim.Param(np.arange(1, 11) / 100), backend="cpu", progress=False)
    gpusim.backtest(m, **kw)                       # compile outside the measurement
    tracemalloc.start()
    try:
        res = gpusim.backtest(m, **kw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    C = len(res.metrics)
    assert C == 200_000
    assert BYTES_PER_ROW <= peak / C < 150, peak / C
