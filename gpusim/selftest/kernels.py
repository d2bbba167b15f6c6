"""Kernel-level parts of the GPU check that need numba-cuda only (no CuPy): on a GPU machine
without CuPy (no network to install it) the public ``backend="gpu"`` is unavailable, so the
backtest and dynopt kernels are driven directly, with host arrays, against their CPU twins, and
timed. The parity sections fall back to these and say so (``"level": "kernel"``).
"""

from __future__ import annotations

import time

import numpy as np

KERNEL_SIZES = {
    "simulate": dict(bt=(3, 60, 24), dyn=(3, 50, 6)),
    "device": dict(bt=(8, 2000, 100_000), dyn=(10, 1500, 256)),
}
"""(assets, bars, combinations) of the backtest and (instruments, days, combinations) of the
dynopt kernel-level checks."""


def _rel(g, c) -> float:
    if g.shape != c.shape or not np.array_equal(np.isnan(g), np.isnan(c)):
        return float("inf")
    d = np.abs(g - c) / np.maximum(np.abs(c), 1e-12)
    return float(np.nanmax(d)) if d.size else 0.0


def backtest_kernel(size) -> dict:
    """``backtest_gpu_scalar`` vs ``backtest_cpu`` on random targets, masks and bands."""
    import gpusim
    from gpusim.backtest.cpu import backtest_cpu
    from gpusim.backtest.cuda import backtest_gpu_scalar

    A, T, C = KERNEL_SIZES[size]["bt"]
    r = np.random.default_rng(7)
    close = np.ascontiguousarray(gpusim.synthetic_market(n_assets=A, n_bars=T, seed=7)
                                 .prices.to_numpy())
    W = r.dirichlet(np.ones(A), size=max(1, C // 4))
    masks = np.zeros((2, T), dtype=bool)
    masks[1, ::21] = True
    wid = r.integers(0, W.shape[0], C)
    mid = r.integers(0, 2, C)
    thr = r.choice([0.0, 0.02, 0.05], C)
    fees = r.choice([0.0, 0.001], C)
    args = (close, W, wid, masks, mid, thr, False, fees, 100.0, 252.0, 0.0)
    t0 = time.perf_counter()
    g = backtest_gpu_scalar(*args)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    backtest_gpu_scalar(*args)
    t = time.perf_counter() - t0
    c = backtest_cpu(*args)
    return {"level": "kernel", "combinations": C, "bars": T, "A": A,
            "max_rel_vs_cpu": _rel(g, c), "seconds": t, "first_call_seconds": first,
            "combination_bars_per_s": C * T / t}


def dynopt_kernel(size) -> dict:
    """``dynopt_gpu`` vs ``dynopt_cpu`` over a grid of capitals and shadow costs."""
    import gpusim
    from gpusim.dynopt.cpu import dynopt_cpu
    from gpusim.dynopt.cuda import dynopt_gpu
    from gpusim.dynopt.inputs import prepare

    N, T, C = KERNEL_SIZES[size]["dyn"]
    inp = prepare(gpusim.synthetic_futures(n_instruments=N, n_days=T, seed=3), None, None, None,
                  None, None, min_periods=10)
    masks = np.ones((1, inp.dprice.shape[0]), dtype=bool)
    caps = np.geomspace(1e5, 1e7, C)
    shs = np.resize([0.0, 10.0, 50.0], C)
    args = (*inp.kernel_args(), masks, np.zeros(C, np.int64), caps, shs, np.full(C, 0.0125),
            inp.ann)
    t0 = time.perf_counter()
    g = dynopt_gpu(*args)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    dynopt_gpu(*args)
    t = time.perf_counter() - t0
    c = dynopt_cpu(*args)
    return {"level": "kernel", "combinations": C, "days": T, "instruments": N,
            "max_rel_vs_cpu": _rel(g, c), "seconds": t, "first_call_seconds": first,
            "combination_days_per_s": C * T / t}
