"""Rebalancing backtests over parameter grids (DESIGN §6, issue 3).

:func:`backtest` crosses target weight vectors with rebalance rules, drift thresholds and fee
levels (each may be a :class:`~gpusim.grid.Param` sweep axis), runs every combination through the
fast path of the chosen backend — :func:`gpusim.backtest.cpu.backtest_cpu_nb` (per-combination
index arrays from :meth:`Grid.codes`) or :class:`gpusim.backtest.cuda.BacktestGpuRunner` (the
chunk's weight block only; each GPU thread decodes its parameters from the flat combination
index, :mod:`gpusim.backtest.decode`) — in chunks (metrics only, no paths), and
returns a :class:`BacktestResult` whose ``metrics`` DataFrame has one row per combination.

Records, value paths and allocation plots for chosen combinations are produced by re-running just
those through the reference :func:`cpu_ref.backtest.simulate_1d_nb`.

Index levels, in this order: ``weights`` (always; labels are ``"equal"``, the DataFrame's row
labels, the candidate index of :class:`~gpusim.specs.RandomWeights`, or 0..K-1), then
``rebalance``, ``threshold`` and ``fees`` when they are Params (a Param's ``name`` renames its
level). Scalars are fixed and recorded in ``summary["fixed"]``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from cpu_ref.backtest import METRICS  # the 11 metric names, in column order
from gpusim.backend import resolve_backend
from gpusim.backtest.decode import level_table, weight_positions
from gpusim.backtest.result import LOWER_IS_BETTER, BacktestResult, Records
from gpusim.chunks import run_chunks
from gpusim.compiling import compile_notice
from gpusim.data.load import as_market
from gpusim.errors import GpusimError
from gpusim.grid import Grid, Param, build_grid
from gpusim.results import jsonable, versions
from gpusim.schedule import (
    BANDS,
    NEVER,
    Portfolios,
    Schedule,
    band_table,
    band_value,
    resolve_targets,
)
from gpusim.specs import (
    CALENDAR_RULES,
    VALID_RULES,
    RandomWeights,
    Weights,
    axis_values,
    calendar_mask,
    fee_value,
    rebalance_mask,
    threshold_value,
)
from gpusim.validate import cash_and_rate, check_chunk_size

__all__ = [
    "BANDS",
    "CALENDAR_RULES",
    "LOWER_IS_BETTER",
    "METRICS",
    "VALID_RULES",
    "BacktestResult",
    "Param",
    "Portfolios",
    "RandomWeights",
    "Records",
    "Schedule",
    "backtest",
    "calendar_mask",
    "rebalance_mask",
]

CPU_CHUNK_CAP = 2 ** 16
GPU_CHUNK_CAP = 2 ** 20


def _available_bytes() -> int:
    """Host memory available to this process (MemAvailable, else free pages; 2 GiB if
    unknown).
    """
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
    GPU also the (A,) scratch columns of the kernel (3 x A x 8 bytes).
    """
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
             progress: bool = True, *, band: str | None = None, threshold_abs: Any = None,
             alloc=None, params: dict | None = None, seed: int = 0,
             share_draws: Any = (), device: int | None = None) -> BacktestResult:
    """Simulate rebalanced portfolios over the grid of weights x rebalance x threshold
    (x threshold_abs) x fees.

    Parameters
    ----------
    market : Market or prices DataFrame (DatetimeIndex x symbols; read by ``load_prices``).
    weights : ``"equal"``; one vector (dict/Series by symbol, or (A,) array); a (K, A) array
        (labels 0..K-1); a DataFrame with the symbols as columns and row labels that are not
        dates (one constant portfolio per row, labelled by it); :class:`RandomWeights`
        (labels = candidate index); a target schedule: a DataFrame with a DatetimeIndex or
        ``gpusim.Schedule(df)`` (row d in force from the first bar >= d, which rebalances to
        it; a NaN row: no change); ``gpusim.Portfolios(df)`` (constant portfolios labelled by
        any row labels); or a Param of vectors and/or schedules. Long-only, each row summing to
        1 within 1e-8.
    rebalance : ``"never"``, an int k >= 1, ``"D"``/``"W"``/``"M"``/``"Q"``/``"Y"`` (first bar of
        each new period), a (T,) bool mask, or a Param of those. Bar 0 always rebalances.
    threshold : None (no band), a band or a Param of bands: rebalance when some asset drifts
        out of its band around the targets in force (ORed with ``rebalance``). A band is a
        float > 0, a vector per asset (array, or dict/Series by symbol: symbols left out have
        no band), a Series by date (changes over time; none before its first date) or a
        DataFrame dates x symbols.
    relative : shorthand for ``band="relative"``.
    band : ``"absolute"`` (default: |a_j - w_j| >= threshold_j), ``"relative"``
        (>= threshold_j w_j) or ``"hybrid"`` (>= max(threshold_j w_j, threshold_abs_j)).
    threshold_abs : the absolute part of the hybrid band (values as ``threshold``), or a Param.
    fees : proportional fee in [0, 1), or a Param.
    init_cash, rf : starting cash (> 0) and annual risk-free rate.
    backend : ``"auto"``, ``"cpu"``, ``"gpu"`` or ``"gpu:N"``; ``device``: the CUDA device
        (default ``GPUSIM_DEVICE``, else 0).
    chunk_size : combinations per kernel launch (default: planned from memory, <= 2**16 on the
        CPU, <= 2**20 on the GPU).
    progress : show a tqdm bar over combinations (only when stderr is a TTY).
    alloc, params, seed, share_draws : a user allocation function ``alloc(c, params, targets)
        -> bool`` and its parameters: see :func:`gpusim.strategy.api.backtest_alloc` (then
        ``rebalance`` is when ``alloc`` is called, every bar when ``"never"``, and
        ``threshold`` is not used: test the drift inside the function).

    Returns
    -------
    BacktestResult
        ``metrics``: host DataFrame (one row per combination, columns :data:`METRICS`). A
        Ctrl-C stops after the current chunk and returns the finished rows with
        ``partial=True``.
    """
    if device is not None:   # one device for numba.cuda and CuPy (gpusim.backend)
        from gpusim.backend import resolve_backend as _resolve

        backend = _resolve(backend, device)
    if alloc is not None:
        from gpusim.strategy.api import backtest_alloc

        if threshold is not None or relative or band is not None or threshold_abs is not None:
            raise GpusimError("threshold= and relative= are not used with alloc= (nor band=, "
                              "threshold_abs=): test the drift inside the function (c.weights "
                              "against c.targets)")
        return backtest_alloc(market, alloc, params, weights, rebalance, fees, seed,
                              share_draws, init_cash, rf, backend, chunk_size, progress)
    if params is not None:
        raise GpusimError("params= is for alloc=: pass the allocation function too")
    r = _run(market, weights, rebalance, threshold, relative, fees, init_cash, rf, backend,
             chunk_size, progress, band=band, threshold_abs=threshold_abs)
    ctx = r.ctx
    # copy=False: the frame wraps the kernel's rows (pandas copies a 2-D array by default,
    # which doubled the peak memory of large grids)
    metrics = pd.DataFrame(r.out[:r.done], index=ctx.grid.index_block(0, r.done),
                           columns=list(METRICS), copy=False)
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
                f"{len(ctx.wsrc.labels)} schedule(s)" if ctx.wsrc.first is not None else
                f"{len(ctx.wsrc.labels)} vector(s)"),
            "band": ctx.band, "relative": ctx.band == "relative",
            "init_cash": ctx.init_cash, "rf": ctx.rf,
            "chunk_size": self.chunk_size, "n_chunks": self.n_chunks,
            "compile_s": round(self.compile_s, 6), "elapsed_s": round(elapsed, 6),
            "combination_bars_per_s": float(done * T / elapsed) if elapsed > 0 else None,
            "versions": versions(),
        }


