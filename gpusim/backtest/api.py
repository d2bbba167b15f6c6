"""Rebalancing backtests over parameter grids (DESIGN §6, issue 3).

:func:`backtest` crosses target weight vectors with rebalance rules, drift thresholds and fee
levels (each may be a :class:`~gpusim.grid.Param` sweep axis), runs every combination through the
fast path of the chosen backend — :func:`gpusim.backtest.cpu.backtest_cpu_nb` or
:func:`gpusim.backtest.cuda.backtest_gpu` — in chunks (metrics only, no paths), and
returns a :class:`BacktestResult` whose ``metrics`` DataFrame has one row per combination.

Records, value paths and allocation plots for chosen combinations are produced by re-running just
those through the reference :func:`cpu_ref.backtest.simulate_1d_nb`.

Index levels, in this order: ``weights`` (always; labels are ``"equal"``, the DataFrame's row
labels, the candidate index of :class:`~gpusim.grid.RandomWeights`, or 0..K-1), then
``rebalance``, ``threshold`` and ``fees`` when they are Params (a Param's ``name`` renames its
level). Scalars are fixed and recorded in ``summary["fixed"]``.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cpu_ref.backtest import METRICS  # the 11 metric names, in column order
from gpusim.backend import resolve_backend
from gpusim.data.market import as_market
from gpusim.errors import GpusimError
from gpusim.grid import (
    CALENDAR_RULES,
    VALID_RULES,
    Grid,
    Param,
    RandomWeights,
    Weights,
    axis_values,
    build_grid,
    calendar_mask,
    fee_value,
    rebalance_mask,
    resolve_weights,
    threshold_value,
)
from gpusim.results import flat_table, jsonable, save_metrics, versions, write_table

__all__ = ["backtest", "BacktestResult", "Records", "Param", "RandomWeights",
           "rebalance_mask", "calendar_mask", "METRICS", "CALENDAR_RULES", "VALID_RULES"]

LOWER_IS_BETTER = frozenset({"annual_volatility", "turnover", "fees_paid", "n_rebalances"})
"""Metrics whose best value is the smallest; for all others (max_drawdown included: <= 0,
closest to 0 is best) the largest is best."""
CPU_CHUNK_CAP = 2 ** 16
GPU_CHUNK_CAP = 2 ** 20


def _available_bytes() -> int:
    """Host memory available to this process (MemAvailable, else free pages; 2 GiB if
    unknown)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2 ** 31


