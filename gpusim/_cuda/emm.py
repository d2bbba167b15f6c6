"""One device allocator: numba-cuda's External Memory Manager (EMM) plugin on CuPy's pool.

Without it numba.cuda allocates with ``cuMemAlloc`` while CuPy keeps freed blocks in its own
pool, so a large backtest after a large search can run out of memory although nothing is live.
:func:`install` makes numba.cuda allocate device memory from CuPy's current memory pool (pinned
host memory stays with numba). It must run before numba.cuda creates its first context in the
process; :mod:`gpusim.backend` calls it before the probe kernel.

Import only on a real device (the CUDA simulator has no EMM interface).
"""

from __future__ import annotations

import ctypes

from numba import cuda

EMM_INTERFACE_VERSION = 1
"""The EMM plugin interface this plugin implements (numba-cuda checks it)."""


class CupyPoolMemoryManager(cuda.GetIpcHandleMixin, cuda.HostOnlyCUDAMemoryManager):
    """numba.cuda device allocations served by a CuPy memory pool.

    Each allocation holds its CuPy ``MemoryPointer`` until numba's finalizer releases it back
    to the pool. ``pool`` defaults to ``cupy.get_default_memory_pool()`` at first use.
    """

    pool = None
    """The CuPy memory pool (class attribute, so tests can point it at a stand-in)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._live = {}

    def _pool(self):
        if CupyPoolMemoryManager.pool is None:
            import cupy

            CupyPoolMemoryManager.pool = cupy.get_default_memory_pool()
        return CupyPoolMemoryManager.pool

    def initialize(self):
        """Nothing to set up: the pool belongs to CuPy."""

    def memalloc(self, size):
        """``size`` bytes of device memory from the pool, as a numba ``MemoryPointer``."""
        block = self._pool().malloc(max(int(size), 1))   # a 0-byte block has a null pointer
        ptr = int(block.ptr)
        self._live[ptr] = block
        live = self._live

        def release():
            live.pop(ptr, None)        # CuPy returns the block to the pool when it is dropped

        return cuda.MemoryPointer(self.context, ctypes.c_void_p(ptr), size, finalizer=release)

    def get_memory_info(self):
        """(free, total) bytes of the device; free counts the pool's cached blocks."""
        import cupy

        free, total = cupy.cuda.runtime.memGetInfo()
        return cuda.MemoryInfo(free=free + self._pool().free_bytes(), total=total)

    def reset(self):
        """Drop numba's references to its allocations and free the pool's cached blocks."""
        super().reset()
        self._live.clear()
        self._pool().free_all_blocks()

    @property
    def interface_version(self):
        return EMM_INTERFACE_VERSION


_installed = False


def install() -> bool:
    """Make numba.cuda allocate from CuPy's pool (once per process); True when installed.

    Returns False, changing nothing, when numba.cuda already holds a context in this thread
    (its allocations would be split between two allocators).
    """
    global _installed
    if _installed:
        return True
    from numba.cuda.cudadrv import devices

    if devices._runtime._get_attached_context() is not None:
        return False
    cuda.set_memory_manager(CupyPoolMemoryManager)
    _installed = True
    return True


def installed() -> bool:
    """Whether :func:`install` has put numba.cuda on CuPy's pool in this process."""
    return _installed
