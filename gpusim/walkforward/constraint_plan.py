"""The constraint plan of a walk-forward: the bounds in force at every rebalance date.

:func:`compile_constraints` turns the user's constraint objects (:mod:`.constraints`: scalars,
time series or callables) into a :class:`ConstraintPlan`: per-date lower/upper weight bounds,
group rows and bounds (host arrays), with callables evaluated at each rebalance on the
simulated state. :func:`max_scale` is the feasibility scaling shared with the exact method.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gpusim.errors import GpusimError
from gpusim.validate import number
from gpusim.walkforward.constraints import (
    SLACK,
    Beta,
    Budget,
    Constraint,
    GroupBounds,
    TrackingError,
    Volatility,
    WalkState,
    WeightBounds,
)

__all__ = ["ConstraintPlan", "compile_constraints", "max_scale"]


@dataclass
class _Slot:
    """One bound source: fills ``target[pos]`` (target in lo/hi/gl/gu) at each date."""

    target: str
    pos: np.ndarray            # positions in the target vector
    labels: list               # symbol or group (or row) label of each position
    spec: Any                  # number | Series | DataFrame | callable | ndarray
    what: str                  # for messages

    @property
    def is_callable(self) -> bool:
        return _is_callable(self.spec)


def _is_callable(v) -> bool:
    return callable(v) and not isinstance(v, (pd.Series, pd.DataFrame, np.ndarray))


def _num(v, what: str) -> float:
    if v is None:
        return math.nan
    x = number(v, what)
    if math.isinf(x):
        return math.nan  # an infinite bound is no bound
    return x


def _asof(index: pd.DatetimeIndex, dates: pd.DatetimeIndex, what: str) -> np.ndarray:
    if not index.is_monotonic_increasing or index.has_duplicates:
        raise GpusimError(f"{what}: the series' dates must be ascending and unique; sort it "
                          "with .sort_index()")
    pos = index.searchsorted(dates, side="right") - 1
    if len(dates) and pos.min() < 0:
        first = dates[int(np.argmax(pos < 0))]
        raise GpusimError(f"{what}: no value in force on {first.date()} (the series starts on "
                          f"{index[0].date()}); start it earlier or use NaN for 'no bound'")
    return pos


def _static(slot: _Slot, dates: pd.DatetimeIndex) -> np.ndarray:
    """(D, len(pos)) values of a non-callable slot at ``dates`` (NaN = no bound)."""
    D, n = len(dates), len(slot.pos)
    v = slot.spec
    if isinstance(v, pd.DataFrame):
        if not isinstance(v.index, pd.DatetimeIndex):
            raise GpusimError(f"{slot.what}: a DataFrame of bounds needs a DatetimeIndex")
        cols = [str(c) for c in v.columns]
        unknown = sorted(set(cols) - {str(x) for x in slot.labels})
        if unknown:
            raise GpusimError(f"{slot.what}: columns {unknown[:5]} are not among "
                              f"{[str(x) for x in slot.labels][:8]}")
        frame = v.set_axis(cols, axis=1).reindex(columns=[str(x) for x in slot.labels])
        pos = _asof(frame.index, dates, slot.what)
        out = frame.to_numpy(dtype=np.float64)[pos]
    elif isinstance(v, pd.Series):
        if not isinstance(v.index, pd.DatetimeIndex):
            raise GpusimError(f"{slot.what}: a time series of bounds needs a DatetimeIndex")
        pos = _asof(v.index, dates, slot.what)
        vals = pd.to_numeric(v, errors="coerce").to_numpy(dtype=np.float64)
        out = np.repeat(vals[pos][:, None], n, axis=1)
    elif isinstance(v, np.ndarray):
        out = np.broadcast_to(v.astype(np.float64), (D, n)).copy()
    else:
        out = np.full((D, n), _num(v, slot.what))
    out[np.isinf(out)] = np.nan
    return out


def _call_value(slot: _Slot, state: WalkState) -> np.ndarray:
    """(len(pos),) value of a callable slot for one state (NaN = no bound)."""
    try:
        v = slot.spec(state, state.date)
    except Exception as exc:  # a bug in user code: one line naming the constraint and the date
        raise GpusimError(f"{slot.what}: the callable raised {type(exc).__name__}: {exc} on "
                          f"{state.date.date()}".splitlines()[0]) from None
    n = len(slot.pos)
    if isinstance(v, Mapping):
        unknown = sorted(set(map(str, v)) - {str(x) for x in slot.labels})
        if unknown:
            raise GpusimError(f"{slot.what}: the callable returned unknown keys {unknown[:5]}")
        d = {str(k): x for k, x in v.items()}
        return np.array([_num(d.get(str(lab)), slot.what) for lab in slot.labels])
    if np.ndim(v) == 0:
        return np.full(n, _num(v, slot.what))
    a = np.asarray(v, dtype=np.float64).ravel()
    if a.size != n:
        raise GpusimError(f"{slot.what}: the callable returned {a.size} values for {n} "
                          f"{'assets' if slot.target in ('lo', 'hi') else 'groups'}")
    return np.where(np.isinf(a), np.nan, a)


def _expand(spec, target, pos, labels, what) -> list[_Slot]:
    """Slots of one bound spec over positions ``pos`` labelled ``labels``."""
    if spec is None:
        return []
    if isinstance(spec, Mapping):
        keys = {str(k): v for k, v in spec.items()}
        unknown = sorted(set(keys) - {str(x) for x in labels})
        if unknown:
            raise GpusimError(f"{what}: {unknown[:5]} are not among {[str(x) for x in labels][:8]}")
        out = []
        for p, lab in zip(pos, labels):
            if str(lab) in keys and keys[str(lab)] is not None:
                out += _expand(keys[str(lab)], target, np.array([p]), [lab], f"{what}[{lab}]")
        return out
    if isinstance(spec, (list, tuple)) or (isinstance(spec, np.ndarray) and spec.ndim > 0):
        a = np.asarray(spec, dtype=np.float64).ravel()
        if a.size != len(pos):
            raise GpusimError(f"{what}: {a.size} values for {len(pos)} positions; give one per "
                              "asset (or a dict by symbol)")
        return [_Slot(target, np.asarray(pos), list(labels), a, what)]
    if not (_is_callable(spec) or isinstance(spec, (pd.Series, pd.DataFrame))):
        _num(spec, what)  # early check of numbers
    return [_Slot(target, np.asarray(pos), list(labels), spec, what)]


# --------------------------------------------------------------------------------------------
# The compiled plan
# --------------------------------------------------------------------------------------------

@dataclass
class ConstraintPlan:
    """Constraints turned into arrays (see the module docstring for their meaning).

    Attributes
    ----------
    symbols : the assets; ``M`` linear rows named ``row_names`` (owner constraint index in
    ``row_owner``); ``static_G`` (M, A): the rows that do not depend on the window (groups,
    budget; beta rows are zero here); ``beta_rows`` [(row, benchmark column)];
    ``bench_close`` (T, B) benchmark prices aligned on the market's dates (None without Beta);
    ``eqtol`` (M,); ``cash``: a Budget is present (weights may sum to < 1).
    """

    symbols: list
    constraints: list
    row_names: list
    row_owner: np.ndarray
    row_trivial: np.ndarray    # (M, 2) bounds that never bind (groups/budget: 0 and 1)
    static_G: np.ndarray
    beta_rows: list
    bench_names: list
    bench_close: np.ndarray | None
    eqtol: np.ndarray
    cash: bool
    slots: list
    weight_owner: int | None
    cap_names: list = None          # Volatility / TrackingError caps, in order
    cap_owner: np.ndarray = None    # (K,) constraint index of each cap
    cap_bench: list = None          # (K,) benchmark column of a TrackingError, -1: Volatility

    @property
    def K(self) -> int:
        return len(self.cap_names or [])

    @property
    def M(self) -> int:
        return len(self.row_names)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.constraints]

    @property
    def has_callable(self) -> bool:
        return any(s.is_callable for s in self.slots)

    def bounds(self, dates: pd.DatetimeIndex):
        """Host (lo (D, A), hi (D, A), gl (D, M), gu (D, M)) at ``dates`` from the numbers and
        time series; callables are filled later by :meth:`apply_callables` (defaults here).
        """
        D, A, M = len(dates), len(self.symbols), self.M
        arr = {"lo": np.zeros((D, A)), "hi": np.ones((D, A)), "gl": np.full((D, M), -np.inf),
               "gu": np.full((D, M), np.inf), "cap": np.full((D, self.K), np.inf)}
        for s in self.slots:
            if s.is_callable:
                continue
            _put(arr[s.target], s, _static(s, dates))
        self.check(arr["lo"], arr["hi"], arr["gl"], arr["gu"], dates, arr["cap"])
        return arr["lo"], arr["hi"], arr["gl"], arr["gu"], arr["cap"]

    def apply_callables(self, state: WalkState, lo, hi, gl, gu, cap) -> None:
        """Evaluate the callables for one state and write their values into the (A,)/(M,)/(K,)
        rows ``lo, hi, gl, gu, cap`` of that date (in place), then check them.
        """
        arr = {"lo": lo, "hi": hi, "gl": gl, "gu": gu, "cap": cap}
        for s in self.slots:
            if s.is_callable:
                _put(arr[s.target], s, _call_value(s, state)[None, :], one=True)
        self.check(lo[None], hi[None], gl[None], gu[None], pd.DatetimeIndex([state.date]),
                   cap[None])

    def check(self, lo, hi, gl, gu, dates, cap=None) -> None:
        """One-line errors for bounds that no weight vector can meet (given as input); upper
        weight bounds above 1 are clipped to 1 in place.
        """
        np.clip(hi, None, 1.0, out=hi)
        bad = [
            (lo < 0).any(axis=1), (lo > hi + 1e-15).any(axis=1),
            (gl > gu).any(axis=1) if self.M else np.zeros(len(lo), bool),
            lo.sum(axis=1) > 1 + 1e-12,
            (hi.sum(axis=1) < 1 - 1e-12) if not self.cash else np.zeros(len(lo), bool),
        ]
        why = ["a lower weight bound is < 0 (long-only)", "a lower bound exceeds its upper bound",
               "a row's lower bound exceeds its upper bound", "the lower bounds sum to > 1",
               "the upper bounds sum to < 1 (fully invested; add Budget() to allow cash)"]
        if cap is not None and cap.size:
            bad.append((cap <= 0).any(axis=1))
            why.append("a Volatility/TrackingError max is <= 0 (give a positive annual level, "
                       "or NaN for no cap)")
        for b, w in zip(bad, why):
            if b.any():
                d = int(np.argmax(b))
                raise GpusimError(f"constraints on {pd.Timestamp(dates[d]).date()}: {w}; fix "
                                  "the bounds")

    def G(self, xp, betas, S: int):
        """(S, M, A) rows for S windows: the static rows plus the windows' betas (S, B, A)."""
        G = xp.broadcast_to(xp.asarray(self.static_G), (S, self.M, len(self.symbols))).copy()
        for row, col in self.beta_rows:
            G[:, row, :] = betas[:, col, :]
        return xp.ascontiguousarray(G)

    # ---- reports --------------------------------------------------------------------------

    def cap_flags(self, risk, cap, tol, broken: bool = False):
        """(n_constraints,) bool from the (K,) risks (volatility / tracking error) of some
        weights: caps active (``risk >= cap - tol``) or, with ``broken``, exceeded.
        """
        out = np.zeros(len(self.constraints), bool)
        for k in range(self.K):
            if np.isfinite(cap[k]) and (risk[k] > cap[k] * (1 + 1e-9) if broken else
                                        risk[k] >= cap[k] - tol):
                out[self.cap_owner[k]] = True
        return out

    def activity(self, w, G, lo, hi, gl, gu, tol):
        """(n_constraints,) bool: which constraints have a non-trivial bound active at ``w``
        (within ``tol``).
        """
        out = np.zeros(len(self.constraints), bool)
        if self.weight_owner is not None:
            a = ((lo > 0) & (np.abs(w - lo) <= tol)) | ((hi < 1) & (np.abs(w - hi) <= tol))
            out[self.weight_owner] = bool(a.any())
        if self.M:
            v = G @ w
            act = ((gl > self.row_trivial[:, 0]) & (np.abs(v - gl) <= tol)) | (
                (gu < self.row_trivial[:, 1]) & (np.abs(v - gu) <= tol))
            for m in np.flatnonzero(act):
                out[self.row_owner[m]] = True
        return out

    def violations(self, w, G, lo, hi, gl, gu):
        """(n_constraints,) bool: which constraints ``w`` breaks (equalities within ``tol``)."""
        out = np.zeros(len(self.constraints), bool)
        sl = SLACK * (1 + np.abs(lo)), SLACK * (1 + np.abs(hi))
        if self.weight_owner is not None:
            out[self.weight_owner] = bool(((w < lo - sl[0]) | (w > hi + sl[1])).any())
        if self.M:
            v = G @ w
            eq = gl == gu
            bad = np.where(eq, np.abs(v - gu) > self.eqtol + SLACK * (1 + np.abs(gu)),
                           (v < gl - SLACK * (1 + np.abs(gl))) | (v > gu + SLACK * (1 + np.abs(
                               gu))))
            for m in np.flatnonzero(bad):
                out[self.row_owner[m]] = True
        return out


