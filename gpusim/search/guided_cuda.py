"""CUDA scoring of guided-search populations: one thread per candidate (ex-ante Sharpe).

The device function is :func:`gpusim.search.sampling.sharpe_row` compiled with
``cuda.jit(device=True)`` and ``fmul``/``fadd`` bound to libdevice's never-fused
``dmul_rn``/``dadd_rn`` (:func:`gpusim._cuda.rng.exact_arith`), so each candidate's score is
bit-identical to the CPU's :func:`~gpusim.search.sampling.sharpe_rows_nb` (sqrt and division
are correctly rounded on both). Populations are generated on the host (DESIGN §4 streams) and
copied in; ex-post objectives use :func:`gpusim.backtest.cuda.backtest_gpu`.

Import only after the backend chose the GPU (this imports numba.cuda).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from gpusim._cuda.rng import exact_arith
from gpusim.search.sampling import compile_bodies

THREADS_PER_BLOCK = 128

_dev = compile_bodies(cuda.jit(device=True), exact_arith())
sharpe_row_dev = _dev["sharpe_row"]


@cuda.jit(cache=True)
def sharpe_rows_cuda(W, ok, mu, U, ann, rf, out):
    """Thread r < n scores row r of ``W`` (n, A) into ``out[r, :3]`` (device arrays)."""
    r = cuda.grid(1)
    if r < W.shape[0]:
        sharpe_row_dev(W, r, ok[r], mu, U, ann, rf, out)


def sharpe_rows_gpu(W, ok, mu, U, ann, rf) -> np.ndarray:
    """Same contract as :func:`gpusim.search.sampling.sharpe_rows_nb` (host arrays in, an
    (n, 3) host float64 array out: annual return, annual volatility, Sharpe).
    """
    W = np.ascontiguousarray(W, dtype=np.float64)
    n = W.shape[0]
    if n == 0:
        return np.empty((0, 3))
    d_out = cuda.device_array((n, 3), dtype=np.float64)
    blocks = (n + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK
    sharpe_rows_cuda[blocks, THREADS_PER_BLOCK](
        cuda.to_device(W), cuda.to_device(np.ascontiguousarray(ok, dtype=np.bool_)),
        cuda.to_device(np.ascontiguousarray(mu, dtype=np.float64)),
        cuda.to_device(np.ascontiguousarray(U, dtype=np.float64)), float(ann), float(rf), d_out)
    return d_out.copy_to_host()
