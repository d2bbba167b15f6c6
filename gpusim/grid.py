"""Parameter grids: sweep axes (:class:`Param`), their Cartesian product and zipped levels.
The parameter specs that become axes (weights, rebalance rules, thresholds, fees) live in
:mod:`gpusim.specs`.

A grid is built from keyword arguments, in the order they are given. Each :class:`Param` is a
sweep axis and becomes one level of the result's ``pd.MultiIndex``; anything else is a fixed
value (not a level). Combinations are enumerated in C order (the first axis is the outermost,
like ``itertools.product``).

Zipped levels: Params that share the same ``level=`` key vary *together* (they must have the same
length) instead of being crossed; the zipped group sits at the position of its first member and
each member keeps its own named index level::

    product_grid(w=Param(["a", "b"]), tau=Param([0.01, 0.02], level="z"),
                 fee=Param([0.0, 0.005], level="z"))
    # 4 rows: (a, 0.01, 0.0), (a, 0.02, 0.005), (b, 0.01, 0.0), (b, 0.02, 0.005)

Zipped Params may repeat values (e.g. a batch of tuning trials as one call), as long as no two
rows of the zipped group are equal: a repeated value keeps its label, and :meth:`Grid.codes`
gives every repeat the position of its *first* occurrence, so work keyed by a value's position
(a window per lookback, a mask per rule) is done once per distinct value.

Kernels do not take the index: :meth:`Grid.codes` gives, for a contiguous block of combinations
``start .. stop-1``, one int64 array per level with the *position* of each combination's value in
that Param's ``values`` — the per-combination index arrays (``wid``, ``mid``, ...) of the
simulation kernels. Blocks are computed on demand, so a grid of 10^9 combinations never
materialises more than one block.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gpusim.errors import GpusimError
from gpusim.validate import py_scalar

__all__ = ["Grid", "Param", "build_grid", "product_grid"]


class Param:
    """A sweep axis: the values one argument takes across the grid.

    Parameters
    ----------
    values : list, tuple, range, ndarray, pd.Index, pd.Series or pd.DataFrame (not a str or a
        scalar). The values, in order; a 2-D array is a list of its rows and a DataFrame a list
        of its rows labelled by its index. They label the index level, so they must be distinct
        -- except in a zipped Param (``level=``), where only the rows of the zipped group must
        be (equal labels are taken as the same value).
    name : str, optional
        Name of the index level (default: the keyword the Param is passed as).
    level : hashable, optional
        Zip key: Params with the same ``level`` vary together instead of being crossed.
    """

    __slots__ = ("level", "name", "values")

    def __init__(self, values: Any, name: str | None = None, level: Any = None):
        if isinstance(values, Param):
            values, name, level = values.values, name or values.name, (
                level if level is not None else values.level)
        if isinstance(values, pd.DataFrame):  # rows are the values (e.g. labelled weight vectors)
            pass
        elif isinstance(values, (str, bytes)) or not isinstance(
                values, (Iterable, np.ndarray, pd.Index, pd.Series)) or isinstance(
                values, Mapping) or (isinstance(values, np.ndarray) and values.ndim == 0):
            raise GpusimError(f"Param(values={values!r}) needs a list of values; "
                              f"wrap a single value in a list, e.g. Param([{values!r}])")
        if isinstance(values, pd.Series):
            values = values.to_numpy()
        if isinstance(values, np.ndarray) and values.ndim > 1:
            # a 2-D array is a list of vectors (e.g. weights): keep its rows
            values = list(values)
        if not isinstance(values, (range, np.ndarray, pd.Index, pd.DataFrame)):
            values = list(values)
        if len(values) == 0:
            what = f"Param {name!r}" if name else "Param"
            raise GpusimError(f"{what} has no values; give at least one")
        if name is not None and not isinstance(name, str):
            raise GpusimError(f"Param name={name!r} must be a str")
        self.values = values
        self.name = name
        self.level = level

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        v = list(self.values.index[:6] if isinstance(self.values, pd.DataFrame)
                 else self.values[:6])
        more = ", ..." if len(self) > 6 else ""
        extra = "".join(f", {k}={getattr(self, k)!r}" for k in ("name", "level")
                        if getattr(self, k) is not None)
        return f"Param([{', '.join(map(repr, v))}{more}] (n={len(self)}){extra})"


@dataclass
class _Axis:
    name: str
    values: Any            # the Param's values (positions index into this)
    labels: pd.Index       # index labels (one per position)
    group: int             # index of the zip group
    first: np.ndarray | None = None  # position -> first position of its label (repeats only)


@dataclass
class Grid:
    """A parameter grid: axes (levels), zip groups and fixed values.

    Attributes
    ----------
    axes : the levels, in order; ``axes[i].values`` are the Param's values.
    shape : size of each zip group (C order, first group outermost).
    size : number of combinations (product of ``shape``).
    fixed : the non-Param keyword values.
    """

    axes: list[_Axis]
    shape: tuple[int, ...]
    fixed: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.axes]

    def axis(self, name: str) -> _Axis:
        for a in self.axes:
            if a.name == name:
                return a
        raise KeyError(name)

    def group_positions(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """(n_groups, stop-start) int64 positions of each zip group for combinations
        ``start .. stop-1``.
        """
        stop = self.size if stop is None else stop
        flat = np.arange(start, stop, dtype=np.int64)
        if not self.shape:
            return np.zeros((0, flat.size), dtype=np.int64)
        return np.stack(np.unravel_index(flat, self.shape)).astype(np.int64, copy=False)

    def codes(self, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """Per-combination index arrays for combinations ``start .. stop-1``.

        Returns ``{level name: (stop-start,) int64}``: position of each combination's value in
        that level's ``Param.values`` (host arrays); a value repeated in a zipped Param gets the
        position of its first occurrence.
        """
        g = self.group_positions(start, stop)
        return {a.name: g[a.group] if a.first is None else a.first[g[a.group]]
                for a in self.axes}

    @property
    def index(self) -> pd.MultiIndex:
        """The full ``pd.MultiIndex`` (one row per combination, levels named as the axes)."""
        return self.index_block(0, self.size)

    def index_block(self, start: int, stop: int) -> pd.MultiIndex:
        if not self.axes:
            raise GpusimError("a grid needs at least one Param axis to have an index")
        g = self.group_positions(start, stop)
        levels, codes = [], []
        for a in self.axes:
            pos2code, uniques = pd.factorize(a.labels, use_na_sentinel=True)
            levels.append(pd.Index(uniques))
            codes.append(np.asarray(pos2code, dtype=np.int64)[g[a.group]])
        return pd.MultiIndex(levels=levels, codes=codes, names=self.names,
                             verify_integrity=False)

    def locate(self, key: tuple | None = None, **level_values) -> int:
        """Flat position of the one combination with the given level values.

        ``key`` is a full index tuple (e.g. a row label of ``metrics``). Levels with a single
        value may be omitted; zipped levels are fixed by any one member.
        """
        if key is not None:
            if not isinstance(key, tuple):
                key = (key,)
            if len(key) != len(self.axes):
                raise GpusimError(f"key {key!r} has {len(key)} values; the index has levels "
                                  f"{self.names}")
            level_values = {**dict(zip(self.names, key)), **level_values}
        unknown = [k for k in level_values if k not in self.names]
        if unknown:
            raise GpusimError(f"unknown level(s) {unknown}; the levels are {self.names}")
        hits: list[np.ndarray | None] = [None] * len(self.shape)
        for a in self.axes:
            if a.name not in level_values:
                continue
            h = _find_label(a, level_values[a.name])
            if hits[a.group] is not None:
                h = np.intersect1d(hits[a.group], h)
                if h.size == 0:
                    raise GpusimError(f"{a.name}={level_values[a.name]!r} is not zipped with "
                                      "the other values given for its level group")
            hits[a.group] = h
        pos: list[int | None] = [None] * len(self.shape)
        for gi, h in enumerate(hits):
            if h is None:
                continue
            members = [a for a in self.axes if a.group == gi]
            if h.size > 1 and any(a.first is not None for a in members):
                names = [a.name for a in members if a.name not in level_values]
                raise GpusimError(f"the values given match {h.size} rows of a zipped level "
                                  f"group; give {', '.join(names)} too")
            pos[gi] = int(h[0])
        missing = []
        for gi, size in enumerate(self.shape):
            if pos[gi] is None:
                if size == 1:
                    pos[gi] = 0
                else:
                    missing += [f"{a.name} ({size} values)" for a in self.axes if a.group == gi][:1]
        if missing:
            raise GpusimError(f"give a value for {', '.join(missing)} to pick one combination")
        return int(np.ravel_multi_index(tuple(pos), self.shape)) if self.shape else 0

    def labels_of(self, flat: int) -> dict[str, Any]:
        """``{level: label}`` of combination ``flat``."""
        g = self.group_positions(flat, flat + 1)[:, 0]
        return {a.name: py_scalar(a.labels[g[a.group]]) for a in self.axes}


def _find_label(a: _Axis, value) -> np.ndarray:
    """Every position of ``value`` among the labels of ``a`` (int64, ascending, not empty)."""
    labels = a.labels
    try:
        hit = np.flatnonzero(labels == value) if not _is_nan(value) else np.flatnonzero(
            pd.isna(labels))
    except (TypeError, ValueError):
        hit = np.array([], dtype=np.int64)
    if hit.size == 0 and isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        num = pd.to_numeric(pd.Series(labels, dtype=object), errors="coerce").to_numpy(float)
        hit = np.flatnonzero(np.isclose(num, float(value), rtol=1e-9, atol=1e-12))
    if hit.size == 0:
        hit = np.flatnonzero(np.array([str(x) == str(value) for x in labels[:100_000]]))
    if hit.size == 0:
        shown = ", ".join(map(repr, list(labels[:8]))) + (", ..." if len(labels) > 8 else "")
        raise GpusimError(f"{a.name}={value!r} is not in the grid; its values are [{shown}]")
    return hit.astype(np.int64, copy=False)


def _is_nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def build_grid(params: Mapping[str, Any], labels: Mapping[str, Any] | None = None) -> Grid:
    """Build a :class:`Grid` from ``{keyword: Param or fixed value}`` (order kept).

    ``labels`` optionally overrides the index labels of a level (``{keyword: sequence}``, one
    label per value), e.g. to label weight vectors by name while the Param holds the vectors.
    """
    labels = dict(labels or {})
    axes: list[_Axis] = []
    groups: dict[Any, int] = {}
    shape: list[int] = []
    fixed: dict[str, Any] = {}
    for kw, p in params.items():
        if not isinstance(p, Param):
            fixed[kw] = p
            continue
        name = p.name or kw
        if name in [a.name for a in axes]:
            raise GpusimError(f"two Params are named {name!r}; give each level a distinct name")
        lab = labels.get(kw, p.values.index if isinstance(p.values, pd.DataFrame) else p.values)
        lab = lab if isinstance(lab, pd.Index) else pd.Index(
            lab, tupleize_cols=False)
        if len(lab) != len(p):
            raise GpusimError(f"level {name!r}: {len(lab)} labels for {len(p)} values")
        first = None
        if not lab.is_unique:
            if p.level is None:
                dup = list(dict.fromkeys(lab[lab.duplicated()]))[:5]
                raise GpusimError(f"Param {name!r} has duplicate values {dup}; give each value "
                                  "once")
            code, _ = pd.factorize(lab, use_na_sentinel=False)
            first = np.unique(code, return_index=True)[1].astype(np.int64)[code]
        if p.level is None:
            gi = len(shape)
            shape.append(len(p))
        elif p.level in groups:
            gi = groups[p.level]
            if shape[gi] != len(p):
                first = next(a.name for a in axes if a.group == gi)
                raise GpusimError(f"zipped Params {first!r} and {name!r} (level={p.level!r}) "
                                  f"have {shape[gi]} and {len(p)} values; zipped levels need "
                                  "the same length")
        else:
            gi = groups[p.level] = len(shape)
            shape.append(len(p))
        axes.append(_Axis(name, p.values, lab, gi, first))
    _check_zipped_rows(axes)
    return Grid(axes, tuple(shape), fixed)


def _check_zipped_rows(axes: list[_Axis]) -> None:
    """Raise when a zip group whose Params repeat values repeats a whole row."""
    for gi in sorted({a.group for a in axes if a.first is not None}):
        members = [a for a in axes if a.group == gi]
        rows = pd.MultiIndex.from_arrays([pd.factorize(a.labels, use_na_sentinel=False)[0]
                                          for a in members])
        dup = np.flatnonzero(rows.duplicated())
        if dup.size:
            row = tuple(a.labels[dup[0]] for a in members)
            raise GpusimError(f"zipped Params {[a.name for a in members]} repeat the row "
                              f"{row!r}; give each combination once")


def product_grid(**params) -> pd.MultiIndex:
    """The combinations of the Param axes as a ``pd.MultiIndex`` (C order, given order).

    Scalars and other non-Param values are fixed and do not become levels. Params sharing a
    ``level=`` key are zipped. Raises :class:`GpusimError` when no Param is given.

    >>> product_grid(a=Param([1, 2]), b=Param(["x", "y", "z"]), fee=0.001).size
    6
    """
    grid = build_grid(params)
    if not grid.axes:
        raise GpusimError("product_grid needs at least one Param axis")
    return grid.index
