"""Candidate populations generated on the device: the CUDA twin of ``cpu_ref.rng.population_nb``.

One thread per candidate runs the shared sampler body (:mod:`gpusim._cuda.rng`), so the GPU
check (:mod:`gpusim.selftest`) can compare whole populations with the CPU stream bit for bit.
Import only after the backend chose the GPU (this imports numba.cuda).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from cpu_ref.rng import seed_key_nb
from gpusim._cuda.launch import block_size, grid_for
from gpusim._cuda.rng import sample_dev


@cuda.jit(cache=True)
def population_cuda(key, start, code, alpha, lo, hi, lo_sum, W, ok):
    """Row r of ``W`` (n, A) f8 is candidate ``start + r``; ``ok[r]`` whether it is within hi."""
    r = cuda.grid(1)
    if r < W.shape[0]:
        ok[r] = sample_dev(key, start + r, code, alpha, lo, hi, lo_sum, W[r])


def population_gpu(seed, start, n, A, code, alpha, lo, hi, *, threads_per_block=None):
    """Candidates ``start .. start+n-1`` as an (n, A) host array and an (n,) validity mask,
    generated on the device; arguments as ``cpu_ref.rng.population_nb``.
    """
    lo = np.ascontiguousarray(lo, dtype=np.float64)
    hi = np.ascontiguousarray(hi, dtype=np.float64)
    lo_sum = 0.0
    for v in lo:              # the reference's order of summation
        lo_sum += float(v)
    W = cuda.device_array((int(n), int(A)), dtype=np.float64)
    ok = cuda.device_array(int(n), dtype=np.bool_)
    tpb = block_size(threads_per_block)
    population_cuda[grid_for(n, tpb), tpb](np.uint64(seed_key_nb(seed)), np.int64(start),
                                          np.int64(code), np.float64(alpha), cuda.to_device(lo),
                                          cuda.to_device(hi), np.float64(lo_sum), W, ok)
    return W.copy_to_host(), ok.copy_to_host()