def _scalar_bands(kind, thr, ab, A):
    """Band rows of scalar bands (numbers or None; NaN = none): ``(B, bfirst, bnxt)`` without
    the per-value tables of :func:`band_table` (the common case, built in one go).
    """
    r = np.repeat(np.asarray(thr, dtype=np.float64), len(ab))[:, None]
    a = np.tile(np.asarray(ab, dtype=np.float64), len(thr))[:, None]
    if kind == "absolute":
        lo, hi = np.zeros_like(r), np.where(np.isnan(r), np.inf, r)
    elif kind == "relative":
        lo, hi = np.nan_to_num(r, nan=0.0), np.where(np.isnan(r), np.inf, 0.0)
    else:
        lo = np.nan_to_num(r, nan=0.0)
        hi = np.where(np.isnan(r) & np.isnan(a), np.inf, np.nan_to_num(a, nan=0.0))
    B = np.ascontiguousarray(np.concatenate([np.repeat(lo, A, 1), np.repeat(hi, A, 1)], 1))
    n = B.shape[0]
    return (B, np.arange(n, dtype=np.int64).reshape(len(thr), len(ab)),
            np.full(n, NEVER, dtype=np.int64))


def _is_scalar_band(x) -> bool:
    return x is None or (isinstance(x, (int, float, np.integer, np.floating))
                         and not isinstance(x, (bool, np.bool_)))


