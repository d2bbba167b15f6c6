"""Strategies the user writes (DESIGN §6, issue 11).

* allocation functions ``alloc(c, params, targets) -> bool`` compiled for the CPU (Numba,
  parallel over combinations) and the GPU (a CUDA device function, one thread per combination):
  ``gpusim.backtest(market, alloc=fn, params={...})`` (:mod:`gpusim.strategy.api`);
* Python optimisers that see the simulated portfolio (no compilation):
  ``gpusim.simulate(market, optimize=fn, every="W")`` (:mod:`gpusim.strategy.simulate`).

Modules: ``compile`` (the user function: rewrite of ``c.uniform``, compilation per target,
cache, errors), ``steps`` (the per-combination body shared by both kernels), ``cpu``, ``cuda``
(the kernels), ``api`` (the grid and the result), ``result``, ``simulate``, ``loader``
(functions named ``"FILE.py:NAME"`` on the command line and in jobs), ``alloc_sweep`` (the
``alloc`` path of the ``backtest`` sweep task).
The oracle is :mod:`cpu_ref.strategy`.
"""
