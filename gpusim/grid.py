"""Parameter grids: sweep axes (:class:`Param`), their Cartesian product and zipped levels,
and the parameter specs of the backtest that become axes: weights (vectors, labelled DataFrame
rows, :class:`RandomWeights`) and rebalance rules (rule -> (T,) bool mask).

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

__all__ = ["Param", "Grid", "build_grid", "product_grid", "RandomWeights", "calendar_mask",
           "rebalance_mask", "resolve_weights", "Weights", "CALENDAR_RULES", "VALID_RULES"]

CALENDAR_RULES = ("D", "W", "M", "Q", "Y")
VALID_RULES = "'never', 'D', 'W', 'M', 'Q', 'Y', an int k >= 1 (every k bars) or a bool mask"
SUM_TOL = 1e-8
"""Weight vectors must sum to 1 within this tolerance."""


def _label(x) -> str:
    """A row label for messages: NumPy scalars shown as plain Python values."""
    return repr(x.item() if isinstance(x, np.generic) else x)


class Param:
    """A sweep axis: the values one argument takes across the grid.

    Parameters
    ----------
    values : list, tuple, range, ndarray, pd.Index, pd.Series or pd.DataFrame (not a str or a
        scalar). The values, in order; a 2-D array is a list of its rows and a DataFrame a list
        of its rows labelled by its index. They label the index level, so they must be distinct.
    name : str, optional
        Name of the index level (default: the keyword the Param is passed as).
    level : hashable, optional
        Zip key: Params with the same ``level`` vary together instead of being crossed.
    """

    __slots__ = ("values", "name", "level")

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


@dataclass(frozen=True)
class RandomWeights:
    """A generated population of long-only weight vectors (DESIGN §4), used as ``weights=``.

    Candidate ``i`` is ``cpu_ref.rng.population_nb(seed, i, 1, A, code, alpha, lo=0, hi=1)[0][0]``
    — a pure function of ``(seed, i)`` — so any row can be regenerated alone and populations are
    identical whatever the chunking. The index level of a backtest is the candidate index
    ``0 .. n-1``. Rows are generated block by block, never all at once.

    Parameters
    ----------
    n : number of candidates (>= 1).
    seed : int >= 0.
    sampler : ``"dirichlet"`` (uniform on the simplex, default) or ``"uniform"`` (u / sum u).
    alpha : Dirichlet concentration (> 0; only with ``sampler="dirichlet"``).
    """

    n: int
    seed: int = 0
    sampler: str = "dirichlet"
    alpha: float = 1.0

    def __post_init__(self):
        from cpu_ref.rng import MAX_CANDIDATES, SAMPLERS

        if isinstance(self.n, bool) or not isinstance(self.n, (int, np.integer)) or not (
                1 <= self.n <= MAX_CANDIDATES):
            raise GpusimError(f"RandomWeights(n={self.n!r}): n must be an int between 1 and 2**40")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or not (
                0 <= self.seed < 2 ** 64):
            raise GpusimError(f"RandomWeights(seed={self.seed!r}): seed must be an int >= 0")
        if self.sampler not in SAMPLERS:
            raise GpusimError(f"RandomWeights(sampler={self.sampler!r}) is unknown; use one of "
                              f"{', '.join(map(repr, sorted(SAMPLERS)))}")
        if not (self.alpha > 0 and math.isfinite(self.alpha)):
            raise GpusimError(f"RandomWeights(alpha={self.alpha!r}): alpha must be > 0")
        if self.sampler != "dirichlet" and self.alpha != 1.0:
            raise GpusimError("RandomWeights(alpha=...) only applies to sampler='dirichlet'")

    def rows(self, start: int, stop: int, n_assets: int) -> np.ndarray:
        """Candidates ``start .. stop-1`` as a host (stop-start, n_assets) float64 array."""
        from cpu_ref.rng import population_nb, sampler_code

        code = sampler_code(self.sampler, float(self.alpha))
        lo = np.zeros(n_assets)
        hi = np.ones(n_assets)
        W, _ = population_nb(np.uint64(self.seed), np.int64(start), np.int64(stop - start),
                             n_assets, code, float(self.alpha), lo, hi)
        return W


@dataclass
class _Axis:
    name: str
    values: Any            # the Param's values (positions index into this)
    labels: pd.Index       # index labels (one per position)
    group: int             # index of the zip group


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
        ``start .. stop-1``."""
        stop = self.size if stop is None else stop
        flat = np.arange(start, stop, dtype=np.int64)
        if not self.shape:
            return np.zeros((0, flat.size), dtype=np.int64)
        return np.stack(np.unravel_index(flat, self.shape)).astype(np.int64, copy=False)

    def codes(self, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """Per-combination index arrays for combinations ``start .. stop-1``.

        Returns ``{level name: (stop-start,) int64}``: position of each combination's value in
        that level's ``Param.values`` (host arrays).
        """
        g = self.group_positions(start, stop)
        return {a.name: g[a.group] for a in self.axes}

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
        pos: list[int | None] = [None] * len(self.shape)
        for a in self.axes:
            if a.name not in level_values:
                continue
            p = _find_label(a, level_values[a.name])
            if pos[a.group] is not None and pos[a.group] != p:
                raise GpusimError(f"{a.name}={level_values[a.name]!r} is not zipped with the "
                                  f"other values given for its level group")
            pos[a.group] = p
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
        return {a.name: _py(a.labels[g[a.group]]) for a in self.axes}


def _py(x):
    return x.item() if isinstance(x, np.generic) else x


def _find_label(a: _Axis, value) -> int:
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
    return int(hit[0])


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
            lab if not isinstance(lab, np.ndarray) else lab, tupleize_cols=False)
        if len(lab) != len(p):
            raise GpusimError(f"level {name!r}: {len(lab)} labels for {len(p)} values")
        if not lab.is_unique:
            dup = list(dict.fromkeys(lab[lab.duplicated()]))[:5]
            raise GpusimError(f"Param {name!r} has duplicate values {dup}; give each value once")
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
        axes.append(_Axis(name, p.values, lab, gi))
    return Grid(axes, tuple(shape), fixed)


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


