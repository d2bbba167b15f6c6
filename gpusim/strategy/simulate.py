"""Simulation with a Python optimiser that sees the live portfolio (DESIGN §6, issue 11).

``gpusim.simulate(market, optimize=fn, every="W", fees=0.001)`` calls ``fn(state)`` — plain
Python, never compiled (PyPortfolioOpt, cvxpy, ...) — at bar 0 and at the first bar of each
period of ``every`` (bars before ``warmup`` excepted), with :class:`OptimizeState` (the date,
the price history up to that bar, value, cash, holdings, drifted weights, targets in force,
the combination's parameters). It returns new target weights (array, Series or dict by
symbol; symbols left out get 0), which the portfolio trades to at that bar with the §6
execution model, or None to keep the targets in force without trading. Bar 0 always trades
(to ``weights=`` unless the optimiser returned targets).

The simulation runs in segments between call bars (:mod:`gpusim.strategy.segments`), carrying
cash, holdings and the online metrics: the result equals one simulation of the same dated
targets (:meth:`SimulationResult.schedule`), bar for bar. Several combinations (Params in
``weights``, ``every``, ``fees`` or ``params``) run in one batch: each call bar calls the
optimiser once per combination due, then one segment kernel advances all of them.
"""

from __future__ import annotations

import inspect
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cpu_ref.backtest import METRICS
from gpusim.backtest.result import LOWER_IS_BETTER
from gpusim.data.load import as_market
from gpusim.errors import GpusimError
from gpusim.grid import Param, build_grid
from gpusim.results import MetricsResult, jsonable, versions
from gpusim.schedule import resolve_initial
from gpusim.specs import axis_values, fee_value, rebalance_mask
from gpusim.strategy import segments as seg
from gpusim.validate import cash_and_rate, integer

__all__ = ["OptimizeState", "SimulationResult", "check_optimize", "simulate"]

_NEG_TOL = 1e-9   # negative targets down to -1e-9 (solver noise) are read as 0
_SUM_TOL = 1e-6   # targets must sum to at most 1 + 1e-6 (long-only, no leverage)


@dataclass
class OptimizeState:
    """What the optimiser sees at a call bar (before any order; host objects).

    Attributes
    ----------
    date : Timestamp of the bar; bar : its index t.
    history : DataFrame of the closes of bars 0..t (dates x symbols).
    value : V_t; cash : cash.
    holdings : Series of units by symbol.
    weights : Series of the drifted weights h_j p_tj / V_t by symbol.
    targets : Series of the targets in force (of the last trade) by symbol.
    params : dict of the combination's ``params`` values.
    """

    date: pd.Timestamp
    bar: int
    history: pd.DataFrame
    value: float
    cash: float
    holdings: pd.Series
    weights: pd.Series
    targets: pd.Series
    params: dict


def _targets(r, symbols: list[str], where: str) -> np.ndarray:
    """The optimiser's answer as an (A,) array aligned to ``symbols`` (checked)."""
    A = len(symbols)
    if isinstance(r, (dict, pd.Series)):
        s = pd.Series(r, dtype=float)
        s.index = [str(k) for k in s.index]
        unknown = [k for k in s.index if k not in symbols]
        if unknown:
            raise GpusimError(f"optimize returned weights for {unknown[:5]} at {where}, which "
                              f"are not symbols of the prices; use {symbols[:8]}")
        w = s.reindex(symbols, fill_value=0.0).to_numpy(dtype=float)
    else:
        w = np.asarray(r, dtype=float).reshape(-1)
        if w.shape[0] != A:
            raise GpusimError(f"optimize returned {w.shape[0]} weights at {where}; return {A} "
                              "(one per symbol), a dict or Series by symbol, or None to keep")
    if not np.all(np.isfinite(w)) or np.any(w < -_NEG_TOL) or w.sum() > 1.0 + _SUM_TOL:
        raise GpusimError(f"optimize returned weights {np.round(w, 6).tolist()} at {where}: "
                          "return long-only weights (>= 0) summing to at most 1, or None")
    return np.maximum(w, 0.0)


