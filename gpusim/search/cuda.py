"""numba.cuda fused search kernel: generate -> score ex-ante Sharpe -> per-thread top-k.

Each thread walks candidates ``start + tid, start + tid + nthreads, ...`` (grid stride), builds
each weight vector in a per-thread local array with the shared counter-based sampler, scores it
and keeps its own top-k in global memory (rows of ``top_s``/``top_i``); the host (or CuPy on
the device) merges the rows. No population is stored. Runs unchanged in Numba's CUDA simulator.

Import only after the backend chose the GPU (this imports numba.cuda).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from gpusim._cuda.launch import MAX_ASSETS, block_size, grid_for, resident_threads
from gpusim._cuda.rng import sample_dev
from gpusim.search.steps import Stream, topk_insert, upper_doubled

topk_insert_dev = cuda.jit(device=True)(topk_insert)


def _make_search_kernel(ft):
    """The fused kernel, scoring in precision ``ft`` (np.float64 or np.float32).

    Weights are always generated in float64 (identical populations on every backend and dtype);
    a float32 kernel scores a float32 copy against a float32 ``Uaug`` and returns float64
    Sharpe values computed from its float32 sums. The quadratic form runs over the upper
    triangle (A (A + 1) / 2 multiply-adds per candidate, not A**2).
    """

    @cuda.jit
    def kernel(stream, lo_sum, start, n, Uaug, ann, rf, top):
        key, code, alpha, lo, hi = stream
        top_s, top_i, n_ok = top
        tid = cuda.grid(1)
        nthreads = cuda.gridsize(1)
        if tid >= top_s.shape[0]:
            return
        A = lo.shape[0]
        buf = cuda.local.array(MAX_ASSETS, float64)
        w = buf[:A]
        wf = cuda.local.array(MAX_ASSETS, ft)  # the weights in the scoring precision
        ts = top_s[tid]
        ti = top_i[tid]
        count = 0
        for r in range(tid, n, nthreads):
            i = start + r
            if not sample_dev(key, i, code, alpha, lo, hi, lo_sum, w):
                continue
            count += 1
            for j in range(A):
                wf[j] = ft(w[j])
            ret = ft(0.0)
            q = ft(0.0)
            for j in range(A):   # w'Sw = sum_j w_j (S_jj w_j + 2 sum_{k>j} S_jk w_k)
                sj = Uaug[j, j] * wf[j]
                for kk in range(j + 1, A):
                    sj += Uaug[j, kk] * wf[kk]
                q += wf[j] * sj
                ret += Uaug[A, j] * wf[j]
            v = ann * np.float64(q)
            if v > 0.0:
                s = (np.float64(ret) - rf) / math.sqrt(v)
                if s == s:
                    topk_insert_dev(ts, ti, s, i)
        n_ok[tid] += count

    return kernel


search_cuda = _make_search_kernel(np.float64)
search_cuda.__doc__ = """One launch over candidates ``start .. start+n-1`` (float64 scoring).

``stream``: :class:`gpusim.search.steps.Stream` (device lo, hi (A,)) with ``lo_sum = sum(lo)``;
Uaug (A+1, A) = :func:`gpusim.search.steps.upper_doubled` of
the covariance (upper triangle, off-diagonal entries doubled) with the row ``ann * mu`` appended;
``top = (top_s, top_i, n_ok)``: top_s (T, k) float64 and top_i (T, k) int64 initialised to
-inf / -1 (T = threads in the grid), n_ok (T,) int64 counts the candidates within the upper
bounds per thread.
"""
search_cuda_f32 = _make_search_kernel(np.float32)  # same, Uaug float32: scoring in float32


def plan_threads(n: int, k: int, *, threads_per_block: int | None = None,
                 max_entries: int = 1 << 22, kernel=None) -> tuple[int, int]:
    """(blocks, threads_per_block) of a grid-stride launch over ``n`` candidates: at most one
    thread per candidate, at most a resident grid (:func:`gpusim._cuda.launch.resident_threads`
    of ``kernel``), and T * k <= ``max_entries`` per-thread top-k entries (T = threads).
    """
    tpb = block_size(threads_per_block)
    max_threads = max(tpb, max_entries // max(k, 1))
    threads = min(n, max_threads, resident_threads(tpb, kernel))
    return grid_for(threads, tpb), tpb


class SearchLauncher:
    """Holds the device inputs of one search and launches chunks.

    ``xp`` is the backend's array namespace: CuPy on a real GPU (inputs, per-thread top-k rows
    and their merge all stay on the device; only k results come back per chunk), NumPy in the
    CUDA simulator. ``merge(xp, scores, index, k)`` merges the per-thread rows.
    """

    def __init__(self, key, code, alpha, lo, hi, mu, cov, ann, rf, k, chunk, *, xp, merge,
                 threads_per_block=None, dtype="float64"):
        A = mu.shape[0]
        if A > MAX_ASSETS:
            raise ValueError(f"the GPU search supports at most {MAX_ASSETS} assets (got {A}); "
                             "use backend='cpu' for larger universes")
        Uaug = np.empty((A + 1, A))
        Uaug[:A] = upper_doubled(cov)
        Uaug[A] = ann * mu
        self.kernel = search_cuda_f32 if dtype == "float32" else search_cuda
        self.blocks, self.tpb = plan_threads(chunk, k, threads_per_block=threads_per_block,
                                             kernel=self.kernel)
        self.T = self.blocks * self.tpb
        self.xp, self.merge, self.k = xp, merge, k
        self.stream = Stream(np.uint64(key), int(code), float(alpha),
                             xp.asarray(lo, dtype=np.float64), xp.asarray(hi, dtype=np.float64))
        self.args = (float(np.sum(lo)), xp.asarray(Uaug, dtype=np.dtype(dtype)), float(ann),
                     float(rf))

    def run(self, start: int, n: int):
        """Launch over candidates start..start+n-1; return host (scores (k,), index (k,), n_ok)."""
        xp = self.xp
        top_s = xp.full((self.T, self.k), -np.inf)
        top_i = xp.full((self.T, self.k), -1, dtype=np.int64)
        n_ok = xp.zeros(self.T, dtype=np.int64)
        lo_sum, Uaug, ann, rf = self.args
        self.kernel[self.blocks, self.tpb](self.stream, lo_sum, np.int64(start), np.int64(n), Uaug,
                                           ann, rf, (top_s, top_i, n_ok))
        s, i = self.merge(xp, top_s.ravel(), top_i.ravel(), self.k)
        if xp is np:
            return s, i, int(n_ok.sum())
        return xp.asnumpy(s), xp.asnumpy(i), int(n_ok.sum())
