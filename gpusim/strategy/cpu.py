"""CPU kernel of user-function backtests: parallel over combinations (numba ``prange``).

One kernel is compiled per user function (:func:`cpu_kernel`, cached in memory by the
function's identity and source; not on disk, since the compiled kernel embeds the user's
function). Each parallel chunk allocates its scratch once and runs blocks of up to ``LANES``
combinations in lockstep (:func:`alloc_block`): per bar, the portfolio values, the current
weights and the online metric updates are loops over the lanes that LLVM vectorises (as in the
built-in engine's :mod:`gpusim.backtest.cpu`), and the user's function and the rebalances run
lane by lane with the backtest's step bodies. The state's arrays are views of owner-less
arrays (:func:`borrow`), so a call of the user's function costs no reference counting, and
``c.n_assets`` is a compile-time constant (a kernel per function and number of assets), so the
user's loops over the assets unroll. Every lane performs the same floating-point operations
in the same order as :func:`gpusim.strategy.steps.simulate_alloc` (the GPU thread's code, also
compiled here as :func:`alloc_kernel_scalar` for the tests), so the results are bit-identical
to it.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
from numba import njit, prange
from numba.core import cgutils
from numba.core.errors import NumbaPerformanceWarning
from numba.extending import intrinsic

from cpu_ref.jitting import compile_bodies
from cpu_ref.rng import uniform_nb
from gpusim.backtest import steps as bsteps
from gpusim.strategy import steps
from gpusim.strategy.compile import UserFunction, cached, compile_cpu
from gpusim.strategy.steps import State

MAX_CHUNKS = 1024
"""CPU work items per call (each allocates its scratch once)."""
LANES = 32
"""Combinations per lockstep block."""
USES_TARGETS = True
"""Whether the user's function names its targets argument (bound per function, a constant)."""
_INF = float("inf")


@intrinsic
def borrow(typingctx, arr):
    """The array ``arr`` without its owner (meminfo): views of it cost no reference counting.

    Each view in the state of a call (``close[:t + 1]``, columns and rows of the lane scratch)
    would otherwise cost an atomic increment and decrement of its owner's count, contended
    between the threads for ``close`` (57% of the lockstep kernel's time in ``perf``). The
    caller keeps the owner alive while the borrowed array is in use.
    """
    def codegen(context, builder, sig, args):
        a = cgutils.create_struct_proxy(sig.args[0])(context, builder, value=args[0])
        a.meminfo = cgutils.get_null_value(a.meminfo.type)
        a.parent = cgutils.get_null_value(a.parent.type)
        return a._getvalue()

    return arr(arr), codegen


class LaneT(NamedTuple):
    """Rows of the (NSTATE, LANES) lane state of :func:`alloc_block`."""

    cash: int = 0
    v: int = 1  # value of the bar
    vprev: int = 2  # value of the previous bar
    mean: int = 3  # Welford mean of the returns
    m2: int = 4  # Welford sum of squared deviations
    down: int = 5  # downside sum of squares
    peak: int = 6
    mdd: int = 7
    sumv: int = 8
    traded: int = 9
    fees: int = 10
    nreb: int = 11
    last: int = 12  # bar of the last rebalance


Lane = LaneT()
_NSTATE = len(Lane)


def alloc_block(close, W, wid, masks, mid, params, fees, acct, key, streams, c0, nb, lanes,
                out):
    """Simulate combinations c0 .. c0+nb-1 (nb <= LANES) in lockstep; lane b uses column b of
    ``h``/``oval``/``order``/``cur`` (A, LANES), row b of ``tin``/``prop`` (LANES, A) and of
    the lane state ``st`` (NSTATE, LANES) in ``lanes``. Arguments as :func:`alloc_kernel`.
    """
    init_cash, ann, rf = acct
    h, oval, order, cur, tin, prop, st = lanes
    T = close.shape[0]
    A = close.shape[1]
    rf_bar = rf / ann
    for b in range(nb):
        for j in range(A):
            h[j, b] = 0.0
            tin[b, j] = W[wid[c0 + b], j]
        for k in range(_NSTATE):
            st[k, b] = 0.0
        st[Lane.cash, b] = init_cash
        st[Lane.vprev, b] = init_cash
        st[Lane.peak, b] = -_INF
        st[Lane.last, b] = -1.0
    cash = st[Lane.cash]
    v = st[Lane.v]
    v_prev = st[Lane.vprev]
    mean = st[Lane.mean]
    m2 = st[Lane.m2]
    down = st[Lane.down]
    peak = st[Lane.peak]
    mdd = st[Lane.mdd]
    sum_v = st[Lane.sumv]
    for t in range(T):
        for b in range(nb):
            v[b] = cash[b]
        for j in range(A):
            p = close[t, j]
            hj = h[j]
            for b in range(nb):
                v[b] += hj[b] * p
        called = t == 0
        if not called:
            for b in range(nb):
                if masks[mid[c0 + b], t]:
                    called = True
                    break
        if called:   # the current weights of every lane (vectorised; the same operations)
            for j in range(A):
                p = close[t, j]
                hj = h[j]
                wj = cur[j]
                for b in range(nb):
                    vb = v[b]
                    wj[b] = hj[b] * p / vb if vb > 0.0 else 0.0
        for b in range(nb):
            c = c0 + b
            if t == 0 or masks[mid[c], t]:
                vb = v[b]
                if USES_TARGETS:   # else the function never names them: targets = tin[b]
                    for j in range(A):
                        prop[b, j] = tin[b, j]
                state = State(t, A, T, close[:t + 1], cur[:, b], tin[b], h[:, b], cash[b], vb,
                              int(st[Lane.last, b]), key, streams[c])
                do = alloc(state, params[c], prop[b] if USES_TARGETS else tin[b])  # noqa: F821
                if t == 0:
                    do = True
                if do:
                    if USES_TARGETS:
                        for j in range(A):
                            tin[b, j] = prop[b, j]
                    cash[b], tr, fe = rebalance(close, t, vb, cash[b], tin, b, h, oval,  # noqa
                                                order, b, fees[c])
                    st[Lane.traded, b] += tr
                    st[Lane.fees, b] += fe
                    st[Lane.nreb, b] += 1.0
                    st[Lane.last, b] = t
                    v[b] = portfolio_value(close, t, cash[b], h, b)  # noqa: F821
        inv_n = 1.0 / (t + 1)
        for b in range(nb):
            vb = v[b]
            r = vb / v_prev[b] - 1.0
            d = r - mean[b]
            mb = mean[b] + d * inv_n
            mean[b] = mb
            m2[b] += d * (r - mb)
            x = r - rf_bar
            down[b] += x * x if x < 0.0 else 0.0
            pk = max(vb, peak[b])
            peak[b] = pk
            mdd[b] = min(vb / pk - 1.0, mdd[b])
            sum_v[b] += vb
            v_prev[b] = vb
    for b in range(nb):
        acc = (mean[b], m2[b], down[b], peak[b], mdd[b], sum_v[b])
        write_metrics(out, c0 + b, T, acct, v[b], acc, st[Lane.traded, b],  # noqa: F821
                      st[Lane.fees, b], int(st[Lane.nreb, b]))


