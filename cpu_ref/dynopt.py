"""Reference dynamic optimisation of integer futures positions (DESIGN §8, issue 6).

Carver's greedy algorithm (*Advanced Futures Trading Strategies*, ch. 25), in weight space, written
to be read: every objective value is computed from scratch with the full quadratic form. It is
the oracle for the fast paths in ``gpusim`` (which update the objective incrementally) and never
imports ``gpusim``.

Notation (one day, N instruments)
---------------------------------
``c``        (N,) weight of one contract: notional value of one contract / capital
             (notional = price x multiplier x FX, in the base currency). ``c_i = 0`` marks an
             instrument outside the optimisation that day (no price, no risk estimate, or a
             notional <= 0).
``w_star``   (N,) optimal unrounded weights (0 outside the optimisation).
``w0``       (N,) previous weights: yesterday's contracts x today's ``c``.
``k``        (N,) cost of trading one unit of weight (cost per contract / notional), >= 0.
``cov``      (N, N) annualised covariance Σ = D R D of the instruments' percentage returns.
``n``        (N,) contracts (integers stored as float64).

Tracking error TE(w) = sqrt(max((w - w*)' Σ (w - w*), 0)); objective
``TE(w) + shadow_cost * sum_i |k_i (w_i - w0_i)|`` with ``w = n * c``.

Greedy (:func:`greedy_1d_nb`): start at n = 0; each step tries, for every instrument with
``c_i > 0`` and ``w*_i != 0``, one extra contract in the direction ``sign(w*_i)``, and accepts
the single trial with the lowest objective if it is strictly lower than the current one (ties
between trials go to the lowest instrument index); stop when no trial improves. The result is a
local optimum, not the integer optimum.

Buffering (:func:`buffer_1d_nb`): ``TE_prior`` = TE of the previous weights against the greedy
weights; ``alpha = max((TE_prior - B) / TE_prior, 0)`` (0 when TE_prior = 0); trade
``round(alpha * (greedy - previous))`` contracts, rounding half to even (``np.rint``).

Daily loop (:func:`dynopt_1d_nb`): positions start at 0. On day t the P&L of yesterday's
positions is booked; on a rebalance day the greedy + buffer run with yesterday's positions as
the previous positions, instruments outside the optimisation (``c_i = 0``) are traded to 0, and
the traded contracts pay ``cost`` each. Returns are (P&L - costs) / capital (fixed capital, no
compounding).

No-trade rule (``no_trade_rule=True``, pysystemtrade's ``optimise_positions``): on a rebalance
day yesterday's positions are kept unchanged (instruments outside the optimisation still closed)
when the TE of the previous weights against the *unrounded optimum* w* is strictly below the
buffer B (then the greedy does not run), or when the greedy result is all zeros. Those days
record no adjustment factor. The static comparison (classic position buffer) is in
:mod:`cpu_ref.dynopt_static`.

Public API
----------
METRICS                  names of the metric columns, in order; Metric their indices
tracking_error_1d_nb     TE of weights against a target
objective_1d_nb          TE + shadow cost penalty of a contract vector
greedy_1d_nb             the greedy search of one day
buffer_1d_nb             the buffering of one day
dynopt_1d_nb             one combination: metrics, positions, daily TE, alpha and returns
dynopt_nb                many combinations in parallel (prange): metrics (C, len(METRICS))
estimate_covariances_nb  annualised vols and shrunk-correlation covariances on a schedule
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange


class MetricT(NamedTuple):
    """Column index of each metric (``Metric.sharpe == 2``): named constants that Numba folds
    in jitted code, on the CPU and in CUDA device functions (vectorbt's ``enums.py`` idiom).
    """

    mean_return: int = 0
    volatility: int = 1
    sharpe: int = 2
    contracts_per_year: int = 3
    avg_tracking_error: int = 4
    avg_adjustment_factor: int = 5
    costs: int = 6
    annual_cost: int = 7


Metric = MetricT()
"""Column indices of the metrics, by name."""

METRICS = MetricT._fields
"""Metric columns, in order:

mean_return            mean daily return x ann (returns = (P&L - costs) / capital; no compounding)
volatility             std(daily returns, ddof=1) x sqrt(ann)
sharpe                 mean / std x sqrt(ann) (NaN when std = 0)
contracts_per_year     contracts traded (sum over instruments of |change|) per year: total x ann / T
avg_tracking_error     mean over days with at least one instrument in the optimisation of the TE
                       of the held positions (after the day's trades) against w* (annualised)
avg_adjustment_factor  mean alpha over the rebalance days with TE_prior > TE_ZERO (NaN if none)
costs                  total trading costs as a fraction of capital
annual_cost            costs x ann / T (return drag per year)
"""

N_METRICS = len(METRICS)

MAX_STEPS = 1_000_000
TE_ZERO = 1e-12
"""TE_prior at or below this (in weight units; buffers are ~1e-2) is zero: the rounding residue
of ``n c - n c`` (exactly 0 on the CPU, ~1e-17 where a device fuses it into one fma) neither
adjusts positions nor counts as a day of ``avg_adjustment_factor``."""
"""Safeguard on the greedy steps of one day (each step adds one contract); far above any
realistic sum of |contracts|."""


# --------------------------------------------------------------------------------------------
# One day
# --------------------------------------------------------------------------------------------

@njit(cache=True)
def tracking_error_1d_nb(w, target, cov):
    """sqrt(max((w - target)' cov (w - target), 0)) for (N,) vectors and an (N, N) matrix."""
    N = w.shape[0]
    q = 0.0
    for i in range(N):
        for j in range(N):
            q += (w[i] - target[i]) * cov[i, j] * (w[j] - target[j])
    return math.sqrt(max(q, 0.0))


@njit(cache=True)
def objective_1d_nb(n, c, w_star, w0, k, cov, shadow_cost):
    """TE(n * c) + shadow_cost * sum_i |k_i (n_i c_i - w0_i)|."""
    w = n * c
    penalty = 0.0
    for i in range(n.shape[0]):
        penalty += abs(k[i] * (w[i] - w0[i]))
    return tracking_error_1d_nb(w, w_star, cov) + shadow_cost * penalty


@njit(cache=True)
def greedy_1d_nb(c, w_star, w0, k, cov, shadow_cost):
    """Greedy integer positions of one day (see the module docstring).

    Returns
    -------
    (N,) float64 contracts (whole numbers); 0 for instruments with ``c_i = 0`` or ``w*_i = 0``.
    """
    N = c.shape[0]
    n = np.zeros(N)
    direction = np.zeros(N)
    for i in range(N):
        if c[i] > 0.0:
            direction[i] = np.sign(w_star[i])
    best = objective_1d_nb(n, c, w_star, w0, k, cov, shadow_cost)
    for _ in range(MAX_STEPS):
        best_i = -1
        best_value = best
        for i in range(N):
            if direction[i] == 0.0:
                continue
            trial = n.copy()
            trial[i] += direction[i]
            value = objective_1d_nb(trial, c, w_star, w0, k, cov, shadow_cost)
            if value < best_value:
                best_value = value
                best_i = i
        if best_i < 0:
            break
        n[best_i] += direction[best_i]
        best = best_value
    return n


@njit(cache=True)
def buffer_1d_nb(n_prev, n_greedy, c, cov, buffer):
    """Buffered trade towards the greedy solution.

    Returns
    -------
    n_new : (N,) contracts ``n_prev + rint(alpha * (n_greedy - n_prev))`` (half to even).
    alpha : the adjustment factor max((TE_prior - buffer) / TE_prior, 0), 0 when TE_prior = 0.
    te_prior : TE of ``n_prev * c`` against ``n_greedy * c``.
    """
    te_prior = tracking_error_1d_nb(n_prev * c, n_greedy * c, cov)
    alpha = 0.0
    if te_prior > TE_ZERO:
        alpha = max((te_prior - buffer) / te_prior, 0.0)
    n_new = n_prev + np.rint(alpha * (n_greedy - n_prev))
    return n_new, alpha, te_prior


# --------------------------------------------------------------------------------------------
# The daily loop of one combination
# --------------------------------------------------------------------------------------------

@njit(cache=True)
def dynopt_1d_nb(dprice, notional, cost, k, w_star, covs, cov_id, mask, capital, shadow_cost,
                 buffer, ann, no_trade_rule=False):
    """Simulate one combination (capital, shadow cost, buffer, rebalance mask).

    Parameters
    ----------
    dprice : (T, N) P&L in base currency of holding one contract from day t-1 to day t
        (row 0 is ignored); 0 where unknown.
    notional : (T, N) base-currency value of one contract; <= 0 marks an instrument outside the
        optimisation that day.
    cost : (T, N) base-currency cost of trading one contract.
    k : (T, N) cost per unit of weight traded (cost / notional; 0 outside the optimisation).
    w_star : (T, N) optimal unrounded weights (0 outside the optimisation).
    covs : (P, N, N) annualised covariances; cov_id : (T,) int64, day t uses ``covs[cov_id[t]]``.
    mask : (T,) bool, True on rebalance days.
    capital, shadow_cost, buffer, ann : float.
    no_trade_rule : bool, pysystemtrade's early exit (module docstring).

    Returns
    -------
    metrics : (len(METRICS),) float64
    positions : (T, N) contracts held after each day's trades
    te : (T,) TE of the held positions against w* (NaN when no instrument is in the optimisation)
    alpha : (T,) adjustment factor on rebalance days with TE_prior > 0, else NaN
    returns : (T,) daily (P&L - costs) / capital
    """
    T, N = dprice.shape
    positions = np.zeros((T, N))
    te = np.full(T, np.nan)
    alpha = np.full(T, np.nan)
    returns = np.zeros(T)
    n = np.zeros(N)
    turnover = 0.0
    costs_paid = 0.0
    for t in range(T):
        pnl = 0.0
        if t > 0:
            for i in range(N):
                pnl += n[i] * dprice[t, i]
        cov = covs[cov_id[t]]
        c = np.zeros(N)
        in_opt = False
        for i in range(N):
            if notional[t, i] > 0.0:
                c[i] = notional[t, i] / capital
                in_opt = True
        day_cost = 0.0
        if mask[t]:
            w0 = n * c
            keep = no_trade_rule and tracking_error_1d_nb(w0, w_star[t], cov) < buffer
            greedy = n
            if not keep:
                greedy = greedy_1d_nb(c, w_star[t], w0, k[t], cov, shadow_cost)
                keep = no_trade_rule and np.all(greedy == 0.0)
            if keep:
                n_new = n.copy()
            else:
                n_new, a, te_prior = buffer_1d_nb(n, greedy, c, cov, buffer)
                if te_prior > TE_ZERO:
                    alpha[t] = a
            for i in range(N):
                if not c[i] > 0.0:
                    n_new[i] = 0.0  # outside the optimisation: close
                traded = abs(n_new[i] - n[i])
                turnover += traded
                day_cost += traded * cost[t, i]
            n = n_new
        positions[t] = n
        if in_opt:
            te[t] = tracking_error_1d_nb(n * c, w_star[t], cov)
        costs_paid += day_cost
        returns[t] = (pnl - day_cost) / capital
    metrics = _metrics(returns, te, alpha, turnover, costs_paid, capital, ann)
    return metrics, positions, te, alpha, returns


@njit(cache=True)
def _metrics(returns, te, alpha, turnover, costs_paid, capital, ann):
    """Metrics (order of METRICS) from the stored daily series (two-pass mean and std)."""
    T = returns.shape[0]
    mean = returns.sum() / T
    ss = 0.0
    for t in range(T):
        ss += (returns[t] - mean) ** 2
    std = math.sqrt(ss / (T - 1)) if T > 1 else np.nan
    out = np.empty(N_METRICS)
    out[Metric.mean_return] = mean * ann
    out[Metric.volatility] = std * math.sqrt(ann)
    out[Metric.sharpe] = mean / std * math.sqrt(ann) if std > 0.0 else np.nan
    out[Metric.contracts_per_year] = turnover * ann / T
    out[Metric.avg_tracking_error] = _nanmean(te)
    out[Metric.avg_adjustment_factor] = _nanmean(alpha)
    out[Metric.costs] = costs_paid / capital
    out[Metric.annual_cost] = costs_paid / capital * ann / T
    return out


@njit(cache=True)
def _nanmean(x):
    s = 0.0
    m = 0
    for v in x:
        if not np.isnan(v):
            s += v
            m += 1
    return s / m if m > 0 else np.nan


@njit(parallel=True, cache=True)
def dynopt_nb(dprice, notional, cost, k, w_star, covs, cov_id, masks, mid, capitals,
              shadow_costs, buffers, ann, no_trade_rule=False):
    """Metrics of C combinations (prange over combinations): combination j uses
    ``masks[mid[j]]``, ``capitals[j]``, ``shadow_costs[j]`` and ``buffers[j]``; other arguments
    as :func:`dynopt_1d_nb`. Returns (C, len(METRICS)) float64.
    """
    C = mid.shape[0]
    out = np.empty((C, N_METRICS))
    for j in prange(C):
        m, _, _, _, _ = dynopt_1d_nb(dprice, notional, cost, k, w_star, covs, cov_id,
                                     masks[mid[j]], capitals[j], shadow_costs[j], buffers[j],
                                     ann, no_trade_rule)
        out[j] = m
    return out


# --------------------------------------------------------------------------------------------
# Covariance input: annualised vols and correlations shrunk toward zero, on a schedule
# --------------------------------------------------------------------------------------------

@njit(cache=True)
def estimate_covariances_nb(returns, update, lookback, min_periods, shrinkage, ann):
    """Covariances Σ = D R D re-estimated on the days where ``update`` is True (day 0 always).

    At an update day u the window is the returns of days max(1, u - lookback + 1) .. u (the
    close of day u is known when day u's positions are set); NaN returns are missing.

    - vol_i = sqrt(ann * var_i), var_i the ddof=1 variance of instrument i's valid returns in
      the window; NaN when it has fewer than ``min_periods`` of them, or var_i = 0.
    - rho_ij = Pearson correlation over the days where both are valid (pairwise complete);
      0 when fewer than ``min_periods`` such days or a zero variance on them.
    - R_ij = (1 - shrinkage) * rho_ij for i != j, R_ii = 1 (over instruments with a vol).
    - When R has a negative eigenvalue (pairwise-complete correlations need not be positive
      semi-definite) it is repaired: eigenvalues clipped at 0, then rescaled to a unit diagonal.
    - Σ_ij = vol_i R_ij vol_j; rows and columns of instruments without a vol are 0.

    Parameters
    ----------
    returns : (T, N) float64 daily percentage returns (row 0 unused), NaN = missing.
    update : (T,) bool.
    lookback, min_periods : int (2 <= min_periods <= lookback).
    shrinkage : float in [0, 1].
    ann : float, days per year.

    Returns
    -------
    vols : (P, N) annualised vols (NaN = unknown); covs : (P, N, N); cov_id : (T,) int64 index
    of the estimate in force on each day (the last update day <= t).
    """
    T, N = returns.shape
    P = 0
    for t in range(T):
        if t == 0 or update[t]:
            P += 1
    vols = np.full((P, N), np.nan)
    covs = np.zeros((P, N, N))
    cov_id = np.zeros(T, dtype=np.int64)
    p = -1
    for u in range(T):
        if u == 0 or update[u]:
            p += 1
            lo = max(1, u - lookback + 1)
            _estimate_one(returns, lo, u + 1, min_periods, shrinkage, ann, vols[p], covs[p])
        cov_id[u] = p
    return vols, covs, cov_id


@njit(cache=True)
def _estimate_one(returns, lo, hi, min_periods, shrinkage, ann, vol, cov):
    N = returns.shape[1]
    for i in range(N):
        s = 0.0
        m = 0
        for t in range(lo, hi):
            x = returns[t, i]
            if not np.isnan(x):
                s += x
                m += 1
        if m >= min_periods and m >= 2:
            mean = s / m
            ss = 0.0
            for t in range(lo, hi):
                x = returns[t, i]
                if not np.isnan(x):
                    ss += (x - mean) ** 2
            var = ss / (m - 1)
            if var > 0.0:
                vol[i] = math.sqrt(ann * var)
    idx = np.zeros(N, dtype=np.int64)
    na = 0
    for i in range(N):
        if not np.isnan(vol[i]):
            idx[na] = i
            na += 1
    if na == 0:
        return
    R = np.eye(na)
    for a in range(na):
        for b in range(a + 1, na):
            r = _pairwise_corr(returns, lo, hi, idx[a], idx[b], min_periods)
            R[a, b] = (1.0 - shrinkage) * r
            R[b, a] = R[a, b]
    lam, V = np.linalg.eigh(R)
    if lam[0] < 0.0:
        lam = np.maximum(lam, 0.0)
        R = (V * lam) @ V.T
        d = np.sqrt(np.diag(R))
        for a in range(na):
            for b in range(na):
                R[a, b] = R[a, b] / (d[a] * d[b]) if a != b else 1.0
    for a in range(na):
        for b in range(na):
            cov[idx[a], idx[b]] = vol[idx[a]] * R[a, b] * vol[idx[b]]


@njit(cache=True)
def _pairwise_corr(returns, lo, hi, i, j, min_periods):
    si = 0.0
    sj = 0.0
    m = 0
    for t in range(lo, hi):
        x = returns[t, i]
        y = returns[t, j]
        if not (np.isnan(x) or np.isnan(y)):
            si += x
            sj += y
            m += 1
    if m < min_periods or m < 2:
        return 0.0
    mi = si / m
    mj = sj / m
    sxy = 0.0
    sxx = 0.0
    syy = 0.0
    for t in range(lo, hi):
        x = returns[t, i]
        y = returns[t, j]
        if not (np.isnan(x) or np.isnan(y)):
            sxy += (x - mi) * (y - mj)
            sxx += (x - mi) ** 2
            syy += (y - mj) ** 2
    if sxx <= 0.0 or syy <= 0.0:
        return 0.0
    return min(1.0, max(-1.0, sxy / math.sqrt(sxx * syy)))
