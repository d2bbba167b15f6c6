"""What the walk-forward search kernels (CPU and CUDA) share: their grouped arguments
(:class:`Tasks`, :class:`Windows`, :class:`Limits`), their outputs (:class:`Bests`: per task,
split and segment, allocated by :func:`new_outputs` and reduced to one best per task and
checkpoint by :func:`reduce_segments`) and the pruning margin :data:`PRUNE_RTOL`.

The groups are NamedTuples of arrays (and scalars): Numba passes them to ``njit`` functions and
to CUDA kernels as single arguments, so a kernel takes a dozen arguments instead of thirty.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

PRUNE_RTOL = 1e-9
"""A candidate is pruned (not scored) when its Sharpe bound is below ``best * (1 - PRUNE_RTOL)``:
the margin keeps the exact pruning rule of both kernels clear of the bound's rounding."""




class Tasks(NamedTuple):
    """The search tasks, (n_tasks,) arrays: task ``t`` scores candidates ``0 .. n[t]-1``
    on window ``sid[t]`` under bounds set ``cid[t]`` by objective code ``obj[t]`` (int64,
    :data:`cpu_ref.walkforward.OBJECTIVES`) with ``h[t]`` = risk aversion / 2 (float64).
    """

    sid: Any
    cid: Any
    n: Any
    obj: Any
    h: Any


class Windows(NamedTuple):
    """Per estimation window ``s`` (float64 / bool arrays, host or device): ``F`` (S, A, A) a
    factor of the covariance (``w'Σw = |F w|²``), ``tri`` (S,) whether ``F[s]`` is upper
    triangular, ``mex`` (S, A) annual excess means ``ann mu - rf``, ``gb`` (S, A) variance
    bound vectors (:func:`gpusim.walkforward.stats.bound_vectors`), ``G`` (S, M, A) constraint
    rows; ``CC`` (S, K, A) and ``cv`` (S, K): per cap, the assets' covariances with its
    benchmark and the benchmark's variance (zero for a volatility cap), so that a cap's risk is
    ``ann (w' cov w - 2 CC_k . w + cv_k)``; ``vfl`` (S,) the annual variance floor of each
    window (:func:`gpusim.walkforward.stats.var_floors`): max_sharpe scores a candidate at or
    below it -inf (riskless, never chosen).
    """

    F: Any
    tri: Any
    mex: Any
    gb: Any
    G: Any
    CC: Any
    cv: Any
    vfl: Any


class Limits(NamedTuple):
    """Per bounds set ``c``: ``lo``, ``hi`` (C, A) weight bounds and ``gl``, ``gu`` (C, M) row
    bounds and ``cap2`` (C, K) squared risk caps (inf: none) (float64 arrays); ``eqtol`` (M,)
    tolerances of the equality rows; ``cash`` (bool) whether weights may sum to less than 1
    (:mod:`cpu_ref.walkforward`).
    """

    lo: Any
    hi: Any
    gl: Any
    gu: Any
    cap2: Any
    eqtol: Any
    cash: bool


class Bests(NamedTuple):
    """Search outputs, (n_tasks, n_split, n_seg) arrays: best accepted score ``bs``, index ``bi``
    and scale ``bsc``; best score ``as_`` and index ``ai`` ignoring the constraints; accepted
    counts ``nacc``. Slicing every field at ``[task, split]`` gives one work item's (n_seg,)
    rows.
    """

    bs: Any
    bi: Any
    bsc: Any
    as_: Any
    ai: Any
    nacc: Any


def new_outputs(n_tasks: int, n_split: int, n_seg: int, xp=np) -> Bests:
    """Initialised search outputs in ``xp``: -inf scores, -1 indices, zero scales and counts."""
    shape = (n_tasks, n_split, n_seg)
    return Bests(xp.full(shape, -np.inf), xp.full(shape, -1, dtype=np.int64), xp.zeros(shape),
                 xp.full(shape, -np.inf), xp.full(shape, -1, dtype=np.int64),
                 xp.zeros(shape, dtype=np.int64))


def reduce_segments(bs, bi, bsc, as_, ai, nacc):
    """Best per task and checkpoint from per-(split, segment) bests (host arrays).

    Returns a dict of (n_tasks, n_seg) arrays: ``best``, ``sharpe``, ``scale`` (accepted;
    -1 / -inf / 0 when none), ``best_any``, ``sharpe_any`` and ``n_accepted`` (cumulative).
    Ties go to the smaller candidate index.
    """
    nt, _ns, nseg = bs.shape
    out = {k: np.empty((nt, nseg), dtype=dt) for k, dt in (
        ("best", np.int64), ("sharpe", float), ("scale", float), ("best_any", np.int64),
        ("sharpe_any", float), ("n_accepted", np.int64))}
    big = np.iinfo(np.int64).max
    for c in range(nseg):
        for s_arr, i_arr, name_i, name_s in ((bs, bi, "best", "sharpe"),
                                             (as_, ai, "best_any", "sharpe_any")):
            S = s_arr[:, :, :c + 1].reshape(nt, -1)
            Ix = i_arr[:, :, :c + 1].reshape(nt, -1)
            top = S.max(axis=1)
            hit = (S == top[:, None]) & (Ix >= 0)
            pos = np.argmin(np.where(hit, Ix, big), axis=1)
            found = hit.any(axis=1)
            out[name_i][:, c] = np.where(found, Ix[np.arange(nt), pos], -1)
            out[name_s][:, c] = np.where(found, top, -np.inf)
            if name_i == "best":
                sc = bsc[:, :, :c + 1].reshape(nt, -1)
                out["scale"][:, c] = np.where(found, sc[np.arange(nt), pos], 0.0)
        out["n_accepted"][:, c] = nacc[:, :, :c + 1].sum(axis=(1, 2))
    return out
