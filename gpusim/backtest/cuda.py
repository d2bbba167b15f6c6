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

Grids: :func:`backtest_gpu` takes per-combination index arrays (``wid``, ``mid``, ``bid``,
``fees``: 32 bytes a combination); :class:`BacktestGpuRunner`, the path of
:func:`gpusim.backtest`, sends none. Its kernel :func:`backtest_grid_cuda` decodes each
combination's parameters from the flat index ``start + c`` (int64) with the body
:func:`gpusim.backtest.decode.combination`, compiled here as a device function, and small
tables that go over once per call; per chunk only the weight block travels (e.g. 64 KB instead
of 32 MB for a chunk of 10^6 combinations of 1,000 weight vectors of 8 assets).

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
from gpusim.backtest import decode
from gpusim.backtest.steps import (
    N_METRICS,
    _check_schedule,
    compile_bodies,
    prepare_inputs,
    scalar_inputs,
)
from gpusim.schedule import NEVER

# fmul/fadd never fused into FMA: every step rounds as on the CPU (bit-identical results)
_dev = compile_bodies(cuda.jit(device=True), exact_arith())
simulate_one_dev = _dev["simulate_one"]
simulate_sched_dev = _dev["simulate_sched"]
combination_dev = decode.compile_bodies(cuda.jit(device=True))["combination"]


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


@cuda.jit(cache=True)
def backtest_grid_cuda(close, W, wnxt, masks, B, bnxt, tables, start, w0, acct, scratch, out):
    """One thread per combination ``start + c`` of a grid, c < C = out.shape[0]; writes
    ``out[c, :]`` (11 metrics).

    As :func:`backtest_cuda`, but each thread decodes its own ``(wid, mid, bid, fee)`` from the
    flat index ``start + c`` (int64) with :func:`gpusim.backtest.decode.combination` and the
    resident ``tables = (levels, remap, wfirst, bfirst, fees)``; ``W`` (R, A) and ``wnxt`` (R,)
    are the chunk's weight block, whose first row is stacked row ``w0``.
    """
    c = cuda.grid(1)
    if c < out.shape[0]:
        wid, mid, bid, fee = combination_dev(start + c, tables, w0)
        simulate_sched_dev(close, W, (wid, wnxt), (masks, mid, B, bid, bnxt), fee, acct,
                           scratch, c, out, c)


