"""Constraints of the walk-forward re-optimisation (DESIGN §7).

Kinds
-----
:class:`WeightBounds`  ``lo_j <= w_j <= hi_j`` per asset (long-only: ``lo >= 0``, ``hi <= 1``).
:class:`GroupBounds`   ``lo_g <= sum_{j in g} w_j <= hi_g`` per group (e.g. sector).
:class:`Beta`          portfolio beta ``sum_j w_j beta_j`` ``<=``, ``>=`` or ``=`` a value, with
                       ``beta_j = cov(r_j, r_b) / var(r_b)`` of asset j to the benchmark series on
                       the same estimation window as mu and cov (cash has beta 0).
:class:`Budget`        ``min <= sum_j w_j <= max``: the portfolio may hold cash (the rest). Without
                       a Budget the portfolio is fully invested (``sum w = 1``).
:class:`Volatility`    ex-ante volatility ``sqrt(ann w' cov w) <= max`` (annualised, on the window).
:class:`TrackingError` ex-ante tracking error to a benchmark series,
                       ``sqrt(ann var(r_w - r_b)) <= max`` on the window
                       (``ann (w' cov w - 2 w . c + v_b)``, ``c`` the assets' covariances with
                       the benchmark and ``v_b`` its variance; cash is riskless).

Value forms (every bound)
-------------------------
* a number: in force at every rebalance date;
* a time series (``pd.Series`` indexed by dates, or a ``pd.DataFrame`` dates x symbols/groups for
  per-asset/per-group values): the value in force at a rebalance date is the last one dated at
  or before it; NaN means "no bound on that date"; a date before the series starts is an error;
* a callable ``f(state, t)`` -> value, evaluated at each rebalance date ``t`` (a
  ``pd.Timestamp``) of each weight set with a :class:`WalkState` (the date, the window's mu and
  cov, the betas, the weights chosen at the previous rebalance of that weight set, the grid
  levels). Slower: the dates of a run are then processed one after the other;
* per-asset / per-group bounds also take a dict ``{symbol or group: any of the above}`` or an
  array of one number per asset.

How the methods apply them (and :mod:`cpu_ref.walkforward` for the exact rule)
-----------------------------------------------------------------------------
Random search: per-asset lower bounds by the sampler's affine map (exact, no rejection); all
other bounds by rejection. With a :class:`Budget` (cash allowed) a candidate is a direction
``y`` and is scaled to ``w = s y`` with the largest ``s`` in (0, 1] that the upper-type limits
allow ("projection by scaling" toward cash: Sharpe is scale-free, so the scaling changes no
score); it is accepted when every bound holds at that ``s``. Equality rows (``lo == hi`` or
``Beta(op="=")``) are accepted within the constraint's ``tol`` (a per-asset ``lo == hi`` is
never met by a random candidate: use the exact method). Exact method: every bound as a
convex constraint of the max-Sharpe problem (equalities exactly); with a Budget the optimal
direction is scaled the same way (as invested as the constraints allow).
Volatility and TrackingError caps: random search by rejection (at the candidate's scale); the
exact method as second-order cones (``|C w - c| <= 1``); with a Budget, the exact max-Sharpe
problem does not take them (its optimum is a direction scaled afterwards): use another
objective or the random search.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gpusim.errors import GpusimError
from gpusim.validate import positive

__all__ = [
    "SLACK",
    "Beta",
    "Budget",
    "GroupBounds",
    "TrackingError",
    "Volatility",
    "WalkState",
    "WeightBounds",
]

SLACK = 1e-12
"""Relative rounding slack of bound checks after a scaling (same as cpu_ref.walkforward)."""
_OPS = {"<=": "<=", "le": "<=", ">=": ">=", "ge": ">=", "=": "=", "==": "=", "eq": "="}


@dataclass
class WalkState:
    """What a callable constraint ``f(state, t)`` sees at one rebalance of one weight set.

    Attributes
    ----------
    date : pd.Timestamp of the rebalance bar (also passed as ``t``).
    bar : its index in the full price table.
    symbols : asset names.
    params : the weight set's levels (``every``, ``lookback``, ``num_tests``).
    prev_weights : (A,) weights chosen at the previous rebalance of this weight set (None at the
        first).
    mu, cov : (A,), (A, A) per-bar mean and covariance of the estimation window (host).
    betas : {benchmark name: (A,) betas on the window}.
    """

    date: pd.Timestamp
    bar: int
    symbols: list
    params: dict
    prev_weights: np.ndarray | None
    mu: np.ndarray
    cov: np.ndarray
    betas: dict = field(default_factory=dict)


class Constraint:
    """Base class: ``name`` labels the constraint in reports; ``tol`` is the tolerance within
    which the random search accepts this constraint's equality rows.
    """

    name: str = "constraint"
    tol: float = 1e-3

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class WeightBounds(Constraint):
    """Per-asset bounds ``lo <= w <= hi`` (each a number, dict by symbol, (A,) array, Series,
    DataFrame dates x symbols, or callable; None: 0 and 1).
    """

    def __init__(self, lo: Any = None, hi: Any = None, name: str = "weights",
                 tol: float = 1e-3):
        self.lo, self.hi, self.name, self.tol = lo, hi, _name(name), _tol(tol)


class GroupBounds(Constraint):
    """Bounds on the total weight of groups of assets (e.g. sectors).

    Parameters
    ----------
    groups : {symbol: group} (dict or Series); symbols left out belong to no group.
    lo, hi : a number (every group), a dict ``{group: value}``, a Series (every group), a
        DataFrame dates x groups, or a callable returning a number or a dict. None: no bound.
    """

    def __init__(self, groups: Mapping, lo: Any = None, hi: Any = None, name: str = "groups",
                 tol: float = 1e-3):
        if isinstance(groups, pd.Series):
            groups = groups.to_dict()
        if not isinstance(groups, Mapping) or not groups:
            raise GpusimError("GroupBounds(groups=...) needs a dict {symbol: group}")
        self.groups = {str(k): v for k, v in groups.items()}
        self.lo, self.hi, self.name, self.tol = lo, hi, _name(name), _tol(tol)


class Beta(Constraint):
    """Portfolio beta to a benchmark: ``sum_j w_j beta_j (op) value``.

    Parameters
    ----------
    benchmark : pd.Series of benchmark prices (DatetimeIndex; every date of the market must be
        present), or of returns with ``returns=True``; a one-column DataFrame is accepted.
    op : ``"<="``, ``">="`` or ``"="``.
    value : number, Series or callable.
    tol : the random search accepts ``|beta - value| <= tol`` for ``op="="``.
    """

    def __init__(self, benchmark, op: str = "<=", value: Any = 0.0, *, returns: bool = False,
                 name: str | None = None, tol: float = 1e-3):
        if isinstance(benchmark, pd.DataFrame):
            if benchmark.shape[1] != 1:
                raise GpusimError("Beta(benchmark=...) takes one series; pass df['SPY']")
            benchmark = benchmark.iloc[:, 0]
        if not isinstance(benchmark, pd.Series) or not isinstance(benchmark.index,
                                                                  pd.DatetimeIndex):
            raise GpusimError("Beta(benchmark=...) must be a pd.Series of prices indexed by "
                              "dates (e.g. load_prices('spy.csv').prices['SPY'])")
        if op not in _OPS:
            raise GpusimError(f"Beta(op={op!r}) is unknown; use '<=', '>=' or '='")
        self.benchmark, self.op, self.value, self.returns = benchmark, _OPS[op], value, bool(
            returns)
        self.name = _name(name or f"beta_{benchmark.name or 'benchmark'}")
        self.tol = _tol(tol)


class Budget(Constraint):
    """Total invested weight ``min <= sum w <= max`` (0 <= min <= max <= 1); the rest is cash
    (it earns nothing in the execution and ``rf`` in the ex-ante Sharpe).
    """

    def __init__(self, min: Any = 0.0, max: Any = 1.0, name: str = "budget",
                 tol: float = 1e-3):
        self.lo, self.hi, self.name, self.tol = min, max, _name(name), _tol(tol)


class Volatility(Constraint):
    """Ex-ante annualised volatility ``sqrt(ann w' cov w) <= max`` on each window's covariance.

    Parameters
    ----------
    max : number > 0, time series or callable ``f(state, t)`` (NaN or inf: no cap that day).
    """

    def __init__(self, max: Any, name: str = "volatility"):
        self.max, self.name = max, _name(name)


class TrackingError(Constraint):
    """Ex-ante annualised tracking error to a benchmark ``sqrt(ann var(r_w - r_b)) <= max``.

    Parameters
    ----------
    benchmark : pd.Series of benchmark prices (DatetimeIndex covering the market's dates), or
        of returns with ``returns=True``; a one-column DataFrame is accepted.
    max : number > 0, time series or callable ``f(state, t)`` (NaN or inf: no cap that day).
    """

    def __init__(self, benchmark, max: Any, *, returns: bool = False, name: str | None = None):
        if isinstance(benchmark, pd.DataFrame):
            if benchmark.shape[1] != 1:
                raise GpusimError("TrackingError(benchmark=...) takes one series; pass df['SPY']")
            benchmark = benchmark.iloc[:, 0]
        if not isinstance(benchmark, pd.Series) or not isinstance(benchmark.index,
                                                                  pd.DatetimeIndex):
            raise GpusimError("TrackingError(benchmark=...) must be a pd.Series of prices "
                              "indexed by dates (e.g. load_prices('spy.csv').prices['SPY'])")
        self.benchmark, self.max, self.returns = benchmark, max, bool(returns)
        self.name = _name(name or f"te_{benchmark.name or 'benchmark'}")


def _name(name) -> str:
    if not isinstance(name, str) or not name:
        raise GpusimError(f"constraint name={name!r} must be a non-empty str")
    return name


def _tol(tol) -> float:
    return positive(tol, "constraint tol", allow_zero=True)


# --------------------------------------------------------------------------------------------
# Value specs: static per-date arrays or callables