def _put(target: np.ndarray, slot: _Slot, vals: np.ndarray, one: bool = False) -> None:
    """Write non-NaN values of ``vals`` (D, n) into ``target`` (D, width) (or (width,))."""
    t = target[None] if one else target
    sub = t[:, slot.pos]
    keep = ~np.isnan(vals)
    sub[keep] = vals[keep]
    t[:, slot.pos] = sub


def max_scale(y, lo, hi, G, gl, gu) -> float:
    """Largest s in (0, 1] allowed by the upper-type limits for direction ``y`` (cash mode);
    NumPy twin of the rule in :func:`cpu_ref.walkforward.constrain_1d_nb` (host).
    """
    s = 1.0
    pos = y > 0
    if pos.any():
        s = min(s, float(np.min(hi[pos] / y[pos])))
    if len(gl):
        v = G @ y
        up = (v > 0) & np.isfinite(gu)
        dn = (v < 0) & np.isfinite(gl)
        if up.any():
            s = min(s, float(np.min(gu[up] / v[up])))
        if dn.any():
            s = min(s, float(np.min(gl[dn] / v[dn])))
    return s


def _benchmark(c: Beta, index: pd.DatetimeIndex) -> np.ndarray:
    b = c.benchmark
    if b.index.has_duplicates:
        raise GpusimError(f"{c.name}: the benchmark has duplicate dates; keep one per date")
    vals = pd.to_numeric(b, errors="coerce").reindex(index)
    if vals.isna().any():
        d = index[int(np.argmax(vals.isna().to_numpy()))]
        raise GpusimError(f"{c.name}: the benchmark has no value on {d.date()}; align it with "
                          "the prices first (e.g. load both and keep the common dates)")
    v = vals.to_numpy(dtype=np.float64)
    if c.returns:
        v = np.cumprod(1.0 + v)  # prices up to a constant: returns from bar 1 on are the same
    if not (np.isfinite(v).all() and (v > 0).all()):
        d = index[int(np.argmax(~(np.isfinite(v) & (v > 0))))]
        raise GpusimError(f"{c.name}: benchmark price on {d.date()} is not a finite number > 0")
    return v


