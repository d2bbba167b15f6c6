"""Sweep tasks: what one chunk of a sweep computes, and how a task's results are split and merged.

A task is a :class:`TaskRunner` registered under a name (:func:`register_task`). The sweep
engine (:mod:`gpusim.sweep.api`) crosses the job's *call-level* grid axes into points (one task call
each) and asks the runner to split every point into chunks; grid axes made only of the runner's
``native`` parameters are handed to the runner, which sweeps them inside its own calls (e.g. the
backtest kernel's levels). Built in:

* ``backtest`` — :func:`gpusim.backtest` over blocks of combinations of its grid (weights x
  rebalance x threshold x fees, in that order); ``relative``, ``init_cash`` and ``rf`` are
  call-level. Every chunk is one ``backtest()`` call on a rectangular sub-grid, so the rows are
  those of one uninterrupted call (the kernel is chunking-invariant).
* ``search`` — the weight search over candidate-index ranges ``[start, start + m)`` of the
  counter-based stream (DESIGN §4); the chunks' top-k lists merge into the top-k of a single
  :func:`gpusim.search` call, bit for bit. All its parameters are call-level (seeds, samplers,
  bounds, ...).

Later tasks (``walkforward``, ``dynopt``) add a runner class and call
``register_task(Runner())`` when their module is imported; :data:`PROVIDERS` names the module
so that ``get_task`` imports it on demand. Runners must be picklable (the Dask engine ships
them and their context to the workers).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gpusim.errors import GpusimError
from gpusim.sweep.engine import cores as _cores
from gpusim.validate import py_scalar

__all__ = ["TaskRunner", "register_task", "get_task", "available_tasks", "BacktestTask",
           "SearchTask", "level_kind", "coerce_levels"]

PROVIDERS = {"walkforward": ("gpusim.walkforward.api", "walk-forward re-optimisation"),
             "dynopt": ("gpusim.dynopt.api", "dynamic optimisation")}
"""Tasks whose module registers them when imported: ``get_task`` imports it on demand."""


# ----------------------------------------------------------------------------- helpers
def level_kind(labels: Iterable) -> str:
    """Column kind of a level, from all its labels: ``bool``, ``int``, ``float`` (numbers with
    None as NaN) or ``str`` (strings, or mixed types written as text)."""
    if isinstance(labels, pd.Index) and len(labels):      # e.g. 10^8 random-weight labels
        if pd.api.types.is_bool_dtype(labels.dtype):
            return "bool"
        if pd.api.types.is_integer_dtype(labels.dtype):
            return "int"
        if pd.api.types.is_float_dtype(labels.dtype):
            return "float"
    vals = list(labels)
    if vals and all(isinstance(x, (bool, np.bool_)) for x in vals):
        return "bool"
    num = [x for x in vals if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if all(isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(
            x, (bool, np.bool_)) for x in num):
        if len(num) == len(vals) and all(isinstance(x, (int, np.integer)) for x in num):
            return "int"
        return "float"
    return "str"


def coerce_levels(df: pd.DataFrame, kinds: Mapping[str, str]) -> pd.DataFrame:
    """Give the level columns of ``df`` their kinds, so every chunk writes the same schema."""
    ok = {"float": np.float64, "int": np.int64, "bool": np.bool_}
    for name, kind in kinds.items():
        if name not in df.columns:
            continue
        col = df[name]
        if kind in ok and col.dtype == ok[kind]:
            continue
        if kind == "float":
            df[name] = pd.to_numeric(col.astype(object).where(col.notna(), np.nan),
                                     errors="raise").astype(np.float64)
        elif kind == "int":
            df[name] = col.astype(np.int64)
        elif kind == "bool":
            df[name] = col.astype(bool)
        else:
            df[name] = col.map(str).astype(str)
    return df


def _available_bytes() -> int:
    from gpusim.backtest.api import _available_bytes as avail

    return avail()


# ----------------------------------------------------------------------------- base class
class TaskRunner:
    """Base class of a sweep task.

    Attributes
    ----------
    name : the task's name in job files (``task = "..."``).
    params : ``{parameter: description}`` accepted under ``[fixed]`` or ``[grid]``.
    native : parameters the task sweeps inside one call; a grid axis made only of these is
        given to :meth:`prepare` instead of being crossed into points.
    unit : what :meth:`split` counts (for messages): ``"combinations"``, ``"candidates"``.
    rank_by : ``(column, ascending)`` of the summary's best rows, or None.
    partial_points : False when a point whose chunks partly failed must not be reported (e.g. a
        search's top-k needs every candidate range).

    Methods to implement: :meth:`prepare`, :meth:`levels`, :meth:`split`, :meth:`run`, and
    optionally :meth:`check_point`, :meth:`describe`, :meth:`reduce`.
    """

    name = ""
    params: dict[str, str] = {}
    native: frozenset[str] = frozenset()
    unit = "items"
    rank_by: tuple[str, bool] | None = None
    partial_points = True

    def prepare(self, market, fixed: dict, native_axes: list, backend) -> Any:
        """Validate the job and return the (picklable) context given to every call.

        ``native_axes``: :class:`gpusim.sweep.job.Axis` objects of native parameters;
        ``backend``: the resolved :class:`gpusim.backend.Backend`."""
        raise NotImplementedError

    def check_point(self, ctx, point: dict) -> None:
        """Validate the call-level values of one point (raise GpusimError)."""

    def levels(self, ctx) -> list[str]:
        """Index levels the task's result rows carry (after the call-level levels)."""
        return []

    def level_kinds(self, ctx) -> dict[str, str]:
        return {}

    def split(self, ctx, point: dict, chunk_size: int | None) -> list[dict]:
        """JSON-ready parts of one point, in result order; each has ``"size"`` (units)."""
        return [{"size": 1}]

    def describe(self, ctx, point: dict, part: dict) -> dict:
        """Parameters of one chunk beyond the point's, for failure reports."""
        return {}

    def run(self, ctx, point: dict, part: dict) -> tuple[Any, dict]:
        """Compute one chunk: a flat table (a host DataFrame or ``pyarrow.Table``, the same
        columns and types for every chunk) and a JSON-ready info dict."""
        raise NotImplementedError

    def reduce(self, ctx, point: dict, items: Iterator[tuple[pd.DataFrame, dict]],
               info: dict) -> Iterator[pd.DataFrame]:
        """Final rows of one point from its chunks' (table, info), in plan order; may fill
        ``info`` with per-point facts for the summary. Default: the chunks' rows, in order."""
        for table, _ in items:
            yield table


_TASKS: dict[str, TaskRunner] = {}


def register_task(runner: TaskRunner, *, replace: bool = False) -> TaskRunner:
    """Make ``runner`` available as ``task = runner.name`` in sweeps."""
    if not isinstance(runner, TaskRunner) or not runner.name:
        raise GpusimError("register_task needs a TaskRunner instance with a name")
    if runner.name in _TASKS and not replace:
        raise GpusimError(f"task {runner.name!r} is already registered; pass replace=True")
    _TASKS[runner.name] = runner
    return runner


def available_tasks() -> list[str]:
    return sorted(_TASKS)


def get_task(name: str) -> TaskRunner:
    """The runner registered as ``name`` (importing its provider module when needed)."""
    if name not in _TASKS and name in PROVIDERS:
        import importlib

        try:
            importlib.import_module(PROVIDERS[name][0])
        except ImportError:
            pass
    if name in _TASKS:
        return _TASKS[name]
    known = ", ".join(available_tasks())
    if name in PROVIDERS:
        raise GpusimError(f"task {name!r} ({PROVIDERS[name][1]}) cannot be swept yet; "
                          f"available tasks: {known}")
    raise GpusimError(f"task {name!r} is unknown; available tasks: {known}")


# ----------------------------------------------------------------------------- backtest
BT_ORDER = ("weights", "rebalance", "threshold", "fees")


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


def _weights_arg(v, symbols: list[str]):
    """A backtest ``weights=`` value from a job-file value."""
    from gpusim.specs import RandomWeights

    if isinstance(v, Mapping) and "random" in v:
        extra = sorted(set(v) - {"random", "seed", "sampler", "alpha"})
        if extra:
            raise GpusimError(f"weights: unknown key(s) {extra} in a random spec; use random "
                              "(count), seed, sampler, alpha")
        n = v["random"]
        if isinstance(n, float) and n == int(n):
            n = int(n)
        return RandomWeights(n, seed=v.get("seed", 0), sampler=v.get("sampler", "dirichlet"),
                             alpha=float(v.get("alpha", 1.0)))
    if isinstance(v, Mapping) and "file" in v:
        from gpusim.parse import parse_weights

        return parse_weights(str(v["file"]), symbols)
    if isinstance(v, str):
        from gpusim.parse import parse_weights

        return parse_weights(v, symbols)
    if isinstance(v, list) and v and all(isinstance(r, list) for r in v):
        return np.asarray(v, dtype=float)
    return v


def _threshold_arg(v):
    if isinstance(v, str) and v.strip().lower() in ("none", "off", ""):
        return None
    return v


class BacktestTask(TaskRunner):
    """Rebalancing backtests (:func:`gpusim.backtest`) over blocks of grid combinations."""

    name = "backtest"
    params = {"weights": "target weights: equal | {random = N, seed = S} | vectors | file",
              "rebalance": "never | D | W | M | Q | Y | k (every k bars)",
              "threshold": "drift band (none = no band)",
              "fees": "proportional fee", "relative": "relative drift band (bool)",
              "init_cash": "starting cash", "rf": "annual risk-free rate"}
    native = frozenset(BT_ORDER)
    unit = "combinations"
    rank_by = ("sharpe", False)

    def prepare(self, market, fixed, native_axes, backend):
        from gpusim.backtest.api import METRICS
        from gpusim.grid import Param
        from gpusim.specs import fee_value, rebalance_mask, resolve_weights, threshold_value

        symbols = list(market.symbols)
        index = market.prices.index
        groups: list[_Group] = []
        if not any("weights" in a.names for a in native_axes):
            w = _weights_arg(fixed.get("weights", "equal"), symbols)
            ws, _, _ = resolve_weights(w, symbols)
            groups.append(_Group(["weights"], len(ws.labels), weights=ws,
                                 labels={"weights": ws.labels}))
        for a in native_axes:
            g = _Group(sorted(a.names, key=BT_ORDER.index), a.size)
            for m in g.members:
                col = a.column(m)
                if m == "weights":
                    ws, _, _ = resolve_weights(Param(col, name="weights"), symbols)
                    g.weights, g.labels[m] = ws, ws.labels
                elif m == "rebalance":
                    labs = []
                    for r in col:
                        if isinstance(r, list):
                            raise GpusimError("rebalance masks cannot be swept; give rules "
                                              "(never, D, W, M, Q, Y, k)")
                        labs.append(rebalance_mask(r, index)[0])
                    g.values[m], g.labels[m] = col, labs
                elif m == "threshold":
                    vals = [_threshold_arg(x) for x in col]
                    for x in vals:
                        threshold_value(x)
                    g.values[m] = vals
                    g.labels[m] = [None if x is None else float(x) for x in vals]
                else:
                    for x in col:
                        fee_value(x)
                    g.values[m], g.labels[m] = col, [float(x) for x in col]
            groups.append(g)
        groups.sort(key=lambda g: min(BT_ORDER.index(m) for m in g.members))
        in_grid = {m for g in groups for m in g.members}
        fixed_native = {k: (_threshold_arg(v) if k == "threshold" else v)
                        for k, v in fixed.items() if k in BT_ORDER and k not in in_grid}
        if "rebalance" in fixed_native:
            rebalance_mask(fixed_native["rebalance"], index)
        if fixed_native.get("threshold") is not None:
            threshold_value(fixed_native["threshold"])
        if "fees" in fixed_native:
            fee_value(fixed_native["fees"])
        call_fixed = {k: fixed[k] for k in ("relative", "init_cash", "rf") if k in fixed}
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
        kw = {**ctx.call_fixed, **point}
        if "relative" in kw and not isinstance(kw["relative"], bool):
            raise GpusimError(f"relative={kw['relative']!r} must be true or false")
        for k in ("init_cash", "rf"):
            if k in kw:
                v = kw[k]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise GpusimError(f"{k}={v!r} must be a finite number")
        if "init_cash" in kw and not kw["init_cash"] > 0:
            raise GpusimError(f"init_cash={kw['init_cash']!r} must be > 0")

    def levels(self, ctx):
        return list(ctx.levels)

    def level_kinds(self, ctx):
        return dict(ctx.kinds)

    def split(self, ctx, point, chunk_size):
        sizes = [g.size for g in ctx.groups]
        target = int(chunk_size or ctx.default_chunk)
        inner = [math.prod(sizes[i + 1:]) for i in range(len(sizes))]
        d = next(i for i in range(len(sizes)) if inner[i] <= target)
        step = max(1, target // inner[d])
        k = -(-sizes[d] // step)                  # pieces of near-equal size, each <= step
        cuts = [(i * sizes[d]) // k for i in range(k + 1)]
        parts = []
        for outer in np.ndindex(*sizes[:d]):
            for lo, hi in zip(cuts[:-1], cuts[1:]):
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
        d = {}
        for g, pos in zip(ctx.groups, self._positions(ctx, part)):
            for m in g.members:
                labs = g.labels[m]
                first, last = py_scalar(labs[pos.start]), py_scalar(labs[pos.stop - 1])
                d[m] = first if len(pos) == 1 else f"{first}..{last} ({len(pos)} values)"
        return d

    def run(self, ctx, point, part):
        from gpusim.backtest.api import _run
        from gpusim.grid import Param

        kw = {**ctx.call_fixed, **point, **ctx.fixed_native}
        A = len(ctx.symbols)
        for gi, (g, pos) in enumerate(zip(ctx.groups, self._positions(ctx, part))):
            level = f"zip{gi}" if len(g.members) > 1 else None
            for m in g.members:
                if m == "weights":
                    W = g.weights.rows(pos.start, pos.stop, A)
                    val = pd.DataFrame(W, index=g.weights.labels[pos.start:pos.stop],
                                       columns=ctx.symbols)
                else:
                    val = [g.values[m][i] for i in pos]
                kw[m] = Param(val, name=m, level=level)
        # the rows as arrays (no metrics frame and MultiIndex to build and take apart again)
        r = _run(ctx.market, backend=ctx.backend, progress=False, **kw)
        if r.partial:
            raise KeyboardInterrupt
        return _rows_table(r.ctx.grid, r.out, ctx.kinds), {"compute_s": round(r.elapsed, 6)}


def _rows_table(grid, out: np.ndarray, kinds: Mapping[str, str]):
    """Flat Arrow table of a backtest's rows: the grid's levels (typed by ``kinds``, as
    :func:`coerce_levels` would), then the metric columns (float64) of ``out``."""
    import pyarrow as pa

    from gpusim.backtest.api import METRICS

    pos = grid.group_positions(0, out.shape[0])
    cols = {}
    for a in grid.axes:
        labels, kind = np.asarray(a.labels, dtype=object), kinds.get(a.name, "str")
        if kind in ("float", "int", "bool"):
            dt = {"float": np.float64, "int": np.int64, "bool": np.bool_}[kind]
            cols[a.name] = pa.array(labels.astype(dt)[pos[a.group]])
        else:
            cols[a.name] = pa.array([str(x) for x in labels], type=pa.string()).take(
                pa.array(pos[a.group]))
    for j, c in enumerate(METRICS):
        cols[c] = pa.array(np.ascontiguousarray(out[:, j]))
    return pa.table(cols)


# ----------------------------------------------------------------------------- search
@dataclass
class _SearchCtx:
    mu: np.ndarray
    cov: np.ndarray
    ann: float
    symbols: list[str]
    fixed: dict
    backend: str
    simulator: bool
    default_chunk: int


SEARCH_DEFAULTS = {"n": 1_000_000, "top_k": 10, "sampler": "dirichlet", "alpha": 1.0, "seed": 0,
                   "rf": 0.0, "dtype": "float64"}


class SearchTask(TaskRunner):
    """Weight searches over candidate-index ranges of the counter-based stream."""

    name = "search"
    params = {"n": "candidates per search", "top_k": "best candidates kept",
              "sampler": "dirichlet | uniform", "alpha": "Dirichlet concentration",
              "seed": "stream seed", "lo": "lower bound(s)", "hi": "upper bound(s)",
              "bounds": "(lo, hi) pair", "rf": "annual risk-free rate",
              "dtype": "float64 | float32 (GPU only)"}
    unit = "candidates"
    rank_by = ("sharpe", False)
    partial_points = False

    def prepare(self, market, fixed, native_axes, backend):
        from gpusim.search.api import stats_from

        mu, cov, ann, _, syms, _ = stats_from(market, None, None)
        if backend.name == "gpu":
            default = 2 ** 12 if backend.simulator else 2 ** 28
        else:
            default = 2 ** 22 * _cores()
        ctx = _SearchCtx(mu, cov, ann, syms, dict(fixed), backend.name, backend.simulator,
                         default)
        self.check_point(ctx, {})
        return ctx

    def _params(self, ctx, point) -> dict:

        from gpusim.search.api import check_args, resolve_bounds

        kw = {**SEARCH_DEFAULTS, **ctx.fixed, **point}
        a = check_args(n=kw["n"], top_k=kw["top_k"], seed=kw["seed"], sampler=kw["sampler"],
                       alpha=kw["alpha"], rf=kw["rf"], dtype=kw["dtype"],
                       backend_name=ctx.backend)
        if "bounds" in kw and ("lo" in kw or "hi" in kw):
            raise GpusimError("give bounds or lo/hi, not both")
        bounds = kw.get("bounds")
        if bounds is None and ("lo" in kw or "hi" in kw):
            bounds = (kw.get("lo"), kw.get("hi"))
        lo, hi = resolve_bounds(bounds, ctx.mu.size, ctx.symbols)
        return {"n": a["n"], "k": a["k"], "seed": a["seed"], "key": a["key"], "code": a["code"],
                "alpha": a["alpha"], "lo": lo, "hi": hi, "rf": a["rf"], "dtype": kw["dtype"],
                "sampler": kw["sampler"], "bounds": None if bounds is None else (lo, hi)}

    def check_point(self, ctx, point):
        self._params(ctx, point)

    def levels(self, ctx):
        return ["rank"]

    def split(self, ctx, point, chunk_size):
        n = self._params(ctx, point)["n"]
        m = int(chunk_size or ctx.default_chunk)
        return [{"start": s, "n": min(m, n - s), "size": min(m, n - s)} for s in range(0, n, m)]

    def describe(self, ctx, point, part):
        return {"candidates": f"{part['start']}..{part['start'] + part['n'] - 1}"}

    def run(self, ctx, point, part):
        from gpusim.search.api import search

        p = self._params(ctx, point)
        t0 = time.perf_counter()
        res = search((ctx.mu, ctx.cov), n=part["n"], start=part["start"], sampler=p["sampler"],
                     alpha=p["alpha"], seed=p["seed"], top_k=p["k"], bounds=p["bounds"],
                     rf=p["rf"], ann=ctx.ann, symbols=ctx.symbols, backend=ctx.backend,
                     dtype=p["dtype"], chunk_size=min(part["n"], ctx.default_chunk),
                     progress=False, baselines=False)
        table = res.top[["candidate", "sharpe"]].reset_index(drop=True)
        return table, {"n_valid": int(res.summary["n_valid"]),
                       "compute_s": time.perf_counter() - t0}

    def reduce(self, ctx, point, items, info):
        from cpu_ref.search import score_nb
        from gpusim.search.api import merge_topk

        p = self._params(ctx, point)
        ss, ii, n_valid = [np.empty(0)], [np.empty(0, dtype=np.int64)], 0
        for table, inf in items:
            ss.append(table["sharpe"].to_numpy(np.float64))
            ii.append(table["candidate"].to_numpy(np.int64))
            n_valid += int(inf.get("n_valid", 0))
        best_s, best_i = merge_topk(np, np.concatenate(ss), np.concatenate(ii), p["k"])
        W, stats, _ = score_nb(p["seed"], best_i.astype(np.int64), p["code"], p["alpha"],
                               p["lo"], p["hi"], ctx.mu, ctx.cov, ctx.ann, p["rf"])
        top = pd.DataFrame(W, columns=ctx.symbols)
        top.insert(0, "annual_volatility", stats[:, 1])
        top.insert(0, "annual_return", stats[:, 0])
        top.insert(0, "sharpe", best_s)
        top.insert(0, "candidate", best_i.astype(np.int64))
        top.insert(0, "rank", np.arange(1, len(top) + 1, dtype=np.int64))
        info.update(n_evaluated=p["n"], n_valid=n_valid,
                    best_sharpe=float(best_s[0]) if best_s.size else None)
        yield top


register_task(BacktestTask())
register_task(SearchTask())
