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
from gpusim.walkforward.segments import PRUNE_RTOL, Bests, Limits, Tasks, Windows, new_outputs

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
def score_dev(obj, h, r, v, s):
    """Objective score of a candidate (``r = mex . y``, ``v = ann y' cov y``, scale ``s``,
    ``h = lam / 2``) with the float steps of :func:`gpusim.walkforward.search_cpu.score_nb`.
    """
    if obj == MAX_SHARPE:
        return r / math.sqrt(v) if v > 0.0 else -math.inf
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
    (n_tasks,) uint64 and outputs ``out`` of shape (n_tasks, n_slices, n_seg).
    """
    tid = cuda.grid(1)
    task = tid // n_slices
    sl = tid - task * n_slices
    if task >= tasks.n.shape[0]:
        return
    F, tri, mex, gb, G, CC, cv = win
    lo, hi, gl, gu, cap2, eqtol, cash = lim
    bs, bi, bsc, as_, ai, nacc = out
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
            score = score_dev(obj, h, r, ann * q, s)
        elif obj == MAX_SHARPE:
            if r > 0.0:
                zz = abs(z) * sq_ann
                ub = r / zz if zz > 0.0 else math.inf
            else:
                ub = 0.0
            if thr > 0.0 and ub < thr * (1.0 - PRUNE_RTOL):
                continue
        else:
            ub = score_dev(obj, h, r, ann * fmul(z, z), s)
            if thr > -math.inf and ub < fadd(thr, -fmul(PRUNE_RTOL, abs(thr))):
                continue
        if n_caps > 0:
            pass
        elif obj == MAX_RETURN:
            score = fmul(r, s)
        else:
            q = quad_dev(F[sid], j_tri, w)
            score = score_dev(obj, h, r, ann * q, s)
        if score > as_[task, sl, seg]:
            as_[task, sl, seg] = score
            ai[task, sl, seg] = i
        if ok:
            if score > bs[task, sl, seg]:
                bs[task, sl, seg] = score
                bi[task, sl, seg] = i
                bsc[task, sl, seg] = s


def search_gpu(xp, task_key, tasks, code, alpha, win, lim, ann, chk, *, n_slices=None,
               threads_per_block=None):
    """Launch :func:`search_cuda`; inputs are host or ``xp`` arrays (``tasks``, ``win``, ``lim``:
    records of :mod:`gpusim.walkforward.segments`), outputs the host ``Bests`` of
    :func:`gpusim.walkforward.segments.new_outputs`, shape (n_tasks, n_slices, n_seg).

    By default ``n_slices`` fills a resident grid (:func:`gpusim._cuda.launch.resident_threads`)
    with at least 64 candidates per slice; ``threads_per_block`` defaults to the launch policy's.
    """
    A = win.F.shape[1]
    if A > MAX_ASSETS or win.G.shape[1] > MAX_ROWS:
        raise ValueError(f"the GPU walk-forward search supports at most {MAX_ASSETS} assets and "
                         f"{MAX_ROWS} constraint rows; use backend='cpu'")
    nt = len(tasks.n)
    tpb = block_size(threads_per_block)
    if n_slices is None:   # a resident grid in all, at most one slice per 64 candidates
        per_task = max(1, resident_threads(tpb, search_cuda) // max(nt, 1))
        n_slices = int(max(1, min(per_task, int(max(tasks.n)) // 64)))
    outs = new_outputs(nt, n_slices, len(chk), xp)

    def dev(x):
        return xp.ascontiguousarray(xp.asarray(x))

    tasks = Tasks(*map(dev, tasks))
    win = Windows(*map(dev, win))
    lim = Limits(*map(dev, lim[:6]), bool(lim.cash))
    search_cuda[grid_for(nt * n_slices, tpb), tpb](dev(task_key), tasks, np.int64(n_slices),
                                                   int(code), float(alpha), win, lim,
                                                   float(ann), dev(chk), outs)
    if xp is np:
        return outs
    return Bests(*(xp.asnumpy(o) for o in outs))


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


def execute_gpu(close, W, woff, wsid, masks, mid, fees, init_cash, ann, rf, *,
                threads_per_block=None):
    """Metrics (C, 11) host array of C walk-forward portfolios on the GPU (or the simulator);
    arguments as :func:`gpusim.walkforward.execute.execute_cpu_nb` (host arrays).
    """
    C = len(wsid)
    A = close.shape[1]
    if C == 0:
        return np.empty((0, N_METRICS))
    d = [cuda.to_device(np.ascontiguousarray(x)) for x in (close, W, woff, wsid, masks, mid,
                                                           fees)]
    h = cuda.device_array((A, C), dtype=np.float64)
    oval = cuda.device_array((A, C), dtype=np.float64)
    order = cuda.device_array((A, C), dtype=np.int64)
    out = cuda.device_array((C, N_METRICS), dtype=np.float64)
    tpb = block_size(threads_per_block)
    acct = (float(init_cash), float(ann), float(rf))
    execute_cuda[grid_for(C, tpb), tpb](*d, acct, (h, oval, order), out)
    return out.copy_to_host()