def compile_constraints(constraints, symbols, index: pd.DatetimeIndex) -> ConstraintPlan:
    """Validate ``constraints`` (a constraint, a list of them, or None) for a market with
    ``symbols`` and dates ``index`` and return the :class:`ConstraintPlan`.
    """
    if constraints is None:
        constraints = []
    if isinstance(constraints, Constraint):
        constraints = [constraints]
    constraints = list(constraints)
    for c in constraints:
        if not isinstance(c, Constraint):
            raise GpusimError(f"constraints: {c!r} is not a constraint; use WeightBounds, "
                              "GroupBounds, Beta, Budget, Volatility or TrackingError from "
                              "gpusim")
    names = [c.name for c in constraints]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise GpusimError(f"two constraints are named {dup!r}; pass name=... to tell them apart")
    kinds = [type(c).__name__ for c in constraints]
    for k in ("WeightBounds", "Budget"):
        if kinds.count(k) > 1:
            raise GpusimError(f"constraints: give at most one {k}")
    symbols = [str(s) for s in symbols]
    A = len(symbols)
    cap_names, cap_owner, cap_bench = [], [], []
    rows, owner, trivial, Grows, eqtol, beta_rows = [], [], [], [], [], []
    bench_names, bench_cols, slots = [], [], []
    weight_owner, cash = None, False
    apos = np.arange(A)
    for ci, c in enumerate(constraints):
        if isinstance(c, WeightBounds):
            weight_owner = ci
            slots += _expand(c.lo, "lo", apos, symbols, f"{c.name} lo")
            slots += _expand(c.hi, "hi", apos, symbols, f"{c.name} hi")
            continue
        if isinstance(c, GroupBounds):
            unknown = sorted(set(c.groups) - set(symbols))
            if unknown:
                raise GpusimError(f"{c.name}: symbols {unknown[:5]} are not in the prices")
            labels = list(dict.fromkeys(c.groups.values()))
            first = len(rows)
            for g in labels:
                rows.append(f"{c.name}[{g}]")
                owner.append(ci)
                trivial.append((0.0, 1.0))
                Grows.append(np.array([1.0 if c.groups.get(s) == g else 0.0 for s in symbols]))
                eqtol.append(c.tol)
            pos = np.arange(first, len(rows))
            slots += _expand(c.lo, "gl", pos, labels, f"{c.name} lo")
            slots += _expand(c.hi, "gu", pos, labels, f"{c.name} hi")
            continue
        if isinstance(c, (Volatility, TrackingError)):
            col = -1
            if isinstance(c, TrackingError):
                key = id(c.benchmark)
                if key not in bench_cols:
                    bench_cols.append(key)
                    bench_names.append((c.name, _benchmark(c, index)))
                col = bench_cols.index(key)
            if not _is_callable(c.max) and not isinstance(c.max, (pd.Series, pd.DataFrame)):
                x = _num(c.max, f"{c.name} max")
                if not (math.isnan(x) or x > 0):
                    raise GpusimError(f"{c.name} max={c.max!r} must be > 0 (annualised, e.g. "
                                      "0.15 for 15%)")
            slots += _expand(c.max, "cap", np.array([len(cap_names)]), [c.name],
                             f"{c.name} max")
            cap_names.append(c.name)
            cap_owner.append(ci)
            cap_bench.append(col)
            continue
        if isinstance(c, Beta):
            key = id(c.benchmark)
            if key not in bench_cols:
                bench_cols.append(key)
                bench_names.append((c.name, _benchmark(c, index)))
            r = len(rows)
            rows.append(c.name)
            owner.append(ci)
            trivial.append((-np.inf, np.inf))
            Grows.append(np.zeros(A))
            eqtol.append(c.tol)
            beta_rows.append((r, bench_cols.index(key)))
            if c.op in ("<=", "="):
                slots += _expand(c.value, "gu", np.array([r]), [c.name], c.name)
            if c.op in (">=", "="):
                slots += _expand(c.value, "gl", np.array([r]), [c.name], c.name)
            continue
        if isinstance(c, Budget):
            cash = True
            r = len(rows)
            rows.append(c.name)
            owner.append(ci)
            trivial.append((0.0, 1.0))
            Grows.append(np.ones(A))
            eqtol.append(c.tol)
            for spec, tgt, what in ((c.lo, "gl", "min"), (c.hi, "gu", "max")):
                if not _is_callable(spec) and not isinstance(spec, (pd.Series, pd.DataFrame)):
                    x = _num(spec, f"{c.name} {what}")
                    if not (math.isnan(x) or 0.0 <= x <= 1.0):
                        raise GpusimError(f"{c.name} {what}={spec!r} must be in [0, 1]")
                slots += _expand(spec, tgt, np.array([r]), [c.name], f"{c.name} {what}")
    M = len(rows)
    bench = (np.stack([v for _, v in bench_names], axis=1) if bench_names else None)
    return ConstraintPlan(
        symbols=symbols, constraints=constraints, row_names=rows,
        row_owner=np.array(owner, dtype=np.int64), row_trivial=np.array(trivial).reshape(M, 2),
        static_G=np.array(Grows).reshape(M, A), beta_rows=beta_rows,
        bench_names=[n for n, _ in bench_names], bench_close=bench,
        eqtol=np.array(eqtol, dtype=np.float64).reshape(M), cash=cash, slots=slots,
        weight_owner=weight_owner, cap_names=cap_names,
        cap_owner=np.array(cap_owner, dtype=np.int64), cap_bench=cap_bench)

