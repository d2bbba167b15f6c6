"""One launch-geometry policy for every CUDA kernel of gpusim (search, backtest, dynopt,
walk-forward), and the compile-time caps of their per-thread local arrays.

Two kinds of launch:

- **one thread per item** (backtest and dynopt combinations, walk-forward portfolios):
  :func:`grid_for` blocks of :func:`block_size` threads cover the items;
- **grid-stride** (the searches: each thread walks many candidates and keeps per-thread bests):
  the grid is what the device holds resident at once, :func:`resident_threads` — from the
  occupancy API once the kernel is compiled, else the SM count times the threads an SM holds —
  so no thread waits for a second wave and no per-thread state is allocated for threads that
  cannot run.

The launch geometry never changes a result: one-thread-per-item kernels compute each item alone,
and the searches' per-thread bests are merged with ties to the smaller candidate index.

In Numba's CUDA simulator every CUDA thread is a Python thread: blocks have
``SIM_THREADS_PER_BLOCK`` threads and a resident grid is ``SIM_BLOCKS`` blocks.

This module imports ``numba.cuda`` only inside the functions that query a real device, so its
constants can be imported anywhere.
"""

from __future__ import annotations

import functools

from gpusim.backend import simulator_requested

MAX_ASSETS = 256
"""Assets per candidate in the walk-forward search kernel (size of its per-thread
``cuda.local`` weight buffer, fixed at compile time); larger universes run on the CPU. The
weight-search kernels (:mod:`gpusim.search.cuda`) have no such cap."""
MAX_ROWS = 64
"""Linear constraint rows per candidate in the walk-forward search kernel (``cuda.local``)."""
THREADS_PER_BLOCK = 128
"""Threads per block on a real device (four warps)."""
SIM_THREADS_PER_BLOCK = 32
"""Threads per block in the CUDA simulator (one Python thread each: small blocks)."""
SIM_BLOCKS = 4
"""Blocks of a resident (grid-stride) grid in the CUDA simulator."""
FALLBACK_BLOCKS = 1024
"""Blocks of a resident grid when the device cannot be queried."""


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for integers ``a >= 0``, ``b >= 1``."""
    return -(-int(a) // int(b))


def block_size(requested: int | None = None) -> int:
    """Threads per block: ``requested`` when given (must be >= 1), else ``THREADS_PER_BLOCK``
    on a device and ``SIM_THREADS_PER_BLOCK`` in the simulator.

    Raises
    ------
    ValueError
        When ``requested`` is smaller than 1.
    """
    if requested is None:
        return SIM_THREADS_PER_BLOCK if simulator_requested() else THREADS_PER_BLOCK
    tpb = int(requested)
    if tpb < 1:
        raise ValueError(f"threads_per_block must be >= 1, got {tpb}; pass a positive int "
                         "or None for the default")
    return tpb


def grid_for(n_items: int, tpb: int) -> int:
    """Blocks of ``tpb`` threads for one thread per item (at least one block)."""
    return max(1, ceil_div(n_items, tpb))


@functools.cache
def _device_capacity() -> tuple[int, int]:
    """(SM count, max resident threads per SM) of the current device."""
    from numba import cuda

    dev = cuda.get_current_device()
    return int(dev.MULTIPROCESSOR_COUNT), int(dev.MAX_THREADS_PER_MULTI_PROCESSOR)


def resident_blocks(tpb: int, kernel=None) -> int:
    """Blocks of ``tpb`` threads that the device runs at once.

    With a compiled ``kernel`` (a ``numba.cuda`` dispatcher that has been launched before), the
    occupancy API gives its active blocks per SM (registers and shared memory included) times
    the SM count; otherwise the SM count times the blocks an SM can hold by thread count.
    ``SIM_BLOCKS`` in the simulator, ``FALLBACK_BLOCKS`` when the device cannot be queried.
    """
    if simulator_requested():
        return SIM_BLOCKS
    if kernel is not None:
        try:
            overloads = list(kernel.overloads.values())
            if len(overloads) == 1:
                return max(1, int(overloads[0].max_cooperative_grid_blocks(tpb)))
        except Exception:  # no overload yet, or an older numba-cuda: use the SM count
            pass
    try:
        sms, threads_per_sm = _device_capacity()
    except Exception:
        return FALLBACK_BLOCKS
    return max(1, sms * max(1, threads_per_sm // tpb))


def resident_threads(tpb: int, kernel=None) -> int:
    """Threads of a resident grid: ``resident_blocks(tpb, kernel) * tpb``."""
    return resident_blocks(tpb, kernel) * tpb
