"""Job-file values: plain copies, inclusive ranges, grid axes and file paths.

:func:`parse_grid` turns a job's ``[grid]`` (or a Python grid mapping) into :class:`Axis`
objects; :func:`job_paths` resolves the relative file paths of a job value against the job
file's folder. :mod:`gpusim.sweep.job` re-exports them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpusim.errors import GpusimError

__all__ = ["MAX_LEVEL_VALUES", "PATH_KEYS", "Axis", "job_paths", "parse_grid", "plain"]

MAX_LEVEL_VALUES = 10_000_000

@dataclass
class Axis:
    """One sweep axis: a single level, or several zipped levels that vary together.

    Attributes
    ----------
    names : the level names (one, or several when zipped).
    values : one tuple per position, with one value per name (plain Python values).
    """

    names: tuple[str, ...]
    values: list[tuple]

    @property
    def size(self) -> int:
        return len(self.values)

    def column(self, name: str) -> list:
        i = self.names.index(name)
        return [v[i] for v in self.values]

    def to_json(self) -> dict:
        return {"names": list(self.names), "values": [list(v) for v in self.values]}


# ----------------------------------------------------------------------------- values
def plain(v: Any) -> Any:
    """A JSON-ready copy of ``v`` (numpy scalars and arrays become Python values and lists)."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.ndarray):
        return [plain(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, Path):
        return str(v)
    return v


def _range(spec: Mapping, where: str) -> list:
    """Inclusive range from ``{start, stop, step}`` or ``{start, stop, num}``."""
    bad = sorted(set(spec) - {"start", "stop", "step", "num"})
    if bad or "start" not in spec or "stop" not in spec:
        raise GpusimError(f"{where}: a range table needs start and stop, and step or num "
                          f"(got keys {sorted(spec)}); e.g. {{ start = 0.01, stop = 0.1, "
                          "step = 0.01 }")
    start, stop = spec["start"], spec["stop"]
    nums = [x for x in (start, stop, spec.get("step"), spec.get("num")) if x is not None]
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in nums):
        raise GpusimError(f"{where}: range bounds must be numbers")
    if "num" in spec:
        num = spec["num"]
        if "step" in spec or not isinstance(num, int) or num < 1:
            raise GpusimError(f"{where}: num must be an int >= 1 (and not given with step)")
        if num == 1:
            return [start]
        return [round(float(v), 12) for v in np.linspace(start, stop, num)]
    step = spec.get("step", 1)
    if not step > 0 or stop < start:
        raise GpusimError(f"{where}: a range needs step > 0 and stop >= start")
    n = math.floor((stop - start) / step + 1e-9) + 1
    if n > MAX_LEVEL_VALUES:
        raise GpusimError(f"{where}: the range gives {n} values; use a coarser step")
    if all(isinstance(x, int) for x in (start, stop, step)):
        return list(range(start, stop + 1, step))
    return [round(start + i * step, 12) for i in range(n)]


def _values(v: Any, where: str) -> list:
    """The list of values of one grid level."""
    if isinstance(v, Mapping):
        return _range(v, where)
    from gpusim.grid import Param

    if isinstance(v, Param):
        v = v.values
    if isinstance(v, pd.DataFrame):
        return [plain(r) for r in v.to_numpy()]
    if isinstance(v, (str, bytes)) or not isinstance(v, (Iterable, np.ndarray)):
        raise GpusimError(f"{where} = {v!r} is a single value; put it under [fixed] or give a "
                          f"list of values, e.g. [{v!r}]")
    vals = [plain(x) for x in (v.tolist() if isinstance(v, (np.ndarray, pd.Index)) else v)]
    if not vals:
        raise GpusimError(f"{where} has no values; give at least one")
    return vals


def _check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name.isidentifier():
        raise GpusimError(f"{where}: {name!r} is not a parameter name (use letters, digits, _)")
    return name


def parse_grid(grid: Mapping | None) -> list[Axis]:
    """Axes from a grid mapping, in order.

    Keys are level names with a list (or an inclusive ``{start, stop, step|num}`` range) of
    values; a tuple key ``("a", "b")`` with a list of pairs, or a ``"zip"`` entry holding
    tables of equal-length lists, gives zipped levels that vary together.
    """
    axes: list[Axis] = []
    if grid is None:
        return axes
    if not isinstance(grid, Mapping):
        raise GpusimError(f"grid must be a table/dict of parameter -> values, got "
                          f"{type(grid).__name__}")
    for key, v in grid.items():
        if key == "zip":
            groups = [v] if isinstance(v, Mapping) else v
            if not isinstance(groups, list) or not all(isinstance(g, Mapping) for g in groups):
                raise GpusimError("grid.zip must be tables of equal-length lists ([[grid.zip]])")
            for g in groups:
                if not g:
                    raise GpusimError("grid.zip: an empty zip table; give two or more levels")
                names = tuple(_check_name(k, "grid.zip") for k in g)
                cols = [_values(g[k], f"grid.zip.{k}") for k in names]
                if len({len(c) for c in cols}) > 1:
                    sizes = ", ".join(f"{k}: {len(c)}" for k, c in zip(names, cols))
                    raise GpusimError(f"grid.zip: zipped levels need the same number of values "
                                      f"({sizes})")
                axes.append(Axis(names, [tuple(t) for t in zip(*cols)]))
        elif isinstance(key, tuple):
            names = tuple(_check_name(k, "grid") for k in key)
            rows = _values(v, f"grid{list(names)}")
            if not all(isinstance(r, list) and len(r) == len(names) for r in rows):
                raise GpusimError(f"grid{list(names)}: zipped levels need one tuple of "
                                  f"{len(names)} values per position")
            axes.append(Axis(names, [tuple(r) for r in rows]))
        else:
            name = _check_name(key, "grid")
            axes.append(Axis((name,), [(x,) for x in _values(v, f"grid.{name}")]))
    seen: set[str] = set()
    for a in axes:
        for n in a.names:
            if n in seen:
                raise GpusimError(f"grid: level {n!r} appears twice; give each parameter once")
            seen.add(n)
        labels = [json.dumps(list(v), sort_keys=True, default=str) for v in a.values]
        if len(set(labels)) != len(labels):
            dup = next(x for x in labels if labels.count(x) > 1)
            raise GpusimError(f"grid: level {'/'.join(a.names)} repeats the value {dup}; give "
                              "each value once")
    return axes


# ----------------------------------------------------------------------------- paths
PATH_KEYS = ("file", "schedule")
"""Keys whose text value in a job table is a file path (``{file = "bands.csv"}``,
``{schedule = "targets.csv"}``)."""


def job_paths(v: Any, base: Path, key: str | None = None) -> Any:
    """A job-file value with its relative file paths resolved against ``base`` (the job file's
    folder; an absolute path stays as it is): the text of :data:`PATH_KEYS` in tables, and a
    ``weights`` text that names a file (not ``equal`` or ``random:N``), at any depth (lists,
    nested tables such as a tune sweep's ``args``).
    """
    if isinstance(v, Mapping):
        return {k: (str(base / x) if k in PATH_KEYS and isinstance(x, str) else
                    job_paths(x, base, k)) for k, x in v.items()}
    if isinstance(v, list):
        return [job_paths(x, base, key) for x in v]
    if key == "weights" and isinstance(v, str) and v.strip().lower() != "equal" and not \
            v.strip().lower().startswith("random:"):
        return str(base / v)
    return v
