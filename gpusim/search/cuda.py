"""numba.cuda fused search kernel: generate -> score ex-ante Sharpe -> running-threshold top-k.

A launch runs a resident grid (the thread count depends on the device, never on k). Each thread
walks candidates ``start + r`` for ``r = tid, tid + nthreads, ...`` (a 32-bit unsigned offset
inside the chunk), builds the weight vector with the shared counter-based sampler into its
column of a global scratch ``W`` (A, T) (adjacent threads, adjacent addresses: coalesced; sized
to A, no fixed-size local array, no asset cap), scores it and compares it with the current
global k-th best ``(th_s, th_i)``, held in registers for the whole launch. Only candidates at
least as good go to a device candidate buffer, through an atomic counter. Between launches
:class:`SearchLauncher` merges the buffer into the top-k (CuPy on the device, NumPy in the
simulator) and refreshes the threshold. A buffer that overflows is never trusted: the launch is
rerun with the threshold raised to the k-th best of (top-k + buffer), a lower bound of the true
k-th best, so no candidate of the top-k is ever dropped (each rerun raises the threshold
strictly, since the buffer holds more than k candidates). Launch sizes grow with the candidates
seen so that the expected buffer use stays under half its capacity. No population is stored.
Runs unchanged in Numba's CUDA simulator.

Import only after the backend chose the GPU (this imports numba.cuda).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from gpusim._cuda.launch import block_size, grid_for, resident_threads
from gpusim._cuda.rng import sample_dev
from gpusim.search.steps import Stream, upper_packed

ONE = np.uint64(1)
ZERO = np.uint64(0)
MAX_LAUNCH = (1 << 32) - 1
"""Candidates per launch: the in-chunk offset is a 32-bit unsigned integer."""
SCRATCH_BYTES = 1 << 30
"""At most this much device memory for the weight scratch ``W`` (A, T) float64."""


def _make_search_kernel(ft):
    """The fused kernel, scoring in precision ``ft`` (np.float64 or np.float32).

    Weights are always generated in float64 (identical populations on every backend and dtype);
    a float32 kernel scores float32 copies against a float32 ``Up`` and returns float64 Sharpe
    values computed from its float32 sums. The quadratic form runs over the packed upper
    triangle (A (A + 1) / 2 multiply-adds per candidate, not A**2), with unsigned offsets that
    only ever grow (no 2-D index arithmetic, no negative-index wraparound).
    """

    @cuda.jit(cache=True)
    def kernel(stream, lo_sum, start, n, Up, amu, ann, rf, vfl, th, W, cand, n_ok):
        key, code, alpha, lo, hi = stream
        th_s, th_i = th
        cand_s, cand_i, count = cand
        T = n_ok.shape[1]
        tid = cuda.grid(1)
        if tid >= T:
            return
        A = np.uint64(lo.shape[0])
        Tu = np.uint64(T)
        w = W[tid::T]  # this thread's weights: A entries, T apart
        cap = cand_s.shape[0]
        nn = np.uint32(n)
        step = np.uint32(cuda.gridsize(1))
        r = np.uint32(tid)
        n_valid = 0
        n_low = 0
        while r < nn:
            i = start + np.int64(r)
            r = np.uint32(r + step)
            if not sample_dev(key, i, code, alpha, lo, hi, lo_sum, w):
                continue
            n_valid += 1
            ret = ft(0.0)
            q = ft(0.0)
            p = ZERO
            oj = np.uint64(tid)
            j = ZERO
            while j < A:   # w'Sw = sum_j w_j (S_jj w_j + 2 sum_{k>j} S_jk w_k)
                wj = ft(W[oj])
                sj = Up[p] * wj
                p += ONE
                ok = oj + Tu
                pend = p + (A - j - ONE)  # the rest of row j of Up
                while p < pend:
                    sj += Up[p] * ft(W[ok])
                    p += ONE
                    ok += Tu
                q += wj * sj
                ret += amu[j] * wj
                oj += Tu
                j += ONE
            v = ann * np.float64(q)
            if v > vfl:   # the variance floor (>= 0): riskless candidates are never ranked
                s = (np.float64(ret) - rf) / math.sqrt(v)
                # at least as good as the k-th best (score desc, index asc); NaN never passes
                if s > th_s or (s == th_s and i <= th_i):
                    slot = cuda.atomic.add(count, 0, 1)
                    if slot < cap:
                        cand_s[slot] = s
                        cand_i[slot] = i
            else:
                n_low += 1
        n_ok[0, tid] += n_valid
        n_ok[1, tid] += n_low

    return kernel


search_cuda = _make_search_kernel(np.float64)
search_cuda.__doc__ = """One launch over candidates ``start .. start+n-1`` (float64 scoring).

