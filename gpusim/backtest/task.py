"""The ``backtest`` sweep task: :func:`gpusim.backtest` over blocks of grid combinations.

A sweep (:mod:`gpusim.sweep`) with ``task = "backtest"`` sweeps weights x rebalance x threshold
x threshold_abs x fees (in that order) inside each call; ``band``, ``relative``, ``init_cash``
and ``rf`` are call-level. A weights value ``{schedule = "targets.csv"}`` is a target schedule
(dates x symbols); a file given as ``weights = "w.csv"`` is a table of constant portfolios (in
the grid: one level value per row). A band value (``threshold``, ``threshold_abs``, fixed or
swept) is a number, ``"none"``, a table by symbol ``{SPY = 0.05}`` or a dated band file
``{file = "bands.csv"}`` (:func:`gpusim.schedule.band_arg`); a level holding a table or a file
is labelled in text (:func:`_band_labels`). Paths are resolved by the job loader
(:func:`gpusim.sweep.values.job_paths`).
Every chunk is one ``backtest()`` call on a rectangular sub-grid, so the rows are those of one
uninterrupted call (the kernel is chunking-invariant).

With ``alloc = "strategies.py:fn"`` under ``[fixed]`` the task runs a user allocation function
instead (its parameters become job keys): :mod:`gpusim.strategy.alloc_sweep`, to which every
method hands a context of that kind.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpusim.backtest.api import _available_bytes
from gpusim.backtest.result import rows_table
from gpusim.errors import GpusimError
from gpusim.parse import job_weights
from gpusim.sweep.engine import cores as _cores
from gpusim.sweep.tasks import TaskRunner, level_kind, register_task
from gpusim.validate import py_scalar

__all__ = ["BacktestTask"]

BT_ORDER = ("weights", "rebalance", "threshold", "threshold_abs", "fees")
_CALL = ("band", "relative", "init_cash", "rf")


@dataclass
class _Group:
    """One grid group of the backtest call (a level, or zipped levels)."""

    members: list[str]
    size: int
    weights: Any = None                  # gpusim.specs.Weights when "weights" is a member
    values: dict = field(default_factory=dict)   # member -> list of argument values
    labels: dict = field(default_factory=dict)   # member -> list of index labels


@dataclass
class _BtCtx:
    market: Any
    symbols: list[str]
    groups: list[_Group]
    fixed_native: dict
    call_fixed: dict
    backend: str
    levels: list[str]
    kinds: dict[str, str]
    default_chunk: int


def _swept_weights(col: list, symbols: list[str], zipped: bool) -> list:
    """The values of a swept ``weights`` level: a file of constant portfolios gives one
    vector per row, labelled by the file's stem (``stem:row`` when it has several rows).
    """
    from gpusim.schedule import Portfolios

    out = []
    for x in col:
        v = job_weights(x, symbols)
        if not isinstance(v, Portfolios):
            out.append(v)
            continue
        t, stem = v.table, Path(str(x["file"] if isinstance(x, Mapping) else x)).stem
        if zipped and len(t) > 1:
            raise GpusimError(f"grid.weights: {stem} holds {len(t)} portfolios, so it cannot be "
                              "zipped with other levels; give one portfolio per file there")
        out.extend(row.rename(stem if len(t) == 1 else f"{stem}:{lab}")
                   for lab, row in t.iterrows())
    return out


def _band_labels(raw: list, vals: list, symbols: list[str], what: str) -> list:
    """Result labels of a swept band level: numbers (None: NaN) when every value is a number or
    none, else text for every value: ``"SPY=0.05 TLT=0.1"`` for a band per symbol, the file's
    stem for ``{file = PATH}`` (its path when two stems are equal), a Series's name (else
    ``dated<i>`` / ``per-asset<i>``), numbers as ``"0.05"`` and none as ``"none"``.
    """
    def num(x) -> str:
        return repr(float(x))

    labs: list = []
    for i, (r, v) in enumerate(zip(raw, vals)):
        if v is None or _is_number(v):
            labs.append(None if v is None else float(v))
        elif isinstance(r, Mapping) and "file" in r:
            labs.append(Path(str(r["file"])).stem)
        elif isinstance(v, Mapping):
            labs.append(" ".join(f"{k}={num(x)}" for k, x in v.items()))
        elif isinstance(v, (list, tuple, np.ndarray)) and np.ndim(v) == 1:
            labs.append(" ".join(f"{s}={num(x)}" for s, x in zip(symbols, v)))
        else:
            name = v.name if isinstance(v, pd.Series) else None
            dated = isinstance(getattr(v, "index", None), pd.DatetimeIndex)
            labs.append(name if isinstance(name, str) else
                        f"{'dated' if dated else 'per-asset'}{i}")
    if all(x is None or isinstance(x, float) for x in labs):
        return labs
    labs = ["none" if x is None else num(x) if isinstance(x, float) else x for x in labs]
    for i, r in enumerate(raw):                      # equal stems: the paths tell them apart
        if isinstance(r, Mapping) and "file" in r and labs.count(labs[i]) > 1:
            labs[i] = str(r["file"])
    dup = next((x for x in labs if labs.count(x) > 1), None)
    if dup is not None:
        raise GpusimError(f"grid.{what}: two values are labelled {dup!r} in the results; give "
                          "each band a distinct name (or leave one out)")
    return labs


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(
        x, (bool, np.bool_))


class BacktestTask(TaskRunner):
    """Rebalancing backtests (:func:`gpusim.backtest`) over blocks of grid combinations."""

    name = "backtest"
    params = {"weights": "target weights: equal | {random = N, seed = S} | vectors | file | "
                         "{schedule = FILE} (dates x symbols)",
              "rebalance": "never | D | W | M | Q | Y | k (every k bars)",
              "threshold": "drift band: a number | none | a table by symbol (per asset) | "
                           "{file = FILE} (dates, then one column or one per symbol)",
              "threshold_abs": "absolute part of the hybrid band (values as threshold)",
              "fees": "proportional fee", "band": "absolute | relative | hybrid",
              "relative": "relative drift band (bool)",
              "init_cash": "starting cash", "rf": "annual risk-free rate",
              "alloc": "a user allocation function \"FILE.py:NAME\" (its parameters become "
                       "keys too; gpusim.strategy.alloc_sweep)",
              "params": "with alloc: the order of the function's params row (a list)",
              "seed": "with alloc: the seed of c.uniform",
              "share_draws": "with alloc: levels whose values share one random stream"}
    native = frozenset(BT_ORDER)
    unit = "combinations"
    rank_by = ("sharpe", False)

    # alloc = "file.py:fn" (a user allocation function): gpusim.strategy.alloc_sweep, whose
    # context is an AllocCtx; every method below hands such a context over to it
    def check_names(self, fixed, level_names):
        from gpusim.strategy.alloc_sweep import check_alloc_names

        if "alloc" not in fixed and "alloc" not in level_names:
            super().check_names(fixed, level_names)
            only = [k for k in ("params", "seed", "share_draws")
                    if k in fixed or k in level_names]
            if only:
                raise GpusimError(f"{only[0]} is for alloc: give the allocation function too "
                                  "(alloc = \"FILE.py:NAME\" under [fixed])")
            return

        check_alloc_names(fixed, level_names)

    def native_names(self, fixed, level_names):
        if "alloc" not in fixed:
            return self.native
        from gpusim.strategy.alloc_sweep import NATIVE, alloc_names

        return frozenset([*NATIVE, *alloc_names(fixed, level_names)])

    def label_rows(self, ctx, rows: list[dict]) -> list[dict]:
        """The best rows of a sweep with their target weights by symbol (random targets are
        regenerated from their seed and row number); rows whose weights have no single vector
        (schedules) are left as they are.
        """
        if _alloc(ctx):
            return rows
        g = next((g for g in ctx.groups if g.weights is not None), None)
        if g is None or not hasattr(g.weights, "rows"):
            return rows
        labels = [str(x) for x in g.labels["weights"]]
        out = []
        for r in rows:
            key = str(r.get("weights"))
            if key not in labels:
                out.append(r)
                continue
            i = labels.index(key)
            w = np.asarray(g.weights.rows(i, i + 1, len(ctx.symbols)), dtype=np.float64)
            if w.shape != (1, len(ctx.symbols)):
                out.append(r)
                continue
            out.append({**r, **dict(zip(ctx.symbols, w[0].tolist(), strict=True))})
        return out

    def prepare(self, market, fixed, native_axes, backend):
        if "alloc" in fixed:
            from gpusim.strategy.alloc_sweep import prepare_alloc

            ctx = prepare_alloc(market, fixed, native_axes, backend)
            self.check_point(ctx, {})
            return ctx
        from gpusim.backtest.api import METRICS, _band_kind
        from gpusim.grid import Param
        from gpusim.schedule import band_arg, band_value, resolve_targets
        from gpusim.specs import fee_value, rebalance_mask

        symbols = list(market.symbols)
        index = market.prices.index

        groups: list[_Group] = []
        if not any("weights" in a.names for a in native_axes):
            w = job_weights(fixed.get("weights", "equal"), symbols)
            ws, _, _ = resolve_targets(w, symbols, index)
            groups.append(_Group(["weights"], len(ws.labels), weights=ws,
                                 labels={"weights": ws.labels}))
        for a in native_axes:
            g = _Group(sorted(a.names, key=BT_ORDER.index), a.size)
            for m in g.members:
                col = a.column(m)
                if m == "weights":
                    vals = _swept_weights(col, symbols, zipped=len(g.members) > 1)
                    ws, _, _ = resolve_targets(Param(vals, name="weights"), symbols, index)
                    g.weights, g.labels[m], g.size = ws, ws.labels, len(ws.labels)
                elif m == "rebalance":
                    labs = []
                    for r in col:
                        if isinstance(r, list):
                            raise GpusimError("rebalance masks cannot be swept; give rules "
                                              "(never, D, W, M, Q, Y, k)")
                        labs.append(rebalance_mask(r, index)[0])
                    g.values[m], g.labels[m] = col, labs
                elif m in ("threshold", "threshold_abs"):
                    vals = [band_arg(x, f"grid.{m}") for x in col]
                    for x in vals:
                        band_value(x, symbols, index, f"grid.{m}")
                    g.values[m] = vals
                    g.labels[m] = _band_labels(col, vals, symbols, m)
                else:
                    for x in col:
                        fee_value(x)
                    g.values[m], g.labels[m] = col, [float(x) for x in col]
            groups.append(g)
        groups.sort(key=lambda g: min(BT_ORDER.index(m) for m in g.members))
        in_grid = {m for g in groups for m in g.members}
        fixed_native = {k: (band_arg(v, f"fixed.{k}") if k.startswith("threshold") else v)
                        for k, v in fixed.items() if k in BT_ORDER and k not in in_grid}
        if "rebalance" in fixed_native:
            rebalance_mask(fixed_native["rebalance"], index)
        for k in ("threshold", "threshold_abs"):
            if fixed_native.get(k) is not None:
                band_value(fixed_native[k], symbols, index, f"fixed.{k}")
        if "fees" in fixed_native:
            fee_value(fixed_native["fees"])
        call_fixed = {k: fixed[k] for k in _CALL if k in fixed}
        has_abs = "threshold_abs" in in_grid or fixed_native.get("threshold_abs") is not None
        if not any(k in a.names for a in native_axes for k in _CALL):
            _band_kind(call_fixed.get("band"), call_fixed.get("relative", False),
                       0.0 if has_abs else None)
        levels = [m for m in BT_ORDER if m in in_grid]
        kinds = {m: level_kind(g.labels[m]) for g in groups for m in g.members}
        per_row = 8 * (len(METRICS) + len(levels) + len(symbols)) * 4
        work = 2 ** 30 if backend.name == "gpu" and not backend.simulator else (
            2 ** 12 if backend.name == "gpu" else 2 ** 24 * _cores())
        default = int(max(1, min(work // len(index), _available_bytes() // 8 // per_row,
                                 2 ** 22)))
        ctx = _BtCtx(market, symbols, groups, fixed_native, call_fixed, backend.name, levels,
                     kinds, default)
        self.check_point(ctx, {})
        return ctx

    def check_point(self, ctx, point):
        if _alloc(ctx):
            ctx.context(point)        # init_cash, rf, seed checked (the function loaded once)
            return
        kw = {**ctx.call_fixed, **point}
        if "relative" in kw and not isinstance(kw["relative"], bool):
            raise GpusimError(f"relative={kw['relative']!r} must be true or false")
        if "band" in kw and kw["band"] not in ("absolute", "relative", "hybrid"):
            raise GpusimError(f"band={kw['band']!r} must be absolute, relative or hybrid")
        for k in ("init_cash", "rf"):
            if k in kw:
                v = kw[k]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise GpusimError(f"{k}={v!r} must be a finite number")
        if "init_cash" in kw and not kw["init_cash"] > 0:
            raise GpusimError(f"init_cash={kw['init_cash']!r} must be > 0")
        from gpusim.schedule import band_value

        for k, v in _call_bands(point).items():
            if k.startswith("threshold") and v is not None:
                band_value(v, ctx.symbols, ctx.market.prices.index, k)

    def levels(self, ctx):
        return list(ctx.levels)

    def level_kinds(self, ctx):
        return dict(ctx.kinds)

    def split(self, ctx, point, chunk_size):
        if _alloc(ctx):
            from gpusim.strategy.alloc_sweep import split

            return split(ctx, chunk_size)
        sizes = [g.size for g in ctx.groups]
        target = int(chunk_size or ctx.default_chunk)
        inner = [math.prod(sizes[i + 1:]) for i in range(len(sizes))]
        d = next(i for i in range(len(sizes)) if inner[i] <= target)
        step = max(1, target // inner[d])
        k = -(-sizes[d] // step)                  # pieces of near-equal size, each <= step
        cuts = [(i * sizes[d]) // k for i in range(k + 1)]
        parts = []
        for outer in np.ndindex(*sizes[:d]):
            for lo, hi in itertools.pairwise(cuts):
                parts.append({"fix": [int(x) for x in outer], "split": d, "lo": lo, "hi": hi,
                              "size": (hi - lo) * inner[d]})
        return parts

    def _positions(self, ctx, part) -> list[range]:
        out = []
        for gi, g in enumerate(ctx.groups):
            if gi < part["split"]:
                p = part["fix"][gi]
                out.append(range(p, p + 1))
            elif gi == part["split"]:
                out.append(range(part["lo"], part["hi"]))
            else:
                out.append(range(g.size))
        return out

    def describe(self, ctx, point, part):
        if _alloc(ctx):
            from gpusim.strategy.alloc_sweep import describe

            return describe(ctx, part)
        d = {}
        for g, pos in zip(ctx.groups, self._positions(ctx, part)):
            for m in g.members:
                labs = g.labels[m]
                first, last = py_scalar(labs[pos.start]), py_scalar(labs[pos.stop - 1])
                d[m] = first if len(pos) == 1 else f"{first}..{last} ({len(pos)} values)"
        return d

    def run(self, ctx, point, part):
        if _alloc(ctx):
            from gpusim.strategy.alloc_sweep import run

            return run(ctx, point, part)
        from gpusim.backtest.api import _run
        from gpusim.grid import Param
        from gpusim.schedule import ResolvedWeights

        kw = {**ctx.call_fixed, **_call_bands(point), **ctx.fixed_native}
        A = len(ctx.symbols)
        labels = {}                     # the band levels' result labels (not the call's)
        for gi, (g, pos) in enumerate(zip(ctx.groups, self._positions(ctx, part))):
            level = f"zip{gi}" if len(g.members) > 1 else None
            for m in g.members:
                if m == "weights":
                    kw[m] = ResolvedWeights(g.weights.take(pos.start, pos.stop, A), name=m,
                                            level=level)
                else:
                    kw[m] = Param([g.values[m][i] for i in pos], name=m, level=level)
                    if m.startswith("threshold"):
                        labels[m] = [g.labels[m][i] for i in pos]
        # the rows as arrays (no metrics frame and MultiIndex to build and take apart again)
        r = _run(ctx.market, backend=ctx.backend, progress=False, **kw)
        if r.partial:
            raise KeyboardInterrupt
        return (rows_table(r.ctx.grid, r.out, ctx.kinds, labels),
                {"compute_s": round(r.elapsed, 6)})


def _call_bands(point: dict) -> dict:
    """``point`` with its band values (a band zipped with a call-level parameter) as
    :func:`gpusim.backtest` arguments.
    """
    from gpusim.schedule import band_arg

    return {k: band_arg(v, k) if k.startswith("threshold") else v for k, v in point.items()}


def _alloc(ctx) -> bool:
    """True for a context of the alloc path (:class:`gpusim.strategy.alloc_sweep.AllocCtx`)."""
    return hasattr(ctx, "spec") and hasattr(ctx, "base")


register_task(BacktestTask())
