"""numba.cuda walk-forward kernels: per-period random search and execution of time-varying
targets. Import only after the backend chose the GPU (this imports numba.cuda).

Search (:func:`search_cuda`): thread ``tid`` serves task ``tid // n_slices`` and scores its
candidates ``slice, slice + n_slices, ...`` (``slice = tid % n_slices``): each candidate is built
by the shared counter-based sampler (:mod:`gpusim._cuda.rng`, the same stream as the CPU),
scaled and checked against the constraints, bounded (``r / sqrt(ann (g.w)²)``) and, unless the
bound shows it cannot beat the thread's best, scored (``|F w|²`` with the window's covariance
factor), exactly as :mod:`gpusim.walkforward.search_cpu` does, and the thread keeps the best of
each checkpoint segment in the (n_tasks, n_slices, n_seg) outputs, reduced on the host by
:func:`gpusim.walkforward.segments.reduce_segments`. No population is stored.

Execution (:func:`execute_cuda`): one thread per portfolio running the backtest's device
function :func:`gpusim.backtest.steps.simulate_one` with targets advancing one row per rebalance
(as :func:`gpusim.walkforward.execute.execute_cpu_nb`); per-thread scratch in (A, C) global
arrays.

Transfers (DESIGN §3): :class:`SearchGpuRunner` serves every block of dates of one call
(:mod:`gpusim.walkforward.chunked`) with the windows, bounds and checkpoints resident on the
device; only each block's tasks go over, and its bests come back through pinned buffers
(:class:`gpusim._cuda.resident.ChunkOutput`). :func:`execute_gpu` copies its inputs once and
runs the portfolios in chunks through one scratch and one pinned output buffer.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from cpu_ref.walkforward import MAX_RETURN, MAX_SHARPE, MIN_VARIANCE, SLACK
from gpusim._cuda.launch import MAX_ASSETS, MAX_ROWS, block_size, grid_for, resident_threads
from gpusim._cuda.rng import exact_arith, sample_dev
from gpusim.backtest.cuda import simulate_one_dev
from gpusim.backtest.steps import N_METRICS, NO_BAND
from gpusim.walkforward.segments import PRUNE_RTOL, Bests, Limits, Tasks, Windows

# fmul/fadd never fused into FMA (exact_arith): every step rounds as on the CPU
_arith = exact_arith()
fmul = _arith["fmul"]
fadd = _arith["fadd"]


@cuda.jit(device=True)
def accept_dev(w, rv, G, lo, hi, gl, gu, eqtol, cash):
    """Scale and acceptance of one candidate ``w`` (A,) under bounds ``lo``/``hi`` (A,) and
    rows ``gl <= G w <= gu`` (G (M, A)), the rule of :func:`cpu_ref.walkforward.constrain_1d_nb`
    with the float steps of :func:`gpusim.walkforward.search_cpu._accept_block`. Writes
    ``rv[m] = G[m] . w``; returns (accepted, scale).
    """
    A = w.shape[0]
    M = G.shape[0]
    for m in range(M):
        acc = 0.0
        for j in range(A):
            acc = fadd(acc, fmul(G[m, j], w[j]))
        rv[m] = acc
    s = 1.0
    if cash:
        for j in range(A):
            if w[j] > 0.0:
                s = min(s, hi[j] / w[j])
        for m in range(M):
            if rv[m] > 0.0 and gu[m] < math.inf:
                s = min(s, gu[m] / rv[m])
            elif rv[m] < 0.0 and gl[m] > -math.inf:
                s = min(s, gl[m] / rv[m])
    ok = s > 0.0
    for j in range(A):
        x = w[j] * s
        if x < fadd(lo[j], -fmul(SLACK, 1.0 + abs(lo[j]))) or \
                x > fadd(hi[j], fmul(SLACK, 1.0 + abs(hi[j]))):
            ok = False
    for m in range(M):
        x = fmul(rv[m], s)
        lw = gl[m]
        u = gu[m]
        if lw == u:
            if abs(x - u) > fadd(eqtol[m], fmul(SLACK, 1.0 + abs(u))):
                ok = False
        elif x < fadd(lw, -fmul(SLACK, 1.0 + abs(lw))) or \
                x > fadd(u, fmul(SLACK, 1.0 + abs(u))):
            ok = False
    return ok, s


@cuda.jit(device=True)
def quad_dev(F, tri, w):
    """``|F w|²`` for a covariance factor ``F`` (A, A), upper triangular when ``tri``, summed
    in the order of :func:`gpusim.walkforward.search_cpu._variance_one`.
    """
    A = w.shape[0]
    q = 0.0
    for ii in range(A):
        yy = 0.0
        for j in range(ii if tri else 0, A):
            yy = fadd(yy, fmul(F[ii, j], w[j]))
        q = fadd(q, fmul(yy, yy))
    return q


@cuda.jit(device=True)
def score_dev(obj, h, r, v, s, vfl):
    """Objective score of a candidate (``r = mex . y``, ``v = ann y' cov y``, scale ``s``,
    ``h = lam / 2``, variance floor ``vfl``) with the float steps of
    :func:`gpusim.walkforward.search_cpu.score_nb`.
    """
    if obj == MAX_SHARPE:
        return r / math.sqrt(v) if v > vfl else -math.inf
    vs = fmul(fmul(v, s), s)
    if obj == MIN_VARIANCE:
        return -vs
    if obj == MAX_RETURN:
        return fmul(r, s)
    return fadd(fmul(r, s), -fmul(h, vs))


@cuda.jit(cache=True)
def search_cuda(task_key, tasks, n_slices, code, alpha, win, lim, ann, chk, out):
    """One thread per (task, slice); arguments as in
    :func:`gpusim.walkforward.search_cpu.search_cpu_nb` (records of
    :mod:`gpusim.walkforward.segments`, device arrays) with per-task stream keys ``task_key``
    (n_tasks,) uint64 and outputs ``out`` of shape (n_tasks, n_slices, n_seg), which need no
    initialisation: each thread first sets its own ``[task, slice, :]`` as
    :func:`~gpusim.walkforward.segments.new_outputs` does.
    """
    tid = cuda.grid(1)
    task = tid // n_slices
    sl = tid - task * n_slices
    if task >= tasks.n.shape[0]:
        return
    F, tri, mex, gb, G, CC, cv, vfl_w = win
    lo, hi, gl, gu, cap2, eqtol, cash = lim
    bs, bi, bsc, as_, ai, nacc = out
    for k in range(bs.shape[2]):    # this thread's slots, as new_outputs initialises them
        bs[task, sl, k] = -math.inf
        bi[task, sl, k] = -1
        bsc[task, sl, k] = 0.0
        as_[task, sl, k] = -math.inf
        ai[task, sl, k] = -1
        nacc[task, sl, k] = 0
    A = mex.shape[1]
    wbuf = cuda.local.array(MAX_ASSETS, float64)
    rv = cuda.local.array(MAX_ROWS, float64)
    w = wbuf[:A]
    key = task_key[task]
    sid = tasks.sid[task]
    cid = tasks.cid[task]
    obj = tasks.obj[task]
    h = tasks.h[task]
    lo_t = lo[cid]
    hi_t = hi[cid]
    lo_sum = 0.0
    for j in range(A):
        lo_sum += lo_t[j]
    j_tri = tri[sid]
    vfl = vfl_w[sid]
    sq_ann = math.sqrt(ann)
    n_caps = cap2.shape[1]
    seg = 0
    for i in range(sl, tasks.n[task], n_slices):
        while i >= chk[seg]:
            seg += 1
        sample_dev(key, i, code, alpha, lo_t, hi_t, lo_sum, w)  # hi is checked below
        ok, s = accept_dev(w, rv, G[sid], lo_t, hi_t, gl[cid], gu[cid], eqtol, cash)
        q = 0.0
        score = -math.inf
        if n_caps > 0:               # risk caps: the variance of every candidate
            q = quad_dev(F[sid], j_tri, w)
            for k in range(n_caps):
                c2 = cap2[cid, k]
                if c2 < math.inf:
                    rc = 0.0
                    for j in range(A):
                        rc = fadd(rc, fmul(CC[sid, k, j], w[j]))
                    te2 = ann * fadd(fadd(fmul(fmul(q, s), s), -fmul(fmul(2.0, s), rc)),
                                     cv[sid, k])
                    if te2 > c2:
                        ok = False
        if ok:
            nacc[task, sl, seg] += 1
        r = 0.0
        z = 0.0
        for j in range(A):
            r = fadd(r, fmul(mex[sid, j], w[j]))
            z = fadd(z, fmul(gb[sid, j], w[j]))
        # prune (exact): the score at the variance bound ann z² bounds it from above
        thr = bs[task, sl, seg] if ok else as_[task, sl, seg]
        if n_caps > 0:
            score = score_dev(obj, h, r, ann * q, s, vfl)
        elif obj == MAX_SHARPE:
            if r > 0.0:
                zz = abs(z) * sq_ann
                ub = r / zz if zz > 0.0 else math.inf
            else:
                ub = 0.0
            if thr > 0.0 and ub < thr * (1.0 - PRUNE_RTOL):
                continue
        else:
            ub = score_dev(obj, h, r, ann * fmul(z, z), s, vfl)
            if thr > -math.inf and ub < fadd(thr, -fmul(PRUNE_RTOL, abs(thr))):
                continue
        if n_caps > 0:
            pass
        elif obj == MAX_RETURN:
            score = fmul(r, s)
        else:
            q = quad_dev(F[sid], j_tri, w)
            score = score_dev(obj, h, r, ann * q, s, vfl)
        if score > as_[task, sl, seg]:
            as_[task, sl, seg] = score
            ai[task, sl, seg] = i
        if ok:
            if score > bs[task, sl, seg]:
                bs[task, sl, seg] = score
                bi[task, sl, seg] = i
                bsc[task, sl, seg] = s


def _on_device(x):
    """A device view of ``x``: CuPy (or any ``__cuda_array_interface__``) arrays as they are,
    host arrays copied once (C-contiguous).
    """
    if hasattr(x, "__cuda_array_interface__"):
        return cuda.as_cuda_array(x)
    return cuda.to_device(np.ascontiguousarray(x))


def _same(a, b) -> bool:
    return b is not None and len(a) == len(b) and all(
        np.shape(x) == np.shape(y) and np.array_equal(x, y) for x, y in zip(a, b))


class SearchGpuRunner:
    """The GPU random search of one walk-forward call, block of dates after block of dates
    (:mod:`gpusim.walkforward.chunked`).

    The windows (:class:`~gpusim.walkforward.segments.Windows`: factors, means, bound vectors,
    constraint rows, cap statistics; CuPy arrays are used in place) go to the device once; the
    bounds (:class:`~gpusim.walkforward.segments.Limits`) and checkpoints once while they do
    not change (with callable constraints the bounds are per block); per block only the tasks
    and their stream keys travel. The (n_tasks, n_slices, n_seg) bests are written into device
    buffers sized for the largest block so far (the kernel initialises its own slots) and come
    back through pinned host buffers (:class:`gpusim._cuda.resident.ChunkOutput`).
    """

    def __init__(self, win, *, threads_per_block=None):
        from gpusim._cuda.resident import ChunkOutput

        A = win.F.shape[1]
        if A > MAX_ASSETS or win.G.shape[1] > MAX_ROWS:
            raise ValueError(f"the GPU walk-forward search supports at most {MAX_ASSETS} assets "
                             f"and {MAX_ROWS} constraint rows; use backend='cpu'")
        self.tpb = block_size(threads_per_block)
        self.win = Windows(*(_on_device(x) for x in win))
        self._lim = self._chk = (None, None)      # (host source, device copy)
        self._outs = None
        self._chunk_output = ChunkOutput

    def _limits(self, lo, hi, gl, gu, cap, eqtol, cash):
        src = (lo, hi, gl, gu, cap, eqtol)
        if not _same(src, self._lim[0]):
            host = [np.ascontiguousarray(v, dtype=np.float64) for v in src]
            host[4] = np.ascontiguousarray(host[4] * host[4])       # squared caps
            self._lim = ([np.array(v, copy=True) for v in src],
                         [cuda.to_device(v) for v in host])
        return Limits(*self._lim[1], bool(cash))

    def _checkpoints(self, chk):
        if not _same((chk,), self._chk[0]):
            chk = np.ascontiguousarray(chk, dtype=np.int64)
            self._chk = ((chk.copy(),), cuda.to_device(chk))
        return self._chk[1]

    def _outputs(self, shape):
        """Device views (``shape``) of the six output buffers, grown to fit."""
        n = int(np.prod(shape))
        if self._outs is None or self._outs[0].rows < n:
            self._outs = [self._chunk_output(n, 1, dt) for dt in (
                np.float64, np.int64, np.float64, np.float64, np.int64, np.int64)]
        return Bests(*(o.view(n).reshape(shape) for o in self._outs))

    def __call__(self, task_key, tasks, code, alpha, lim, ann, chk, *, n_slices=None) -> Bests:
        """Search one block of tasks; returns the host
        :class:`~gpusim.walkforward.segments.Bests`, shape (n_tasks, n_slices, n_seg).

        ``task_key`` (n_tasks,) uint64 stream keys; ``tasks`` host
        :class:`~gpusim.walkforward.segments.Tasks`; ``lim = (lo, hi, gl, gu, cap, eqtol,
        cash)`` host bounds with the risk caps ``cap`` (not squared); ``chk`` (n_seg,) int64
        checkpoints. By default ``n_slices`` fills a resident grid
        (:func:`gpusim._cuda.launch.resident_threads`) with at least 64 candidates per slice.
        """
        nt = len(tasks.n)
        if n_slices is None:   # a resident grid in all, at most one slice per 64 candidates
            per_task = max(1, resident_threads(self.tpb, search_cuda) // max(nt, 1))
            n_slices = int(max(1, min(per_task, int(max(tasks.n)) // 64)))
        d_chk = self._checkpoints(chk)
        shape = (nt, int(n_slices), d_chk.shape[0])
        outs = self._outputs(shape)
        d_tasks = Tasks(*(cuda.to_device(np.ascontiguousarray(v)) for v in tasks))
        search_cuda[grid_for(nt * n_slices, self.tpb), self.tpb](
            cuda.to_device(np.ascontiguousarray(task_key, dtype=np.uint64)), d_tasks,
            np.int64(n_slices), int(code), float(alpha), self.win, self._limits(*lim),
            float(ann), d_chk, outs)
        n = int(np.prod(shape))
        return Bests(*(o.fetch(n).reshape(shape) for o in self._outs))


@cuda.jit(cache=True)
def execute_cuda(close, W, woff, wsid, masks, mid, fees, acct, scratch, out):
    """One thread per portfolio c < C = out.shape[0]; writes ``out[c, :]`` (11 metrics).

    Device arrays as :func:`gpusim.walkforward.execute.execute_cpu_nb`;
    ``acct = (init_cash, ann, rf)``; ``scratch = (h, oval, order)`` (A, C) f8, f8, i8.
    """
    c = cuda.grid(1)
    if c < out.shape[0]:
        simulate_one_dev(close, W, (woff[wsid[c]], 1), (masks, mid[c], NO_BAND, False), fees[c],
                         acct, scratch, c, out, c)


EXECUTE_CHUNK = 2 ** 20
"""Portfolios per launch of :func:`execute_cuda` (bounds the (A, C) scratch)."""


def execute_gpu(close, W, woff, wsid, masks, mid, fees, init_cash, ann, rf, *,
                threads_per_block=None, chunk_size=EXECUTE_CHUNK):
    """Metrics (C, 11) host array of C walk-forward portfolios on the GPU (or the simulator);
    arguments as :func:`gpusim.walkforward.execute.execute_cpu_nb` (host arrays).

    Every input goes to the device once; the portfolios run in chunks of at most
    ``chunk_size`` (device views of ``wsid``, ``mid``, ``fees``), reusing one scratch and one
    output buffer, and each chunk's metrics come back through a pinned host buffer.
    """
    from gpusim._cuda.resident import ChunkOutput, to_device_all

    C = len(wsid)
    A = close.shape[1]
    if C == 0:
        return np.empty((0, N_METRICS))
    tpb = block_size(threads_per_block)
    rows = max(1, min(C, int(chunk_size)))
    d_close, d_W, d_woff, d_wsid, d_masks, d_mid, d_fees = to_device_all(
        (close, W, woff, np.asarray(wsid, dtype=np.int64), masks,
         np.asarray(mid, dtype=np.int64), np.asarray(fees, dtype=np.float64)))
    scratch = (cuda.device_array((A, rows), dtype=np.float64),
               cuda.device_array((A, rows), dtype=np.float64),
               cuda.device_array((A, rows), dtype=np.int64))
    buf = ChunkOutput(rows, N_METRICS)
    acct = (float(init_cash), float(ann), float(rf))
    out = np.empty((C, N_METRICS))
    for a in range(0, C, rows):
        b = min(C, a + rows)
        execute_cuda[grid_for(b - a, tpb), tpb](d_close, d_W, d_woff, d_wsid[a:b], d_masks,
                                                d_mid[a:b], d_fees[a:b], acct, scratch,
                                                buf.view(b - a))
        out[a:b] = buf.fetch(b - a)
    return out