def _max_block_rows(levels, rows: int) -> int:
    """Most weight vectors that ``rows`` consecutive combinations span: the whole level when
    it repeats values (a remap), else one more than ``rows`` / its stride, rounded up.
    """
    stride, size, off = (int(x) for x in levels[decode.W_ARG])
    if off != decode.NO_REMAP:
        return size
    return min(size, -(-rows // stride) + 1)


class BacktestGpuRunner:
    """The GPU path of one :func:`gpusim.backtest` call, chunk after chunk.

    Once per call: prices, rebalance masks, band rows and the decode tables
    (:func:`gpusim.backtest.decode.check_tables`: level strides and sizes, repeat remap,
    schedule offsets, band-row pairs, fee values) go to the device, and the (A, C) scratch and
    the (C, 11) output are allocated for ``max_combinations``. Per chunk only the weight block
    (and its switch bars when the targets are schedules) and two integers travel: each thread
    decodes its combination's parameters itself (:func:`backtest_grid_cuda`), and the metrics
    come back through a pinned buffer. Results equal :func:`backtest_gpu` on the same
    combinations (and so the CPU path).
    """

    def __init__(self, close, masks, B, bnxt, tables, init_cash, ann, rf, max_combinations, *,
                 threads_per_block=None):
        from gpusim._cuda.resident import ChunkOutput, to_device_all

        A = np.shape(close)[1]
        (close, _, _, _, masks, _, B, _, bnxt, _, init_cash, ann, rf) = prepare_inputs(
            close, np.full((1, A), 1.0 / A), np.zeros(0, np.int64), [NEVER], masks, 0, B, 0,
            bnxt, 0.0, init_cash, ann, rf)
        self.tables = decode.check_tables(tables, masks.shape[0], B.shape[0])
        self.host = (close, masks, bnxt)
        self.acct = (init_cash, ann, rf)
        self.tpb = block_size(threads_per_block)
        self.rows = max(1, int(max_combinations))
        self.dev = to_device_all((close, masks, B, bnxt))
        self.d_tables = tuple(to_device_all(self.tables))
        self.scratch = (cuda.device_array((A, self.rows), dtype=np.float64),
                        cuda.device_array((A, self.rows), dtype=np.float64),
                        cuda.device_array((A, self.rows), dtype=np.int64))
        self.out = ChunkOutput(self.rows, N_METRICS)
        self.never = None
        if not self.tables[2].size:   # constant targets: switch bars NEVER, for any block
            self.never = cuda.to_device(np.full(_max_block_rows(self.tables[0], self.rows),
                                                NEVER, dtype=np.int64))

    def _weights(self, start, stop, W, wnxt, w0):
        """The chunk's weight block on the device, checked against the combinations it serves."""
        A = self.host[0].shape[1]
        W = np.ascontiguousarray(W, dtype=np.float64)
        if W.ndim != 2 or W.shape[0] < 1 or W.shape[1] != A:
            raise ValueError(f"W must be (R, {A}), got shape {W.shape}")
        R, w0 = W.shape[0], int(w0)
        r0, r1 = decode.weight_span(self.tables, start, stop)
        if r0 < w0 or r1 > w0 + R:
            raise ValueError(f"W holds rows {w0}..{w0 + R - 1}; combinations {start}..{stop - 1} "
                             f"trade to rows {r0}..{r1 - 1}")
        if wnxt is None:
            if self.never is None:
                raise ValueError("wnxt is needed: the targets are schedules")
            if R > self.never.shape[0]:
                raise ValueError(f"a block of {R} weight rows exceeds the "
                                 f"{self.never.shape[0]} rows a chunk can span")
            return cuda.to_device(W), self.never[:R]
        wnxt = np.ascontiguousarray(wnxt, dtype=np.int64).reshape(-1)
        if wnxt.shape != (R,):
            raise ValueError(f"wnxt must be ({R},), got shape {wnxt.shape}")
        _check_schedule(wnxt, "wnxt")
        return cuda.to_device(W), cuda.to_device(wnxt)

    def __call__(self, start, stop, W, wnxt, w0) -> np.ndarray:
        """(stop - start, 11) host metrics of combinations ``start .. stop-1`` (at most
        ``max_combinations``).

        ``W`` (R, A) the stacked weight rows ``w0 .. w0+R-1`` that these combinations use and
        ``wnxt`` (R,) their switch bars (None for constant targets).
        """
        start, stop = int(start), int(stop)
        C = stop - start
        if start < 0 or C < 0:
            raise ValueError(f"combinations {start}..{stop - 1} are not a block of the grid")
        if C == 0:
            return np.empty((0, N_METRICS))
        d_out = self.out.view(C)
        d_W, d_wnxt = self._weights(start, stop, W, wnxt, w0)
        d_close, d_masks, d_B, d_bnxt = self.dev
        backtest_grid_cuda[grid_for(C, self.tpb), self.tpb](
            d_close, d_W, d_wnxt, d_masks, d_B, d_bnxt, self.d_tables, np.int64(start),
            np.int64(w0), self.acct, self.scratch, d_out)
        return self.out.fetch(C)

    def compile(self, W, wnxt, w0) -> None:
        """Compile (or load) :func:`backtest_grid_cuda` on combination 0 over two bars."""
        close, masks, bnxt = self.host
        d_W, d_wnxt = self._weights(0, 1, W, wnxt, w0)
        d_B = self.dev[2]
        backtest_grid_cuda[1, 1](
            cuda.to_device(close[:2]), d_W, d_wnxt,
            cuda.to_device(np.ascontiguousarray(masks[:, :2])), d_B,
            cuda.to_device(np.full(bnxt.shape[0], NEVER, dtype=np.int64)), self.d_tables,
            np.int64(0), np.int64(w0), self.acct, self.scratch, self.out.view(1))
