"""Walk-forward fast path (DESIGN §7): the fused per-period random search on the CPU.

Search tasks: one task = (window ``sid``, bounds ``cid``, number of candidates ``n``); tasks of the
same rebalance date form a group that shares the candidate stream, so each block of candidates is
generated once and scored for every task of the group (every lookback, every constraint set).
``num_tests`` values are checkpoints: candidate ``i`` falls in segment ``c`` when
``checkpoints[c-1] <= i < checkpoints[c]``; each work item keeps the best candidate of each
segment, so one pass gives the best of the first 30, 100 and 10 000 candidates together
(:func:`~gpusim.walkforward.segments.reduce_segments`). Scoring uses a factor ``F`` of the
covariance (``w'Σw = |F w|²``; upper-triangular Cholesky when Σ is positive definite, else a square
root from the eigendecomposition). Exact pruning: ``w'Σw >= (g.w)²`` for the window's bound vector
``g`` (:func:`~gpusim.walkforward.stats.bound_vectors`), so a candidate whose Sharpe bound ``r /
sqrt(ann (g.w)²)`` is below its segment's current best is not scored (on the benchmark data ~96% of
candidates); the choice is the same as scoring everyone, since a pruned candidate could not have
been selected.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from cpu_ref.rng import Sampler, bits_nb, std_gamma_nb, uniform_nb
from cpu_ref.walkforward import MAX_RETURN, MAX_SHARPE, MIN_VARIANCE, SLACK
from gpusim.walkforward.segments import PRUNE_RTOL

BLOCK = 128
"""Candidates generated and scored together on the CPU (lanes of the inner loops)."""
_MANT = np.int64((1 << 52) - 1)
_EXP1 = np.int64(1023 << 52)
_LN2 = 0.6931471805599453
_SQRT2 = 1.4142135623730951
_INF = float("inf")


@njit(cache=True, error_model="numpy")
def _exp_block(key, i0, A, E, fbuf, ebuf):
    """E[j, b] = -log(u) for candidate i0 + b, asset j: bit-identical to
    ``cpu_ref.rng.neg_log_uniform(bits(key, i0 + b, j, 0))`` (the same float operations; the
    power-of-two normalisation is read from the exponent field instead of seven compares).
    """
    fi = fbuf.view(np.int64)
    for j in range(A):
        for b in range(BLOCK):
            x = bits_nb(key, i0 + b, j, 0)
            fbuf[b] = float(np.int64(((x >> np.uint64(12)) << np.uint64(1)) | np.uint64(1)))
        for b in range(BLOCK):
            ib = fi[b]
            ebuf[b] = float((ib >> 52) - 1023)
            fi[b] = (ib & _MANT) | _EXP1
        for b in range(BLOCK):
            f = fbuf[b]
            e = ebuf[b]
            if f > _SQRT2:
                f = f * 0.5
                e += 1.0
            s = (f - 1.0) / (f + 1.0)
            z = s * s
            p = 1.0 / 21.0
            p = p * z + 1.0 / 19.0
            p = p * z + 1.0 / 17.0
            p = p * z + 1.0 / 15.0
            p = p * z + 1.0 / 13.0
            p = p * z + 1.0 / 11.0
            p = p * z + 1.0 / 9.0
            p = p * z + 1.0 / 7.0
            p = p * z + 1.0 / 5.0
            p = p * z + 1.0 / 3.0
            p = p * z + 1.0
            E[j, b] = (53.0 - e) * _LN2 - 2.0 * s * p


@njit(cache=True, error_model="numpy")
def _raw_block(key, i0, code, alpha, A, E, fbuf, ebuf):
    """Raw variates of candidates i0 .. i0+BLOCK-1 (before normalisation), (A, BLOCK)."""
    if code == Sampler.dirichlet:
        _exp_block(key, i0, A, E, fbuf, ebuf)
    else:
        for j in range(A):
            for b in range(BLOCK):
                if code == Sampler.uniform:
                    E[j, b] = uniform_nb(key, i0 + b, j, 0)
                else:
                    E[j, b] = std_gamma_nb(key, i0 + b, j, alpha)


@njit(cache=True, error_model="numpy")
def _weights(E, esum, lo, smp, W):
    """W = lo + E (1 - sum lo) / sum E, column by column: ``cpu_ref.rng.sample``'s map."""
    A = E.shape[0]
    lo_sum = 0.0
    for j in range(A):
        lo_sum += lo[j]
    for b in range(BLOCK):
        smp[b] = (1.0 - lo_sum) / esum[b]
    for j in range(A):
        lj = lo[j]
        for b in range(BLOCK):
            W[j, b] = lj + E[j, b] * smp[b]