def _band_axis(arg, symbols, index, what):
    """(grid entry, [(rows, bars) per value] or [scalar per value]) of a band argument that
    may be a Param; scalars (numbers, None) are kept as floats (NaN: none), checked.
    """
    vals = arg.values if isinstance(arg, Param) else [arg]
    if all(_is_scalar_band(x) for x in vals):
        conv = threshold_value if what == "threshold" else (
            lambda x: float(band_value(x, symbols, index, what)[0][0, 0]))
        entry, v = axis_values(arg, conv)
        return entry, list(v)
    def label(x, i):
        if x is None or isinstance(x, (int, float, np.number)):
            return None if x is None else float(x)
        name = getattr(x, "name", None)
        kind = "dated" if isinstance(getattr(x, "index", None), pd.DatetimeIndex) else "per-asset"
        return str(name) if isinstance(name, str) else (kind if i is None else f"{kind}{i}")

    if isinstance(arg, Param):
        vals = [band_value(x, symbols, index, what) for x in arg.values]
        return Param([label(x, i) for i, x in enumerate(arg.values)], arg.name, arg.level), vals
    return label(arg, None), [band_value(arg, symbols, index, what)]


def _band_kind(band, relative, threshold_abs) -> str:
    if not isinstance(relative, (bool, np.bool_)):
        raise GpusimError(f"relative={relative!r} must be True or False")
    if band is None:
        band = "relative" if relative else "absolute"
    if band not in BANDS:
        raise GpusimError(f"band={band!r} is unknown; use one of {', '.join(map(repr, BANDS))}")
    if relative and band != "relative":
        raise GpusimError(f"relative=True contradicts band={band!r}; give only band=")
    if band == "hybrid" and threshold_abs is None:
        raise GpusimError("band='hybrid' needs threshold_abs= (its absolute part), e.g. "
                          "threshold=0.25, threshold_abs=0.02 for max(0.25 w, 0.02)")
    if band != "hybrid" and threshold_abs is not None:
        raise GpusimError("threshold_abs= is the absolute part of band='hybrid'; pass "
                          "band='hybrid', or use threshold= alone for an absolute band")
    return band


