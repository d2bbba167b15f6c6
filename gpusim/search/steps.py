"""What the CPU and CUDA weight-search kernels share: the :class:`Stream` record of their
candidates, :func:`upper_doubled` (the host-side operand of both symmetric scorers) and
:func:`topk_insert` (the per-task / per-thread top-k body, compiled with ``njit`` in
:mod:`gpusim.search.cpu` and ``cuda.jit(device=True)`` in :mod:`gpusim.search.cuda`).
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


def topk_insert(ts, ti, s, i):
    """Insert (s, i) into the descending list (ts, ti) ordered by (score desc, index asc)."""
    k = ts.shape[0]
    last = k - 1
    if not (s > ts[last] or (s == ts[last] and i < ti[last] and ti[last] >= 0)):
        return
    p = last
    while p > 0 and (s > ts[p - 1] or (s == ts[p - 1] and i < ti[p - 1])):
        ts[p] = ts[p - 1]
        ti[p] = ti[p - 1]
        p -= 1
    ts[p] = s
    ti[p] = i
