"""CPU kernel of user-function backtests: parallel over combinations (numba ``prange``).

One kernel is compiled per user function (:func:`cpu_kernel`, cached in memory by the
function's identity and source; not on disk, since the compiled kernel embeds the user's
function). Each parallel chunk allocates its scratch once and runs its combinations one after
the other through :func:`gpusim.strategy.steps.simulate_alloc`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from cpu_ref.jitting import compile_bodies
from cpu_ref.rng import uniform_nb
from gpusim.backtest import steps as bsteps
from gpusim.strategy import steps
from gpusim.strategy.compile import UserFunction, cached, compile_cpu

MAX_CHUNKS = 1024
"""CPU work items per call (each allocates its scratch once)."""


def alloc_kernel(close, W, wid, masks, mid, params, fees, acct, key, streams, out):
    """Fill ``out[c]`` (11 metrics) for every combination c < C = len(wid) (prange).

    ``close`` (T, A); ``W`` (K, A) initial targets, ``wid`` (C,); ``masks`` (M, T) call masks,
    ``mid`` (C,); ``params`` (C, P); ``fees`` (C,); ``acct = (init_cash, ann, rf)``; ``key``
    uint64 seed key; ``streams`` (C,) int64 random streams; ``out`` (C, 11).
    """
    A = close.shape[1]
    C = wid.shape[0]
    nchunks = min(C, MAX_CHUNKS)
    if nchunks == 0:
        return
    size = (C + nchunks - 1) // nchunks
    nchunks = (C + size - 1) // size
    for k in prange(nchunks):
        h = np.empty((A, 1))
        oval = np.empty((A, 1))
        order = np.empty((A, 1), dtype=np.int64)
        cur = np.empty((1, A))
        tin = np.empty((1, A))
        prop = np.empty((1, A))
        scratch = (h, oval, order, cur, tin, prop)
        for c in range(k * size, min(C, (k + 1) * size)):
            simulate_alloc(close, W, wid[c], masks[mid[c]], params[c], fees[c], acct,  # noqa
                           (key, streams[c]), scratch, 0, out, c)


def cpu_kernel(uf: UserFunction):
    """The parallel kernel (:func:`alloc_kernel`) compiled for the user function ``uf``."""
    def build():
        fn = compile_cpu(uf)
        ov = steps.step_overrides(bsteps._nb, fn, uniform_nb)
        body = compile_bodies(njit(error_model="numpy"), vars(steps), ("simulate_alloc",), ov)
        return compile_bodies(njit(parallel=True, nogil=True, error_model="numpy"), globals(),
                              ("alloc_kernel",), {"simulate_alloc": body["simulate_alloc"]}
                              )["alloc_kernel"]

    return cached("cpu", uf, build)


def backtest_alloc_cpu(uf, close, W, wid, masks, mid, params, fees, acct, key, streams):
    """Metrics (C, 11) of the combinations of one chunk (host arrays; see :func:`alloc_kernel`)."""
    out = np.empty((len(wid), bsteps.N_METRICS))
    cpu_kernel(uf)(close, W, wid, masks, mid, params, fees, acct, key, streams, out)
    return out
