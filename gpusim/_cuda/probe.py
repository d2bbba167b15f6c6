"""The probe that ``backend="auto"`` runs before it chooses a real GPU (DESIGN §3).

:func:`run_probe` compiles and launches a tiny numba.cuda kernel on one device and checks its
result; with CuPy present it also runs a CuPy reduction there (CuPy compiles its kernels with
NVRTC, a second place where a driver/toolkit mismatch shows). Any failure (no driver, PTX newer
than the driver, a failed launch, a wrong result) raises; :mod:`gpusim.backend` turns that into a
one-line reason and falls back to the CPU.

This module imports numba.cuda at import time: import it only to probe.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

PROBE_THREADS = 64
"""Threads (and array elements) of the probe launch: two warps, one block."""
PROBE_SCALE = 3.0
"""The probe writes ``out[i] = PROBE_SCALE * i + 1`` (exact in float64)."""


@cuda.jit(cache=True)
def probe_kernel(out):
    """``out[i] = PROBE_SCALE * i + 1`` for ``i < out.shape[0]``; out (PROBE_THREADS,) f8."""
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = PROBE_SCALE * i + 1.0


def expected() -> np.ndarray:
    """What :func:`probe_kernel` must write, shape (PROBE_THREADS,)."""
    return PROBE_SCALE * np.arange(PROBE_THREADS, dtype=np.float64) + 1.0


def run_probe(device: int, cupy=None) -> None:
    """Select ``device`` for numba.cuda (and CuPy when given), launch the probe, check it.

    Parameters
    ----------
    device : int
        CUDA device ordinal.
    cupy : module or None
        CuPy, when installed: its current device is set too and a reduction is checked.

    Raises
    ------
    Exception
        Whatever the driver or compiler raised, or ``RuntimeError`` for a wrong result.
    """
    cuda.select_device(int(device))
    out = cuda.device_array(PROBE_THREADS, dtype=np.float64)
    probe_kernel[1, PROBE_THREADS](out)
    cuda.synchronize()
    got = out.copy_to_host()
    if not np.array_equal(got, expected()):
        raise RuntimeError("the probe kernel ran but wrote wrong values")
    if cupy is not None:
        cupy.cuda.Device(int(device)).use()
        total = float(cupy.arange(PROBE_THREADS, dtype=cupy.float64).sum())
        if total != PROBE_THREADS * (PROBE_THREADS - 1) / 2:
            raise RuntimeError("CuPy's probe reduction gave a wrong sum")