@njit(cache=True, error_model="numpy")
def _lin_block(W, v, out):
    """out[b] = sum_j v_j W[j, b] for the BLOCK columns, summed in index order (four terms
    per pass; the order of the GPU kernel, so the results are identical).
    """
    A = W.shape[0]
    for b in range(BLOCK):
        out[b] = 0.0
    j = 0
    while j + 4 <= A:
        m0, m1, m2, m3 = v[j], v[j + 1], v[j + 2], v[j + 3]
        w0, w1, w2, w3 = W[j], W[j + 1], W[j + 2], W[j + 3]
        for b in range(BLOCK):
            out[b] = (((out[b] + m0 * w0[b]) + m1 * w1[b]) + m2 * w2[b]) + m3 * w3[b]
        j += 4
    while j < A:
        mj = v[j]
        for b in range(BLOCK):
            out[b] += mj * W[j, b]
        j += 1


@njit(cache=True, error_model="numpy")
def _variance_block(W, F, tri, Y, q):
    """q[b] = |F w|² for the BLOCK columns of W (row i of a triangular F from column i).

    Rows of ``F w`` are built four at a time (scratch ``Y`` (4, BLOCK)) over column pairs, so
    each weight is loaded once for four rows; every sum still runs in index order, as in
    :func:`_variance_one` and the GPU kernel, so the results are identical.
    """
    A = W.shape[0]
    for b in range(BLOCK):
        q[b] = 0.0
    i = 0
    while i < A:
        nr = min(4, A - i)
        for k in range(nr):                    # the head: columns before i + 4
            for b in range(BLOCK):
                Y[k, b] = 0.0
            for j in range(i + k if tri else 0, min(i + 4, A)):
                f = F[i + k, j]
                for b in range(BLOCK):
                    Y[k, b] += f * W[j, b]
        if nr == 4:
            y0, y1, y2, y3 = Y[0], Y[1], Y[2], Y[3]
            j = i + 4
            while j + 2 <= A:
                f00, f01, f10, f11 = F[i, j], F[i, j + 1], F[i + 1, j], F[i + 1, j + 1]
                f20, f21, f30, f31 = F[i + 2, j], F[i + 2, j + 1], F[i + 3, j], F[i + 3, j + 1]
                w0, w1 = W[j], W[j + 1]
                for b in range(BLOCK):
                    a0 = w0[b]
                    a1 = w1[b]
                    y0[b] = (y0[b] + f00 * a0) + f01 * a1
                    y1[b] = (y1[b] + f10 * a0) + f11 * a1
                    y2[b] = (y2[b] + f20 * a0) + f21 * a1
                    y3[b] = (y3[b] + f30 * a0) + f31 * a1
                j += 2
            if j < A:
                f0, f1, f2, f3 = F[i, j], F[i + 1, j], F[i + 2, j], F[i + 3, j]
                wj = W[j]
                for b in range(BLOCK):
                    a0 = wj[b]
                    y0[b] += f0 * a0
                    y1[b] += f1 * a0
                    y2[b] += f2 * a0
                    y3[b] += f3 * a0
        for k in range(nr):
            for b in range(BLOCK):
                q[b] += Y[k, b] * Y[k, b]
        i += 4


@njit(cache=True, error_model="numpy")
def _variance_one(W, b, F, tri):
    """|F w|² of column b alone, with the summation order of :func:`_variance_block`."""
    A = W.shape[0]
    q = 0.0
    for i in range(A):
        y = 0.0
        for j in range(i if tri else 0, A):
            y += F[i, j] * W[j, b]
        q += y * y
    return q