def _run(market, weights="equal", rebalance="never", threshold=None, relative=False, fees=0.0,
         init_cash=1.0, rf=0.0, backend="auto", chunk_size=None, progress=True, *, band=None,
         threshold_abs=None) -> _Run:
    """Validate the arguments, build the grid and run every combination through the kernel
    (chunked; a Ctrl-C keeps the finished rows). :func:`backtest` turns the rows into its
    metrics frame; sweeps turn them into Arrow tables directly.
    """
    mkt = as_market(market)
    prices = mkt.prices
    symbols = [str(s) for s in prices.columns]
    close = np.ascontiguousarray(prices.to_numpy(dtype=np.float64))
    T, A = close.shape

    wsrc, wname, wlevel = resolve_targets(weights, symbols, prices.index)

    if isinstance(rebalance, Param):
        rl = [rebalance_mask(r, prices.index) for r in rebalance.values]
        labels = [lab if lab != "mask" else f"mask{i}" for i, (lab, _) in enumerate(rl)]
        reb_entry: Any = Param(labels, rebalance.name, rebalance.level)
        masks = np.ascontiguousarray(np.stack([m for _, m in rl]))
    else:
        lab, m = rebalance_mask(rebalance, prices.index)
        reb_entry, masks = lab, np.ascontiguousarray(m.reshape(1, T))
    kind = _band_kind(band, relative, threshold_abs)
    thr_entry, thr_vals = _band_axis(threshold, symbols, prices.index, "threshold")
    abs_entry, abs_vals = _band_axis(threshold_abs, symbols, prices.index, "threshold_abs")
    fee_entry, fee_vals = axis_values(fees, fee_value)
    init_cash, rf = cash_and_rate(init_cash, rf)
    check_chunk_size(chunk_size)

    entries = {"weights": Param(wsrc.labels, wname, wlevel), "rebalance": reb_entry,
               "threshold": thr_entry, "threshold_abs": abs_entry, "fees": fee_entry}
    if kind != "hybrid":
        del entries["threshold_abs"]
    grid = build_grid(entries)
    axis_of = {k: (e.name or k) for k, e in entries.items() if isinstance(e, Param)}
    be = resolve_backend(backend)
    if be.name != "gpu":
        from gpusim.backtest.cpu import backtest_cpu_nb as kernel

    # band rows of every (threshold, threshold_abs) pair of values, stacked
    scalar = all(isinstance(v, float) for v in [*thr_vals, *abs_vals])
    if scalar:
        B, bfirst, bnxt = _scalar_bands(kind, thr_vals, abs_vals, A)
    else:
        zero = np.zeros(1, dtype=np.int64)
        thr_vals, abs_vals = ([(np.full((1, A), v), zero) if isinstance(v, float) else v
                               for v in vals] for vals in (thr_vals, abs_vals))
        blocks = [band_table(kind, r, a) for r in thr_vals for a in abs_vals]
        bfirst = np.cumsum([0] + [b[0].shape[0] for b in blocks])[:-1].reshape(
            len(thr_vals), len(abs_vals))
        B = np.ascontiguousarray(np.concatenate([b[0] for b in blocks]))
        bnxt = np.ascontiguousarray(np.concatenate([b[1] for b in blocks]))
    ctx = _Context(mkt, close, symbols, grid, axis_of, wsrc, masks, B, bfirst, bnxt, fee_vals,
                   kind, init_cash, float(mkt.ann), rf)
    C = grid.size
    need = C * (2 * 8 * len(METRICS) + 8 * len(grid.axes))   # metrics array, frame, index codes
    if need > _available_bytes():
        raise GpusimError(f"the grid has {C:,} combinations: its metrics table needs "
                          f"{need / 2**30:.1f} GiB but {_available_bytes() / 2**30:.1f} GiB are "
                          "available; split the grid (e.g. fewer weight vectors per call)")
    cs = int(chunk_size) if chunk_size else _plan_chunk(C, A, be.name)
    out = np.empty((C, len(METRICS)))
    # compile / load the kernel on a 1-combination, 2-bar slice so the timing is of the run
    # (skipped when this process already has the CPU kernel compiled: one parallel launch less)
    tc = time.perf_counter()
    if be.name == "gpu":   # prices, masks, bands, decode tables and scratch: once per call
        from gpusim.backtest.cuda import BacktestGpuRunner

        resident = BacktestGpuRunner(close, masks, B, bnxt, ctx.tables, init_cash,
                                     float(mkt.ann), rf, min(cs, C))
        with compile_notice("the backtest kernel", None, enabled=bool(progress)):
            resident.compile(*ctx.weight_block(0, 1))
    elif not getattr(kernel, "signatures", None):
        a = ctx.chunk_args(0, 1)
        with compile_notice("the backtest kernel", 7, enabled=bool(progress)):
            kernel(close[:2], a["W"], a["wid"], np.full_like(a["wnxt"], NEVER),
                   np.ascontiguousarray(masks[:, :2]), a["mid"], B, a["bid"],
                   np.full_like(bnxt, NEVER), a["fees"], init_cash, float(mkt.ann), rf)
    t0 = time.perf_counter()

    def chunk(start, stop):
        if be.name == "gpu":   # per chunk: the weight block; the rest is decoded on the device
            return resident(start, stop, *ctx.weight_block(start, stop))
        a = ctx.chunk_args(start, stop)
        return kernel(close, a["W"], a["wid"], a["wnxt"], masks, a["mid"], B, a["bid"], bnxt,
                      a["fees"], init_cash, float(mkt.ann), rf)

    r = run_chunks(out, cs, chunk, desc=f"backtest [{be.label}]", progress=progress,
                   unit_scale=True)
    return _Run(ctx, out, r.done, r.partial, be.label, cs, r.n_chunks, t0 - tc, r.elapsed_s)


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
    B: np.ndarray              # (RB, 2A) band rows [rel | abs] of every band value pair
    bfirst: np.ndarray         # (n threshold values, n threshold_abs values) first row in B
    bnxt: np.ndarray           # (RB,) switch bars of the band rows
    fees: np.ndarray
    band: str                  # "absolute" | "relative" | "hybrid"
    init_cash: float
    ann: float
    rf: float

    def _codes(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Positions into weights / masks / band values / fees for start..stop-1."""
        codes = self.grid.codes(start, stop)
        zeros = np.zeros(stop - start, dtype=np.int64)
        return {k: codes[self.axis_of[k]] if k in self.axis_of else zeros
                for k in ("weights", "rebalance", "threshold", "threshold_abs", "fees")}

    @cached_property
    def tables(self) -> tuple:
        """The decode tables of the GPU runner, ``(levels, remap, wfirst, bfirst, fees)``
        (:func:`gpusim.backtest.decode.combination`): a few small arrays for the whole grid.
        """
        levels, remap = level_table(self.grid, self.axis_of)
        wfirst = np.zeros(0, np.int64) if self.wsrc.first is None else self.wsrc.first
        return (levels, remap, np.ascontiguousarray(wfirst, dtype=np.int64),
                np.ascontiguousarray(self.bfirst, dtype=np.int64),
                np.ascontiguousarray(self.fees, dtype=np.float64))

    def weight_block(self, start: int, stop: int) -> tuple:
        """``(W (R, A), wnxt (R,) or None for constant targets, w0)``: the stacked weight rows
        ``w0 .. w0+R-1`` that combinations start..stop-1 trade to (what the GPU runner sends
        per chunk).
        """
        lo, hi = weight_positions(*self.tables[:2], start, stop)
        W, _, nxt = self.wsrc.block(lo, hi, len(self.symbols))
        return W, nxt, lo if self.wsrc.first is None else int(self.wsrc.first[lo])

    def chunk_args(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Kernel arguments W, wid, wnxt, mid, bid, fees for combinations start..stop-1."""
        c = self._codes(start, stop)
        wc = c["weights"]
        lo, hi = int(wc.min()), int(wc.max()) + 1   # contiguous: weights is the outer level
        W, first, nxt = self.wsrc.block(lo, hi, len(self.symbols))
        if nxt is None:
            nxt = np.full(W.shape[0], NEVER, dtype=np.int64)
        return {"W": W, "wid": first[wc - lo], "wnxt": nxt, "mid": c["rebalance"],
                "bid": np.ascontiguousarray(self.bfirst[c["threshold"], c["threshold_abs"]]),
                "fees": np.ascontiguousarray(self.fees[c["fees"]])}
