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
def ret_var_1d_nb(w, mu, cov, ann):
    """Ex-ante annual return ``ann * mu.w`` and annual variance ``ann * w' cov w`` of w (A,)."""
    A = w.shape[0]
    ret = 0.0
    for j in range(A):
        ret += mu[j] * w[j]
    ret *= ann
    var = 0.0
    for j in range(A):
        for k in range(A):
            var += w[j] * cov[j, k] * w[k]
    return ret, var * ann


@njit(cache=True)
def sharpe_1d_nb(w, mu, cov, ann, rf):
    """Ex-ante (annual return, annual volatility, Sharpe) of weights w (A,).

    return = ann * mu.w, vol = sqrt(ann * w' cov w), Sharpe = (return - rf) / vol
    (-inf when the variance is not positive).
    """
    ret, var = ret_var_1d_nb(w, mu, cov, ann)
    if var > 0.0:
        vol = math.sqrt(var)
        return ret, vol, (ret - rf) / vol
    return ret, 0.0, -np.inf


@njit(parallel=True, cache=True)
def score_nb(seed, indices, code, alpha, lo, hi, mu, cov, ann, rf, var_floor=0.0):
    """Regenerate candidates ``indices`` (m,) of stream ``seed`` and score them.

    ``var_floor`` (>= 0): a candidate whose annual variance ``ann * w' cov w`` is at or below it
    is riskless and its Sharpe is -inf (never ranked); its return and volatility are kept
    (``gpusim.mvo.var_floor`` gives the search's floor; 0 keeps every positive variance).

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
        ret, var = ret_var_1d_nb(W[r], mu, cov, ann)
        stats[r, 0] = ret
        stats[r, 1] = math.sqrt(var) if var > 0.0 else 0.0
        stats[r, 2] = (ret - rf) / stats[r, 1] if ok[r] and var > var_floor and var > 0.0 \
            else -np.inf
    return W, stats, ok


def search_ref(seed, start, n, code, alpha, lo, hi, mu, cov, ann, rf, k, var_floor=0.0):
    """Top-k of candidates ``start .. start+n-1`` by scoring all of them (small n only).

    Candidates over ``hi`` or with an annual variance at or below ``var_floor`` (riskless:
    Sharpe undefined) never enter it. Order: Sharpe descending, then candidate index ascending.
    Returns (indices (k',), sharpe (k',)).
    """
    idx = np.arange(start, start + n, dtype=np.int64)
    _, stats, ok = score_nb(seed, idx, code, alpha, lo, hi, mu, cov, ann, rf, var_floor)
    s = stats[:, 2]
    keep = ok & np.isfinite(s)
    idx, s = idx[keep], s[keep]
    order = np.lexsort((idx, -s))[:k]
    return idx[order], s[order]
