"""CPU fast path of the weight search: fused generate -> score -> top-k, parallel over cores.

No population is ever stored: each task generates a block of ``BLOCK`` candidates at a time into
a small (A, BLOCK) scratch array (candidates innermost, so the inner loops vectorise), scores
them and keeps a task-local top-k, merged on the host. The weights come from the shared
counter-based RNG (:mod:`cpu_ref.rng`), so they are bit-identical to the reference and the GPU.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from cpu_ref.rng import Sampler, bits_nb, neg_log_reduced_nb, odd53_nb, std_gamma_nb, uniform_nb
from gpusim.search.steps import topk_insert

BLOCK = 256
# Up to this many assets the block is scored by the hand-written symmetric kernel
# (_score_block_sym: half the flops of S @ W, register-friendly); above, by a BLAS product.
SYM_MAX_A = 512
_MANT = np.int64((1 << 52) - 1)
_EXP1 = np.int64(1023 << 52)
_SQRT2 = 1.4142135623730951


# topk_insert is also compiled as a CUDA device function in gpusim.search.cuda.
_topk_insert = njit(cache=True, inline="always", error_model="numpy")(topk_insert)


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
def _score_block(Wt, nb, Saug, ann, rf, Y, q, out):
    """Ex-ante Sharpe (ann mu.w - rf) / sqrt(ann w'Sw) of the first nb candidates in Wt.

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
    for b in range(nb):
        v = ann * q[b]
        out[b] = (Y[A, b] - rf) / math.sqrt(v) if v > 0.0 else -np.inf


@njit(cache=True, error_model="numpy")
def _score_block_sym(Wt, nb, U, amu, ann, rf, y, q, r, out):
    """The same Sharpe as :func:`_score_block`, by the symmetric quadratic form
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
    for b in range(nb):
        v = ann * q[b]
        out[b] = (r[b] - rf) / math.sqrt(v) if v > 0.0 else -np.inf


@njit(parallel=True, nogil=True, cache=True, error_model="numpy")
def search_cpu_nb(stream, start, n, mu, cov, U, ann, rf, k, n_tasks, sym):
    """Score candidates ``start .. start+n-1`` and return each task's top-k.

    Parameters
    ----------
    stream : :class:`gpusim.search.steps.Stream` (host arrays) — key, sampler, bounds.
    mu : (A,) per-bar mean; cov : (A, A) per-bar covariance;
    U : :func:`gpusim.search.steps.upper_doubled` of ``cov`` (for the symmetric scorer).
    sym : score with :func:`_score_block_sym` (True; callers pass ``A <= SYM_MAX_A``) or by
        a BLAS product (:func:`_score_block`).

    Returns
    -------
    scores : (n_tasks, k) float64, descending per row, -inf where empty.
    index : (n_tasks, k) int64 candidate indices, -1 where empty.
    n_ok : (n_tasks,) int64 candidates within the upper bounds, per task. Host arrays.
    """
    key, code, alpha, lo, hi = stream
    A = mu.shape[0]
    lo_sum = 0.0
    for j in range(A):
        lo_sum += lo[j]
    Saug = np.empty((A + 1, A))
    Saug[:A] = cov
    Saug[A] = ann * mu
    amu = ann * mu
    top_s = np.full((n_tasks, k), -np.inf)
    top_i = np.full((n_tasks, k), -1, dtype=np.int64)
    n_ok = np.zeros(n_tasks, dtype=np.int64)
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
        ts = top_s[task]
        ti = top_i[task]
        for blk in range(task * per, min((task + 1) * per, nblocks)):
            i0 = start + blk * BLOCK
            nb = min(BLOCK, start + n - i0)
            _generate_block(key, i0, nb, code, alpha, lo, hi, lo_sum, Wt, ok, ssum)
            if sym:
                _score_block_sym(Wt, nb, U, amu, ann, rf, y, q, r, sc)
            else:
                _score_block(Wt, nb, Saug, ann, rf, Y, q, sc)
            for b in range(nb):
                s = sc[b]
                if ok[b]:
                    n_ok[task] += 1
                    if s == s:
                        _topk_insert(ts, ti, s, i0 + b)
    return top_s, top_i, n_ok