def simulate(market, optimize, every: Any = "W", fees: Any = 0.0, weights: Any = "equal",
             params: dict | None = None, warmup: int = 0, init_cash: float = 1.0,
             rf: float = 0.0, backend: str = "auto", progress: bool = True
             ) -> SimulationResult:
    """Simulate portfolios re-allocated by a Python optimiser (see the module docstring).

    Parameters
    ----------
    market : Market or prices DataFrame.
    optimize : ``optimize(state: OptimizeState) -> targets or None``, or its spec
        ``"file.py:name"`` / ``"package.module:name"``
        (:func:`gpusim.strategy.loader.load_function`).
    every : call rule: ``"D"``/``"W"``/``"M"``/``"Q"``/``"Y"``, k bars, a (T,) bool mask, or a
        Param of those.
    fees : proportional fee in [0, 1), or a Param.
    weights : targets before the first answer (any ``weights=`` of :func:`gpusim.backtest`).
    params : ``{name: value or Param}`` passed to the optimiser as ``state.params``.
    warmup : no call before this bar (bar 0 then trades to ``weights``).
    init_cash, rf : starting cash and annual risk-free rate.
    backend : ``"auto"`` or ``"cpu"``: the segments run on the CPU (between two calls of a
        Python function there is too little work for a GPU launch); ``"gpu"`` is an error.
    progress : a tqdm bar over the call bars (on a terminal).

    Returns
    -------
    SimulationResult
    """
    if backend not in ("auto", "cpu", "gpu"):
        raise GpusimError(f"backend={backend!r} is unknown; use 'auto', 'cpu' or 'gpu'")
    if backend == "gpu":
        raise GpusimError("simulate runs on the CPU (the optimiser is Python and each segment "
                          "is short); use backend='cpu' or 'auto'")
    if isinstance(optimize, str):
        from gpusim.strategy.loader import load_function

        optimize = load_function(optimize, what="optimize")
    check_optimize(optimize)
    mkt = as_market(market)
    prices = mkt.prices
    symbols = [str(s) for s in prices.columns]
    close = np.ascontiguousarray(prices.to_numpy(dtype=np.float64))
    T, A = close.shape
    wsrc, wname, wlevel = resolve_initial(weights, symbols, 'simulate')
    entries: dict[str, Any] = {"weights": Param(wsrc.labels, wname, wlevel)}
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise GpusimError(f"params={params!r} must be a dict {{name: value or Param}}")
    for k, v in params.items():
        if k in ("weights", "every", "fees"):
            raise GpusimError(f"params: the name {k!r} is not allowed; choose another")
        entries[k] = v
    rules = every.values if isinstance(every, Param) else [every]
    rl = [rebalance_mask(r, prices.index, "every") for r in rules]
    masks = np.stack([m for _, m in rl])
    entries["every"] = (Param([lab if lab != "mask" else f"mask{i}" for i, (lab, _) in
                               enumerate(rl)], every.name, every.level)
                        if isinstance(every, Param) else rl[0][0])
    entries["fees"], fee_vals = axis_values(fees, fee_value)
    warmup = integer(warmup, "warmup", 0)
    init_cash, rf = cash_and_rate(init_cash, rf)
    grid = build_grid(entries)
    C = grid.size
    axis_of = {k: (e.name or k) for k, e in entries.items() if isinstance(e, Param)}
    codes = grid.codes(0, C)
    code = {k: codes[axis_of[k]] if k in axis_of else np.zeros(C, dtype=np.int64)
            for k in entries}
    W0 = wsrc.rows(0, len(wsrc.labels), A)[code["weights"]]
    fee_c = np.ascontiguousarray(fee_vals[code["fees"]])
    cmask = masks[code["every"]]                     # (C, T) call bars per combination
    cmask[:, :warmup] = False
    cmask[:, 0] = warmup == 0
    pdicts = [{k: (entries[k].values[code[k][c]] if k in axis_of else entries[k])
               for k in params} for c in range(C)]
    starts = np.flatnonzero(cmask.any(axis=0) | (np.arange(T) == 0))
    ends = np.append(starts[1:], T)
    cash, h, acc, tot = seg.new_state(C, A, init_cash)
    values = np.empty((C, T))
    tin = W0.copy()
    sched = [[] for _ in range(C)]
    rf_bar = rf / float(mkt.ann)
    t0 = time.perf_counter()
    n_calls = 0
    from tqdm.auto import tqdm

    for t, t1 in tqdm(list(zip(starts, ends, strict=True)), desc="simulate", unit="call",
                      disable=not progress or not sys.stderr.isatty(), leave=False):
        do = np.zeros(C, dtype=np.bool_) | (t == 0)
        due = np.flatnonzero(cmask[:, t])
        if due.size:
            v = seg.mark_nb(close, int(t), cash, h)
            for c in due:
                st = _state(prices, symbols, close, int(t), v[c], cash[c], h[:, c], tin[c],
                            pdicts[c])
                try:
                    r = optimize(st)
                except Exception as exc:
                    exc.add_note(f"(gpusim.simulate: optimize at {st.date.date()}, "
                                 f"combination {grid.labels_of(int(c))})")
                    raise
                n_calls += 1
                if r is not None:
                    tin[c] = _targets(r, symbols, f"{st.date.date()}")
                    do[c] = True
        seg.segment_nb(close, int(t), int(t1), tin, do, fee_c, cash, h, acc, tot, rf_bar,
                       values)
        for c in np.flatnonzero(do):
            sched[c].append((int(t), tin[c].copy()))
    elapsed = time.perf_counter() - t0
    out = seg.finish_nb(T, (init_cash, float(mkt.ann), rf), values, acc, tot)
    metrics = pd.DataFrame(out, index=grid.index_block(0, C), columns=list(METRICS))
    summary = {"command": "simulate", "optimize": getattr(optimize, "__qualname__", "?"),
               "backend": "cpu", "n_combinations": C, "n_bars": T, "n_assets": A,
               "symbols": symbols, "start": str(prices.index[0]), "end": str(prices.index[-1]),
               "ann": float(mkt.ann), "levels": {a.name: len(a.labels) for a in grid.axes},
               "fixed": {k: jsonable(v) for k, v in grid.fixed.items()}, "warmup": warmup,
               "n_segments": len(starts), "n_calls": n_calls, "init_cash": init_cash,
               "rf": rf, "elapsed_s": round(elapsed, 6), "versions": versions()}
    ctx = _Ctx(grid, prices.index, symbols, values, sched, starts, ends)
    return SimulationResult(metrics, summary, False, ctx)


