"""Per-contract inputs of the dynamic optimisation (:func:`gpusim.dynopt`): :func:`prepare`
turns prices (or a :class:`gpusim.data.futures.FuturesData`), multipliers, FX, costs and the
optimal positions or weights into the host arrays of :class:`DynoptInputs` that every
combination shares (the conventions are in the docstring of :mod:`gpusim.dynopt.api`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gpusim.compiling import compile_notice
from gpusim.data.futures import FuturesData
from gpusim.errors import DataError, GpusimError
from gpusim.specs import rebalance_mask
from gpusim.validate import check_ann, integer, number, positive

__all__ = ["DynoptInputs", "prepare"]

@dataclass
class DynoptInputs:
    """Host arrays shared by every combination (T days, N instruments, P covariance estimates).

    ``dprice`` P&L per contract held from t-1 to t (base ccy; 0 where unknown), ``notional``
    value of one contract (0 outside the optimisation), ``cost`` cost per contract traded (base
    ccy), ``k`` cost per unit of weight, ``w_star`` optimal weights — all (T, N) float64;
    ``covs`` (P, N, N), ``vols`` (P, N) (NaN = no estimate), ``cov_id`` (T,) int64; ``active``
    (T, N) bool; ``index`` dates; ``symbols``; ``ann``.
    """

    dprice: np.ndarray
    notional: np.ndarray
    cost: np.ndarray
    k: np.ndarray
    w_star: np.ndarray
    covs: np.ndarray
    vols: np.ndarray
    cov_id: np.ndarray
    active: np.ndarray
    index: pd.DatetimeIndex
    symbols: list
    ann: float
    info: dict

    def kernel_args(self) -> tuple:
        return (self.dprice, self.notional, self.cost, self.k, self.w_star, self.covs,
                self.cov_id)

    def optimal_risk(self) -> np.ndarray:
        """(T,) sqrt(w*' Σ w*): the TE of holding nothing (NaN on days with no instrument)."""
        S = self.covs[self.cov_id]
        q = np.einsum("ti,tij,tj->t", self.w_star, S, self.w_star)
        out = np.sqrt(np.maximum(q, 0.0))
        out[~self.active.any(axis=1)] = np.nan
        return out


def _frame(x, what: str, index: pd.DatetimeIndex | None = None,
           columns: list | None = None) -> pd.DataFrame:
    if isinstance(x, pd.Series) and index is None:
        x = x.to_frame()
    if not isinstance(x, pd.DataFrame):
        raise DataError(f"{what} must be a DataFrame (dates x instruments), got "
                        f"{type(x).__name__}")
    df = x.copy()
    df.columns = [str(c) for c in df.columns]
    if index is None:
        try:
            idx = pd.DatetimeIndex(df.index)
        except (TypeError, ValueError):
            raise DataError(f"{what} needs a DatetimeIndex of dates") from None
        if idx.has_duplicates:
            raise DataError(f"{what}: date {idx[idx.duplicated()][0]} appears twice; keep one "
                            "row per date")
        if not idx.is_monotonic_increasing:
            raise DataError(f"{what}: dates are not sorted; sort the rows by date")
        df.index = idx
    if columns is not None:
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise DataError(f"{what} has no column for {missing}; give one per instrument")
        df = df[columns]
    try:
        df = df.astype(np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{what} must hold numbers") from None
    if index is not None:
        idx = pd.DatetimeIndex(df.index)
        df = df.reindex(idx.union(index)).ffill().reindex(index)
    return df


def _per_instrument(x, what: str, symbols: list, default: float | None = None) -> np.ndarray:
    """(N,) values from a scalar, dict, Series or sequence (by instrument name)."""
    if x is None:
        if default is None:
            raise DataError(f"{what} is required: one value per instrument (dict or Series by "
                            "name)")
        return np.full(len(symbols), float(default))
    if np.isscalar(x):
        return np.full(len(symbols), float(x))
    if isinstance(x, dict):
        x = pd.Series(x)
    if isinstance(x, pd.Series):
        x.index = [str(i) for i in x.index]
        missing = [s for s in symbols if s not in x.index]
        if missing:
            raise DataError(f"{what} has no value for {missing}; give one per instrument")
        return x[symbols].to_numpy(np.float64)
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.shape != (len(symbols),):
        raise DataError(f"{what} has {a.size} values for {len(symbols)} instruments")
    return a


def prepare(prices, multipliers=None, fx=None, costs=None, optimal_positions=None,
            weights=None, *, risk_target: float = 0.2, idm: float = 1.0,
            optimal_capital: float | None = None, notional_prices=None, cov_every: Any = "W",
            lookback: int = 250, min_periods: int = 20, shrinkage: float = 0.5,
            ann: float | None = None) -> DynoptInputs:
    """Build the :class:`DynoptInputs` of :func:`gpusim.dynopt` (host; the conventions are
    in the docstring of :mod:`gpusim.dynopt.api`).

    ``prices`` may be a :class:`gpusim.data.futures.FuturesData`, whose multipliers, FX and costs
    are used unless given.
    """
    from cpu_ref.dynopt import estimate_covariances_nb

    if isinstance(prices, FuturesData):
        fd = prices
        prices = fd.prices
        multipliers = fd.multipliers if multipliers is None else multipliers
        fx = fd.fx if fx is None else fx
        costs = fd.costs if costs is None else costs
    P = _checked_prices(prices)
    symbols, idx = list(P.columns), pd.DatetimeIndex(P.index)
    NP = P if notional_prices is None else _frame(notional_prices, "notional_prices", idx,
                                                   symbols)
    mult = _multipliers(multipliers, symbols)
    FX = _fx_table(fx, idx, symbols)
    CO = _cost_table(costs, idx, symbols)
    risk_target = positive(risk_target, "risk_target")
    idm = positive(idm, "idm")
    shrinkage, ann, ann_src, update = _estimation_settings(lookback, min_periods, shrinkage, ann,
                                                           cov_every, idx)

    p, npx = P.to_numpy(), NP.to_numpy()
    with compile_notice("the covariance estimator", 4):
        vols, covs, cov_id = estimate_covariances_nb(
            np.ascontiguousarray(_returns(p, npx)), np.ascontiguousarray(update), int(lookback),
            int(min_periods), shrinkage, float(ann))
    vol_t = vols[cov_id]
    notional = npx * mult * FX
    cost_base = CO * FX
    with np.errstate(invalid="ignore"):
        active = (np.isfinite(notional) & (notional > 0) & np.isfinite(vol_t) & (vol_t > 0)
                  & np.isfinite(cost_base))
    w_star, source = _optimal_weights(optimal_positions, weights, optimal_capital, risk_target,
                                      idm, notional, vol_t, idx, symbols)
    w_star = np.where(active, w_star, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        dprice = np.zeros(p.shape)
        dprice[1:] = (p[1:] - p[:-1]) * mult * FX[1:]
        k = np.where(active, cost_base / np.where(active, notional, 1.0), 0.0)
    dprice = np.nan_to_num(dprice, nan=0.0, posinf=0.0, neginf=0.0)
    info = {"optimal": source, "risk_target": risk_target, "idm": idm,
            "optimal_capital": optimal_capital, "cov_every": str(cov_every),
            "lookback": int(lookback), "min_periods": int(min_periods), "shrinkage": shrinkage,
            "ann_source": ann_src, "n_cov_estimates": int(covs.shape[0]),
            "notional_prices": "prices" if notional_prices is None else "given"}
    c = np.ascontiguousarray
    return DynoptInputs(c(dprice), c(np.where(active, notional, 0.0)),
                        c(np.nan_to_num(np.where(np.isfinite(p), cost_base, 0.0))), c(k),
                        c(w_star), c(covs), vols, c(cov_id), active, idx, symbols, float(ann),
                        info)


def _checked_prices(prices) -> pd.DataFrame:
    """(T, N) float64 prices: at least one column and two dates, distinct instruments, no inf,
    no all-NaN column; NaN forward-filled (NaN stays before an instrument's first price).
    """
    P = _frame(prices, "prices")
    if P.shape[1] == 0:
        raise DataError("prices have no columns; pass one column per instrument")
    if P.shape[0] < 2:
        raise DataError(f"prices have {P.shape[0]} row(s); need at least 2 dates")
    if P.columns.has_duplicates:
        raise DataError(f"instrument {P.columns[P.columns.duplicated()][0]!r} appears twice")
    symbols = list(P.columns)
    idx = pd.DatetimeIndex(P.index)
    vals = P.to_numpy()
    if np.isinf(vals).any():
        i, j = np.argwhere(np.isinf(vals))[0]
        raise DataError(f"prices[{symbols[j]!r}] is infinite on {idx[i].date()}; fix that row")
    empty = [s for s in symbols if P[s].isna().all()]
    if empty:
        raise DataError(f"prices[{empty[0]!r}] has no valid price; drop that column")
    return P.ffill()


def _multipliers(multipliers, symbols: list) -> np.ndarray:
    """(N,) contract multipliers, each a finite number > 0."""
    mult = _per_instrument(multipliers, "multipliers", symbols)
    if not (np.all(np.isfinite(mult)) and np.all(mult > 0)):
        j = int(np.flatnonzero(~(np.isfinite(mult) & (mult > 0)))[0])
        raise DataError(f"multipliers[{symbols[j]!r}]={float(mult[j])!r} must be a number > 0")
    return mult


def _fx_table(fx, idx: pd.DatetimeIndex, symbols: list) -> np.ndarray:
    """(T, N) FX rates > 0 (base currency per unit of each instrument's currency) from None
    (all 1), a number, a dict of numbers by instrument (missing ones 1), or a DataFrame / dict
    of Series by instrument (forward-filled onto ``idx``; missing columns 1).
    """
    T, N = len(idx), len(symbols)
    if fx is None or np.isscalar(fx):
        FX = np.full((T, N), 1.0 if fx is None else positive(fx, "fx"))
    elif isinstance(fx, dict) and all(np.isscalar(v) for v in fx.values()):
        fxs = pd.Series({str(kk): float(v) for kk, v in fx.items()}).reindex(symbols)
        FX = np.broadcast_to(fxs.fillna(1.0).to_numpy(), (T, N)).copy()
    elif isinstance(fx, (dict, pd.DataFrame)):
        FXdf = pd.DataFrame(fx).copy() if isinstance(fx, dict) else fx.copy()
        FXdf.columns = [str(c) for c in FXdf.columns]
        for s in symbols:       # instruments without a column are in the base currency
            if s not in FXdf.columns:
                FXdf[s] = 1.0
        FX = _frame(FXdf, "fx", idx, symbols).to_numpy()
    else:
        raise DataError("fx must be None (base currency), a number, or a DataFrame/dict of "
                        "Series by instrument (base currency per unit of its currency)")
    if np.any(FX <= 0):
        raise DataError("fx must be > 0 (base currency per unit of the instrument's currency)")
    return FX


def _cost_table(costs, idx: pd.DatetimeIndex, symbols: list) -> np.ndarray:
    """(T, N) cost per contract traded (instrument currency, >= 0) from None (0), a number, a
    dict / Series by instrument, or a DataFrame / dict of Series (forward-filled onto ``idx``).
    """
    if isinstance(costs, (pd.DataFrame, dict)) and not (
            isinstance(costs, dict) and all(np.isscalar(v) for v in costs.values())):
        CO = _frame(pd.DataFrame(costs), "costs", idx, symbols).to_numpy()
    else:
        CO = np.broadcast_to(_per_instrument(costs, "costs", symbols, default=0.0),
                             (len(idx), len(symbols)))
    if np.any(CO < 0):
        raise DataError("costs must be >= 0 (cost per contract traded, instrument currency)")
    return CO


def _estimation_settings(lookback, min_periods, shrinkage, ann, cov_every,
                         idx: pd.DatetimeIndex) -> tuple[float, float, str, np.ndarray]:
    """Checked covariance-estimation settings: ``(shrinkage, ann, ann_source, update)`` with
    ``update`` the (T,) bool mask of the days that re-estimate (``cov_every``).
    """
    lookback = integer(lookback, "lookback", 2, fix=" (days)")
    integer(min_periods, "min_periods", 2, lookback, expect="an int in 2..lookback")
    shrinkage = number(shrinkage, "shrinkage", expect="a number in [0, 1]")
    if not 0.0 <= shrinkage <= 1.0:
        raise GpusimError(f"shrinkage={shrinkage!r} must be in [0, 1] (0 keeps the "
                          "correlations, 1 sets them to zero)")
    if ann is None:
        from gpusim.data.market import infer_ann

        ann, ann_src = infer_ann(idx)
        ann_src = f"inferred: {ann_src}"
    else:
        ann, ann_src = check_ann(ann), "given"
    if isinstance(cov_every, str) and cov_every.strip().lower() == "never":
        raise GpusimError("cov_every='never' is not a schedule; use 'D', 'W', 'M', an int k "
                          "or a bool mask")
    _, update = rebalance_mask(cov_every, idx, "cov_every")
    return shrinkage, ann, ann_src, update


def _returns(p: np.ndarray, npx: np.ndarray) -> np.ndarray:
    """(T, N) price change over the previous notional price (NaN on day 0 and where the
    previous notional price is not > 0).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        ret = np.full(p.shape, np.nan)
        prev = npx[:-1]
        ret[1:] = np.where(prev > 0, (p[1:] - p[:-1]) / np.where(prev > 0, prev, 1.0), np.nan)
    return ret


def _optimal_weights(optimal_positions, weights, optimal_capital, risk_target: float,
                     idm: float, notional: np.ndarray, vol_t: np.ndarray,
                     idx: pd.DatetimeIndex, symbols: list) -> tuple[np.ndarray, str]:
    """``(w_star, source)``: (T, N) optimal unrounded weights, from optimal positions
    (contracts for ``optimal_capital``) or by vol targeting ``weights`` (default equal), and a
    description of where they came from.
    """
    T, N = notional.shape
    if optimal_positions is not None and weights is not None:
        raise GpusimError("give optimal_positions or weights (+ risk_target), not both")
    if optimal_positions is not None:
        if optimal_capital is None:
            raise GpusimError("optimal_positions are contracts for one capital: pass "
                              "optimal_capital= (they scale linearly with capital)")
        oc = positive(optimal_capital, "optimal_capital")
        OP = _frame(optimal_positions, "optimal_positions", idx, symbols).to_numpy()
        if np.isinf(OP).any():
            raise DataError("optimal_positions must be finite (NaN means no position)")
        with np.errstate(invalid="ignore"):
            w_star = np.nan_to_num(OP) * notional / oc
        return w_star, f"optimal_positions (contracts for capital {oc:g})"
    if weights is None:
        W = np.full((T, N), 1.0 / N)
        source = "vol targeting, equal weights"
    elif isinstance(weights, pd.DataFrame):
        W = np.nan_to_num(_frame(weights, "weights", idx, symbols).to_numpy())
        source = "vol targeting, weights table"
    else:
        W = np.broadcast_to(_per_instrument(weights, "weights", symbols), (T, N))
        source = "vol targeting, fixed weights"
    if not np.all(np.isfinite(W)):
        raise DataError("weights must be finite")
    with np.errstate(invalid="ignore", divide="ignore"):
        w_star = idm * W * risk_target / vol_t
    return w_star, source
