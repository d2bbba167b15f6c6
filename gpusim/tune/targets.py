"""The tasks :func:`gpusim.tune` can tune, and how a batch of trials becomes one grid call.

A :class:`Target` names a grid function (``gpusim.backtest``, ``gpusim.walkforward``,
``gpusim.dynopt``), its metric columns and their directions, and the arguments it sweeps inside
one call (``sweepable``: they may be :class:`~gpusim.grid.Param` axes). :func:`evaluate` runs a
list of parameter rows: the sweepable parameters become *zipped* Params (one level group, one
row per parameter row: ``Param(values, level="trial")``), so the rows run as one call of the
task, in order; repeated values share their work (:meth:`gpusim.grid.Grid.codes`). Parameters
that the task cannot sweep (e.g. walk-forward ``method``) split the rows into one call per
distinct combination of their values. A backtest with a user allocation function fixed
(``alloc``) tunes the function's parameters the same way (:mod:`gpusim.tune.alloc`).

``gpusim.search`` is not a target: it is not a grid function (one call per candidate
population), so a batch of its trials could not be one call.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gpusim.errors import GpusimError
from gpusim.validate import listing

__all__ = ["TARGETS", "Target", "evaluate", "get_target"]

TRIAL_LEVEL = "trial"
"""Zip key of the Params of one batch."""


@dataclass(frozen=True)
class Target:
    """A grid function that :func:`gpusim.tune` can tune.

    Attributes
    ----------
    name : the task's name (``gpusim.tune(name, ...)``, ``task = name`` in job files).
    module, function : where the function lives (imported on first use).
    result : ``"module:Class"`` of its result (``metric_names``, ``lower_is_better``).
    sweepable : arguments swept inside one call (Params); the others are call-level.
    defaults : fixed arguments tuning sets unless given (e.g. no in-sample gap solves).
    extra : result attribute whose columns join the metrics in the trials (e.g. ``report``).
    """

    name: str
    module: str
    function: str
    result: str
    sweepable: tuple[str, ...]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    extra: str | None = None

    def func(self):
        """The task's function (imports its module)."""
        return getattr(importlib.import_module(self.module), self.function)

    def _result_class(self):
        mod, cls = self.result.split(":")
        return getattr(importlib.import_module(mod), cls)

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The metric columns of the task's result, in order."""
        return tuple(self._result_class().metric_names)

    @property
    def lower_is_better(self) -> frozenset[str]:
        """Metrics whose best value is the smallest."""
        return frozenset(self._result_class().lower_is_better)

    def arguments(self) -> list[str]:
        """Keyword arguments the function takes (not its data, backend or progress)."""
        sig = inspect.signature(self.func())
        names = list(sig.parameters)[1:]
        return [n for n in names if n not in ("backend", "progress")]

    def prepare_data(self, data):
        """The data in the form every call re-uses (a Market for price tasks)."""
        if self.name in ("backtest", "walkforward"):
            from gpusim.data.load import as_market

            return as_market(data)
        return data

    def fixed_for(self, dims: Sequence, fixed: Mapping[str, Any]) -> dict:
        """The fixed arguments of every call: ``fixed`` plus :attr:`defaults`, plus what keeps
        calls comparable (walk-forward: one ``start`` for every lookback of the space).
        """
        out = {**self.defaults, **fixed}
        if self.name == "walkforward" and "start" not in out:
            lbs = _lookbacks(dims, fixed)
            if lbs is not None:
                from gpusim.walkforward.api import DEFAULT_HISTORY

                finite = [int(x) for x in lbs if x is not None and not (
                    isinstance(x, str) and x.lower() in ("none", "all"))]
                out["start"] = 1 + (max(finite) if finite else DEFAULT_HISTORY)
        return out

    def table(self, res) -> pd.DataFrame:
        """The metric rows of a result (plus the :attr:`extra` columns), index dropped."""
        t = res.metrics
        if self.extra is not None:
            ex = getattr(res, self.extra)
            t = t.join(ex[[c for c in ex.columns if c not in t.columns]])
        return t.reset_index(drop=True)


def _lookbacks(dims, fixed) -> list | None:
    """Every lookback the study may use, or None when a single (fixed) one."""
    for d in dims:
        if d.name == "lookback":
            return list(d.choices) if d.kind == "categorical" else [d.high]
    return None


TARGETS: dict[str, Target] = {
    "backtest": Target("backtest", "gpusim.backtest.api", "backtest",
                       "gpusim.backtest.result:BacktestResult",
                       ("rebalance", "threshold", "fees")),
    "walkforward": Target("walkforward", "gpusim.walkforward.api", "walkforward",
                          "gpusim.walkforward.result:WalkForwardResult",
                          ("every", "lookback", "num_tests", "fees", "objective", "estimator",
                           "method", "risk_aversion"), {"gap": False},
                          extra="report"),
    "dynopt": Target("dynopt", "gpusim.dynopt.api", "dynopt",
                     "gpusim.dynopt.result:DynoptResult",
                     ("capital", "shadow_cost", "buffer", "rebalance")),
}
"""The tasks that can be tuned, by name."""