def _plan_chunk(n_comb: int, n_assets: int, backend_name: str) -> int:
    """Combinations per chunk: a fixed cap, reduced to fit in 1/8 of the available host memory
    — per combination: the metrics row, index arrays and one weight row; on the
    GPU also the (A,) scratch columns of the kernel (3 x A x 8 bytes)."""
    per = 8 * (len(METRICS) + 4 + n_assets) + (24 * n_assets if backend_name == "gpu" else 0)
    avail = _available_bytes()
    cap = GPU_CHUNK_CAP if backend_name == "gpu" else CPU_CHUNK_CAP
    return int(max(1, min(cap, n_comb, avail // 8 // per)))


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------

def backtest(market, weights: Any = "equal", rebalance: Any = "never", threshold: Any = None,
             relative: bool = False, fees: Any = 0.0, init_cash: float = 1.0, rf: float = 0.0,
             backend: str = "auto", chunk_size: int | None = None,
             progress: bool = True) -> BacktestResult:
    """Simulate rebalanced portfolios over the grid of weights x rebalance x threshold x fees.

    Parameters
    ----------
    market : Market or prices DataFrame (DatetimeIndex x symbols; read by ``load_prices``).
    weights : ``"equal"``; one vector (dict/Series by symbol, or (A,) array); a (K, A) array
        (labels 0..K-1); a DataFrame with the symbols as columns (its row labels label the
        level); :class:`RandomWeights` (labels = candidate index); or a Param of vectors.
        Long-only, each summing to 1 within 1e-8.
    rebalance : ``"never"``, an int k >= 1, ``"D"``/``"W"``/``"M"``/``"Q"``/``"Y"`` (first bar of
        each new period), a (T,) bool mask, or a Param of those. Bar 0 always rebalances.
    threshold : None (no band), a float > 0 or a Param: rebalance when some asset drifts by at
        least this from its target (ORed with ``rebalance``).
    relative : band ``|a_j - w_j| >= threshold * w_j`` instead of the absolute band.
    fees : proportional fee in [0, 1), or a Param.
    init_cash, rf : starting cash (> 0) and annual risk-free rate.
    backend : ``"auto"``, ``"cpu"`` or ``"gpu"``.
    chunk_size : combinations per kernel launch (default: planned from memory, <= 2**16 on the
        CPU, <= 2**20 on the GPU).
    progress : show a tqdm bar over combinations (only when stderr is a TTY).

    Returns
    -------
    BacktestResult
        ``metrics``: host DataFrame (one row per combination, columns :data:`METRICS`). A
        Ctrl-C stops after the current chunk and returns the finished rows with
        ``partial=True``.
    """
    r = _run(market, weights, rebalance, threshold, relative, fees, init_cash, rf, backend,
             chunk_size, progress)
    ctx = r.ctx
    metrics = pd.DataFrame(r.out[:r.done], index=ctx.grid.index_block(0, r.done),
                           columns=list(METRICS))
    return BacktestResult(metrics, r.summary(weights), r.partial, ctx)


@dataclass
class _Run:
    """The raw outcome of :func:`_run`: the metrics rows (host array) before any frame."""

    ctx: Any
    out: np.ndarray            # (C, len(METRICS)); rows [0, done) are computed
    done: int
    partial: bool
    backend_label: str
    chunk_size: int
    n_chunks: int
    compile_s: float
    elapsed: float

    def summary(self, weights) -> dict:
        ctx, grid, prices = self.ctx, self.ctx.grid, self.ctx.market.prices
        T, A = ctx.close.shape
        done, elapsed = self.done, self.elapsed
        return {
            "command": "backtest", "backend": self.backend_label, "n_combinations": grid.size,
            "n_done": done, "partial": self.partial, "n_bars": T, "n_assets": A,
            "symbols": ctx.symbols, "start": str(prices.index[0]),
            "end": str(prices.index[-1]), "ann": ctx.ann,
            "ann_source": getattr(ctx.market, "ann_source", ""),
            "levels": {a.name: len(a.labels) for a in grid.axes},
            "fixed": {k: jsonable(v) for k, v in grid.fixed.items()},
            "weights": repr(weights) if isinstance(weights, RandomWeights) else (
                f"{len(ctx.wsrc.labels)} vector(s)"),
            "relative": ctx.relative, "init_cash": ctx.init_cash, "rf": ctx.rf,
            "chunk_size": self.chunk_size, "n_chunks": self.n_chunks,
            "compile_s": round(self.compile_s, 6), "elapsed_s": round(elapsed, 6),
            "combination_bars_per_s": float(done * T / elapsed) if elapsed > 0 else None,
            "versions": versions(),
        }


def _run(market, weights="equal", rebalance="never", threshold=None, relative=False, fees=0.0,
         init_cash=1.0, rf=0.0, backend="auto", chunk_size=None, progress=True) -> _Run:
    """Validate the arguments, build the grid and run every combination through the kernel
    (chunked; a Ctrl-C keeps the finished rows). :func:`backtest` turns the rows into its
    metrics frame; sweeps turn them into Arrow tables directly."""
    mkt = as_market(market)
    prices = mkt.prices
    symbols = [str(s) for s in prices.columns]
    close = np.ascontiguousarray(prices.to_numpy(dtype=np.float64))
    T, A = close.shape

    wsrc, wname, wlevel = resolve_weights(weights, symbols)

    if isinstance(rebalance, Param):
        rl = [rebalance_mask(r, prices.index) for r in rebalance.values]
        labels = [lab if lab != "mask" else f"mask{i}" for i, (lab, _) in enumerate(rl)]
        reb_entry: Any = Param(labels, rebalance.name, rebalance.level)
        masks = np.ascontiguousarray(np.stack([m for _, m in rl]))
    else:
        lab, m = rebalance_mask(rebalance, prices.index)
        reb_entry, masks = lab, np.ascontiguousarray(m.reshape(1, T))
    thr_entry, thr_vals = axis_values(threshold, threshold_value)
    fee_entry, fee_vals = axis_values(fees, fee_value)
    if not isinstance(relative, (bool, np.bool_)):
        raise GpusimError(f"relative={relative!r} must be True or False")
    try:
        init_cash, rf = float(init_cash), float(rf)
    except (TypeError, ValueError):
        raise GpusimError("init_cash and rf must be numbers") from None
    if not (init_cash > 0 and math.isfinite(init_cash)):
        raise GpusimError(f"init_cash={init_cash!r} must be a finite number > 0")
    if not math.isfinite(rf):
        raise GpusimError(f"rf={rf!r} must be a finite annual rate")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(
            chunk_size, (int, np.integer)) or chunk_size < 1):
        raise GpusimError(f"chunk_size={chunk_size!r} must be an int >= 1 (or None to plan it)")

    entries = {"weights": Param(wsrc.labels, wname, wlevel), "rebalance": reb_entry,
               "threshold": thr_entry, "fees": fee_entry}
    grid = build_grid(entries)
    axis_of = {k: (e.name or k) for k, e in entries.items() if isinstance(e, Param)}
    be = resolve_backend(backend)
    if be.name == "gpu":
        from gpusim.backtest.cuda import backtest_gpu as kernel
    else:
        from gpusim.backtest.cpu import backtest_cpu_nb as kernel

    ctx = _Context(mkt, close, symbols, grid, axis_of, wsrc, masks, thr_vals, fee_vals,
                   bool(relative), init_cash, float(mkt.ann), rf)
    C = grid.size
    need = C * (2 * 8 * len(METRICS) + 8 * len(grid.axes))   # metrics array, frame, index codes
    if need > _available_bytes():
        raise GpusimError(f"the grid has {C:,} combinations: its metrics table needs "
                          f"{need / 2**30:.1f} GiB but {_available_bytes() / 2**30:.1f} GiB are "
                          "available; split the grid (e.g. fewer weight vectors per call)")
    cs = int(chunk_size) if chunk_size else _plan_chunk(C, A, be.name)
    out = np.empty((C, len(METRICS)))
    done, partial, n_chunks = 0, False, 0
    from tqdm.auto import tqdm

    # compile / load the kernel on a 1-combination, 2-bar slice so the timing is of the run
    tc = time.perf_counter()
    a = ctx.chunk_args(0, 1)
    kernel(close[:2], a["W"], a["wid"], np.ascontiguousarray(masks[:, :2]), a["mid"],
           a["thresholds"], bool(relative), a["fees"], init_cash, float(mkt.ann), rf)
    t0 = time.perf_counter()
    bar = tqdm(total=C, unit="comb", unit_scale=True, desc=f"backtest [{be.label}]",
               disable=not progress or not sys.stderr.isatty(), leave=False)
    try:
        for start in range(0, C, cs):
            stop = min(C, start + cs)
            a = ctx.chunk_args(start, stop)
            out[start:stop] = kernel(close, a["W"], a["wid"], masks, a["mid"], a["thresholds"],
                                     bool(relative), a["fees"], init_cash, float(mkt.ann), rf)
            done, n_chunks = stop, n_chunks + 1
            bar.update(stop - start)
    except KeyboardInterrupt:
        partial = True
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0

    return _Run(ctx, out, done, partial, be.label, cs, n_chunks, t0 - tc, elapsed)


@dataclass
class _Context:
    """Everything needed to re-run one combination (host arrays)."""

    market: Any
    close: np.ndarray          # (T, A)
    symbols: list[str]
    grid: Grid
    axis_of: dict[str, str]    # argument -> level name, for the arguments that are Params
    wsrc: Weights
    masks: np.ndarray          # (M, T) bool
    thresholds: np.ndarray     # (values of the threshold axis,) NaN = no band
    fees: np.ndarray
    relative: bool
    init_cash: float
    ann: float
    rf: float

    def _codes(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Positions into weights rows / masks / thresholds / fees for start..stop-1."""
        codes = self.grid.codes(start, stop)
        zeros = np.zeros(stop - start, dtype=np.int64)
        return {k: codes[self.axis_of[k]] if k in self.axis_of else zeros
                for k in ("weights", "rebalance", "threshold", "fees")}

    def chunk_args(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Kernel arguments W, wid, mid, thresholds, fees for combinations start..stop-1."""
        c = self._codes(start, stop)
        wc = c["weights"]
        lo, hi = int(wc.min()), int(wc.max()) + 1   # contiguous: weights is the outer level
        return {"W": self.wsrc.rows(lo, hi, len(self.symbols)), "wid": wc - lo,
                "mid": c["rebalance"],
                "thresholds": np.ascontiguousarray(self.thresholds[c["threshold"]]),
                "fees": np.ascontiguousarray(self.fees[c["fees"]])}


# --------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------

@dataclass
class Records:
    """One combination re-run through ``cpu_ref.backtest.simulate_1d_nb`` (host objects).

    Attributes
    ----------
    params : ``{level or fixed argument: value}``.
    rebalance_bars : DatetimeIndex of the bars on which the rebalance routine ran.
    rebalance_idx : (K,) int64 bar indices of the same.
    target, realised : (K, A) DataFrames (rebalance dates x symbols): target weights and the
        allocations h_j p_j / V after that bar's orders.
    value : (T,) Series of V_t.
    metrics : Series of :data:`METRICS` from the reference.
    allocations : (T, A + 1) DataFrame of daily allocations h_j p_{t,j} / V_t plus ``cash``
        (holdings are constant between rebalance bars, so they follow from ``realised``).
    """

    params: dict
    rebalance_bars: pd.DatetimeIndex
    rebalance_idx: np.ndarray
    target: pd.DataFrame
    realised: pd.DataFrame
    value: pd.Series
    metrics: pd.Series
    allocations: pd.DataFrame = field(repr=False)

    def __getitem__(self, key: str):
        return getattr(self, key)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class BacktestResult:
    """Result of :func:`backtest`.

    Attributes
    ----------
    metrics : DataFrame, one row per combination (MultiIndex of the parameter levels), columns
        :data:`METRICS`. Host memory.
    summary : dict (backend, n_combinations, elapsed_s, combination_bars_per_s, versions, ...).
    partial : True when the run was interrupted (only the finished rows are in ``metrics``).
    """

    def __init__(self, metrics: pd.DataFrame, summary: dict, partial: bool, ctx: _Context):
        self.metrics = metrics
        self.summary = summary
        self.partial = partial
        self._ctx = ctx

    def __repr__(self) -> str:
        s = self.summary
        return (f"BacktestResult({len(self.metrics)} of {s['n_combinations']} combinations, "
                f"levels={list(self.metrics.index.names)}, backend={s['backend']!r}"
                f"{', partial' if self.partial else ''})")

    def best(self, metric: str = "sharpe", k: int = 10, ascending: bool | None = None
             ) -> pd.DataFrame:
        """The ``k`` best rows by ``metric`` (NaN last). By default the largest value is best,
        except for ``annual_volatility``, ``turnover``, ``fees_paid`` and ``n_rebalances``
        (smallest); for ``max_drawdown`` (<= 0) best means closest to 0."""
        if metric not in METRICS:
            raise GpusimError(f"metric={metric!r} is unknown; use one of {', '.join(METRICS)}")
        if ascending is None:
            ascending = metric in LOWER_IS_BETTER
        return self.metrics.sort_values(metric, ascending=ascending, na_position="last",
                                        kind="stable").head(int(k))

    def records(self, key: tuple | None = None, **level_values) -> Records:
        """Re-run one combination through the reference and return its :class:`Records`.

        Pick it by level values (``records(threshold=0.05)``; levels with one value may be
        omitted) or by a full row label of ``metrics`` (``records(res.best().index[0])``).
        """
        from cpu_ref.backtest import simulate_1d_nb

        ctx = self._ctx
        flat = ctx.grid.locate(key, **level_values)
        if flat >= len(self.metrics):
            raise GpusimError("that combination was not run (the run was interrupted); run again")
        a = ctx.chunk_args(flat, flat + 1)
        w = a["W"][a["wid"][0]]
        mask = ctx.masks[a["mid"][0]]
        thr, fee = float(a["thresholds"][0]), float(a["fees"][0])
        m, value, bars, tgt, real = simulate_1d_nb(ctx.close, w, mask, thr, ctx.relative, fee,
                                                   ctx.init_cash, ctx.ann, ctx.rf)
        dates = ctx.market.prices.index
        sym = pd.Index(ctx.symbols)
        rb = dates[bars]
        V = np.asarray(value)
        seg = np.searchsorted(bars, np.arange(len(V)), side="right") - 1
        with np.errstate(divide="ignore", invalid="ignore"):
            H = real[seg] * V[bars][seg][:, None] / ctx.close[bars][seg]   # units held
            alloc = H * ctx.close / V[:, None]
        daily = pd.DataFrame(alloc, index=dates, columns=sym)
        daily["cash"] = 1.0 - alloc.sum(axis=1)
        params = {**ctx.grid.labels_of(flat),
                  **{k: jsonable(v) for k, v in ctx.grid.fixed.items()},
                  "relative": ctx.relative, "init_cash": ctx.init_cash}
        return Records(params=params, rebalance_bars=pd.DatetimeIndex(rb), rebalance_idx=bars,
                       target=pd.DataFrame(tgt, index=rb, columns=sym),
                       realised=pd.DataFrame(real, index=rb, columns=sym),
                       value=pd.Series(V, index=dates, name="value"),
                       metrics=pd.Series(m, index=list(METRICS), name="reference"),
                       allocations=daily)

    def plot_allocations(self, path, key: tuple | None = None, **level_values) -> Path:
        """Write a PNG: stacked daily allocations of one combination (re-run through the
        reference), with a vertical marker at each rebalance bar. Returns the path."""
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError:
            raise GpusimError("plot_allocations needs matplotlib: pip install 'gpusim[plot]'"
                              ) from None
        rec = self.records(key, **level_values)
        alloc = rec.allocations
        if float(alloc["cash"].abs().max()) < 1e-9:
            alloc = alloc.drop(columns="cash")
        fig = Figure(figsize=(10, 5))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        ax.stackplot(alloc.index, alloc.to_numpy().T.clip(min=0), labels=list(alloc.columns),
                     alpha=0.85)
        ax.vlines(rec.rebalance_bars, 0, 1, colors="k", linewidths=0.6, alpha=0.5,
                  label=f"rebalance ({len(rec.rebalance_bars)})")
        ax.set_ylim(0, 1)
        ax.set_xlim(alloc.index[0], alloc.index[-1])
        ax.set_ylabel("allocation")
        ax.set_title(", ".join(f"{k}={v}" for k, v in rec.params.items()), fontsize=9)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=110)
        return path

    # ---- output ----

    def save(self, out_dir, best_k: int = 10, sort_by: str = "sharpe",
             fmt: str | None = None) -> Path:
        """Write ``metrics.parquet`` (``metrics.csv`` when Parquet is unavailable, or with
        ``fmt="csv"``), ``best.csv`` (top ``best_k`` by ``sort_by``) and ``summary.json`` into
        ``out_dir``.

        Atomic: everything is written to a temporary folder next to ``out_dir`` first, then
        renamed into place (file by file when ``out_dir`` already holds files), so a failure
        leaves nothing half-written.
        """
        if fmt not in (None, "parquet", "csv"):
            raise GpusimError(f"fmt={fmt!r} is unknown; use 'parquet' or 'csv'")
        best = self.best(sort_by, best_k)  # validates sort_by before anything is written
        return save_metrics(out_dir, self.metrics, best, self.summary, sort_by=sort_by,
                            best_k=best_k, fmt=fmt)

    to_parquet = save




# Former private names, still imported by other modules (to be switched to gpusim.results).
_table, _write_table, _jsonable = flat_table, write_table, jsonable
