"""gpusim: batch simulator for portfolio research on CUDA GPUs, with a CPU fallback.

Importing gpusim is cheap and safe on any machine: CuPy, numba.cuda and cvxpy are imported
lazily, only by the calls that need them.

Layout (DESIGN §2): one subpackage per capability -- ``search``, ``backtest``, ``walkforward``,
``dynopt``, ``sweep``, ``tune`` -- each with ``api.py`` (the public function and its checks), the
fast paths ``cpu.py`` (Numba) and ``cuda.py`` (numba.cuda / CuPy) and, where the capability can be
swept, ``task.py`` (its :class:`~gpusim.sweep.tasks.TaskRunner`, loaded on demand by the sweep
registry); ``data`` (markets, futures), ``_cuda`` (device helpers), ``plots``; shared modules at
the top (``errors``, ``backend``, ``grid``, ``results``, ``parse``: text values of the CLI and
job files). ``cli`` is the command line (``gpusim``, ``python -m gpusim``). Imports point down
-- cli -> api -> fast paths -> :mod:`cpu_ref` -- and the library never imports ``cli``
(``tests/test_layout.py`` checks).
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as _np

from gpusim._version import __version__

if not hasattr(_np, "row_stack"):
    # NumPy 2.5 removed np.row_stack (an alias of vstack); numba-cuda 0.30 still names it when it
    # loads its array functions at the first CUDA compile ("module 'numpy' has no attribute
    # 'row_stack'", seen on an H200 image with numpy 2.5.2): restore the alias
    _np.row_stack = _np.vstack

_EXPORTS = {
    "GpusimError": "errors",
    "DataError": "errors",
    "BackendError": "errors",
    "SolverError": "errors",
    "resolve_backend": "backend",
    "info": "backend",
    "Market": "data.market",
    "load_prices": "data.load",
    "synthetic_market": "data.market",
    "SearchResult": "search.result",
    "BacktestResult": "backtest.result",
    "Records": "backtest.result",
    "Param": "grid",
    "RandomWeights": "specs",
    "Schedule": "schedule",
    "Portfolios": "schedule",
    "product_grid": "grid",
    "DynoptResult": "dynopt.result",
    "FuturesData": "data.futures",
    "load_futures": "data.futures",
    "synthetic_futures": "data.futures",
    "SweepResult": "sweep.api",
    "TuneResult": "tune.result",
    "WalkForwardResult": "walkforward.result",
    "WeightBounds": "walkforward.constraints",
    "GroupBounds": "walkforward.constraints",
    "Beta": "walkforward.constraints",
    "Budget": "walkforward.constraints",
    "Volatility": "walkforward.constraints",
    "TrackingError": "walkforward.constraints",
    "TaskRunner": "sweep.tasks",
    "register_task": "sweep.tasks",
    "max_sharpe": "mvo",
    "min_variance": "mvo",
    "efficient_frontier": "mvo",
    "simulate": "strategy.simulate",
    "OptimizeState": "strategy.simulate",
    "SimulationResult": "strategy.simulate",
    "StrategyResult": "strategy.result",
}

# Public functions that share their module's name are bound eagerly: a lazy attribute would be
# shadowed by the submodule as soon as anything imports it. These modules import only numpy,
# pandas and numba at their top (CuPy, numba.cuda and cvxpy stay lazy).
from gpusim.backtest.api import backtest  # noqa: E402
from gpusim.dynopt.api import dynopt  # noqa: E402
from gpusim.search.api import search, verify  # noqa: E402
from gpusim.sweep.api import sweep  # noqa: E402
from gpusim.tune.api import tune  # noqa: E402  (Optuna is imported when tune() runs)
from gpusim.walkforward.api import walkforward  # noqa: E402

_FUNCTIONS = ["backtest", "dynopt", "search", "sweep", "tune", "verify", "walkforward"]
__all__ = [*sorted([*_EXPORTS, *_FUNCTIONS]), "__version__"]


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'gpusim' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