def alloc_kernel(close, W, wid, masks, mid, params, fees, acct, key, streams, out):
    """Fill ``out[c]`` (11 metrics) for every combination c < C = len(wid) (prange over
    chunks of lockstep blocks).

    ``close`` (T, A); ``W`` (K, A) initial targets, ``wid`` (C,); ``masks`` (M, T) call masks,
    ``mid`` (C,); ``params`` (C, P); ``fees`` (C,); ``acct = (init_cash, ann, rf)``; ``key``
    uint64 seed key; ``streams`` (C,) int64 random streams; ``out`` (C, 11).
    """
    A = close.shape[1]
    C = wid.shape[0]
    nblocks = (C + LANES - 1) // LANES
    nchunks = min(nblocks, MAX_CHUNKS)
    if nchunks == 0:
        return
    per = (nblocks + nchunks - 1) // nchunks
    nchunks = (nblocks + per - 1) // per
    for k in prange(nchunks):
        lanes = (np.empty((A, LANES)), np.empty((A, LANES)),
                 np.empty((A, LANES), dtype=np.int64), np.empty((A, LANES)),
                 np.empty((LANES, A)), np.empty((LANES, A)), np.empty((_NSTATE, LANES)))
        held = (borrow(lanes[0]), borrow(lanes[1]), borrow(lanes[2]), borrow(lanes[3]),
                borrow(lanes[4]), borrow(lanes[5]), borrow(lanes[6]))
        for blk in range(k * per, min(nblocks, (k + 1) * per)):
            c0 = blk * LANES
            alloc_block(borrow(close), W, wid, masks, mid, borrow(params), fees, acct, key,
                        streams, c0, min(LANES, C - c0), held, out)
        lanes[6][0, 0] = held[6][0, 0]   # a use after the loop: the owners live until here


def alloc_kernel_scalar(close, W, wid, masks, mid, params, fees, acct, key, streams, out):
    """Same result as :func:`alloc_kernel`, one combination at a time with
    :func:`~gpusim.strategy.steps.simulate_alloc` (the GPU thread's code path; for tests).
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
        cur = np.empty((A, 1))
        tin = np.empty((1, A))
        prop = np.empty((1, A))
        scratch = (h, oval, order, cur, tin, prop)
        for c in range(k * size, min(C, (k + 1) * size)):
            simulate_alloc(close, W, wid[c], masks[mid[c]], params[c], fees[c], acct,  # noqa
                           (key, streams[c]), scratch, 0, out, c)


def cpu_kernel(uf: UserFunction, n_assets: int, scalar: bool = False):
    """The parallel kernel :func:`alloc_kernel` (or :func:`alloc_kernel_scalar`) compiled for
    the user function ``uf`` and A = ``n_assets``.
    """
    def build():
        fn = compile_cpu(uf, n_assets)
        ov = steps.step_overrides(bsteps._nb, fn, uniform_nb)
        jit = njit(error_model="numpy")
        if scalar:
            body = compile_bodies(jit, vars(steps), ("simulate_alloc",), ov)
            name = "alloc_kernel_scalar"
        else:
            ov["USES_TARGETS"] = uf.uses_targets
            body = compile_bodies(jit, globals(), ("alloc_block",), ov)
            name = "alloc_kernel"
        return compile_bodies(njit(parallel=True, nogil=True, error_model="numpy"), globals(),
                              (name,), body)[name]

    return cached("cpu-scalar" if scalar else "cpu", uf, build, n_assets)


def backtest_alloc_cpu(uf, close, W, wid, masks, mid, params, fees, acct, key, streams, *,
                       scalar=False):
    """Metrics (C, 11) of the combinations of one chunk (host arrays; see :func:`alloc_kernel`;
    ``scalar``: one combination at a time, the GPU thread's code).
    """
    out = np.empty((len(wid), bsteps.N_METRICS))
    kernel = cpu_kernel(uf, close.shape[1], scalar)
    with warnings.catch_warnings():   # c.weights is a strided column by design: Numba's note
        # that e.g. np.dot prefers contiguous arrays is about our layout, not the user's code
        warnings.simplefilter("ignore", NumbaPerformanceWarning)
        kernel(close, W, wid, masks, mid, params, fees, acct, key, streams, out)
    return out