def check_optimize(fn, what: str = "optimize") -> None:
    """GpusimError (naming ``what``) unless ``fn`` is callable with one positional argument
    (the state).
    """
    if not callable(fn):
        raise GpusimError(f"{what}={fn!r} must be a function optimize(state) -> "
                          "targets or None")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):      # no signature to read (some builtins): let it run
        return
    try:
        sig.bind(None)
    except TypeError:
        name = getattr(fn, "__qualname__", repr(fn))
        raise GpusimError(f"{what} function {name!r} takes ({', '.join(sig.parameters)}); "
                          "it must take one argument: optimize(state) -> targets or None"
                          ) from None


def _state(prices, symbols, close, t, v, cash, hc, targets, params) -> OptimizeState:
    idx = pd.Index(symbols)
    w = hc * close[t] / v if v > 0 else np.zeros(len(symbols))
    return OptimizeState(prices.index[t], t, prices.iloc[:t + 1], float(v), float(cash),
                         pd.Series(hc.copy(), index=idx), pd.Series(w, index=idx),
                         pd.Series(targets.copy(), index=idx), dict(params))


@dataclass
class _Ctx:
    grid: Any
    dates: pd.DatetimeIndex
    symbols: list[str]
    values: np.ndarray        # (C, T)
    sched: list               # per combination: [(bar, (A,) targets)]
    starts: np.ndarray
    ends: np.ndarray


class SimulationResult(MetricsResult):
    """Result of :func:`simulate`: ``metrics`` (one row per combination, columns ``METRICS``),
    ``summary``; per combination its value path, its dated targets and its segments.
    """

    metric_names = METRICS
    lower_is_better = LOWER_IS_BETTER

    def _flat(self, key, level_values) -> int:
        if key is None and not level_values and len(self.metrics) == 1:
            return 0
        return self._locate(key, level_values)

    def value(self, key: tuple | None = None, **level_values) -> pd.Series:
        """V_t of one combination (by row label or level values), indexed by date."""
        c = self._flat(key, level_values)
        return pd.Series(self._ctx.values[c], index=self._ctx.dates, name="value")

    def schedule(self, key: tuple | None = None, **level_values) -> pd.DataFrame:
        """The dated targets one combination traded to (dates x symbols): the target schedule
        whose single simulation equals this one.
        """
        ctx = self._ctx
        rows = ctx.sched[self._flat(key, level_values)]
        return pd.DataFrame([w for _, w in rows], index=ctx.dates[[t for t, _ in rows]],
                            columns=ctx.symbols)

    def segments(self, key: tuple | None = None, **level_values) -> pd.Series:
        """The final value of each segment (between call bars) of one combination, indexed by
        the segment's last date.
        """
        ctx = self._ctx
        c = self._flat(key, level_values)
        last = ctx.ends - 1
        return pd.Series(ctx.values[c, last], index=ctx.dates[last], name="value")

    def _value_path(self, key) -> pd.Series:
        return self.value(key)

    def _tables(self) -> dict[str, pd.DataFrame]:
        """Saved beside ``metrics`` (:meth:`save`): ``value`` (V_t by date), ``schedule`` (the
        dated targets by symbol) and ``segments`` (each segment's final value), each a long
        table of the combinations' levels, ``date`` and the values (of the rows run).
        """
        keys = [k if isinstance(k, tuple) else (k,) for k in self.metrics.index]
        names = [*self.metrics.index.names, "date"]
        out = {}
        for stem, get in (("value", self.value), ("schedule", self.schedule),
                          ("segments", self.segments)):
            parts = [get(k).rename_axis("date") for k in self.metrics.index]
            parts = [p.to_frame("value") if isinstance(p, pd.Series) else p for p in parts]
            out[stem] = pd.concat(parts, keys=keys, names=names) if parts else pd.DataFrame()
        return out