@njit(cache=True, error_model="numpy")
def _accept_block(W, lo, hi, G, gl, gu, eqtol, cash, RV, scl, acc):
    """Scale (cash mode) and acceptance of the BLOCK columns of W (the rule of
    :func:`cpu_ref.walkforward.constrain_1d_nb`).
    """
    A = W.shape[0]
    M = G.shape[0]
    for m in range(M):
        for b in range(BLOCK):
            RV[m, b] = 0.0
        for j in range(A):
            g = G[m, j]
            for b in range(BLOCK):
                RV[m, b] += g * W[j, b]
    for b in range(BLOCK):
        scl[b] = 1.0
        acc[b] = True
    if cash:
        for j in range(A):
            h = hi[j]
            for b in range(BLOCK):
                w = W[j, b]
                if w > 0.0:
                    scl[b] = min(scl[b], h / w)
        for m in range(M):
            u = gu[m]
            lw = gl[m]
            for b in range(BLOCK):
                v = RV[m, b]
                if v > 0.0 and u < _INF:
                    scl[b] = min(scl[b], u / v)
                elif v < 0.0 and lw > -_INF:
                    scl[b] = min(scl[b], lw / v)
        for b in range(BLOCK):
            acc[b] = scl[b] > 0.0
    for j in range(A):
        _reject_outside(W[j], lo[j] - SLACK * (1.0 + abs(lo[j])),
                        hi[j] + SLACK * (1.0 + abs(hi[j])), scl, acc)
    for m in range(M):
        if gl[m] == gu[m]:
            t = eqtol[m] + SLACK * (1.0 + abs(gu[m]))
            u = gu[m]
            for b in range(BLOCK):
                if abs(RV[m, b] * scl[b] - u) > t:
                    acc[b] = False
        else:
            _reject_outside(RV[m], gl[m] - SLACK * (1.0 + abs(gl[m])),
                            gu[m] + SLACK * (1.0 + abs(gu[m])), scl, acc)


@njit(cache=True, error_model="numpy", inline="always")
def _reject_outside(x, lw, up, scl, acc):
    """acc[b] = False where the scaled value ``x[b] * scl[b]`` is outside [lw, up]."""
    for b in range(BLOCK):
        v = x[b] * scl[b]
        if v < lw or v > up:
            acc[b] = False


@njit(cache=True, error_model="numpy", inline="always")
def score_nb(obj, h, r, v, s, vfl):
    """Objective score (higher is better) of a candidate with ``r = mex . y``, ``v = ann y' cov
    y`` and scale ``s`` (weights ``s y``; :func:`cpu_ref.walkforward.objective_1d_nb`);
    ``h = lam / 2``; ``vfl`` the window's variance floor (>= 0): max_sharpe scores a riskless
    candidate (``v <= vfl``) -inf. The float steps of the GPU kernel's ``score_dev``.
    """
    if obj == MAX_SHARPE:
        return r / math.sqrt(v) if v > vfl else -_INF
    vs = (v * s) * s
    if obj == MIN_VARIANCE:
        return -vs
    if obj == MAX_RETURN:
        return r * s
    return r * s - h * vs


@njit(cache=True, error_model="numpy")
def _score_task(W, nb, i0, win, sid, lim, cid, ann, chk, scratch, best, obj, h):
    """Acceptance and Sharpe of the first ``nb`` of the block of weights ``W`` (A, BLOCK)
    (candidates ``i0 ..``) for one task, on window ``sid`` of ``win`` (``Windows``) under bounds
    set ``cid`` of ``lim`` (``Limits``); ``chk`` (n_seg,) checkpoints. Updates the task's
    per-segment bests ``best = (bs, bi, bsc, as_, ai, nacc)``, the (n_seg,) rows of ``Bests``
    (records of :mod:`gpusim.walkforward.segments`): accepted score, index and scale, score and
    index of any candidate, accepted counts.
    ``scratch = (y (4, BLOCK), q, r, RV (max(M, 1), BLOCK), scl, sc, acc (BLOCK,))``.

    Pruning (exact): ``w' cov w >= (gb . w)²`` (Cauchy-Schwarz, see
    :func:`gpusim.walkforward.stats.bound_vectors`), so ``r / sqrt(ann (gb . w)²)`` bounds the
    Sharpe from above. A candidate whose bound is below the best of its segment (the accepted
    best when it is accepted) cannot be selected and is not scored (score -inf); the others are
    scored exactly.
    """
    lo, hi, gl, gu = lim.lo[cid], lim.hi[cid], lim.gl[cid], lim.gu[cid]
    eqtol, cash = lim.eqtol, lim.cash
    F, tri, mex, gb, G = win.F[sid], win.tri[sid], win.mex[sid], win.gb[sid], win.G[sid]
    vfl = win.vfl[sid]
    y, q, r, RV, scl, sc, acc = scratch
    free = not cash and G.shape[0] == 0      # then only upper weight bounds < 1 can reject
    for j in range(W.shape[0]):
        if hi[j] < 1.0:
            free = False
    if free:
        for b in range(BLOCK):
            scl[b] = 1.0
            acc[b] = True
    else:
        _accept_block(W, lo, hi, G, gl, gu, eqtol, cash, RV, scl, acc)
    _lin_block(W, mex, r)
    if lim.cap2.shape[1] > 0:
        _capped(W, nb, win, sid, lim, cid, ann, scratch, obj, h)
        _update_bests(nb, i0, chk, sc, acc, scl, best)
        return
    _lin_block(W, gb, q)                     # q holds gb . w until the variances
    n_live = _mark_live(nb, i0, chk, ann, r, q, acc, best, sc, obj, h, scl, vfl)
    if obj == MAX_RETURN:                    # no variance needed
        for b in range(nb):
            if sc[b] == 1.0:
                sc[b] = r[b] * scl[b]
    elif n_live > BLOCK // 8:
        _variance_block(W, F, tri, y, q)
        for b in range(nb):
            if sc[b] == 1.0:
                sc[b] = score_nb(obj, h, r[b], ann * q[b], scl[b], vfl)
    else:
        for b in range(nb):
            if sc[b] == 1.0:
                sc[b] = score_nb(obj, h, r[b], ann * _variance_one(W, b, F, tri), scl[b], vfl)
    _update_bests(nb, i0, chk, sc, acc, scl, best)


