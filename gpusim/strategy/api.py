"""Backtests driven by a user allocation function (DESIGN §6, issue 11).

``gpusim.backtest(market, alloc=fn, params={"tau": Param([...])}, fees=..., seed=...)`` routes
here (:func:`backtest_alloc`). ``fn(c, params, targets) -> bool`` is called at bar 0 and at every
bar (or only at the bars of ``rebalance=`` when given), after the bar's value is marked and before
any order; it reads the state ``c`` (:data:`gpusim.strategy.steps.State`), its combination's
parameter row ``params`` ((P,) float64, in the order of the ``params`` dict) and may overwrite
``targets`` ((A,), filled with the targets in force); True rebalances to ``targets`` with the §6
execution model (the built-in engine's fills, fees and metrics), False holds. Bar 0 always
rebalances (to the initial ``weights`` unless the function wrote other targets).

Grid levels, in order: ``weights``, the ``params`` entries that are Params, ``rebalance`` (when a
Param) and ``fees`` (when a Param). ``c.uniform(j, k)`` draws from the counter-based stream of
``seed`` (DESIGN §4); the stream is the combination, or, with ``share_draws=["tau"]``, shared by
the combinations that differ only in those levels (every tau then sees the same draws).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cpu_ref.backtest import METRICS
from cpu_ref.rng import seed_key_nb
from gpusim.backend import resolve_backend
from gpusim.chunks import run_chunks
from gpusim.compiling import compile_notice
from gpusim.data.load import as_market
from gpusim.errors import GpusimError
from gpusim.grid import Grid, Param, build_grid
from gpusim.results import jsonable, versions
from gpusim.schedule import resolve_initial
from gpusim.specs import Weights, axis_values, fee_value, rebalance_mask
from gpusim.strategy.compile import UserFunction, compiled, prepare
from gpusim.strategy.result import StrategyResult
from gpusim.validate import cash_and_rate, check_chunk_size, number

__all__ = ["alloc_context", "backtest_alloc", "check_seed", "kernel", "not_with_alloc"]

CPU_CHUNK = 2 ** 14
GPU_CHUNK = 2 ** 18
_RESERVED = ("weights", "rebalance", "fees")


def _param_values(name: str, spec) -> tuple[Any, np.ndarray]:
    def conv(x):
        v = number(x, f"params[{name!r}]", expect="a number")
        if not math.isfinite(v):
            raise GpusimError(f"params[{name!r}]={x!r} must be finite")
        return v
    return axis_values(spec, conv)


def backtest_alloc(market, alloc, params: dict | None = None, weights: Any = "equal",
                   rebalance: Any = None, fees: Any = 0.0, seed: int = 0,
                   share_draws: Any = (), init_cash: float = 1.0, rf: float = 0.0,
                   backend: str = "auto", chunk_size: int | None = None,
                   progress: bool = True) -> StrategyResult:
    """Backtest a user allocation function over a grid (see the module docstring).

    Parameters
    ----------
    market : Market or prices DataFrame.
    alloc : ``def alloc(c, params, targets) -> bool`` written with the NumPy subset Numba
        compiles (the same source runs on the CPU and the GPU), or its spec ``"file.py:name"``
        or ``"package.module:name"`` (:func:`gpusim.strategy.loader.load_function`).
    params : ``{name: number or Param}`` — the function's parameter row, in this order.
    weights : initial targets (any ``weights=`` of :func:`gpusim.backtest`, e.g. a Param or
        ``RandomWeights(n)``).
    rebalance : None or ``"never"`` (call ``alloc`` at every bar: the function is the rule) or
        a rule (int k, ``"W"``, a mask, a Param): ``alloc`` is called at bar 0 and at the bars
        of the rule only.
    fees : proportional fee in [0, 1), or a Param.
    seed : seed of ``c.uniform``; share_draws : level names whose values share one stream.
    init_cash, rf, backend, chunk_size, progress : as in :func:`gpusim.backtest`.

    Returns
    -------
    StrategyResult
        ``metrics`` (one row per combination, columns ``METRICS``); ``records(...)`` re-runs a
        combination through :func:`cpu_ref.strategy.simulate_alloc_1d` (with its orders).
    """
    ctx = alloc_context(market, alloc, params, weights, rebalance, fees, seed, share_draws,
                        init_cash, rf)
    check_chunk_size(chunk_size)
    be = resolve_backend(backend)
    run = kernel(be.name)
    uf, grid, close, masks = ctx.alloc, ctx.grid, ctx.close, ctx.masks
    prices = ctx.market.prices
    T, A = close.shape
    C = grid.size
    cs = int(chunk_size) if chunk_size else min(C, GPU_CHUNK if be.name == "gpu" else CPU_CHUNK)
    tc = time.perf_counter()
    a = ctx.chunk_args(0, 1)     # compile on one combination and two bars

    def say(line):               # the kernel embeds the function: compiled once per process
        print(f"compiling {uf.name} for the {be.label} kernel (first call in this process)",
              file=sys.stderr, flush=True)

    if not compiled(be.name if be.name == "gpu" else "cpu", uf, A):
        with compile_notice(uf.name, None, enabled=progress, say=say):
            run(uf, close[:2], a["W"], a["wid"], np.ascontiguousarray(masks[:, :2]),
                a["mid"], a["params"], a["fees"], ctx.acct, ctx.key, a["streams"])
    t0 = time.perf_counter()
    out = np.empty((C, len(METRICS)))
    r = run_chunks(out, cs, lambda start, stop: ctx.compute(run, start, stop),
                   desc=f"backtest alloc={uf.name} [{be.label}]", progress=progress,
                   unit_scale=True)
    metrics = pd.DataFrame(out[:r.done], index=grid.index_block(0, r.done),
                           columns=list(METRICS))
    summary = {
        "command": "backtest", "alloc": uf.name, "backend": be.label, "n_combinations": C,
        "n_done": r.done, "partial": r.partial, "n_bars": T, "n_assets": A,
        "symbols": ctx.symbols, "start": str(prices.index[0]), "end": str(prices.index[-1]),
        "ann": ctx.ann, "levels": {x.name: len(x.labels) for x in grid.axes},
        "fixed": {k: jsonable(v) for k, v in grid.fixed.items()},
        "params": list(ctx.param_names), "seed": ctx.seed, "share_draws": ctx.share_draws,
        "init_cash": ctx.init_cash, "rf": ctx.rf, "chunk_size": cs, "n_chunks": r.n_chunks,
        "compile_s": round(t0 - tc, 6), "elapsed_s": round(r.elapsed_s, 6),
        "combination_bars_per_s": float(r.done * T / r.elapsed_s) if r.elapsed_s > 0 else None,
        "versions": versions(),
    }
    return StrategyResult(metrics, summary, r.partial, ctx)


def kernel(backend_name: str):
    """The kernel function of a resolved backend's name: ``"gpu"`` (CUDA, one thread per
    combination) or else the CPU's (njit, parallel over combinations).
    """
    if backend_name == "gpu":
        from gpusim.strategy.cuda import backtest_alloc_gpu as run
    else:
        from gpusim.strategy.cpu import backtest_alloc_cpu as run
    return run


def alloc_context(market, alloc, params: dict | None = None, weights: Any = "equal",
                  rebalance: Any = None, fees: Any = 0.0, seed: int = 0,
                  share_draws: Any = (), init_cash: float = 1.0, rf: float = 0.0
                  ) -> _Context:
    """The checked grid and host arrays of :func:`backtest_alloc` (arguments as there): every
    block of combinations of the grid runs from it (:meth:`_Context.compute`), e.g. the
    chunks of a sweep (:mod:`gpusim.strategy.alloc_sweep`).
    """
    if isinstance(alloc, str):
        from gpusim.strategy.loader import load_function

        alloc = load_function(alloc)
    uf = prepare(alloc)
    mkt = as_market(market)
    prices = mkt.prices
    symbols = [str(s) for s in prices.columns]
    close = np.ascontiguousarray(prices.to_numpy(dtype=np.float64))
    T = close.shape[0]
    wsrc, wname, wlevel = resolve_initial(weights, symbols, 'backtest(alloc=...)')
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise GpusimError(f"params={params!r} must be a dict {{name: number or Param}}")
    entries: dict[str, Any] = {"weights": Param(wsrc.labels, wname, wlevel)}
    pvals = {}
    for k, spec in params.items():
        if not isinstance(k, str) or k in _RESERVED:
            raise GpusimError(f"params: the name {k!r} is not allowed; use a str other than "
                              f"{', '.join(_RESERVED)}")
        entries[k], pvals[k] = _param_values(k, spec)
    if rebalance is None or (isinstance(rebalance, str) and rebalance == "never"):
        reb_entry, masks = None, np.ones((1, T), dtype=np.bool_)
    elif isinstance(rebalance, Param):
        rl = [rebalance_mask(r, prices.index) for r in rebalance.values]
        labels = [lab if lab != "mask" else f"mask{i}" for i, (lab, _) in enumerate(rl)]
        reb_entry = Param(labels, rebalance.name, rebalance.level)
        masks = np.ascontiguousarray(np.stack([m for _, m in rl]))
    else:
        reb_entry, m = rebalance_mask(rebalance, prices.index)
        masks = np.ascontiguousarray(m.reshape(1, T))
    entries["rebalance"] = reb_entry
    entries["fees"], fee_vals = axis_values(fees, fee_value)
    init_cash, rf = cash_and_rate(init_cash, rf)
    seed = check_seed(seed)
    grid = build_grid(entries)
    axis_of = {k: (e.name or k) for k, e in entries.items() if isinstance(e, Param)}
    shared = [share_draws] if isinstance(share_draws, str) else list(share_draws)
    names = set(grid.names)
    for s in shared:
        if s not in names:
            raise GpusimError(f"share_draws: {s!r} is not a level of the grid; use some of "
                              f"{sorted(names)}")
    return _Context(mkt, close, symbols, grid, axis_of, wsrc, masks, list(params), pvals,
                    fee_vals, init_cash, float(mkt.ann), rf, seed, uf, shared)


def not_with_alloc(given: str, names, *, alloc: str = "alloc", where: str = "") -> GpusimError:
    """The one-line error for a built-in band option ``given`` (one of ``names``: e.g.
    threshold, band) next to an allocation function, which tests the drift itself; ``alloc``
    names the function's option (``"--alloc"`` on the command line), ``where`` prefixes the
    message (e.g. ``"space"``).
    """
    rest = ", ".join(n for n in names if n != given)
    pre = f"{where}: " if where else ""
    return GpusimError(f"{pre}{given} is not used with {alloc} (nor {rest}): test the drift "
                       "inside the function (c.weights against c.targets)")


def check_seed(seed) -> int:
    """The seed of ``c.uniform`` as an int >= 0 (GpusimError otherwise)."""
    bad = GpusimError(f"seed={seed!r} must be an integer >= 0")
    if isinstance(seed, (bool, np.bool_)):
        raise bad
    if isinstance(seed, (int, np.integer)):
        v = int(seed)
    else:
        f = number(seed, "seed", expect="an integer >= 0")
        if not math.isfinite(f) or f != int(f):
            raise bad
        v = int(f)
    if v < 0:
        raise bad
    return v


@dataclass
class _Context:
    """Everything needed to run (or re-run) a block of combinations (host arrays)."""

    market: Any
    close: np.ndarray            # (T, A)
    symbols: list[str]
    grid: Grid
    axis_of: dict[str, str]      # argument -> level name, for the arguments that are Params
    wsrc: Weights
    masks: np.ndarray            # (M, T) bool: bars at which alloc is called
    param_names: list[str]
    param_values: dict[str, np.ndarray]
    fees: np.ndarray
    init_cash: float
    ann: float
    rf: float
    seed: int
    alloc: UserFunction
    share_draws: list[str]

    @property
    def acct(self) -> tuple[float, float, float]:
        """``(init_cash, ann, rf)`` of the kernels."""
        return (self.init_cash, self.ann, self.rf)

    @property
    def key(self) -> np.uint64:
        """The counter-based RNG key of ``seed`` (DESIGN §4)."""
        return np.uint64(seed_key_nb(self.seed))

    def compute(self, run, start: int, stop: int) -> np.ndarray:
        """Metrics rows (stop - start, len(METRICS)) of combinations start..stop-1 by the
        kernel ``run`` (:func:`kernel`); host array.
        """
        a = self.chunk_args(start, stop)
        return run(self.alloc, self.close, a["W"], a["wid"], self.masks, a["mid"],
                   a["params"], a["fees"], self.acct, self.key, a["streams"])

    def _code(self, codes, k: str, n: int) -> np.ndarray:
        return codes[self.axis_of[k]] if k in self.axis_of else np.zeros(n, dtype=np.int64)

    def chunk_args(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Kernel arguments W, wid, mid, params (n, P), fees, streams for start..stop-1."""
        n = stop - start
        codes = self.grid.codes(start, stop)
        wc = self._code(codes, "weights", n)
        lo, hi = int(wc.min()), int(wc.max()) + 1
        P = np.empty((n, len(self.param_names)))
        for i, k in enumerate(self.param_names):
            P[:, i] = self.param_values[k][self._code(codes, k, n)]
        return {"W": self.wsrc.rows(lo, hi, len(self.symbols)),
                "wid": np.ascontiguousarray(wc - lo),
                "mid": np.ascontiguousarray(self._code(codes, "rebalance", n)),
                "params": P, "fees": np.ascontiguousarray(self.fees[self._code(codes, "fees", n)]),
                "streams": self.streams(start, stop)}

    def streams(self, start: int, stop: int) -> np.ndarray:
        """Random stream of each combination: its flat position, or that position in the grid
        without the zip groups of the ``share_draws`` levels.
        """
        if not self.share_draws:
            return np.arange(start, stop, dtype=np.int64)
        g = self.grid.group_positions(start, stop)
        skip = {a.group for a in self.grid.axes if a.name in self.share_draws}
        keep = [i for i in range(len(self.grid.shape)) if i not in skip]
        if not keep:
            return np.zeros(stop - start, dtype=np.int64)
        return np.ravel_multi_index(tuple(g[i] for i in keep),
                                    tuple(self.grid.shape[i] for i in keep)).astype(np.int64)
