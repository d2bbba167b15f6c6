"""CUDA kernel of user-function backtests: one thread per combination.

Imported lazily once the backend chose the GPU (this imports ``numba.cuda``). The user's
function is compiled as a device function (its ``c.uniform`` bound to the device RNG compiled
from the same bodies as :mod:`cpu_ref.rng`), and so is
:func:`gpusim.strategy.steps.simulate_alloc` with the backtest's step bodies bound to their
never-fused device versions (``fmul``/``fadd`` as ``dmul_rn``/``dadd_rn``): the metrics equal the
CPU kernel's (``cagr``/``calmar`` up to libdevice's ``pow``). One kernel per user function,
cached in memory by its identity and source.

Scratch in global memory: ``h``, ``oval``, ``order``, ``cur`` (A, C) (thread c owns column c:
coalesced across a warp) and ``tin``, ``prop`` (C, A) rows (the targets the user's function
writes, contiguous per thread).
"""

from __future__ import annotations

import types

import numpy as np
from numba import cuda

from cpu_ref import rng as _rng
from cpu_ref.jitting import compile_bodies
from gpusim._cuda.launch import block_size, grid_for
from gpusim._cuda.rng import exact_arith
from gpusim.backtest import steps as bsteps
from gpusim.strategy import steps
from gpusim.strategy.compile import UserFunction, cached, compile_cpu


def alloc_kernel_cuda(close, W, wid, masks, mid, params, fees, acct, key, streams, scratch, out):
    """Thread c < C = out.shape[0] simulates combination c (arguments as
    :func:`gpusim.strategy.cpu.alloc_kernel`, device arrays; ``scratch`` as the module says).
    """
    c = cuda.grid(1)
    if c < out.shape[0]:
        simulate_alloc(close, W, wid[c], masks[mid[c]], params[c], fees[c], acct,  # noqa: F821
                       (key, streams[c]), scratch, c, out, c)


def cuda_kernel(uf: UserFunction, n_assets: int):
    """:func:`alloc_kernel_cuda` compiled for the user function ``uf`` and A = ``n_assets``."""
    def build():
        compile_cpu(uf, n_assets)   # type-check on the CPU first: errors name the user's line
        dev = cuda.jit(device=True)
        ov = exact_arith()
        uniform = _rng.compile_bodies(dev, ov)["uniform"]
        helper = dev(types.FunctionType(
            steps.state_uniform.__code__, {**vars(steps), "uniform": uniform},
            "state_uniform", steps.state_uniform.__defaults__))
        fn = dev(uf.bind(helper, n_assets))
        bodies = bsteps.compile_bodies(dev, ov)
        body = compile_bodies(dev, vars(steps), ("simulate_alloc",),
                              steps.step_overrides(bodies, fn, uniform))
        return compile_bodies(cuda.jit, globals(), ("alloc_kernel_cuda",),
                              {"simulate_alloc": body["simulate_alloc"]})["alloc_kernel_cuda"]

    return cached("gpu", uf, build, n_assets)


def backtest_alloc_gpu(uf, close, W, wid, masks, mid, params, fees, acct, key, streams, *,
                       threads_per_block=None):
    """Metrics (C, 11) of one chunk on the GPU (or the CUDA simulator); host arrays in and out."""
    C = len(wid)
    A = close.shape[1]
    if C == 0:
        return np.empty((0, bsteps.N_METRICS))
    tpb = block_size(threads_per_block)
    d = [cuda.to_device(np.ascontiguousarray(a))
         for a in (close, W, wid, masks, mid, params, fees)]
    d_streams = cuda.to_device(np.ascontiguousarray(streams, dtype=np.int64))
    scratch = (cuda.device_array((A, C)), cuda.device_array((A, C)),
               cuda.device_array((A, C), dtype=np.int64), cuda.device_array((A, C)),
               cuda.device_array((C, A)), cuda.device_array((C, A)))
    d_out = cuda.device_array((C, bsteps.N_METRICS))
    cuda_kernel(uf, A)[grid_for(C, tpb), tpb](*d, acct, key, d_streams, scratch, d_out)
    return d_out.copy_to_host()