# --------------------------------------------------------------------------------------------
# Rebalance rules
# --------------------------------------------------------------------------------------------

def calendar_mask(index: pd.DatetimeIndex, rule: str) -> np.ndarray:
    """(T,) bool: True on the first bar of each new period (``"D"``, ``"W"`` (weeks ending
    Sunday), ``"M"``, ``"Q"``, ``"Y"``) of ``index``; bar 0 is always True."""
    if not isinstance(index, pd.DatetimeIndex):
        raise GpusimError(f"rebalance={rule!r} needs prices with a DatetimeIndex; use an int k "
                          "(every k bars) instead")
    idx = index.tz_localize(None) if index.tz is not None else index
    if rule == "D":
        key = idx.normalize().asi8
    else:
        key = idx.to_period(rule).asi8
    mask = np.empty(len(idx), dtype=np.bool_)
    if len(idx):
        mask[0] = True
        mask[1:] = key[1:] != key[:-1]
    return mask


def rebalance_mask(rule: Any, index: pd.Index, what: str = "rebalance") -> tuple[Any, np.ndarray]:
    """``(label, (T,) bool mask)`` of one rebalance rule on the bars of ``index``.

    ``rule``: ``"never"`` (buy and hold), an int ``k >= 1`` (bars 0, k, 2k, ...), a calendar
    rule in :data:`CALENDAR_RULES`, or a bool mask of length T (array, list, or Series aligned on
    the dates). Bar 0 always rebalances in the simulation whatever the mask says.
    """
    T = len(index)
    if isinstance(rule, (bool, np.bool_)):
        raise GpusimError(f"{what}={rule!r} is ambiguous; use 'never', an int k >= 1 or a mask")
    if isinstance(rule, (int, np.integer)):
        k = int(rule)
        if k < 1:
            raise GpusimError(f"{what}={k}: k must be an int >= 1 (rebalance every k bars)")
        m = np.zeros(T, dtype=np.bool_)
        m[::k] = True
        return k, m
    if isinstance(rule, str):
        r = rule.strip()
        if r.lower() == "never":
            return "never", np.zeros(T, dtype=np.bool_)
        if r.isdigit():
            return rebalance_mask(int(r), index, what)
        if r.upper() in CALENDAR_RULES:
            return r.upper(), calendar_mask(index, r.upper())
        raise GpusimError(f"{what}={rule!r} is not a rebalance rule; use {VALID_RULES}")
    if isinstance(rule, pd.Series):
        if rule.dtype != bool:
            raise GpusimError(f"{what}: a mask Series must have bool dtype, got {rule.dtype}")
        if isinstance(rule.index, pd.DatetimeIndex) and not rule.index.equals(index):
            rule = rule.reindex(index, fill_value=False)
        rule = rule.to_numpy()
    if isinstance(rule, (np.ndarray, list, tuple)):
        m = np.asarray(rule)
        if m.dtype != np.bool_:
            raise GpusimError(f"{what}: a mask must be bool, got dtype {m.dtype}; use "
                              f"{VALID_RULES}")
        if m.shape != (T,):
            raise GpusimError(f"{what}: the mask has shape {m.shape}; it needs one bool per bar "
                              f"({T},)")
        return "mask", np.ascontiguousarray(m)
    raise GpusimError(f"{what}={rule!r} is not a rebalance rule; use {VALID_RULES}")


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------