``stream``: :class:`gpusim.search.steps.Stream` (device lo, hi (A,)) with ``lo_sum = sum(lo)``;
``Up`` (A (A+1)/2,) = :func:`gpusim.search.steps.upper_packed` of the covariance; ``amu`` (A,)
= ``ann * mu``; ``vfl`` the annual variance floor (:func:`gpusim.mvo.var_floor`: a candidate at
or below it is riskless and never sent); ``th = (th_s, th_i)`` the k-th best so far ((-inf, -1)
while the top-k is not full); ``W`` (A * T,) float64 scratch; ``cand = (cand_s (cap,) float64,
cand_i (cap,) int64, count (1,) int64)``: candidates at least as good as ``th`` and their count
(which keeps counting past ``cap``); ``n_ok`` (2, T) int64 counts per thread (T = threads in the
grid) the candidates within the upper bounds (row 0) and those of them at the variance floor
(row 1). ``n < 2**32``.
"""
search_cuda_f32 = _make_search_kernel(np.float32)  # same, Up and amu float32: scoring in float32


def plan_threads(n: int, A: int, *, threads_per_block: int | None = None,
                 kernel=None) -> tuple[int, int]:
    """(blocks, threads_per_block) of a grid-stride launch over ``n`` candidates: at most one
    thread per candidate, at most a resident grid (:func:`gpusim._cuda.launch.resident_threads`
    of ``kernel``) and a weight scratch (A, T) of at most ``SCRATCH_BYTES``. Independent of k.
    """
    tpb = block_size(threads_per_block)
    by_memory = max(tpb, SCRATCH_BYTES // (8 * max(A, 1)))
    threads = min(n, by_memory, resident_threads(tpb, kernel))
    return grid_for(threads, tpb), tpb


class SearchLauncher:
    """Holds the device inputs and the running top-k of one search; launches chunks.

    ``xp`` is the backend's array namespace: CuPy on a real GPU (inputs, candidate buffer and
    the top-k all stay on the device; two scalars come back per launch), NumPy in the CUDA
    simulator. ``merge(xp, scores, index, k)`` merges (:func:`gpusim.search.inputs.merge_topk`).
    ``run(start, n)`` adds candidates to the top-k and returns how many were within the bounds
    (``n_riskless``: how many of those were at the variance floor ``vfl`` since ``reset()``);
    ``best()`` returns the top-k as host arrays; ``reset()`` empties it. ``buffer``: candidate
    buffer capacity (default ``max(4 k, 2**16)``; at least k + 1).
    """

    def __init__(self, key, code, alpha, lo, hi, mu, cov, ann, rf, k, chunk, *, xp, merge, vfl,
                 threads_per_block=None, dtype="float64", buffer=None):
        A = mu.shape[0]
        ft = np.dtype(dtype)
        self.kernel = search_cuda_f32 if dtype == "float32" else search_cuda
        self.blocks, self.tpb = plan_threads(min(chunk, MAX_LAUNCH), A,
                                             threads_per_block=threads_per_block,
                                             kernel=self.kernel)
        self.T = self.blocks * self.tpb
        self.xp, self.merge, self.k = xp, merge, int(k)
        cap = int(buffer) if buffer is not None else max(4 * self.k, 1 << 16)
        self.cap = max(cap, self.k + 1)
        self.stream = Stream(np.uint64(key), int(code), float(alpha),
                             xp.asarray(lo, dtype=np.float64), xp.asarray(hi, dtype=np.float64))
        self.lo_sum = float(np.sum(lo))
        self.Up = xp.asarray(upper_packed(cov), dtype=ft)
        self.amu = xp.asarray(float(ann) * np.asarray(mu, dtype=np.float64), dtype=ft)
        self.ann, self.rf, self.vfl = float(ann), float(rf), float(vfl)
        self.W = xp.zeros(A * self.T)
        self.cand = (xp.empty(self.cap), xp.empty(self.cap, dtype=np.int64),
                     xp.zeros(1, dtype=np.int64))
        self.n_launches = self.n_reruns = 0
        self.reset()

    def reset(self):
        xp = self.xp
        self.top_s = xp.empty(0)
        self.top_i = xp.empty(0, dtype=np.int64)
        self.th = (-math.inf, -1)
        self.seen = 0
        self.n_riskless = 0

    def _launch(self, start, n, th):
        xp = self.xp
        n_ok = xp.zeros((2, self.T), dtype=np.int64)
        self.cand[2][:] = 0
        self.kernel[self.blocks, self.tpb](
            self.stream, self.lo_sum, np.int64(start), np.int64(n), self.Up, self.amu, self.ann,
            self.rf, self.vfl, (np.float64(th[0]), np.int64(th[1])), self.W, self.cand, n_ok)
        self.n_launches += 1
        return int(self.cand[2][0]), n_ok

    def _step(self, start, n):
        """One launch (plus reruns on overflow) over start..start+n-1, merged into the top-k."""
        xp = self.xp
        th = self.th
        while True:
            c, n_ok = self._launch(start, n, th)
            cs, ci = self.cand[0], self.cand[1]
            if c <= self.cap:
                break
            # overflow: the buffer holds cap > k candidates >= th of this range; the k-th best
            # of (top-k + buffer) is a lower bound of the true k-th best: rerun from it
            self.n_reruns += 1
            s, i = self.merge(xp, xp.concatenate([self.top_s, cs]),
                              xp.concatenate([self.top_i, ci]), self.k)
            th = (float(s[-1]), int(i[-1]))
        self.top_s, self.top_i = self.merge(xp, xp.concatenate([self.top_s, cs[:c]]),
                                            xp.concatenate([self.top_i, ci[:c]]), self.k)
        if self.top_s.shape[0] == self.k:
            self.th = (float(self.top_s[-1]), int(self.top_i[-1]))
        self.seen += n
        counts = n_ok.sum(axis=1)
        self.n_riskless += int(counts[1])
        return int(counts[0])

    def run(self, start: int, n: int) -> int:
        """Score candidates start..start+n-1 into the top-k; return the count within bounds.

        Launch sizes: while the top-k is not full, at most ``cap`` candidates (they all fit
        the buffer); then at most ``cap * seen / (2 k)`` (the expected number passing the k-th
        best of ``seen`` candidates is ``k m / seen``), and at least one resident grid.
        """
        done = n_valid = 0
        while done < n:
            if self.top_s.shape[0] < self.k:
                m = self.cap
            else:
                m = max(self.T, self.cap * self.seen // (2 * self.k))
            m = min(m, n - done, MAX_LAUNCH)
            n_valid += self._step(start + done, m)
            done += m
        return n_valid

    def best(self):
        """The top-k so far as host arrays (scores (k',) float64, index (k',) int64)."""
        if self.xp is np:
            return self.top_s.copy(), self.top_i.copy()
        return self.xp.asnumpy(self.top_s), self.xp.asnumpy(self.top_i)