@njit(cache=True, error_model="numpy")
def _capped(W, nb, win, sid, lim, cid, ann, scratch, obj, h):
    """Risk caps (Volatility, TrackingError): every candidate's variance ``q``, then acceptance
    ``ann ((q s) s - (2 s) (CC_k . w) + cv_k) <= cap_k²`` at its scale ``s`` (the float steps
    of the GPU kernel) and its score (no pruning). ``r`` holds ``mex . w``.
    """
    y, q, r, _RV, scl, sc, acc = scratch
    F, tri = win.F[sid], win.tri[sid]
    _variance_block(W, F, tri, y, q)
    for k in range(lim.cap2.shape[1]):
        c2 = lim.cap2[cid, k]
        if c2 < _INF:
            _lin_block(W, win.CC[sid, k], sc)     # sc holds CC_k . w until the scores
            cvk = win.cv[sid, k]
            for b in range(nb):
                s = scl[b]
                te2 = ann * ((((q[b] * s) * s) + -((2.0 * s) * sc[b])) + cvk)
                if te2 > c2:
                    acc[b] = False
    vfl = win.vfl[sid]
    for b in range(nb):
        sc[b] = score_nb(obj, h, r[b], ann * q[b], scl[b], vfl)


@njit(cache=True, error_model="numpy")
def _mark_live(nb, i0, chk, ann, r, q, acc, best, sc, obj, h, scl, vfl):
    """Exact pruning of candidates ``i0 .. i0+nb-1``: ``sc[b]`` = 1 for a live candidate (to
    be scored), -inf for one whose score bound is below its segment's best (``best`` as in
    :func:`_score_task`; the accepted best for an accepted candidate ``acc[b]``). Every
    objective decreases with the variance, which is at least ``ann (gb . w)²`` (``q`` holds
    ``gb . w``): the bound is the score at that variance (Sharpe: ``r[b] / sqrt(ann q[b]²)``).
    Returns the number of live candidates.
    """
    bs, _bi, _bsc, as_, _ai, _nacc = best
    sq = math.sqrt(ann)
    seg = 0
    while i0 >= chk[seg]:
        seg += 1
    n_live = 0
    for b in range(nb):
        while i0 + b >= chk[seg]:
            seg += 1
        thr = bs[seg] if acc[b] else as_[seg]
        rb = r[b]
        if obj == MAX_SHARPE:
            if rb > 0.0:
                z = abs(q[b]) * sq
                ub = rb / z if z > 0.0 else _INF
            else:
                ub = 0.0
            live = not (thr > 0.0 and ub < thr * (1.0 - PRUNE_RTOL))
        else:
            ub = score_nb(obj, h, rb, ann * (q[b] * q[b]), scl[b], vfl)
            live = not (thr > -_INF and ub < thr - PRUNE_RTOL * abs(thr))
        sc[b] = 1.0 if live else -_INF      # marks the live lanes
        n_live += 1 if live else 0
    return n_live