@dataclass
class Weights:
    """Resolved weights: labels of the level plus either dense rows or a generator."""

    labels: pd.Index
    dense: np.ndarray | None = None
    random: RandomWeights | None = None

    def rows(self, lo: int, hi: int, n_assets: int) -> np.ndarray:
        """Rows lo..hi-1 as a C-contiguous (hi-lo, A) float64 host array."""
        if self.random is not None:
            return self.random.rows(lo, hi, n_assets)
        return np.ascontiguousarray(self.dense[lo:hi])


def _check_vectors(W: np.ndarray, labels, symbols: list[str]) -> np.ndarray:
    A = len(symbols)
    if W.ndim != 2 or W.shape[1] != A:
        n = W.shape[-1] if W.ndim else 1
        raise GpusimError(f"weights: a vector has {n} values but the prices have {A} symbols "
                          f"({_names(symbols)}); give one weight per symbol")
    if not np.all(np.isfinite(W)):
        r = int(np.flatnonzero(~np.isfinite(W).all(axis=1))[0])
        raise GpusimError(f"weights: row {_label(labels[r])} has a NaN or inf weight; give finite "
                          "weights")
    if np.any(W < 0):
        r, j = map(int, np.argwhere(W < 0)[0])
        raise GpusimError(f"weights: row {_label(labels[r])} has weight {W[r, j]:g} for "
                          f"{symbols[j]!r}; "
                          "weights are long-only: use values >= 0")
    s = W.sum(axis=1)
    bad = np.flatnonzero(np.abs(s - 1.0) > SUM_TOL)
    if bad.size:
        r = int(bad[0])
        raise GpusimError(f"weights: row {_label(labels[r])} sums to {s[r]:.10g}, not 1 (tolerance "
                          f"{SUM_TOL:g}); normalise it, e.g. w / w.sum()")
    return np.ascontiguousarray(W, dtype=np.float64)


def _names(xs, limit: int = 8) -> str:
    xs = list(xs)
    more = f", ... ({len(xs)} in all)" if len(xs) > limit else ""
    return ", ".join(map(str, xs[:limit])) + more


def _align(labels_in, symbols: list[str]) -> list[int]:
    """Positions of ``symbols`` in ``labels_in``; error naming unknown and missing symbols."""
    given = [str(c) for c in labels_in]
    unknown = [c for c in given if c not in symbols]
    missing = [s for s in symbols if s not in given]
    if unknown or missing or len(set(given)) != len(given):
        parts = []
        if unknown:
            parts.append(f"{_names(unknown)} not in the prices")
        if missing:
            parts.append(f"no weight for {_names(missing)}")
        if not parts:
            parts.append("a symbol appears twice")
        raise GpusimError(f"weights: symbols don't match the prices ({'; '.join(parts)}); give "
                          f"exactly one weight per symbol of the prices ({_names(symbols)}), 0 "
                          "for symbols not held")
    return [given.index(s) for s in symbols]


