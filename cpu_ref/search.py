"""Reference ex-ante scoring (DESIGN §5): plain loops, one candidate at a time.

The oracle for the fused CPU search (``gpusim.search.cpu``) and the GPU kernel: it
regenerates candidates from (seed, index) with :mod:`cpu_ref.rng` and scores them with the
textbook formulas, with no blocking, no symmetry tricks and no BLAS.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .rng import sample_nb, seed_key_nb


@njit(cache=True)
def sharpe_1d_nb(w, mu, cov, ann, rf):
    """Ex-ante (annual return, annual volatility, Sharpe) of weights w (A,).

    return = ann * mu.w, vol = sqrt(ann * w' cov w), Sharpe = (return - rf) / vol
    (-inf when the variance is not positive).
    """
    A = w.shape[0]
    ret = 0.0
    for j in range(A):
        ret += mu[j] * w[j]
    ret *= ann
    var = 0.0
    for j in range(A):
        for k in range(A):
            var += w[j] * cov[j, k] * w[k]
    var *= ann
    if var > 0.0:
        vol = math.sqrt(var)
        return ret, vol, (ret - rf) / vol
    return ret, 0.0, -np.inf


@njit(parallel=True, cache=True)
def score_nb(seed, indices, code, alpha, lo, hi, mu, cov, ann, rf):
    """Regenerate candidates ``indices`` (m,) of stream ``seed`` and score them.

    Returns
    -------
    W : (m, A) weights; stats : (m, 3) annual return, volatility, Sharpe; ok : (m,) bool,
    False when a candidate breaks the upper bounds ``hi`` (its Sharpe is then -inf).
    """
    A = mu.shape[0]
    m = indices.shape[0]
    key = seed_key_nb(seed)
    lo_sum = 0.0
    for j in range(A):
        lo_sum += lo[j]
    W = np.empty((m, A))
    stats = np.empty((m, 3))
    ok = np.empty(m, dtype=np.bool_)
    for r in prange(m):
        ok[r] = sample_nb(key, indices[r], code, alpha, lo, hi, lo_sum, W[r])
        ret, vol, sh = sharpe_1d_nb(W[r], mu, cov, ann, rf)
        stats[r, 0] = ret
        stats[r, 1] = vol
        stats[r, 2] = sh if ok[r] else -np.inf
    return W, stats, ok


def search_ref(seed, start, n, code, alpha, lo, hi, mu, cov, ann, rf, k):
    """Top-k of candidates ``start .. start+n-1`` by scoring all of them (small n only).

    Order: Sharpe descending, then candidate index ascending. Returns (indices (k',), sharpe (k',)).
    """
    idx = np.arange(start, start + n, dtype=np.int64)
    _, stats, ok = score_nb(seed, idx, code, alpha, lo, hi, mu, cov, ann, rf)
    s = stats[:, 2]
    keep = ok & np.isfinite(s)
    idx, s = idx[keep], s[keep]
    order = np.lexsort((idx, -s))[:k]
    return idx[order], s[order]