@njit(cache=True, error_model="numpy")
def _update_bests(nb, i0, chk, sc, acc, scl, best):
    """Fold the scores ``sc`` (-inf: pruned), acceptance ``acc`` and scales ``scl`` of
    candidates ``i0 .. i0+nb-1`` into the per-segment ``best`` of :func:`_score_task`
    (ties go to the smaller candidate index).
    """
    bs, bi, bsc, as_, ai, nacc = best
    seg = 0
    while i0 >= chk[seg]:
        seg += 1
    if i0 + nb <= chk[seg]:     # the whole block is in one segment: reduce, then update
        top = -_INF
        top_ok = -_INF
        cnt = 0
        for b in range(nb):
            v = sc[b]
            top = max(top, v)
            ok = acc[b]
            cnt += 1 if ok else 0
            top_ok = max(top_ok, v if ok else -_INF)
        nacc[seg] += cnt
        if top > as_[seg]:
            for b in range(nb):
                if sc[b] == top:            # the first one: ties go to the smaller index
                    as_[seg] = top
                    ai[seg] = i0 + b
                    break
        if top_ok > bs[seg]:
            for b in range(nb):
                if acc[b] and sc[b] == top_ok:
                    bs[seg] = top_ok
                    bi[seg] = i0 + b
                    bsc[seg] = scl[b]
                    break
        return
    for b in range(nb):
        i = i0 + b
        while i >= chk[seg]:
            seg += 1
        v = sc[b]
        if v > as_[seg]:
            as_[seg] = v
            ai[seg] = i
        if acc[b]:
            nacc[seg] += 1
            if v > bs[seg]:
                bs[seg] = v
                bi[seg] = i
                bsc[seg] = scl[b]


@njit(parallel=True, nogil=True, cache=True, error_model="numpy")
def search_cpu_nb(items, groups, tasks, code, alpha, win, lim, ann, chk, out):
    """Fused per-period random search on the CPU (prange over work items).

    Parameters
    ----------
    items : tuple ``(grp, split, c0, c1)`` of (n_items,) int64 arrays (:func:`~.search.plan_items`):
        item ``it`` scores candidates ``c0[it] .. c1[it]-1`` of group ``grp[it]`` for every
        task of the group (candidates beyond a task's ``n`` excepted) and writes split
        ``split[it]`` of the outputs.
    groups : tuple ``(key, t0, t1)`` of (n_groups,) arrays: the stream key (uint64) of each
        group and its tasks ``t0[g] .. t1[g]-1`` (int64).
    tasks, win, lim : ``Tasks``, ``Windows`` (host arrays) and ``Limits``, the records of
        :mod:`gpusim.walkforward.segments`.
    code, alpha : sampler code and concentration.
    ann : float periods per year; chk : (n_seg,) int64 checkpoints.
    out : ``Bests``, host arrays of shape (n_tasks, n_split, n_seg) filled in place
        (initialised by :func:`gpusim.walkforward.segments.new_outputs`).
    """
    item_grp, item_split, item_c0, item_c1 = items
    grp_key, grp_t0, grp_t1 = groups
    task_sid, task_cid, task_n, task_obj, task_h = tasks.sid, tasks.cid, tasks.n, tasks.obj, \
        tasks.h
    lo = lim.lo
    A = win.mex.shape[1]
    M = win.G.shape[1]
    for it in prange(item_grp.shape[0]):
        g = item_grp[it]
        sp = item_split[it]
        key = grp_key[g]
        E = np.empty((A, BLOCK))
        W = np.empty((A, BLOCK))
        RV = np.empty((max(M, 1), BLOCK))
        esum = np.empty(BLOCK)
        fbuf = np.empty(BLOCK)
        ebuf = np.empty(BLOCK)
        y = np.empty((4, BLOCK))
        q = np.empty(BLOCK)
        r = np.empty(BLOCK)
        smp = np.empty(BLOCK)
        scl = np.empty(BLOCK)
        sc = np.empty(BLOCK)
        acc = np.empty(BLOCK, dtype=np.bool_)
        scratch = (y, q, r, RV, scl, sc, acc)
        c1 = item_c1[it]
        for i0 in range(item_c0[it], c1, BLOCK):
            nb = min(BLOCK, c1 - i0)
            _raw_block(key, i0, code, alpha, A, E, fbuf, ebuf)
            for b in range(BLOCK):
                esum[b] = 0.0
            for j in range(A):
                for b in range(BLOCK):
                    esum[b] += E[j, b]
            last = -1
            for task in range(grp_t0[g], grp_t1[g]):
                nt = min(nb, task_n[task] - i0)
                if nt <= 0:
                    continue
                sid = task_sid[task]
                cid = task_cid[task]
                if cid != last:            # tasks sharing bounds share the weights
                    _weights(E, esum, lo[cid], smp, W)
                    last = cid
                best = (out.bs[task, sp], out.bi[task, sp], out.bsc[task, sp],
                        out.as_[task, sp], out.ai[task, sp], out.nacc[task, sp])
                _score_task(W, nt, i0, win, sid, lim, cid, ann, chk, scratch, best,
                            task_obj[task], task_h[task])
