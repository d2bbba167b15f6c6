"""Buffers that live across the chunks of one call (DESIGN §3: inputs stay on the device,
only results come back).

A runner allocates its scratch and a :class:`ChunkOutput` once, for the largest chunk, and
reuses them for every chunk; results come back through page-locked (pinned) host memory, which
the driver copies at full bus speed without a staging copy. Import only after the backend chose
the GPU (this imports numba.cuda).
"""

from __future__ import annotations

import numpy as np
from numba import cuda


class ChunkOutput:
    """A (rows, cols) device result buffer and its pinned host twin, allocated once.

    ``view(n)`` is the device buffer of a chunk of ``n <= rows`` rows (C-contiguous, so the
    kernel keeps one compiled signature); ``fetch(n)`` copies it back and returns a host copy.
    """

    def __init__(self, rows: int, cols: int, dtype=np.float64):
        self.rows = int(rows)
        self.dev = cuda.device_array((self.rows, int(cols)), dtype=dtype)
        self.host = cuda.pinned_array((self.rows, int(cols)), dtype=dtype)

    def view(self, n: int):
        """Device rows ``[0, n)``."""
        if n > self.rows:
            raise ValueError(f"a chunk of {n} rows does not fit the {self.rows}-row buffer")
        return self.dev[:n]

    def fetch(self, n: int) -> np.ndarray:
        """Rows ``[0, n)`` on the host (an ordinary array: the pinned buffer is reused)."""
        self.dev[:n].copy_to_host(self.host[:n])
        return np.array(self.host[:n])


def to_device_all(arrays) -> list:
    """``cuda.to_device`` of each host array (C-contiguous copies where needed)."""
    return [cuda.to_device(np.ascontiguousarray(a)) for a in arrays]
