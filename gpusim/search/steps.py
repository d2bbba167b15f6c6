"""What the CPU and CUDA weight-search kernels share: the :class:`Stream` record of their
candidates, :func:`upper_doubled` / :func:`upper_packed` (the host-side operands of the symmetric
scorers) and
:func:`heap_replace` (the CPU tasks' top-k heaps, compiled with ``njit`` in
:mod:`gpusim.search.cpu`).

Order of candidates everywhere: Sharpe descending, then candidate index ascending.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class Stream(NamedTuple):
    """The candidates of a search: stream ``key`` (uint64, ``cpu_ref.rng.seed_key_nb(seed)``),
    sampler ``code`` (int, :data:`cpu_ref.rng.Sampler`) and concentration ``alpha`` (float),
    weight bounds ``lo``, ``hi`` ((A,) float64, host or device). Candidate ``i`` is
    ``cpu_ref.rng.sample(key, i, code, alpha, lo, hi, sum(lo), w)``.
    """

    key: Any
    code: int
    alpha: float
    lo: Any
    hi: Any


def upper_doubled(cov: np.ndarray) -> np.ndarray:
    """The upper triangle of ``cov`` with its off-diagonal entries doubled (zeros below), so
    that ``w'Sw = sum_j w_j sum_{k>=j} U_jk w_k`` (the symmetric scorers of both backends).
    """
    cov = np.asarray(cov, dtype=np.float64)
    return np.triu(cov, 1) * 2.0 + np.diag(np.diag(cov))


def upper_packed(cov: np.ndarray) -> np.ndarray:
    """The rows of :func:`upper_doubled` from the diagonal on, concatenated: (A (A+1) / 2,)
    ``[U_00, U_01, ..., U_0,A-1, U_11, ..., U_A-1,A-1]`` (the CUDA kernel walks it in order).
    """
    U = upper_doubled(cov)
    return np.ascontiguousarray(U[np.triu_indices(U.shape[0])])


def heap_replace(hs, hi, s, i):
    """Replace the root of the min-heap (hs, hi) (k,) by (s, i) and restore the heap.

    The heap is ordered by "worse first": (a) is worse than (b) when ``a_s < b_s``, or
    ``a_s == b_s`` and ``a_i > b_i`` (a larger index loses a tie), so the root is the k-th best
    kept. Empty slots are (-inf, -1). Callers replace only when (s, i) beats the root.
    """
    k = hs.shape[0]
    p = 0
    while True:
        c = 2 * p + 1
        if c >= k:
            break
        d = c + 1
        if d < k and (hs[d] < hs[c] or (hs[d] == hs[c] and hi[d] > hi[c])):
            c = d
        if hs[c] < s or (hs[c] == s and hi[c] > i):
            hs[p] = hs[c]
            hi[p] = hi[c]
            p = c
        else:
            break
    hs[p] = s
    hi[p] = i
