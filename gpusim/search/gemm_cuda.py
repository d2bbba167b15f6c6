"""CUDA tile generator of the GEMM search path (:mod:`gpusim.search.gemm`): candidates into the
columns of a device tile with the shared device sampler, so the GPU's GEMM population is the
fused kernels' population bit for bit.

Import only after the backend chose the GPU (this imports numba.cuda).
"""

from __future__ import annotations

from numba import cuda

from gpusim._cuda.rng import sample_dev


@cuda.jit(cache=True)
def generate_tile_cuda(stream, lo_sum, start, Wt, ok):
    """One thread per candidate ``start + r``: column r of ``Wt`` (A, m) and ``ok[r]`` (m,),
    False when over the upper bounds. ``stream``: :class:`gpusim.search.steps.Stream`.
    """
    key, code, alpha, lo, hi = stream
    r = cuda.grid(1)
    if r < ok.shape[0]:
        ok[r] = sample_dev(key, start + r, code, alpha, lo, hi, lo_sum, Wt[:, r])
