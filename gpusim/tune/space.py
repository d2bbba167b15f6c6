"""Search spaces of :func:`gpusim.tune`: one dimension per tuned parameter.

Forms a dimension takes (Python / TOML job file):

=====================================  ===========================================  ============
Python                                 job file (``[space]``)                       kind
=====================================  ===========================================  ============
``["D", "W", "M", 5]`` (a list)        ``every = ["D", "W", "M", 5]``               categorical
``(0.0, 0.01)``                        ``fees = { low = 0.0, high = 0.01 }``        float range
``(5, 10_000, "log")``                 ``num_tests = { low = 5, high = 10000,``     int range,
                                       ``log = true }``                             log scale
``(0.0, 0.01, 0.001)`` (a step)        ``fees = { low = 0.0, high = 0.01,``         stepped
                                       ``step = 0.001 }``                           range
=====================================  ===========================================  ============

A range is of ints when both bounds are ints (then the step, if any, is an int too), else of
floats. A categorical dimension and a stepped or int range are *enumerable*: their values can be
listed (:meth:`Dim.grid_values`), which is what :meth:`gpusim.tune.result.TuneResult.compare_grid`
crosses into the full grid. Optuna is imported only by :meth:`Dim.distribution`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpusim.errors import GpusimError

__all__ = ["MAX_GRID_VALUES", "Dim", "parse_space", "space_json"]

MAX_GRID_VALUES = 100_000
"""Most values one enumerable dimension may list (a finer range is not enumerable)."""

_CATEGORY_TYPES = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Dim:
    """One dimension of a search space.

    Attributes
    ----------
    name : the task's argument it sets.
    kind : ``"categorical"``, ``"int"`` or ``"float"``.
    choices : the values of a categorical dimension (tuple), else None.
    low, high : inclusive bounds of a range.
    log : sample the range on a log scale.
    step : spacing of a stepped range (None: continuous floats; ints default to 1).
    """

    name: str
    kind: str
    choices: tuple | None = None
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None

    def distribution(self):
        """The Optuna distribution of this dimension (imports optuna)."""
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        if self.kind == "categorical":
            return CategoricalDistribution(list(self.choices))
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log,
                                   step=int(self.step or 1))
        return FloatDistribution(float(self.low), float(self.high), log=self.log,
                                 step=None if self.step is None else float(self.step))

    @property
    def enumerable(self) -> bool:
        """True when :meth:`grid_values` can list the values (categorical, int, stepped)."""
        if self.kind == "categorical":
            return True
        if self.kind == "float" and self.step is None:
            return False
        return self._count() <= MAX_GRID_VALUES

    def _count(self) -> int:
        step = self.step or 1
        return math.floor((self.high - self.low) / step + 1e-9) + 1

    def grid_values(self) -> list:
        """Every value of an enumerable dimension, in order (plain Python values).

        Raises :class:`GpusimError` for a continuous float range or a range of more than
        :data:`MAX_GRID_VALUES` values.
        """
        if self.kind == "categorical":
            return list(self.choices)
        if not self.enumerable:
            why = ("a continuous float range" if self.kind == "float" and self.step is None
                   else f"a range of {self._count():,} values")
            raise GpusimError(f"{self.name} is {why}, which a grid cannot list; pass "
                              f"values={{{self.name!r}: [...]}} (or give the range a step)")
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        n = self._count()
        return [round(float(self.low) + i * float(self.step), 12) for i in range(n)]

    def to_json(self) -> Any:
        """The job-file form of the dimension (a list, or a ``{low, high, ...}`` table)."""
        if self.kind == "categorical":
            return list(self.choices)
        d: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            d["log"] = True
        if self.step is not None:
            d["step"] = self.step
        return d


def _num(x: Any, where: str) -> float | int:
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, float, np.integer,
                                                             np.floating)):
        raise GpusimError(f"{where}: {x!r} is not a number")
    if not math.isfinite(float(x)):
        raise GpusimError(f"{where}: {x!r} must be finite")
    return int(x) if isinstance(x, (int, np.integer)) else float(x)


def _range(name: str, low: Any, high: Any, log: Any = False, step: Any = None) -> Dim:
    where = f"space[{name!r}]"
    lo, hi = _num(low, where), _num(high, where)
    if not isinstance(log, (bool, np.bool_)):
        raise GpusimError(f"{where}: log={log!r} must be true or false")
    kind = "int" if isinstance(lo, int) and isinstance(hi, int) else "float"
    if step is not None:
        step = _num(step, where)
        if kind == "int" and not isinstance(step, int):
            raise GpusimError(f"{where}: an int range needs an int step, got {step!r}")
        if not step > 0:
            raise GpusimError(f"{where}: step={step!r} must be > 0")
        if log:
            raise GpusimError(f"{where}: a log range takes no step")
    if not hi >= lo:
        raise GpusimError(f"{where}: high={hi!r} must be >= low={lo!r}")
    if log and not lo > 0:
        raise GpusimError(f"{where}: a log range needs low > 0, got {lo!r}")
    if kind == "float":
        lo, hi = float(lo), float(hi)
    return Dim(name, kind, low=lo, high=hi, log=bool(log), step=step)


def _dim(name: str, spec: Any) -> Dim:
    where = f"space[{name!r}]"
    if isinstance(spec, Mapping):
        bad = sorted(set(spec) - {"low", "high", "log", "step"})
        if bad or "low" not in spec or "high" not in spec:
            raise GpusimError(f"{where}: a range table needs low and high (optional log, step);"
                              f" got keys {sorted(spec)}")
        return _range(name, spec["low"], spec["high"], spec.get("log", False), spec.get("step"))
    if isinstance(spec, tuple):
        if len(spec) == 3 and isinstance(spec[2], str):
            if spec[2].lower() != "log":
                raise GpusimError(f"{where}: {spec!r}: the third item of a range is 'log' or a "
                                  "step")
            return _range(name, spec[0], spec[1], log=True)
        if len(spec) == 3:
            return _range(name, spec[0], spec[1], step=spec[2])
        if len(spec) == 2:
            return _range(name, *spec)
        raise GpusimError(f"{where}: {spec!r}: a range is (low, high), (low, high, 'log') or "
                          "(low, high, step); a list of values is categorical")
    if isinstance(spec, (list, range, np.ndarray)):
        vals = [v.item() if isinstance(v, np.generic) else v for v in spec]
        if not vals:
            raise GpusimError(f"{where} has no values; give at least one")
        bad = [v for v in vals if not isinstance(v, _CATEGORY_TYPES)]
        if bad:
            raise GpusimError(f"{where}: {bad[0]!r} cannot be a choice; choices are str, int, "
                              "float, bool or None")
        if len({(type(v), v) for v in vals}) != len(vals):
            raise GpusimError(f"{where} repeats a value; give each choice once")
        return Dim(name, "categorical", choices=tuple(vals))
    raise GpusimError(f"{where}={spec!r}: give a list of choices, (low, high), (low, high, "
                      "'log') or (low, high, step)")


def parse_space(space: Mapping[str, Any]) -> list[Dim]:
    """The dimensions of ``space`` (``{parameter: spec}``, see the module docstring), in order.

    Raises
    ------
    GpusimError
        An empty space, a name that is not an identifier, or a bad spec (one line).
    """
    if not isinstance(space, Mapping) or not space:
        raise GpusimError("space must be a non-empty dict of parameter -> choices or range, "
                          "e.g. {'every': ['W', 'M'], 'fees': (0.0, 0.01)}")
    dims = []
    for name, spec in space.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise GpusimError(f"space: {name!r} is not a parameter name")
        dims.append(_dim(name, spec))
    return dims


def space_json(dims: Sequence[Dim]) -> dict:
    """``{name: job-file form}`` of the dimensions (JSON-ready)."""
    return {d.name: d.to_json() for d in dims}
