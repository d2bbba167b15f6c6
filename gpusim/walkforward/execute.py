"""Walk-forward execution of time-varying targets with online metrics (DESIGN §7), on the CPU.

A walk-forward portfolio is a backtest whose k-th rebalance trades to the k-th row of its
targets: :func:`execute_cpu_nb` runs :func:`gpusim.backtest.steps.simulate_one` with
``target = (first row, step 1)`` and no drift band (``NO_BAND``), the very step bodies of the
backtest (the GPU runs the same function as a device function, :mod:`gpusim.walkforward.cuda`).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from gpusim.backtest.steps import N_METRICS, NO_BAND, simulate_one_nb


@njit(parallel=True, nogil=True, cache=True, error_model="numpy")
def execute_cpu_nb(close, W, woff, wsid, masks, mid, fees, init_cash, ann, rf):
    """Metrics of C walk-forward portfolios, parallel over portfolios.

    Parameters
    ----------
    close : (T, A) float64 prices of the simulated bars.
    W : (R, A) float64 target rows; woff : (S,) int64 first row of each target sequence;
        wsid : (C,) int64 — portfolio c trades to rows ``W[woff[wsid[c]] + k]``.
    masks : (M, T) bool rebalance bars (bar 0 always); mid : (C,) int64 rows of ``masks``.
    fees : (C,) float64; init_cash, ann, rf : float.

    Returns
    -------
    (C, 11) float64 host array, columns in the order of ``cpu_ref.backtest.METRICS``.
    """
    A = close.shape[1]
    C = wsid.shape[0]
    out = np.empty((C, N_METRICS))
    nchunks = min(C, 256)
    if nchunks == 0:
        return out
    size = (C + nchunks - 1) // nchunks
    nchunks = (C + size - 1) // size
    acct = (init_cash, ann, rf)
    for k in prange(nchunks):
        scratch = (np.empty((A, 1)), np.empty((A, 1)), np.empty((A, 1), dtype=np.int64))
        for c in range(k * size, min(C, (k + 1) * size)):
            simulate_one_nb(close, W, (woff[wsid[c]], 1), (masks, mid[c], NO_BAND, False),
                            fees[c], acct, scratch, 0, out, c)
    return out
