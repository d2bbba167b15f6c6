"""Reference rebalancing backtest (DESIGN §6, contract of issue 3): the oracle for the fast paths.

One simulated portfolio ("combination") holds cash ``C`` and units ``h`` (A,). Prices are the
closes ``close`` (T, A); orders fill at the close of the bar that issues them and value is marked
at the close. Bar 0 always rebalances; later bars rebalance when the mask says so or (when
``threshold > 0``) when the drift band is breached. A rebalance trades every asset towards the
target weights ``w`` with target-percent orders computed from the bar's pre-trade value ``V``
(fixed for the whole bar), sells before buys (assets sorted by ascending order value, stable),
proportional fee ``f``; a buy that needs more cash than is left is partially filled.

Everything here is written to be read, not to be fast: one portfolio is simulated bar by bar with
its full value path stored, and the metrics are computed afterwards from that path in the plain
two-pass way (mean, then deviations). The fast paths (``gpusim``) compute the metrics online and
never store a path; agreement between the two is the check. This module never imports ``gpusim``.

Public API
----------
METRICS              names of the 11 metric columns, in order; Metric their indices
simulate_1d_nb       one portfolio: metrics, value path and rebalance records
simulate_nb          many combinations in parallel (prange): metrics (C, 11)
metrics_from_path_nb metrics of a stored value path (njit)
metrics_from_values  the same from Python, with argument checks
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange


class MetricT(NamedTuple):
    """Column index of each metric (``Metric.sharpe == 3``): named constants that Numba folds
    in jitted code, on the CPU and in CUDA device functions (vectorbt's ``enums.py`` idiom).
    """

    total_return: int = 0
    cagr: int = 1
    volatility: int = 2
    sharpe: int = 3
    sortino: int = 4
    max_drawdown: int = 5
    calmar: int = 6
    turnover: int = 7
    fees_paid: int = 8
    n_rebalances: int = 9
    final_value: int = 10


Metric = MetricT()
"""Column indices of the metrics, by name."""

METRICS = MetricT._fields
"""Column names of every metrics array, in column order (shape (..., 11))."""

N_METRICS = len(METRICS)

SIZE_RTOL = 1e-9
"""An order size ``s`` with ``|s| <= SIZE_RTOL * max(|target|, |h|)`` is skipped (not traded)."""


# --------------------------------------------------------------------------------------------
# Metrics from a stored value path (two-pass, not online)
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def metrics_from_path_nb(value, init_cash, ann, rf, traded, fees_paid, n_rebalances):
    """Metrics of one value path, computed from the stored path (two-pass).

    Parameters
    ----------
    value : (T,) float64
        Portfolio value V_t marked at the close of every bar, after that bar's orders.
    init_cash : float
        Starting cash (the value "before bar 0").
    ann : float
        Periods (bars) per year.
    rf : float
        Annual risk-free rate; the per-bar rate ``rf / ann`` is subtracted from every return.
    traded : float
        Sum over all bars of the gross traded value ``|s| p`` (before fees).
    fees_paid : float
        Total fees paid.
    n_rebalances : float
        Number of bars on which the rebalance routine ran (bar 0 included).

    Returns
    -------
    (11,) float64
        The metrics in the order of :data:`METRICS`. A ratio whose denominator is 0 is NaN
        (Sharpe with a zero std, Sortino with no downside, Calmar with no drawdown, ...).
    """
    n = value.shape[0]
    out = np.full(N_METRICS, np.nan)
    if n == 0:
        return out

    # Per-bar returns: R_0 against the initial cash, then bar over bar.
    R = np.empty(n)
    R[0] = value[0] / init_cash - 1.0
    for t in range(1, n):
        R[t] = value[t] / value[t - 1] - 1.0

    final = value[n - 1]
    growth = final / init_cash
    total_return = growth - 1.0
    annual_return = growth ** (ann / n) - 1.0

    # Pass 1: means.
    mean_r = 0.0
    for t in range(n):
        mean_r += R[t]
    mean_r /= n
    rf_bar = rf / ann
    mean_ex = 0.0
    for t in range(n):
        mean_ex += R[t] - rf_bar
    mean_ex /= n

    # Pass 2: sample std of R (ddof=1) and the downside deviation of the excess returns.
    std = np.nan
    if n > 1:
        ss = 0.0
        for t in range(n):
            d = R[t] - mean_r
            ss += d * d
        std = math.sqrt(ss / (n - 1))
    down_ss = 0.0
    for t in range(n):
        e = min(R[t] - rf_bar, 0.0)
        down_ss += e * e
    downside = math.sqrt(down_ss / n)

    annual_volatility = std * math.sqrt(ann)
    sharpe = np.nan
    if std > 0.0:  # False for NaN as well
        sharpe = mean_ex / std * math.sqrt(ann)
    sortino = np.nan
    if downside > 0.0:
        sortino = mean_ex / downside * math.sqrt(ann)

    # Drawdown from the running peak of the path.
    peak = value[0]
    max_drawdown = 0.0
    for t in range(n):
        if value[t] > peak:
            peak = value[t]
        dd = value[t] / peak - 1.0
        if dd < max_drawdown:
            max_drawdown = dd
    calmar = np.nan
    if max_drawdown != 0.0:
        calmar = annual_return / abs(max_drawdown)

    mean_value = 0.0
    for t in range(n):
        mean_value += value[t]
    mean_value /= n
    turnover = np.nan
    if mean_value != 0.0:
        turnover = traded / mean_value * (ann / n)  # annualised: traded value / mean value per year

    out[Metric.total_return] = total_return
    out[Metric.cagr] = annual_return
    out[Metric.volatility] = annual_volatility
    out[Metric.sharpe] = sharpe
    out[Metric.sortino] = sortino
    out[Metric.max_drawdown] = max_drawdown
    out[Metric.calmar] = calmar
    out[Metric.turnover] = turnover
    out[Metric.fees_paid] = fees_paid / init_cash  # a fraction of the initial capital
    out[Metric.n_rebalances] = n_rebalances
    out[Metric.final_value] = final
    return out


def metrics_from_values(values, init_cash, ann, rf, traded, fees, n_reb):
    """Metrics of a value path given from Python (e.g. a path produced by another simulator).

    Parameters
    ----------
    values : array_like, (T,)
        Value path marked at each close, after that bar's orders.
    init_cash, ann, rf, traded, fees, n_reb : float
        As in :func:`metrics_from_path_nb` (``fees`` is the total fees paid, ``n_reb`` the
        number of rebalance bars).

    Returns
    -------
    (11,) float64 numpy array (host), columns as :data:`METRICS`.
    """
    v = np.ascontiguousarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"values must be 1-d, got shape {v.shape}")
    return metrics_from_path_nb(
        v, float(init_cash), float(ann), float(rf), float(traded), float(fees), float(n_reb)
    )


# --------------------------------------------------------------------------------------------
# One bar
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def portfolio_value_nb(cash, h, p):
    """V = C + sum_j h_j p_j (summed in asset order, starting from the cash)."""
    v = cash
    for j in range(h.shape[0]):
        v += h[j] * p[j]
    return v


@njit(cache=True)
def band_breached_nb(cash, h, p, w, threshold, relative):
    """Whether the current weights have drifted out of the band around the targets.

    Current weights a_j = h_j p_j / V with V = C + sum h p at this bar's close (before orders).
    Absolute band: any |a_j - w_j| >= threshold. Relative band: any |a_j - w_j| >= threshold * w_j
    (taken literally: an asset with w_j = 0 breaches it whenever a_j >= 0, i.e. always).
    """
    V = portfolio_value_nb(cash, h, p)
    for j in range(h.shape[0]):
        a = h[j] * p[j] / V
        dev = abs(a - w[j])
        if relative:
            if dev >= threshold * w[j]:
                return True
        else:
            if dev >= threshold:
                return True
    return False


@njit(cache=True)
def rebalance_bar_nb(cash, h, p, w, fee):
    """Trade the portfolio to target weights at one bar (DESIGN §6). Updates ``h`` in place.

    Parameters
    ----------
    cash : float
        Cash before the bar's orders.
    h : (A,) float64
        Units held; overwritten with the units after the orders.
    p : (A,) float64
        Prices of the bar (the fill price and the valuation price).
    w : (A,) float64
        Target weights.
    fee : float
        Proportional fee f.

    Returns
    -------
    cash : float
        Cash after the orders.
    traded : float
        Gross traded value of the bar, sum of |s| p over filled orders.
    fees : float
        Fees paid at this bar.
    """
    A = h.shape[0]
    V = portfolio_value_nb(cash, h, p)  # pre-trade value, fixed for the whole bar

    # Order values o_j = w_j V - h_j p_j; process in ascending order (sells first), stable.
    o = np.empty(A)
    for j in range(A):
        o[j] = w[j] * V - h[j] * p[j]
    order = np.argsort(o, kind="mergesort")

    traded = 0.0
    fees = 0.0
    for k in range(A):
        j = order[k]
        target = w[j] * V / p[j]
        s = target - h[j]
        if s == 0.0 or abs(s) <= SIZE_RTOL * max(abs(target), abs(h[j])):
            continue
        if s < 0.0:
            # Sell down to the target: proceeds net of the fee go to cash.
            size = -s
            cash += size * p[j] * (1.0 - fee)
            fees += fee * size * p[j]
            traded += size * p[j]
            h[j] = target
        else:
            # Buy up to the target, or as much as the cash left pays for (partial fill).
            if cash <= 0.0:
                continue
            cost = s * p[j] * (1.0 + fee)
            if cost > cash:
                s = cash / (p[j] * (1.0 + fee))
            cash -= s * p[j] * (1.0 + fee)
            fees += fee * s * p[j]
            traded += s * p[j]
            h[j] += s
    return cash, traded, fees


# --------------------------------------------------------------------------------------------
# One portfolio, full path
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def simulate_1d_nb(close, w, mask, threshold, relative, fees, init_cash, ann, rf):
    """Simulate one portfolio over all bars, keeping its value path and rebalance records.

    Parameters
    ----------
    close : (T, A) float64
        Close prices (> 0).
    w : (A,) float64
        Target weights (long-only, sum 1).
    mask : (T,) bool
        Scheduled rebalance bars; bar 0 rebalances whatever ``mask[0]`` says.
    threshold : float
        Drift band; ``<= 0`` or NaN disables the threshold rule. Combined with ``mask`` by OR.
    relative : bool
        Relative band (|a_j - w_j| >= threshold * w_j) instead of the absolute band.
    fees : float
        Proportional fee f in [0, 1).
    init_cash : float
        Starting cash.
    ann : float
        Periods per year.
    rf : float
        Annual risk-free rate.

    Returns
    -------
    metrics : (11,) float64
        Columns as :data:`METRICS`.
    value : (T,) float64
        V_t at each close, after the bar's orders.
    rebal_bars : (K,) int64
        Indices of the bars on which the rebalance routine ran (0 first).
    target_alloc : (K, A) float64
        Target weights at each rebalance bar (= ``w``).
    realised_alloc : (K, A) float64
        h_j p_j / V_t after that bar's orders, V_t marked after the orders.
    """
    T, A = close.shape
    cash = init_cash
    h = np.zeros(A)
    value = np.empty(T)
    bars = np.empty(T, dtype=np.int64)
    target_alloc = np.empty((T, A))
    realised_alloc = np.empty((T, A))
    use_band = threshold > 0.0  # False for NaN
    traded_total = 0.0
    fees_total = 0.0
    K = 0

    for t in range(T):
        p = close[t]
        if t == 0:
            do_rebalance = True
        else:
            do_rebalance = mask[t]
            if not do_rebalance and use_band:
                do_rebalance = band_breached_nb(cash, h, p, w, threshold, relative)

        if do_rebalance:
            cash, traded, paid = rebalance_bar_nb(cash, h, p, w, fees)
            traded_total += traded
            fees_total += paid

        V = portfolio_value_nb(cash, h, p)
        value[t] = V

        if do_rebalance:
            bars[K] = t
            for j in range(A):
                target_alloc[K, j] = w[j]
                realised_alloc[K, j] = h[j] * p[j] / V
            K += 1

    metrics = metrics_from_path_nb(value, init_cash, ann, rf, traded_total, fees_total, float(K))
    return metrics, value, bars[:K].copy(), target_alloc[:K].copy(), realised_alloc[:K].copy()


# --------------------------------------------------------------------------------------------
# Population
# --------------------------------------------------------------------------------------------


@njit(parallel=True, cache=True)
def simulate_nb(close, W, wid, masks, mid, thresholds, relative, fees, init_cash, ann, rf):
    """Simulate many combinations in parallel (prange over combinations); metrics only.

    Combination ``c`` is ``simulate_1d_nb(close, W[wid[c]], masks[mid[c]], thresholds[c],
    relative, fees[c], init_cash, ann, rf)``; its path and records are discarded.

    Parameters
    ----------
    close : (T, A) float64
        Close prices, shared by all combinations.
    W : (K, A) float64
        Distinct target-weight vectors.
    wid : (C,) int64
        Row of ``W`` used by each combination.
    masks : (M, T) bool
        Distinct rebalance masks.
    mid : (C,) int64
        Row of ``masks`` used by each combination.
    thresholds : (C,) float64
        Drift band per combination (<= 0 or NaN: none).
    relative : bool
        Relative band for every combination.
    fees : (C,) float64
        Proportional fee per combination.
    init_cash, ann, rf : float
        As in :func:`simulate_1d_nb`, shared by all combinations.

    Returns
    -------
    (C, 11) float64 host array, columns as :data:`METRICS`.
    """
    C = wid.shape[0]
    out = np.empty((C, N_METRICS))
    for c in prange(C):
        res = simulate_1d_nb(
            close, W[wid[c]], masks[mid[c]], thresholds[c], relative, fees[c], init_cash, ann, rf
        )
        out[c, :] = res[0]
    return out
