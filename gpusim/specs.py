"""Parameter specs of the simulations that become grid axes: weights (vectors, labelled
DataFrame rows, :class:`RandomWeights`), rebalance rules (rule -> (T,) bool mask), and the
scalar thresholds and fees (:func:`threshold_value`, :func:`fee_value`, :func:`axis_values`).

Each spec is resolved against the prices (symbols, dates) into host arrays the kernels take;
:class:`gpusim.grid.Param` makes any of them a sweep axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gpusim.errors import GpusimError
from gpusim.grid import Param
from gpusim.validate import dirichlet_alpha, listing, number, py_scalar

__all__ = [
    "CALENDAR_RULES",
    "VALID_RULES",
    "RandomWeights",
    "Weights",
    "axis_values",
    "calendar_mask",
    "fee_value",
    "rebalance_mask",
    "resolve_weights",
    "threshold_value",
]

CALENDAR_RULES = ("D", "W", "M", "Q", "Y")
VALID_RULES = "'never', 'D', 'W', 'M', 'Q', 'Y', an int k >= 1 (every k bars) or a bool mask"
SUM_TOL = 1e-8
"""Weight vectors must sum to 1 within this tolerance."""


def _label(x) -> str:
    """A row label for messages: NumPy scalars shown as plain Python values."""
    return repr(py_scalar(x))


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

        if self.sampler == "dirichlet":
            dirichlet_alpha(self.alpha, n_assets, "RandomWeights(alpha)")
        code = sampler_code(self.sampler, float(self.alpha))
        lo = np.zeros(n_assets)
        hi = np.ones(n_assets)
        W, _ = population_nb(np.uint64(self.seed), np.int64(start), np.int64(stop - start),
                             n_assets, code, float(self.alpha), lo, hi)
        return W


# --------------------------------------------------------------------------------------------
# Rebalance rules
# --------------------------------------------------------------------------------------------

def calendar_mask(index: pd.DatetimeIndex, rule: str) -> np.ndarray:
    """(T,) bool: True on the first bar of each new period (``"D"``, ``"W"`` (weeks ending
    Sunday), ``"M"``, ``"Q"``, ``"Y"``) of ``index``; bar 0 is always True.
    """
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
    first: np.ndarray | None = None    # schedules: (K + 1,) first row of each in ``dense``
    nxt: np.ndarray | None = None      # schedules: (R,) bar at which the next row takes over

    def rows(self, lo: int, hi: int, n_assets: int) -> np.ndarray:
        """Rows lo..hi-1 as a C-contiguous (hi-lo, A) float64 host array (constant targets)."""
        if self.random is not None:
            return self.random.rows(lo, hi, n_assets)
        return np.ascontiguousarray(self.dense[lo:hi])

    def take(self, lo: int, hi: int, n_assets: int) -> Weights:
        """Level entries lo..hi-1 as their own :class:`Weights` (random rows generated)."""
        labels = self.labels[lo:hi]
        if self.first is None:
            return Weights(labels, self.rows(lo, hi, n_assets))
        r0, r1 = int(self.first[lo]), int(self.first[hi])
        return Weights(labels, self.dense[r0:r1], first=self.first[lo:hi + 1] - r0,
                       nxt=self.nxt[r0:r1])

    def block(self, lo: int, hi: int, n_assets: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Level entries lo..hi-1 as kernel rows: ``(W (R, A), start (hi-lo,) row of each
        entry in W, nxt (R,) switch bars or None for constant targets)``.
        """
        if self.first is None:
            return self.rows(lo, hi, n_assets), np.arange(hi - lo, dtype=np.int64), None
        r0, r1 = int(self.first[lo]), int(self.first[hi])
        return (np.ascontiguousarray(self.dense[r0:r1]),
                np.asarray(self.first[lo:hi] - r0, dtype=np.int64),
                np.ascontiguousarray(self.nxt[r0:r1]))


def _check_vectors(W: np.ndarray, labels, symbols: list[str]) -> np.ndarray:
    A = len(symbols)
    if W.ndim != 2 or W.shape[1] != A:
        n = W.shape[-1] if W.ndim else 1
        raise GpusimError(f"weights: a vector has {n} values but the prices have {A} symbols "
                          f"({listing(symbols, 8)}); give one weight per symbol")
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


def _align(labels_in, symbols: list[str]) -> list[int]:
    """Positions of ``symbols`` in ``labels_in``; error naming unknown and missing symbols."""
    given = [str(c) for c in labels_in]
    unknown = [c for c in given if c not in symbols]
    missing = [s for s in symbols if s not in given]
    if unknown or missing or len(set(given)) != len(given):
        parts = []
        if unknown:
            parts.append(f"{listing(unknown, 8)} not in the prices")
        if missing:
            parts.append(f"no weight for {listing(missing, 8)}")
        if not parts:
            parts.append("a symbol appears twice")
        raise GpusimError(f"weights: symbols don't match the prices ({'; '.join(parts)}); give "
                          f"exactly one weight per symbol of the prices ({listing(symbols, 8)}), 0 "
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
    v = number(x, "threshold", expect="a number > 0 or None")
    if not (v > 0 and math.isfinite(v)):
        raise GpusimError(f"threshold={x!r} must be > 0 (a drift band such as 0.05); use None "
                          "for no threshold rule")
    return v


def fee_value(x) -> float:
    v = number(x, "fees", expect="a number in [0, 1)")
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
