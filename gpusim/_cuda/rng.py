"""CUDA device versions of the counter-based RNG and samplers.

Compiled from the very same function bodies as ``cpu_ref.rng`` (DESIGN §4: identical streams
on every backend). Import only after the backend chose the GPU (this imports numba.cuda).
"""

from __future__ import annotations

import warnings

from numba import cuda

from cpu_ref import rng as _rng
from gpusim.backend import simulator_requested

if simulator_requested():
    # The simulator runs device code as Python on NumPy scalars, where uint64 wrap-around
    # (intended: SplitMix64 is arithmetic mod 2**64) raises overflow warnings.
    warnings.filterwarnings("ignore", message="overflow encountered in scalar",
                            category=RuntimeWarning)


def _mul(a, b):
    return a * b


def _add(a, b):
    return a + b


def exact_arith():
    """Overrides binding ``fmul``/``fadd`` to libdevice's ``dmul_rn``/``dadd_rn``, which the
    compiler never fuses into FMA, so device code rounds exactly as on the CPU. In the simulator,
    which runs Python and fuses nothing, they are plain Python functions: a simulated device
    function call costs a context switch of the cuda module, far too slow for one per flop.
    """
    if simulator_requested():
        return {"fmul": _mul, "fadd": _add}
    from numba.cuda import libdevice

    return {"fmul": libdevice.dmul_rn, "fadd": libdevice.dadd_rn}


_dev = _rng.compile_bodies(cuda.jit(device=True), exact_arith())
bits_dev = _dev["bits"]
neg_log_uniform_dev = _dev["neg_log_uniform"]
sample_dev = _dev["sample"]
