"""GEMM path of the weight search, written once against ``xp`` (NumPy + BLAS on the CPU, CuPy +
cuBLAS on the GPU): generate a tile of candidates ``Wt`` (A, m), ``Y = Σ Wt`` (one matrix
product), the row dot ``q = sum_j Wt_j * Y_j`` and ``ret = (ann mu) . Wt``, then keep the
candidates at least as good as the running k-th best and merge them into the top-k.

The tile holds the same population as the fused kernels, bit for bit: the CPU fills it with the
fused kernel's block generator (:func:`gpusim.search.cpu._generate_block`), the GPU with
:func:`gpusim.search.gemm_cuda.generate_tile_cuda` (the shared device sampler). Scores differ
from the fused path's only by rounding (a full product instead of the symmetric sum), so the
top-k is the same except for candidates whose Sharpe ratios agree to ~1e-15.

The fused kernels do ~A²/2 multiply-adds per candidate out of registers/cache; the GEMM does
A² at the matrix-multiply rate, so it wins above a crossover in A (:data:`GEMM_MIN_ASSETS`,
measured by ``benchmarks/bench_search_gemm.py``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from gpusim.search.cpu import BLOCK, _generate_block

GEMM_MIN_ASSETS = {"cpu": 1 << 20, "gpu": 128}
"""``path="auto"`` uses the GEMM path from this many assets on, per backend. CPU: never (on the
2-core machine of the README's benchmark the fused kernel is faster at every A measured, up to
500); GPU: 128, measured on an NVIDIA H200 (``scripts/gpu_check.py``, section ``crossover``,
2026-12-04, float64, top 10): GEMM / fused speed 0.42 at A = 64, 0.80 at 96, 1.07 at 128, 1.37
at 192, 1.74 at 256."""
TILE_BYTES = 1 << 26
"""Target size of one tile ``Wt`` (A, m) float64 on the CPU: m = TILE_BYTES / (8 A), within the
chunk."""
TILE_BYTES_GPU = 1 << 28
"""The same on the GPU: each tile costs a few synchronisations (the selected candidates' count,
the new threshold) and ~15 launches, which 64 MB tiles did not amortise (H200, A = 64: ~2 ms a
tile against ~0.3 ms of work); the tile and its temporaries take ~5 x TILE_BYTES_GPU."""


@njit(parallel=True, cache=True, error_model="numpy")
def generate_tile_nb(stream, start, Wt, ok):
    """Candidates ``start .. start+m-1`` into ``Wt`` (A, m) (one column each) and ``ok`` (m,)
    (False when over the upper bounds): the fused CPU kernel's generator, block by block.
    """
    key, code, alpha, lo, hi = stream
    A, m = Wt.shape
    lo_sum = 0.0
    for j in range(A):
        lo_sum += lo[j]
    nblocks = (m + BLOCK - 1) // BLOCK
    for blk in prange(nblocks):
        S = np.empty((A, BLOCK))
        okb = np.empty(BLOCK, dtype=np.bool_)
        ssum = np.empty(BLOCK)
        b0 = blk * BLOCK
        nb = min(BLOCK, m - b0)
        _generate_block(key, start + b0, nb, code, alpha, lo, hi, lo_sum, S, okb, ssum)
        for j in range(A):
            for b in range(nb):
                Wt[j, b0 + b] = S[j, b]
        for b in range(nb):
            ok[b0 + b] = okb[b]


def cpu_generator(stream):
    """``generate(start, Wt, ok)`` on host arrays."""

    def generate(start, Wt, ok):
        generate_tile_nb(stream, start, Wt, ok)

    return generate


def cuda_generator(stream, lo_sum, tpb=128):
    """``generate(start, Wt, ok)`` on device arrays (CuPy; NumPy in the simulator)."""
    from gpusim.search.gemm_cuda import generate_tile_cuda as kernel

    def generate(start, Wt, ok):
        m = ok.shape[0]
        kernel[max(1, -(-m // tpb)), tpb](stream, lo_sum, np.int64(start), Wt, ok)

    return generate


PATHS = ("auto", "fused", "gemm")


def choose_path(path, backend: str, A: int, dtype: str = "float64") -> str:
    """``"fused"`` or ``"gemm"`` for ``path`` (see :func:`gpusim.search`); one-line error on a
    bad value or GEMM with float32.
    """
    from gpusim.errors import GpusimError

    if path not in PATHS:
        raise GpusimError(f"path={path!r} is unknown; use one of {', '.join(PATHS)}")
    if path == "auto":
        return "gemm" if A >= GEMM_MIN_ASSETS[backend] and dtype == "float64" else "fused"
    if path == "gemm" and dtype != "float64":
        raise GpusimError(f"path='gemm' scores in float64 only (got dtype={dtype!r}); use "
                          "path='fused' for float32")
    return path


def gemm_runner(be, key, code, alpha, lo, hi, mu, cov, ann, rf, k, merge, vfl):
    """A :class:`GemmSearch` for the backend ``be`` (:class:`gpusim.backend.Backend`): NumPy
    and the CPU generator, or ``be.xp`` (CuPy; NumPy in the simulator) and the CUDA generator.
    """
    from gpusim.search.steps import Stream

    xp = be.xp if be.name == "gpu" else np
    stream = Stream(np.uint64(key), int(code), float(alpha), xp.asarray(lo, dtype=np.float64),
                    xp.asarray(hi, dtype=np.float64))
    gen = (cuda_generator(stream, float(np.sum(lo))) if be.name == "gpu"
           else cpu_generator(stream))
    tile = 1 << 12 if getattr(be, "simulator", False) else None
    return GemmSearch(gen, mu, cov, ann, rf, k, xp=xp, merge=merge, vfl=vfl, tile=tile)


class GemmSearch:
    """Running top-k of the GEMM path; same ``run``/``best``/``reset`` as the fused runners.

    Parameters
    ----------
    generate : ``generate(start, Wt, ok)`` filling a tile (:func:`cpu_generator`,
        :func:`cuda_generator`).
    mu (A,), cov (A, A) per bar; ann, rf floats; k top-k size; xp NumPy or CuPy;
    merge ``merge(xp, scores, index, k)`` (:func:`gpusim.search.inputs.merge_topk`);
    vfl : the annual variance floor (:func:`gpusim.mvo.var_floor`): candidates at or below it
        are riskless, never ranked, and counted in ``n_riskless`` (since ``reset()``);
    tile : candidates per tile (default ``TILE_BYTES / (8 A)``).
    """

    def __init__(self, generate, mu, cov, ann, rf, k, *, xp, merge, vfl, tile=None):
        A = mu.shape[0]
        self.generate, self.xp, self.merge, self.k = generate, xp, merge, int(k)
        self.cov = xp.asarray(np.ascontiguousarray(cov, dtype=np.float64))
        self.amu = xp.asarray(float(ann) * np.asarray(mu, dtype=np.float64))
        self.ann, self.rf, self.vfl = float(ann), float(rf), float(vfl)
        budget = TILE_BYTES if xp is np else TILE_BYTES_GPU
        self.tile = int(tile) if tile else max(BLOCK, budget // (8 * A))
        self.reset()

    def reset(self):
        xp = self.xp
        self.top_s = xp.empty(0)
        self.top_i = xp.empty(0, dtype=np.int64)
        self.th = (-math.inf, -1)
        self.n_low = self.xp.zeros((), dtype=np.int64)

    @property
    def n_riskless(self) -> int:
        return int(self.n_low)

    def _tile(self, start, m):
        xp = self.xp
        A = self.cov.shape[0]
        Wt = xp.empty((A, m))
        ok = xp.empty(m, dtype=np.bool_)
        self.generate(start, Wt, ok)
        Y = self.cov @ Wt                      # the GEMM: (A, A) @ (A, m)
        q = xp.einsum("jm,jm->m", Wt, Y)       # w'Σw per candidate
        ret = self.amu @ Wt
        v = self.ann * q
        risky = v > self.vfl                    # the floor (>= 0) also rejects v <= 0
        good = ok & risky
        self.n_low += (ok & ~risky).sum()       # riskless within the bounds, kept on device
        s = (ret - self.rf) / xp.sqrt(xp.where(good, v, 1.0))
        idx = xp.arange(start, start + m, dtype=np.int64)
        th_s, th_i = self.th
        sel = good & ((s > th_s) | ((s == th_s) & (idx <= th_i)))
        self.top_s, self.top_i = self.merge(xp, xp.concatenate([self.top_s, s[sel]]),
                                            xp.concatenate([self.top_i, idx[sel]]), self.k)
        if self.top_s.shape[0] == self.k:
            self.th = (float(self.top_s[-1]), int(self.top_i[-1]))
        return ok.sum()

    def run(self, start: int, n: int) -> int:
        """Score candidates start..start+n-1 into the top-k; return the count within bounds."""
        done = 0
        n_valid = self.xp.zeros((), dtype=np.int64)   # summed where the tiles are: one sync
        while done < n:
            m = min(self.tile, n - done)
            n_valid += self._tile(start + done, m)
            done += m
        return int(n_valid)

    def best(self):
        """The top-k so far as host arrays (scores (k',) float64, index (k',) int64)."""
        if self.xp is np:
            return self.top_s.copy(), self.top_i.copy()
        return self.xp.asnumpy(self.top_s), self.xp.asnumpy(self.top_i)

    def close(self):
        pass
