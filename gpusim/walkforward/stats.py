"""Walk-forward window statistics (DESIGN §7), batched over windows.

Window statistics (:func:`window_stats`, written once against an array namespace ``xp`` so NumPy
and CuPy share it): the returns are centred by their overall mean ``c`` (covariances are
shift-free; centring keeps the sums small), prefix sums ``P1[u] = sum_{s<u} x_s`` and prefix sums
of outer products ``P2[u] = sum_{s<u} x_s x_s'`` are taken only at the window ends that are
needed (chunked cumulative sums, bounded memory), and every window ``[a, t)`` is
``n = t - a``, ``mean = (P1[t] - P1[a]) / n + c``,
``cov = (P2[t] - P2[a] - n m m') / (n - 1)`` with ``m = (P1[t] - P1[a]) / n``.

:func:`factorize` and :func:`bound_vectors` turn the covariances into what the search
kernels score with (:mod:`gpusim.walkforward.search_cpu`, :mod:`gpusim.walkforward.cuda`).
"""

from __future__ import annotations

import math

import numpy as np


def _prefix_outer(xp, X, counts, max_bytes=1 << 26):
    """``out[i] = sum of X[:counts[i]] row outer products`` for sorted host ``counts``."""
    N, K = X.shape
    out = xp.zeros((len(counts), K, K))
    carry = xp.zeros((K, K))
    chunk = int(max(1, min(N, max_bytes // (8 * K * K))))
    for r0 in range(0, N, chunk):
        r1 = min(N, r0 + chunk)
        Xc = X[r0:r1]
        i0 = int(np.searchsorted(counts, r0, side="right"))
        i1 = int(np.searchsorted(counts, r1, side="right"))
        if i1 > i0:
            cs = xp.cumsum(Xc[:, :, None] * Xc[:, None, :], axis=0)
            sel = xp.asarray(counts[i0:i1] - r0 - 1)
            out[i0:i1] = cs[sel] + carry
            carry = carry + cs[-1]
        else:
            carry = carry + Xc.T @ Xc
    return out


def window_stats(xp, close, a, t):
    """Mean and covariance (ddof=1) of the simple returns of bars ``a[s] .. t[s]-1`` for every
    window s at once.

    Parameters
    ----------
    xp : numpy or cupy.
    close : (T, K) float64 prices in ``xp`` (assets, then benchmark columns).
    a, t : (S,) host int arrays with ``1 <= a < t - 1``, ``t <= T``.

    Returns
    -------
    mu : (S, K), cov : (S, K, K) float64 arrays in ``xp`` (device arrays with CuPy).
    """
    a = np.asarray(a, dtype=np.int64)
    t = np.asarray(t, dtype=np.int64)
    R = close[1:] / close[:-1] - 1.0           # row s-1 is the return of bar s
    c = R.mean(axis=0)
    X = R - c
    P1 = xp.concatenate([xp.zeros((1, X.shape[1])), xp.cumsum(X, axis=0)])  # P1[k]: first k rows
    ends = np.unique(np.concatenate([a, t]) - 1)
    P2 = _prefix_outer(xp, X, ends)
    ia = xp.asarray(np.searchsorted(ends, a - 1))
    it = xp.asarray(np.searchsorted(ends, t - 1))
    n = xp.asarray((t - a).astype(np.float64))
    s1 = P1[xp.asarray(t - 1)] - P1[xp.asarray(a - 1)]
    m = s1 / n[:, None]
    s2 = P2[it] - P2[ia]
    cov = (s2 - n[:, None, None] * m[:, :, None] * m[:, None, :]) / (n - 1.0)[:, None, None]
    cov = 0.5 * (cov + xp.swapaxes(cov, 1, 2))
    return m + c, cov


def factorize(xp, cov):
    """(F (S, A, A), tri (S,) bool) with ``w' cov w = |F w|²``: ``F = L'`` (upper-triangular
    Cholesky factor) where cov is positive definite, else ``diag(sqrt(max(λ, 0))) V'`` from the
    eigendecomposition (``tri`` False). Arrays in ``xp``.
    """
    S, _A, _ = cov.shape
    tri = np.ones(S, dtype=np.bool_)
    try:
        L = xp.linalg.cholesky(cov)
        ok = bool(xp.isfinite(L).all()) if S else True
    except Exception:  # numpy.linalg.LinAlgError / cupy's, for any matrix of the batch
        ok = False
    if ok:
        return xp.ascontiguousarray(xp.swapaxes(L, 1, 2)), xp.asarray(tri)
    F = xp.empty_like(cov)
    for s in range(S):
        try:
            L = xp.linalg.cholesky(cov[s])
            if not bool(xp.isfinite(L).all()):
                raise ValueError
            F[s] = L.T
        except Exception:
            lam, V = xp.linalg.eigh(cov[s])
            F[s] = xp.sqrt(xp.maximum(lam, 0.0))[:, None] * V.T
            tri[s] = False
    return xp.ascontiguousarray(F), xp.asarray(tri)


def var_floors(xp, cov, ann):
    """(S,) annual variance floors of the windows' covariances ``cov`` (S, A, A):
    ``gpusim.mvo.var_floor`` of each (the same float steps, so the same numbers): a candidate at
    or below its window's floor is riskless and max_sharpe never chooses it. Arrays in ``xp``.
    """
    from gpusim.mvo import VOL_FLOOR_RTOL

    d = xp.maximum(xp.diagonal(cov, axis1=1, axis2=2).max(axis=1), 0.0)
    v = VOL_FLOOR_RTOL * xp.sqrt(ann * d)
    return xp.ascontiguousarray(v * v)


def bound_vectors(xp, cov, iters: int = 12):
    """(S, A) vectors ``g = cov u / sqrt(u' cov u)`` with ``u`` near the top eigenvector of each
    covariance (power iterations). For any weights, ``w' cov w >= (g . w)²`` (Cauchy-Schwarz in
    the cov inner product), whatever ``u`` is; with the top eigenvector the bound is tight for
    most portfolios, which lets the search skip candidates that cannot win. Arrays in ``xp``.
    """
    S, A, _ = cov.shape
    u = xp.full((S, A), 1.0 / math.sqrt(max(A, 1)))
    for _ in range(iters):
        u = xp.einsum("sij,sj->si", cov, u)
        n = xp.sqrt(xp.sum(u * u, axis=1))
        u = u / xp.where(n > 0, n, 1.0)[:, None]
    cu = xp.einsum("sij,sj->si", cov, u)
    d = xp.sum(u * cu, axis=1)
    return xp.ascontiguousarray(xp.where((d > 0)[:, None], cu / xp.sqrt(xp.where(d > 0, d, 1.0))
                                         [:, None], 0.0))
