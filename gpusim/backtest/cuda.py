"""GPU rebalancing backtest: one CUDA thread per combination (DESIGN §6, contract of issue 3).

Imported lazily by the backend dispatch only (it imports ``numba.cuda`` at module level), never
from ``import gpusim``.

The device functions are the step bodies of :mod:`gpusim.backtest.steps` compiled with
``cuda.jit(device=True)`` (same source as the CPU fast path, like the shared RNG of DESIGN §4);
both are checked against the independent reference :mod:`cpu_ref.backtest`. Their products and
sums go through ``fmul``/``fadd``, bound here to libdevice ``dmul_rn``/``dadd_rn`` so that NVVM
never contracts them into fused multiply-adds: every step rounds as on the CPU, so the metrics
(and every rebalance decision, including exact ties at a band edge) are bit-identical to
:func:`~gpusim.backtest.cpu.backtest_cpu_nb`, except that ``cagr`` (and so
``calmar``) comes from libdevice's ``pow`` rather than the CPU's libm and may differ in the last
ulp. ``scripts/check_ptx.py`` compiles this kernel for a real GPU target without a GPU (the
kernel body has no ``fma``; the ones in the PTX are inside ``pow``).

Memory: prices ``close`` (T, A) are read from global memory by every thread (the same address
across a warp at each bar: a broadcast, cached) and never tiled per combination. Per-thread
holdings, order values and processing order live in global scratch arrays of shape (A, C) —
thread c owns column c, so a warp's accesses to asset j are contiguous (coalesced) — allocated
by :func:`backtest_gpu`. There is therefore no compile-time cap on the number of assets (a
``cuda.local.array`` would need one); the cost is 3 * 8 * A * C bytes of device memory
(e.g. 120 MB for A = 5, C = 1e6).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from gpusim._cuda.launch import block_size, grid_for
from gpusim._cuda.rng import exact_arith
from gpusim.backtest.steps import N_METRICS, compile_bodies, prepare_inputs, scalar_inputs

# fmul/fadd never fused into FMA: every step rounds as on the CPU (bit-identical results)
_dev = compile_bodies(cuda.jit(device=True), exact_arith())
simulate_one_dev = _dev["simulate_one"]
simulate_sched_dev = _dev["simulate_sched"]


@cuda.jit(cache=True)
def backtest_cuda(close, W, wid, wnxt, masks, mid, B, bid, bnxt, fees, acct, scratch, out):
    """One thread per combination c < C = out.shape[0]; writes ``out[c, :]`` (11 metrics).

    Device arrays (meaning as in :func:`gpusim.backtest.cpu.backtest_cpu_nb`): close (T, A)
    f8, W (R, A) f8, wid (C,) i8, wnxt (R,) i8, masks (M, T) bool, mid (C,) i8, B (RB, 2A) f8,
    bid (C,) i8, bnxt (RB,) i8, fees (C,) f8; ``scratch = (h, oval, order)``: (A, C) f8, f8 and
    i8; out (C, 11) f8. ``acct = (init_cash, ann, rf)`` (floats).
    """
    c = cuda.grid(1)
    if c < out.shape[0]:
        simulate_sched_dev(close, W, (wid[c], wnxt), (masks, mid[c], B, bid[c], bnxt), fees[c],
                           acct, scratch, c, out, c)


def backtest_gpu(close, W, wid, wnxt, masks, mid, B, bid, bnxt, fees, init_cash, ann, rf, *,
                 threads_per_block=None):
    """Metrics of C combinations on the GPU (or in Numba's CUDA simulator).

    Takes the arguments of :func:`gpusim.backtest.cpu.backtest_cpu_nb` as host arrays
    (checked and coerced by :func:`~gpusim.backtest.steps.prepare_inputs`; scalar
    ``mid``/``bid``/``fees`` broadcast over C = len(wid)), copies them to the device with
    ``numba.cuda.to_device``, allocates the (A, C) scratch and the (C, 11) output on the device,
    launches :func:`backtest_cuda` with ``threads_per_block`` threads per block (default: the
    policy of :func:`gpusim._cuda.launch.block_size`), and returns the
    metrics as a host ``np.ndarray`` of shape (C, 11), columns in the order of ``METRICS``.
    """
    (close, W, wid, wnxt, masks, mid, B, bid, bnxt, fees, init_cash, ann,
     rf) = prepare_inputs(close, W, wid, wnxt, masks, mid, B, bid, bnxt, fees, init_cash, ann,
                          rf)
    tpb = block_size(threads_per_block)
    C = wid.shape[0]
    A = close.shape[1]
    if C == 0:
        return np.empty((0, N_METRICS))
    d_args = [cuda.to_device(a) for a in (close, W, wid, wnxt, masks, mid, B, bid, bnxt, fees)]
    d_h = cuda.device_array((A, C), dtype=np.float64)
    d_oval = cuda.device_array((A, C), dtype=np.float64)
    d_order = cuda.device_array((A, C), dtype=np.int64)
    d_out = cuda.device_array((C, N_METRICS), dtype=np.float64)
    backtest_cuda[grid_for(C, tpb), tpb](*d_args, (init_cash, ann, rf), (d_h, d_oval, d_order),
                                         d_out)
    return d_out.copy_to_host()


def backtest_gpu_scalar(close, W, wid, masks, mid, thresholds, relative=False, fees=0.0,
                        init_cash=1.0, ann=252.0, rf=0.0, *, threads_per_block=None):
    """:func:`backtest_gpu` for constant targets and a scalar band per combination (the
    arguments of :func:`gpusim.backtest.cpu.backtest_cpu`).
    """
    return backtest_gpu(*scalar_inputs(close, W, wid, masks, mid, thresholds, relative, fees,
                                       init_cash, ann, rf), threads_per_block=threads_per_block)


class BacktestGpuRunner:
    """The GPU path of one :func:`gpusim.backtest` call, chunk after chunk.

    Prices, rebalance masks and band rows are copied to the device once; the (A, C) scratch and
    the (C, 11) output are allocated once for ``max_combinations`` and reused; each chunk sends
    only its weight block and per-combination indices, and its metrics come back through a
    pinned buffer. Each chunk's inputs are checked as by :func:`backtest_gpu`, whose results it
    equals.
    """

    def __init__(self, close, masks, B, bnxt, init_cash, ann, rf, max_combinations, *,
                 threads_per_block=None):
        from gpusim._cuda.resident import ChunkOutput, to_device_all

        self.host = (close, masks, B, bnxt)
        self.acct = (float(init_cash), float(ann), float(rf))
        self.tpb = block_size(threads_per_block)
        self.rows = max(1, int(max_combinations))
        self.dev = None
        self._to_device_all, self._chunk_output = to_device_all, ChunkOutput

    def _allocate(self, close, masks, B, bnxt):
        self.dev = self._to_device_all((close, masks, B, bnxt))
        A = close.shape[1]
        self.scratch = (cuda.device_array((A, self.rows), dtype=np.float64),
                        cuda.device_array((A, self.rows), dtype=np.float64),
                        cuda.device_array((A, self.rows), dtype=np.int64))
        self.out = self._chunk_output(self.rows, N_METRICS)

    def __call__(self, W, wid, wnxt, mid, bid, fees) -> np.ndarray:
        """(C, 11) host metrics of one chunk of C <= max_combinations combinations."""
        close, masks, B, bnxt = self.host
        (close, W, wid, wnxt, masks, mid, B, bid, bnxt, fees, init_cash, ann,
         rf) = prepare_inputs(close, W, wid, wnxt, masks, mid, B, bid, bnxt, fees, *self.acct)
        C = wid.shape[0]
        if C == 0:
            return np.empty((0, N_METRICS))
        if self.dev is None:     # the first chunk: the shared inputs, as checked, go over once
            self._allocate(close, masks, B, bnxt)
        d_close, d_masks, d_B, d_bnxt = self.dev
        d_out = self.out.view(C)
        per = [cuda.to_device(a) for a in (W, wid, wnxt, mid, bid, fees)]
        backtest_cuda[grid_for(C, self.tpb), self.tpb](
            d_close, per[0], per[1], per[2], d_masks, per[3], d_B, per[4], d_bnxt, per[5],
            (init_cash, ann, rf), self.scratch, d_out)
        return self.out.fetch(C)
