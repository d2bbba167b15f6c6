"""Sweep tasks: what one chunk of a sweep computes, and how a task's results are split and merged.

A task is a :class:`TaskRunner` registered under a name (:func:`register_task`). The sweep
engine (:mod:`gpusim.sweep.api`) crosses the job's *call-level* grid axes into points (one task call
each) and asks the runner to split every point into chunks; grid axes made only of the runner's
``native`` parameters are handed to the runner, which sweeps them inside its own calls (e.g. the
backtest kernel's levels).

This module holds the base class, the helpers runners share and the registry; it imports no
capability. Each capability defines its runner in its own ``task.py`` and registers it there
(``register_task(Runner())`` at import); :data:`PROVIDERS` names those modules, which
:func:`get_task` and :func:`available_tasks` import on demand. Built in:

* ``backtest`` (:mod:`gpusim.backtest.task`) — :func:`gpusim.backtest` over blocks of
  combinations of its grid, each chunk one call on a rectangular sub-grid.
* ``search`` (:mod:`gpusim.search.task`) — the weight search over candidate-index ranges of the
  counter-based stream; the chunks' top-k lists merge into the top-k of one call, bit for bit.
* ``walkforward`` (:mod:`gpusim.walkforward.task`) — walk-forward grids, one chunk per point.
* ``dynopt`` (:mod:`gpusim.dynopt.task`) — dynamic-optimisation grids on futures data (the
  ``futures`` key), one chunk per point.

Runners must be picklable (the Dask engine ships them and their context to the workers; a worker
that unpickles one imports its module, which registers it there too).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd

from gpusim.errors import GpusimError

__all__ = [
    "TaskRunner",
    "available_tasks",
    "coerce_levels",
    "get_task",
    "level_kind",
    "register_task",
]

PROVIDERS = {
    "backtest": ("gpusim.backtest.task", "rebalancing backtests"),
    "search": ("gpusim.search.task", "weight search"),
    "walkforward": ("gpusim.walkforward.task", "walk-forward re-optimisation"),
    "dynopt": ("gpusim.dynopt.task", "dynamic optimisation"),
    "tune": ("gpusim.tune.task", "tuning studies (Optuna), one per point"),
}
"""Task name -> (module that registers it when imported, what it does). The registry imports
these modules on demand (never statically: the capabilities import this module); a task whose
module does not exist yet is reported as planned ("cannot be swept yet")."""


# ----------------------------------------------------------------------------- helpers
def level_kind(labels: Iterable) -> str:
    """Column kind of a level, from all its labels: ``bool``, ``int``, ``float`` (numbers with
    None as NaN) or ``str`` (strings, or mixed types written as text).
    """
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

    def check_names(self, fixed: Mapping[str, Any], level_names: list[str]) -> None:
        """Raise GpusimError unless every parameter the job names (under ``[fixed]``, and as
        grid levels) is one the task takes. Default: the keys of :attr:`params`; a task whose
        parameters depend on the job (e.g. a user function's) overrides this and
        :meth:`native_names`.
        """
        for where, names in (("fixed", list(fixed)), ("grid", list(level_names))):
            bad = [n for n in names if n not in self.params]
            if bad:
                raise GpusimError(f"{where}: task {self.name!r} has no parameter "
                                  f"{', '.join(map(repr, bad))}; use {', '.join(self.params)}")

    def native_names(self, fixed: Mapping[str, Any], level_names: list[str]
                     ) -> frozenset[str]:
        """The parameters swept inside one call for a job with these fixed arguments and grid
        levels (default: :attr:`native`).
        """
        return self.native

    def prepare(self, market, fixed: dict, native_axes: list, backend) -> Any:
        """Validate the job and return the (picklable) context given to every call.

        ``native_axes``: :class:`gpusim.sweep.job.Axis` objects of native parameters;
        ``backend``: the resolved :class:`gpusim.backend.Backend`.
        """
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
        columns and types for every chunk) and a JSON-ready info dict.
        """
        raise NotImplementedError

    def reduce(self, ctx, point: dict, items: Iterator[tuple[pd.DataFrame, dict]],
               info: dict) -> Iterator[pd.DataFrame]:
        """Final rows of one point from its chunks' (table, info), in plan order; may fill
        ``info`` with per-point facts for the summary. Default: the chunks' rows, in order.
        """
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


def _load(name: str) -> None:
    """Import the provider module of task ``name`` unless a runner is registered already."""
    if name in _TASKS or name not in PROVIDERS:
        return
    try:
        importlib.import_module(PROVIDERS[name][0])
    except ImportError:
        pass                                  # a planned task: get_task says so


def available_tasks() -> list[str]:
    """Names of the tasks a sweep can run (registered, or built in and importable)."""
    for name in list(PROVIDERS):
        _load(name)
    return sorted(_TASKS)


def get_task(name: str) -> TaskRunner:
    """The runner registered as ``name`` (importing its provider module when needed)."""
    _load(name)
    if name in _TASKS:
        return _TASKS[name]
    known = ", ".join(available_tasks())
    if name in PROVIDERS:
        raise GpusimError(f"task {name!r} ({PROVIDERS[name][1]}) cannot be swept yet; "
                          f"available tasks: {known}")
    raise GpusimError(f"task {name!r} is unknown; available tasks: {known}")