def get_target(name: str) -> Target:
    """The :class:`Target` called ``name`` (one-line error naming the others)."""
    if name in TARGETS:
        return TARGETS[name]
    hint = (" (a weight search is not a grid function: tune its arguments by hand or sweep "
            "them)" if name == "search" else "")
    raise GpusimError(f"task={name!r} cannot be tuned{hint}; use one of "
                      f"{listing(TARGETS)}")


def check_names(target: Target, dims: Sequence, fixed: Mapping[str, Any]) -> None:
    """Raise unless every tuned and fixed name is an argument of the task (or, for a backtest
    with ``alloc`` fixed, a parameter of the function: :mod:`gpusim.tune.alloc`), and none is
    both.
    """
    from gpusim.tune.alloc import check_alloc, uses_alloc

    if target.name == "backtest" and "params" in fixed and not uses_alloc(target, fixed):
        raise GpusimError("fixed: params is the parameter row of an allocation function; give "
                          "the function too (fixed alloc=fn)")
    args = target.arguments()
    fn_params = check_alloc(args, dims, fixed) if uses_alloc(target, fixed) else []
    hint = ("; a parameter of an allocation function needs the function: fixed alloc=fn (or "
            "alloc = \"FILE.py:NAME\" in a job's [fixed])" if target.name == "backtest" else "")
    for where, names in (("space", [d.name for d in dims]), ("fixed", list(fixed))):
        bad = [n for n in names if n not in args and n not in fn_params]
        if bad:
            raise GpusimError(f"{where}: {listing(bad)} is not an argument of "
                              f"gpusim.{target.function}; use {listing(args)}{hint}")
    both = sorted({d.name for d in dims} & set(fixed))
    if both:
        raise GpusimError(f"{listing(both)} is both tuned (space) and fixed; keep it in one "
                          "place")
    from gpusim.grid import Param

    swept = sorted(k for k, v in fixed.items() if isinstance(v, Param))
    if swept:
        raise GpusimError(f"fixed: {listing(swept)} is a Param; a fixed argument takes one "
                          "value (tune it through space= instead)")


def _key(v: Any) -> Any:
    return (type(v).__name__, v)


def evaluate(target: Target, data, rows: Sequence[Mapping[str, Any]], fixed: Mapping[str, Any],
             backend: str) -> tuple[pd.DataFrame, int, str]:
    """Run parameter rows through the task: one call per distinct combination of call-level
    values (usually one call), the sweepable parameters as zipped Params.

    A backtest with ``alloc`` among ``fixed`` also sweeps the function's tuned parameters: they
    go into ``params=`` (in the order of :func:`gpusim.tune.alloc.function_params`) as zipped
    Params of the trial level, whose draws are shared (:func:`gpusim.tune.alloc.alloc_kwargs`).

    Parameters
    ----------
    target : the task.
    data : its data, as :meth:`Target.prepare_data` returns it.
    rows : (n,) dicts of the same tuned parameter names -> values; no two rows equal.
    fixed : the arguments every call gets (:meth:`Target.fixed_for`).
    backend : ``"auto"``, ``"cpu"`` or ``"gpu"``.

    Returns
    -------
    (table, n_calls, backend) : table is a host DataFrame of shape (n, columns), row i for
        ``rows[i]`` (columns: the task's metrics, then :attr:`Target.extra`'s); n_calls the
        calls made; backend the label the task reported (e.g. ``"cpu"``; ``""`` without calls).

    Raises
    ------
    KeyboardInterrupt
        When a call came back partial (a second Ctrl-C inside it).
    """
    from gpusim.grid import Param
    from gpusim.tune.alloc import ALLOC_SWEPT, alloc_kwargs, function_params, uses_alloc

    if not rows:
        return pd.DataFrame(columns=list(target.metric_names)), 0, ""
    names = list(rows[0])
    order = None
    sweepable: Sequence[str] = target.sweepable
    if uses_alloc(target, fixed):       # a user function's parameters (gpusim.tune.alloc)
        order = function_params(target.arguments(), names, fixed)
        sweepable = (*order, *ALLOC_SWEPT)
    swept = [n for n in names if n in sweepable]
    call = [n for n in names if n not in sweepable]
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(tuple(_key(r[n]) for n in call), []).append(i)
    fn = target.func()
    parts, where, label = [], [], ""
    for members in groups.values():
        first = rows[members[0]]
        kw = {**fixed, **{n: first[n] for n in call}}
        for n in swept:
            kw[n] = Param([rows[i][n] for i in members], name=n, level=TRIAL_LEVEL)
        if order is not None:
            kw = alloc_kwargs(kw, order)
        res = fn(data, **kw, backend=backend, progress=False)
        if getattr(res, "partial", False):
            raise KeyboardInterrupt
        label = str(res.summary.get("backend", backend))
        t = target.table(res)
        if len(t) != len(members):
            raise GpusimError(f"gpusim.{target.function} returned {len(t)} rows for "
                              f"{len(members)} trials: a fixed argument gives several rows per "
                              "trial (e.g. several weight vectors); tuning needs one row each")
        parts.append(t)
        where.append(np.asarray(members))
    table = pd.concat(parts, ignore_index=True)
    order = np.argsort(np.concatenate(where), kind="stable")
    return table.iloc[order].reset_index(drop=True), len(parts), label