def _one_vector(v, symbols: list[str]) -> tuple[Any, np.ndarray]:
    """(label or None, (A,) float64) of one weight vector spec."""
    if isinstance(v, str):
        if v.strip().lower() != "equal":
            raise GpusimError(f"weights={v!r} is not understood; use 'equal', a vector, a "
                              "(K, A) array, a DataFrame of symbols, a dict or RandomWeights(n)")
        return "equal", np.full(len(symbols), 1.0 / len(symbols))
    if isinstance(v, dict):
        v = pd.Series(v, dtype=float)
    if isinstance(v, pd.Series):
        pos = _align(v.index, symbols)
        return v.name, v.to_numpy(dtype=float)[pos]
    try:
        a = np.asarray(v, dtype=float)
    except (TypeError, ValueError) as exc:
        raise GpusimError(f"weights: cannot read {type(v).__name__} as a weight vector ({exc})"
                          ) from None
    if a.ndim != 1:
        raise GpusimError(f"weights: expected one vector of {len(symbols)} weights, got shape "
                          f"{a.shape}")
    return None, a


def resolve_weights(weights, symbols: list[str]) -> tuple[Weights, str | None, Any]:
    """Resolve ``weights`` into (source, level name override, zip level key)."""
    name = level = None
    if isinstance(weights, Param):
        name, level, weights = weights.name, weights.level, weights.values
        if not isinstance(weights, pd.DataFrame):
            labs, rows = [], []
            for i, v in enumerate(weights):
                lab, w = _one_vector(v, symbols)
                labs.append(i if lab is None else lab)
                rows.append(w)
            if len({w.shape for w in rows}) > 1:
                raise GpusimError("weights: the vectors of the Param have different lengths; "
                                  f"give {len(symbols)} weights each")
            labels = pd.Index(labs, tupleize_cols=False)
            return Weights(labels, _check_vectors(np.stack(rows), labels, symbols)), name, level
    if isinstance(weights, RandomWeights):
        return Weights(pd.RangeIndex(weights.n), random=weights), name, level
    if isinstance(weights, pd.DataFrame):
        pos = _align(weights.columns, symbols)
        labels = pd.Index(weights.index, tupleize_cols=False)
        if not labels.is_unique:
            raise GpusimError(f"weights: row labels {list(labels[labels.duplicated()])[:5]} "
                              "repeat; give each weight vector a distinct label")
        W = weights.to_numpy(dtype=float)[:, pos]
        return Weights(labels, _check_vectors(W, labels, symbols)), name, level
    if isinstance(weights, (np.ndarray, list, tuple)) and np.ndim(weights) == 2:
        W = np.asarray(weights, dtype=float)
        labels = pd.RangeIndex(W.shape[0])
        return Weights(labels, _check_vectors(W, labels, symbols)), name, level
    lab, w = _one_vector(weights, symbols)
    labels = pd.Index([0 if lab is None else lab], tupleize_cols=False)
    return Weights(labels, _check_vectors(w.reshape(1, -1), labels, symbols)), name, level


# --------------------------------------------------------------------------------------------
# Scalar parameters
# --------------------------------------------------------------------------------------------

def threshold_value(x) -> float:
    if x is None:
        return math.nan
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise GpusimError(f"threshold={x!r} must be a number > 0 or None") from None
    if not (v > 0 and math.isfinite(v)):
        raise GpusimError(f"threshold={x!r} must be > 0 (a drift band such as 0.05); use None "
                          "for no threshold rule")
    return v


def fee_value(x) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise GpusimError(f"fees={x!r} must be a number in [0, 1)") from None
    if not (0.0 <= v < 1.0):
        raise GpusimError(f"fees={x!r} must be in [0, 1): a proportional fee such as 0.001 "
                          "for 0.1%")
    return v


def axis_values(arg, conv) -> tuple[Param | Any, np.ndarray]:
    """(grid entry, values array) for a float argument that may be a Param."""
    if isinstance(arg, Param):
        vals = np.array([conv(x) for x in arg.values], dtype=np.float64)
        labels = [None if x is None else float(x) for x in arg.values]
        return Param(labels, arg.name, arg.level), vals
    v = conv(arg)
    return (None if math.isnan(v) else v), np.array([v])
