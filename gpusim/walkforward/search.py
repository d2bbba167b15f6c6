"""The walk-forward search dispatcher: the candidate streams of the periods
(:func:`period_keys_nb`), :func:`run_search` (the CPU kernel of
:mod:`gpusim.walkforward.search_cpu` or the CUDA one of :mod:`gpusim.walkforward.cuda`,
reduced by :func:`gpusim.walkforward.segments.reduce_segments`) and
:func:`regenerate_nb` of the chosen candidates.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from cpu_ref.rng import GOLDEN, mix64_nb, sample_nb, seed_key_nb
from gpusim.walkforward.search_cpu import BLOCK, search_cpu_nb
from gpusim.walkforward.segments import Limits, Tasks, Windows, new_outputs, reduce_segments


@njit(cache=True)
def period_keys_nb(seed, bars):
    """Seeds and stream keys (uint64) of the candidate streams of the periods at ``bars``:
    ``seed_t = mix64(seed_key(seed) + (t + 1) * GOLDEN)`` and ``key_t = seed_key(seed_t)``
    (the definition of :mod:`cpu_ref.walkforward`, re-derived here from the shared RNG).
    """
    n = bars.shape[0]
    seeds = np.empty(n, dtype=np.uint64)
    keys = np.empty(n, dtype=np.uint64)
    base = seed_key_nb(seed)
    for k in range(n):
        s = mix64_nb(base + np.uint64(bars[k] + 1) * GOLDEN)
        seeds[k] = s
        keys[k] = seed_key_nb(s)
    return seeds, keys


@njit(cache=True)
def regenerate_nb(pseeds, idx, code, alpha, lo):
    """Candidates ``idx[r]`` of the streams ``pseeds[r]`` with lower bounds ``lo[r]`` (R, A):
    the directions y (R, A) that the search scored (no upper bound applied). Host arrays.
    """
    R, A = lo.shape
    out = np.zeros((R, A))
    no_hi = np.full(A, np.inf)
    for k in range(R):
        if idx[k] < 0:
            continue
        key = seed_key_nb(pseeds[k])
        s = 0.0
        for j in range(A):
            s += lo[k, j]
        sample_nb(key, idx[k], code, alpha, lo[k], no_hi, s, out[k])
    return out


def run_search(be, xp, seed, dates, t_sid, t_cid, t_n, t_d, code, alpha, dev, lo, hi, gl, gu,
               cap, eqtol, cash, ann, chk, t_obj=None, t_lam=None):
    """Run random-search tasks on the backend ``be`` and reduce them.

    Tasks are sorted by their date index ``t_d`` (into the bar array ``dates``); tasks of one
    date form a group sharing the period's stream. ``dev`` holds the window arrays ``F``,
    ``tri``, ``mex``, ``gb``, ``G``, ``CC``, ``cv``, ``vfl`` (in ``xp``); ``lo, hi, gl, gu,
    cap`` (risk
    caps, inf: none) are the host bounds indexed by
    ``t_cid``; ``t_obj`` (objective codes, default max_sharpe) and ``t_lam`` (risk aversions)
    per task. Returns the dict of :func:`~.segments.reduce_segments` ((n_tasks, n_seg) host
    arrays). On the GPU the first call stores a
    :class:`~gpusim.walkforward.cuda.SearchGpuRunner` in ``dev["search_runner"]``, which the
    later blocks of dates of the same call reuse (inputs resident on the device).
    """
    # contiguous int64 / float64 only: one compiled signature of the kernel
    t_sid, t_cid, t_n, t_d = (np.ascontiguousarray(v, dtype=np.int64) for v in (
        t_sid, t_cid, t_n, t_d))
    lo, hi, gl, gu, cap = (np.ascontiguousarray(v, dtype=np.float64) for v in (lo, hi, gl, gu,
                                                                               cap))
    gd, first = np.unique(t_d, return_index=True)
    _, keys = period_keys_nb(np.uint64(seed), dates[gd])
    last = np.append(first[1:], len(t_d))
    grp_n = np.array([t_n[a:b].max() for a, b in zip(first, last)], dtype=np.int64)
    nt = len(t_n)
    t_obj = np.zeros(nt, np.int64) if t_obj is None else np.ascontiguousarray(t_obj, np.int64)
    t_h = 0.5 * (np.zeros(nt) if t_lam is None else np.asarray(t_lam, dtype=np.float64))
    tasks = Tasks(t_sid, t_cid, t_n, t_obj, np.ascontiguousarray(t_h))
    win = Windows(dev["F"], dev["tri"], dev["mex"], dev["gb"], dev["G"], dev["CC"], dev["cv"],
                  dev["vfl"])
    if be.name == "gpu":
        # one runner per call (``dev`` lives as long as the call): the windows, bounds and
        # checkpoints stay on the device across the blocks of dates
        if dev.get("search_runner") is None:
            from gpusim.walkforward.cuda import SearchGpuRunner

            dev["search_runner"] = SearchGpuRunner(win)
        outs = dev["search_runner"](np.repeat(keys, last - first), tasks, code, alpha,
                                    (lo, hi, gl, gu, cap, eqtol, cash), float(ann), chk)
    else:
        import numba

        lim = Limits(lo, hi, gl, gu, np.ascontiguousarray(cap * cap), eqtol, bool(cash))
        ig, isp, c0, c1, ns = plan_items(grp_n, numba.get_num_threads())
        outs = new_outputs(len(t_n), ns, len(chk))
        groups = (keys, first.astype(np.int64), last.astype(np.int64))
        search_cpu_nb((ig, isp, c0, c1), groups, tasks, code, alpha, win, lim, float(ann), chk,
                      outs)
    return reduce_segments(*outs)


def plan_items(grp_n, n_threads: int, min_per_item: int = 4 * BLOCK):
    """Work items (group, split, c0, c1) covering candidates 0..grp_n[g]-1 of every group, split
    so that there are at least ~4 items per thread; returns the arrays and the split count.
    """
    G = len(grp_n)
    want = max(1, 4 * n_threads)
    splits = max(1, min(-(-want // max(G, 1)), int(max(grp_n, default=1) // min_per_item) or 1))
    ig, isp, c0, c1 = [], [], [], []
    for g, n in enumerate(grp_n):
        step = -(-int(n) // splits)
        step = -(-step // BLOCK) * BLOCK
        for s in range(splits):
            lo, hi = s * step, min(int(n), (s + 1) * step)
            if hi > lo:
                ig.append(g)
                isp.append(s)
                c0.append(lo)
                c1.append(hi)
    return (*tuple(np.asarray(v, dtype=np.int64) for v in (ig, isp, c0, c1)), splits)
