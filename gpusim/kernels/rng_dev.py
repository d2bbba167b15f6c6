"""CUDA device versions of the counter-based RNG and samplers.

Compiled from the very same function bodies as ``cpu_ref.rng`` (DESIGN §4: identical streams
on every backend). Import only after the backend chose the GPU (this imports numba.cuda).
"""

from __future__ import annotations

import warnings

from numba import cuda

from cpu_ref import rng as _rng

from ..backend import simulator_requested

if simulator_requested():
    # The simulator runs device code as Python on NumPy scalars, where uint64 wrap-around
    # (intended: SplitMix64 is arithmetic mod 2**64) raises overflow warnings.
    warnings.filterwarnings("ignore", message="overflow encountered in scalar",
                            category=RuntimeWarning)

if simulator_requested():
    _exact = None  # the simulator runs Python: no multiply-add fusion to prevent
else:
    from numba.cuda import libdevice

    # never fused into FMA: the sampler rounds exactly as on the CPU (identical populations)
    _exact = {"fmul": libdevice.dmul_rn, "fadd": libdevice.dadd_rn}
_dev = _rng.compile_bodies(cuda.jit(device=True), _exact)
bits_dev = _dev["bits"]
uniform_dev = _dev["uniform"]
neg_log_uniform_dev = _dev["neg_log_uniform"]
sample_dev = _dev["sample"]
seed_key_dev = _dev["seed_key"]
