"""Reference estimators of (mu, cov) on one window of returns (DESIGN §7): the oracle of
:mod:`gpusim.walkforward.estimators`. Plain loops over one (n, A) window, two passes.

``sample_stats``       mean, covariance (ddof=1)
``ewma_stats``         pandas ``ewm(halflife=h)`` mean and covariance (adjust=True, bias=False)
``ledoit_wolf_cov``    scikit-learn ``LedoitWolf`` covariance (identity target, MLE 1/n)
"""

from __future__ import annotations

import math

import numpy as np


def sample_stats(r):
    """Mean (A,) and covariance (A, A) with ddof=1 of the returns ``r`` (n, A)."""
    r = np.asarray(r, dtype=np.float64)
    n, A = r.shape
    mu = np.array([sum(r[i, j] for i in range(n)) / n for j in range(A)])
    cov = np.empty((A, A))
    for j in range(A):
        for k in range(A):
            cov[j, k] = sum((r[i, j] - mu[j]) * (r[i, k] - mu[k]) for i in range(n)) / (n - 1)
    return mu, cov


def ewma_stats(r, halflife):
    """Exponentially weighted mean and covariance of ``r`` (n, A) read at its last row.

    Row ``i`` has weight ``w_i = (1 - a)^(n-1-i)`` with ``a = 1 - exp(-ln 2 / halflife)``;
    ``mu = sum w r / sum w``; ``cov = sum w (r - mu)(r - mu)' / sum w`` times the bias
    correction ``(sum w)^2 / ((sum w)^2 - sum w^2)``.
    """
    r = np.asarray(r, dtype=np.float64)
    n, A = r.shape
    decay = math.exp(-math.log(2.0) / halflife)
    w = [decay ** (n - 1 - i) for i in range(n)]
    sw = sum(w)
    sw2 = sum(x * x for x in w)
    mu = np.array([sum(w[i] * r[i, j] for i in range(n)) / sw for j in range(A)])
    cov = np.empty((A, A))
    for j in range(A):
        for k in range(A):
            c = sum(w[i] * (r[i, j] - mu[j]) * (r[i, k] - mu[k]) for i in range(n)) / sw
            cov[j, k] = c * sw * sw / (sw * sw - sw2)
    return mu, cov


def ledoit_wolf_cov(r):
    """Ledoit-Wolf shrunk covariance of ``r`` (n, A), toward ``m I`` (``m`` = mean variance).

    ``S`` = MLE covariance (``1/n``) of the centred returns ``x``; ``m = trace(S) / A``;
    ``d2 = |S - m I|_F^2 / A``; ``b2 = min(d2, sum_i |x_i x_i' - S|_F^2 / (A n^2))``;
    shrinkage ``b2 / d2``; result ``(1 - b2/d2) S + (b2/d2) m I`` (scikit-learn's estimate).
    """
    r = np.asarray(r, dtype=np.float64)
    n, A = r.shape
    mu, _ = sample_stats(r)
    x = r - mu
    S = np.empty((A, A))
    for j in range(A):
        for k in range(A):
            S[j, k] = sum(x[i, j] * x[i, k] for i in range(n)) / n
    if A == 1:
        return S
    m = sum(S[j, j] for j in range(A)) / A
    d2 = sum((S[j, k] - (m if j == k else 0.0)) ** 2 for j in range(A) for k in range(A)) / A
    b2 = 0.0
    for i in range(n):
        b2 += sum((x[i, j] * x[i, k] - S[j, k]) ** 2 for j in range(A) for k in range(A))
    b2 = min(d2, b2 / (A * n * n))
    s = 0.0 if b2 == 0 else b2 / d2
    out = (1.0 - s) * S
    for j in range(A):
        out[j, j] += s * m
    return out
