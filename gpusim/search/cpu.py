"""CPU fast path of the weight search: fused generate -> score -> top-k, parallel over cores.

No population is ever stored: each task generates a block of ``BLOCK`` candidates at a time into
a small (A, BLOCK) scratch array (candidates innermost, so the inner loops vectorise), scores
them and keeps a task-local top-k in a binary min-heap of size k whose root (the task's k-th
best so far) is a running threshold held in two locals: almost every candidate is rejected by
one compare, an accepted one costs O(log k). The heaps live in :class:`CpuSearch` and persist
across kernel calls (chunks), so the threshold keeps rising over the whole search and the cost
per candidate does not depend on k. The weights come from the shared
counter-based RNG (:mod:`cpu_ref.rng`), so they are bit-identical to the reference and the GPU.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from cpu_ref.rng import Sampler, bits_nb, neg_log_reduced_nb, odd53_nb, std_gamma_nb, uniform_nb
from gpusim.search.steps import heap_replace, upper_doubled

BLOCK = 256
# Up to this many assets the block is scored by the hand-written symmetric kernel
# (_score_block_sym: half the flops of S @ W, register-friendly); above, by a BLAS product.
SYM_MAX_A = 512
_MANT = np.int64((1 << 52) - 1)
_EXP1 = np.int64(1023 << 52)
_SQRT2 = 1.4142135623730951


_heap_replace = njit(cache=True, inline="always", error_model="numpy")(heap_replace)


@njit(cache=True, error_model="numpy")
def _generate_block(key, i0, nb, code, alpha, lo, hi, lo_sum, Wt, ok, ssum):
    """Fill Wt[:, :nb] (A, BLOCK) with candidates i0..i0+nb-1; ok[b] False when over ``hi``.

    ``ssum`` (BLOCK,) is scratch for the row sums.
    """
    A = Wt.shape[0]
    for b in range(BLOCK):
        ssum[b] = 0.0
    for j in range(A):
        row = Wt[j]
        if code == Sampler.dirichlet:
            # -log(u) with the reduction u = f 2**(e-53) read off the float's bits (vectorises;
            # the same (f, e) as the compare chain of cpu_ref.rng.neg_log_uniform, exactly)
            for b in range(nb):
                row[b] = float(np.int64(odd53_nb(bits_nb(key, i0 + b, j, 0))))
            ib = row.view(np.int64)
            for b in range(nb):
                v = ib[b]
                ex = (v >> 52) - 1023
                ib[b] = (v & _MANT) | _EXP1  # the same float scaled to [1, 2)
                f = row[b]
                if f > _SQRT2:
                    f = f * 0.5
                    ex += 1
                row[b] = neg_log_reduced_nb(f, float(ex))
                ssum[b] += row[b]
        else:
            for b in range(nb):
                if code == Sampler.uniform:
                    e = uniform_nb(key, i0 + b, j, 0)
                else:
                    e = std_gamma_nb(key, i0 + b, j, alpha)
                row[b] = e
                ssum[b] += e
    for b in range(nb):
        ssum[b] = (1.0 - lo_sum) / ssum[b]
        ok[b] = True
    for j in range(A):
        for b in range(nb):
            w = lo[j] + Wt[j, b] * ssum[b]
            Wt[j, b] = w
            if w > hi[j]:
                ok[b] = False


@njit(cache=True, error_model="numpy")
def _score_block(Wt, nb, ok, Saug, ann, rf, vfl, Y, q, out):
    """Ex-ante Sharpe (ann mu.w - rf) / sqrt(ann w'Sw) of the first nb candidates in Wt;
    -inf for a candidate whose annual variance is at or below ``vfl`` (riskless: never ranked).
    Returns how many of those riskless candidates are within the bounds (``ok`` (BLOCK,)).

    ``Saug`` is (A+1, A): the covariance with the row ``ann * mu`` appended, so one BLAS
    matrix product ``Saug @ Wt`` gives both S w and the annual return for the whole block.
    ``Y`` (A+1, BLOCK) and ``q`` (BLOCK,) are the caller's scratch (no allocation per block).
    """
    A = Wt.shape[0]
    np.dot(Saug, Wt, Y)
    for b in range(BLOCK):
        q[b] = 0.0
    for j in range(A):
        for b in range(BLOCK):
            q[b] += Wt[j, b] * Y[j, b]
    low = 0
    for b in range(nb):
        v = ann * q[b]
        if v > vfl:     # the only compare: the floor (>= 0) also rejects v <= 0
            out[b] = (Y[A, b] - rf) / math.sqrt(v)
        else:
            out[b] = -np.inf
            low += ok[b]
    return low


@njit(cache=True, error_model="numpy")
def _score_block_sym(Wt, nb, ok, U, amu, ann, rf, vfl, y, q, r, out):
    """The same Sharpe (and riskless count) as :func:`_score_block`, by the symmetric form
    ``w'Sw = sum_j w_j (S_jj w_j + 2 sum_{k>j} S_jk w_k)``: ``U`` is the upper triangle of S
    with doubled off-diagonal entries, ``amu = ann * mu``. About A**2 + 4A flops per candidate
    instead of 2 A**2 + 4A; the inner loops run over the block's candidates (vectorised), eight
    rows of U at a time so each pass over ``y`` does eight multiply-adds.
    ``y``, ``q``, ``r`` (BLOCK,) are the caller's scratch.
    """
    A = Wt.shape[0]
    for b in range(BLOCK):
        q[b] = 0.0
        r[b] = 0.0
    for j in range(A):
        wj = Wt[j]
        d = U[j, j]
        for b in range(BLOCK):
            y[b] = d * wj[b]
        k = j + 1
        while k + 7 < A:
            u0, u1, u2, u3 = U[j, k], U[j, k + 1], U[j, k + 2], U[j, k + 3]
            u4, u5, u6, u7 = U[j, k + 4], U[j, k + 5], U[j, k + 6], U[j, k + 7]
            w0, w1, w2, w3 = Wt[k], Wt[k + 1], Wt[k + 2], Wt[k + 3]
            w4, w5, w6, w7 = Wt[k + 4], Wt[k + 5], Wt[k + 6], Wt[k + 7]
            for b in range(BLOCK):
                y[b] += (((u0 * w0[b] + u1 * w1[b]) + (u2 * w2[b] + u3 * w3[b]))
                         + ((u4 * w4[b] + u5 * w5[b]) + (u6 * w6[b] + u7 * w7[b])))
            k += 8
        while k + 3 < A:
            u0, u1, u2, u3 = U[j, k], U[j, k + 1], U[j, k + 2], U[j, k + 3]
            w0, w1, w2, w3 = Wt[k], Wt[k + 1], Wt[k + 2], Wt[k + 3]
            for b in range(BLOCK):
                y[b] += (u0 * w0[b] + u1 * w1[b]) + (u2 * w2[b] + u3 * w3[b])
            k += 4
        while k < A:
            u0 = U[j, k]
            w0 = Wt[k]
            for b in range(BLOCK):
                y[b] += u0 * w0[b]
            k += 1
        m = amu[j]
        for b in range(BLOCK):
            q[b] += wj[b] * y[b]
            r[b] += m * wj[b]
    low = 0
    for b in range(nb):
        v = ann * q[b]
        if v > vfl:
            out[b] = (r[b] - rf) / math.sqrt(v)
        else:
            out[b] = -np.inf
            low += ok[b]
    return low




@njit(parallel=True, nogil=True, cache=True, error_model="numpy")
def search_cpu_nb(stream, start, n, Saug, U, ann, rf, vfl, heap_s, heap_i, n_ok, n_low, sym):
    """Score candidates ``start .. start+n-1`` into the per-task heaps (updated in place).

    Parameters
    ----------
    stream : :class:`gpusim.search.steps.Stream` (host arrays) — key, sampler, bounds.
    Saug : (A+1, A) float64, the per-bar covariance with the row ``ann * mu`` appended.
    U : (A, A) :func:`gpusim.search.steps.upper_doubled` of the covariance (symmetric scorer).
    vfl : the annual variance floor (:func:`gpusim.mvo.var_floor`): a candidate at or below it
        is riskless (Sharpe undefined) and never enters a heap.
    heap_s, heap_i : (n_tasks, k) float64 / int64 per-task min-heaps (root = worst kept, by
        (score asc, index desc)); empty slots are (-inf, -1). See
        :func:`gpusim.search.steps.heap_replace`.
    n_ok : (n_tasks,) int64, incremented by the candidates within the upper bounds.
    n_low : (n_tasks,) int64, incremented by those of them that are riskless (at the floor).
    sym : score with :func:`_score_block_sym` (callers pass ``A <= SYM_MAX_A``) or by a BLAS
        product (:func:`_score_block`).
    """
    key, code, alpha, lo, hi = stream
    A = U.shape[0]
    n_tasks = heap_s.shape[0]
    lo_sum = 0.0
    amu = np.empty(A)
    for j in range(A):
        lo_sum += lo[j]
        amu[j] = Saug[A, j]
    nblocks = (n + BLOCK - 1) // BLOCK
    per = (nblocks + n_tasks - 1) // n_tasks
    for task in prange(n_tasks):
        Wt = np.zeros((A, BLOCK))
        ok = np.zeros(BLOCK, dtype=np.bool_)
        sc = np.empty(BLOCK)
        Y = np.empty((A + 1, BLOCK))
        q = np.empty(BLOCK)
        ssum = np.empty(BLOCK)
        r = np.empty(BLOCK)
        y = np.empty(BLOCK)
        hs = heap_s[task]
        hi_ = heap_i[task]
        th_s = hs[0]  # the task's running k-th best: (score, index) of the heap root
        th_i = hi_[0]
        count = 0
        low = 0
        for blk in range(task * per, min((task + 1) * per, nblocks)):
            i0 = start + blk * BLOCK
            nb = min(BLOCK, start + n - i0)
            _generate_block(key, i0, nb, code, alpha, lo, hi, lo_sum, Wt, ok, ssum)
            if sym:
                low += _score_block_sym(Wt, nb, ok, U, amu, ann, rf, vfl, y, q, r, sc)
            else:
                low += _score_block(Wt, nb, ok, Saug, ann, rf, vfl, Y, q, sc)
            for b in range(nb):
                if ok[b]:
                    count += 1
                    s = sc[b]
                    # better than the root in (score desc, index asc); NaN and -inf never pass
                    if s > th_s or (s == th_s and th_i >= 0 and i0 + b < th_i):
                        _heap_replace(hs, hi_, s, i0 + b)
                        th_s = hs[0]
                        th_i = hi_[0]
        n_ok[task] += count
        n_low[task] += low


class CpuSearch:
    """State of one CPU search across chunks: the per-task heaps and the valid count.

    ``run(start, n)`` scores a range into the heaps and returns its count of candidates within
    the bounds (``n_riskless``: how many of them were at the variance floor since the last
    ``reset()``, never ranked); ``best()`` merges the heaps into the top-k (Sharpe desc, index
    asc); ``reset()`` empties them. BLAS is pinned to one thread while it lives (the cores run
    tasks); ``close()`` restores it.

    Parameters
    ----------
    stream : :class:`gpusim.search.steps.Stream`; mu (A,), cov (A, A) per bar; ann, rf floats;
    vfl : the annual variance floor (:func:`gpusim.mvo.var_floor`);
    k : top-k size; n_tasks : heaps (default: 4 per Numba thread, 1 per thread when k > 1000 so
        the heaps stay small).
    """

    def __init__(self, stream, mu, cov, ann, rf, k, vfl, n_tasks=None):
        import numba
        from threadpoolctl import threadpool_limits

        A = mu.shape[0]
        cov = np.ascontiguousarray(cov, dtype=np.float64)
        self.Saug = np.empty((A + 1, A))
        self.Saug[:A] = cov
        self.Saug[A] = float(ann) * np.asarray(mu, dtype=np.float64)
        self.U = upper_doubled(cov)
        self.stream, self.ann, self.rf, self.k = stream, float(ann), float(rf), int(k)
        self.vfl = float(vfl)
        if n_tasks is None:
            n_tasks = numba.get_num_threads() * (4 if k <= 1000 else 1)
        self.n_tasks = int(n_tasks)
        self.sym = A <= SYM_MAX_A
        self.limits = threadpool_limits(1, user_api="blas")
        self.reset()

    def reset(self):
        self.heap_s = np.full((self.n_tasks, self.k), -np.inf)
        self.heap_i = np.full((self.n_tasks, self.k), -1, dtype=np.int64)
        self.n_ok = np.zeros(self.n_tasks, dtype=np.int64)
        self.n_low = np.zeros(self.n_tasks, dtype=np.int64)

    def run(self, start, n):
        before = int(self.n_ok.sum())
        search_cpu_nb(self.stream, start, n, self.Saug, self.U, self.ann, self.rf, self.vfl,
                      self.heap_s, self.heap_i, self.n_ok, self.n_low, self.sym)
        return int(self.n_ok.sum()) - before

    @property
    def n_riskless(self) -> int:
        return int(self.n_low.sum())

    def best(self):
        from gpusim.search.inputs import merge_topk

        return merge_topk(np, self.heap_s.ravel(), self.heap_i.ravel(), self.k)

    def close(self):
        self.limits.restore_original_limits()
