"""GPU dynamic optimisation: one CUDA thread per combination, the day loop inside (DESIGN §8,
issue 6).

Imported lazily by the backend dispatch only (it imports ``numba.cuda`` at module level), never
from ``import gpusim``.

The device functions are the step bodies of :mod:`gpusim.dynopt.steps` compiled with
``cuda.jit(device=True)`` (the same source as the CPU fast path); both are checked against the
independent reference :mod:`cpu_ref.dynopt`.

Memory: the shared inputs (``dprice``, ``notional``, ``cost``, ``k``, ``w_star`` (T, N),
``covs`` (P, N, N), ``cov_id`` (T,), ``masks`` (M, T)) are copied to the device once per call and
read by every thread (at day t every thread reads the same row: a broadcast, cached); they are
never tiled per combination. Per-thread state lives in seven global scratch arrays of shape
(N, C) — thread j owns column j, so a warp's accesses to instrument i are contiguous
(coalesced). There is therefore no compile-time cap on the number of instruments (a
``cuda.local.array`` would need one); the cost is 7 * 8 * N * C bytes of device memory (e.g.
101 MB for N = 18, C = 100 000), which the caller bounds by chunking.

Floating point: on real hardware NVVM may contract a*b+c into FMA, which changes the last bit of
some objective values; positions still agree with the reference unless two greedy trials tie to
within that last bit. The CUDA simulator (used by the tests) evaluates the same bodies in
IEEE float64 on the host, exactly like the CPU fast path.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from cpu_ref.dynopt import MAX_STEPS  # the greedy safeguard is the contract's
from gpusim._cuda.launch import block_size, grid_for
from gpusim.dynopt.steps import (
    NO_STATIC,
    Inputs,
    Scratch,
    compile_bodies,
    n_columns,
    prepare_inputs,
)

_dev = compile_bodies(cuda.jit(device=True))
simulate_one_dev = _dev["simulate_one"]


@cuda.jit(cache=True)
def dynopt_cuda(inp, masks, mid, capitals, shadow_costs, buffers, ann, max_steps, scratch, out,
                rec, record, no_trade, band):
    """One thread per combination j < C = out.shape[0]; writes ``out[j, :]`` and, when
    ``record``, ``rec[:, :, j]``.

    Device arrays: ``inp`` :class:`~gpusim.dynopt.steps.Inputs` (dprice, notional, cost, k,
    w_star (T, N) f8; covs (P, N, N) f8; cov_id (T,) i8); masks (M, T) bool; mid (C,) i8;
    capitals, shadow_costs, buffers (C,) f8; ``scratch`` :class:`~gpusim.dynopt.steps.Scratch`
    of (N, C) f8 arrays; out (C, width) f8; rec (T, N, C) f8 or (1, 1, 1); no_trade bool;
    band f8 (< 0: no static comparison).
    """
    j = cuda.grid(1)
    if j < out.shape[0]:
        simulate_one_dev(inp, masks, mid[j],
                         (capitals[j], shadow_costs[j], buffers[j], no_trade, band), ann,
                         max_steps, scratch, j, out, j, rec, record)


def dynopt_gpu(dprice, notional, cost, k, w_star, covs, cov_id, masks, mid, capitals,
               shadow_costs, buffers, ann, *, record=False, max_steps=MAX_STEPS,
               threads_per_block=None, no_trade_rule=False, static_band=None):
    """Metrics of C combinations on the GPU (or in Numba's CUDA simulator).

    Takes the arguments of :func:`gpusim.dynopt.cpu.dynopt_cpu` as host arrays (checked by
    :func:`~gpusim.dynopt.steps.prepare_inputs`), copies them to the device with
    ``numba.cuda.to_device``, allocates the (N, C) scratch and the outputs on the device,
    launches :func:`dynopt_cuda`, and returns host ``np.ndarray`` s: the (C, len(METRICS))
    metrics and, with ``record=True``, the (C, T, N) contracts held after each day's trades.
    ``no_trade_rule`` and ``static_band`` as in :func:`gpusim.dynopt.cpu.dynopt_cpu`.
    """
    band = NO_STATIC if static_band is None else float(static_band)
    width = n_columns(band)
    a = prepare_inputs(dprice, notional, cost, k, w_star, covs, cov_id, masks, mid, capitals,
                       shadow_costs, buffers, ann)
    tpb = block_size(threads_per_block)
    T, N = a[0].shape
    C = a[8].shape[0]
    if C == 0:
        out = np.empty((0, width))
        return (out, np.empty((0, T, N))) if record else out
    d_in = [cuda.to_device(x) for x in a[:12]]
    scratch = Scratch(*(cuda.device_array((N, C), dtype=np.float64) for _ in range(7)))
    d_out = cuda.device_array((C, width), dtype=np.float64)
    d_rec = (cuda.device_array((T, N, C), dtype=np.float64) if record
             else cuda.to_device(np.zeros((1, 1, 1))))
    dynopt_cuda[grid_for(C, tpb), tpb](Inputs(*d_in[:7]), *d_in[7:], a[12], int(max_steps),
                                       scratch, d_out, d_rec, bool(record),
                                       bool(no_trade_rule), band)
    out = d_out.copy_to_host()
    if record:
        return out, np.ascontiguousarray(d_rec.copy_to_host().transpose(2, 0, 1))
    return out


class DynoptGpuRunner:
    """The GPU path of one :func:`gpusim.dynopt` call, chunk after chunk.

    The market inputs (prices, notionals, costs, optimal positions, covariances) and the
    rebalance masks are copied to the device once; the (N, C) scratch and the (C, width)
    output (``no_trade_rule`` and ``static_band`` as in :func:`dynopt_gpu`) are allocated once
    for ``max_combinations`` and reused; each chunk sends only its per-combination parameters
    and brings its metrics back through a pinned buffer. Results equal :func:`dynopt_gpu` on
    the same combinations.
    """

    def __init__(self, dprice, notional, cost, k, w_star, covs, cov_id, masks, ann,
                 max_combinations, *, max_steps=MAX_STEPS, threads_per_block=None,
                 no_trade_rule=False, static_band=None):
        from gpusim._cuda.resident import ChunkOutput, to_device_all

        a = prepare_inputs(dprice, notional, cost, k, w_star, covs, cov_id, masks, 0, 1.0,
                           0.0, 0.0, ann)
        self.n_masks = a[7].shape[0]
        self.ann, self.max_steps = a[12], int(max_steps)
        self.tpb = block_size(threads_per_block)
        self.rows = max(1, int(max_combinations))
        d = to_device_all(a[:8])
        self.inputs, self.masks = Inputs(*d[:7]), d[7]
        N = a[0].shape[1]
        self.no_trade = bool(no_trade_rule)
        self.band = NO_STATIC if static_band is None else float(static_band)
        self.width = n_columns(self.band)
        self.scratch = Scratch(*(cuda.device_array((N, self.rows), dtype=np.float64)
                                 for _ in range(7)))
        self.out = ChunkOutput(self.rows, self.width)
        self.no_rec = cuda.to_device(np.zeros((1, 1, 1)))

    def __call__(self, mid, capitals, shadow_costs, buffers) -> np.ndarray:
        """(C, width) host metrics (METRICS, then STATIC_METRICS with a static band) of one
        chunk of C <= max_combinations combinations.
        """
        vecs = [np.atleast_1d(np.asarray(v)) for v in (mid, capitals, shadow_costs, buffers)]
        C = max(v.shape[0] for v in vecs)
        if C == 0:
            return np.empty((0, self.width))
        mid, caps, shs, bus = (np.ascontiguousarray(np.broadcast_to(v, (C,)), dtype=dt)
                               for v, dt in zip(vecs, (np.int64, np.float64, np.float64,
                                                       np.float64)))
        if mid.min() < 0 or mid.max() >= self.n_masks:
            raise ValueError(f"mid must index rows of masks (0..{self.n_masks - 1})")
        if not (np.all(caps > 0) and np.all(np.isfinite(caps))):
            raise ValueError("capitals must be finite and > 0")
        if np.any(shs < 0) or np.any(bus < 0):
            raise ValueError("shadow costs and buffers must be >= 0")
        d_out = self.out.view(C)
        dynopt_cuda[grid_for(C, self.tpb), self.tpb](
            self.inputs, self.masks, cuda.to_device(mid), cuda.to_device(caps),
            cuda.to_device(shs), cuda.to_device(bus), self.ann, self.max_steps, self.scratch,
            d_out, self.no_rec, False, self.no_trade, self.band)
        return self.out.fetch(C)
