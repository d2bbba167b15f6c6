"""Reference backtest with target schedules, per-asset / time-varying / hybrid drift bands and
order records (DESIGN §6, issue 11): the oracle of the fast paths' schedules and bands.

Same execution model as :mod:`cpu_ref.backtest` (orders at the close, target-percent orders
from the bar's pre-trade value, sells first, proportional fee, partial fill of the last buys),
written to be read: one portfolio, bar by bar, its whole value path and every order kept.

- Targets: row k of ``W`` is in force from bar ``wbars[k]`` on (``wbars[0] == 0``, increasing);
  a bar where the row changes rebalances to the new row.
- Rule: bar 0, the bars of ``mask``, and (t >= 1) the bars where some asset has drifted out of
  its band: |a_j - w_j| >= max(rel_j w_j, abs_j) with a_j = h_j p_j / V (V before the orders)
  and w the targets in force; band row k (``rel[k]``, ``abs_[k]``) is in force from bar
  ``bbars[k]`` on. An asset without a band has rel 0 and abs inf.

This module never imports ``gpusim``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from cpu_ref.backtest import SIZE_RTOL, metrics_from_path_nb, portfolio_value_nb

ORDER_FIELDS = ("bar", "asset", "size", "price", "fee")
"""Columns of the order records: bar index, asset index, signed units (sell < 0), fill price,
fee paid."""


@njit(cache=True)
def row_in_force(bars, t):
    """Index of the last row whose start bar is <= t (``bars`` increasing, ``bars[0] == 0``)."""
    k = 0
    while k + 1 < bars.shape[0] and bars[k + 1] <= t:
        k += 1
    return k


@njit(cache=True)
def out_of_band(cash, h, p, w, rel, abs_):
    """Whether some |a_j - w_j| >= max(rel_j w_j, abs_j), a_j = h_j p_j / V at this close."""
    V = portfolio_value_nb(cash, h, p)
    for j in range(h.shape[0]):
        a = h[j] * p[j] / V
        if abs(a - w[j]) >= max(rel[j] * w[j], abs_[j]):
            return True
    return False


@njit(cache=True)
def rebalance_orders(cash, h, p, w, fee, t, orders, n):
    """Trade to targets ``w`` at bar ``t`` (as :func:`cpu_ref.backtest.rebalance_bar_nb`) and
    append each filled order to ``orders[n:]`` (columns :data:`ORDER_FIELDS`). Updates ``h``;
    returns (cash, traded value, fees, n).
    """
    A = h.shape[0]
    V = portfolio_value_nb(cash, h, p)
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
            cash += -s * p[j] * (1.0 - fee)
            paid = fee * -s * p[j]
            traded += -s * p[j]
            h[j] = target
        else:
            if cash <= 0.0:
                continue
            if s * p[j] * (1.0 + fee) > cash:
                s = cash / (p[j] * (1.0 + fee))
            cash -= s * p[j] * (1.0 + fee)
            paid = fee * s * p[j]
            traded += s * p[j]
            h[j] += s
        fees += paid
        orders[n, 0] = t
        orders[n, 1] = j
        orders[n, 2] = s
        orders[n, 3] = p[j]
        orders[n, 4] = paid
        n += 1
    return cash, traded, fees, n


@njit(cache=True)
def simulate_schedule_1d_nb(close, W, wbars, mask, rel, abs_, bbars, fees, init_cash, ann, rf):
    """Simulate one portfolio with a target schedule and a band schedule.

    Parameters
    ----------
    close : (T, A) float64 close prices (> 0).
    W : (S, A) float64 target rows; wbars : (S,) int64 start bar of each (``wbars[0] == 0``).
    mask : (T,) bool scheduled rebalance bars (bar 0 always rebalances).
    rel, abs_ : (R, A) float64 band rows; bbars : (R,) int64 start bar of each.
    fees, init_cash, ann, rf : as :func:`cpu_ref.backtest.simulate_1d_nb`.

    Returns
    -------
    metrics (11,), value (T,), rebal_bars (K,) int64, target_alloc (K, A), realised_alloc (K, A)
    (as :func:`cpu_ref.backtest.simulate_1d_nb`), and orders (N, 5) float64 (columns
    :data:`ORDER_FIELDS`, in the order they filled).
    """
    T, A = close.shape
    cash = init_cash
    h = np.zeros(A)
    value = np.empty(T)
    bars = np.empty(T, dtype=np.int64)
    target_alloc = np.empty((T, A))
    realised_alloc = np.empty((T, A))
    orders = np.empty((T * A, 5))
    n = 0
    traded_total = 0.0
    fees_total = 0.0
    K = 0
    for t in range(T):
        p = close[t]
        k = row_in_force(wbars, t)
        w = W[k]
        b = row_in_force(bbars, t)
        do = t == 0 or mask[t] or wbars[k] == t
        if not do:
            do = out_of_band(cash, h, p, w, rel[b], abs_[b])
        if do:
            cash, traded, paid, n = rebalance_orders(cash, h, p, w, fees, t, orders, n)
            traded_total += traded
            fees_total += paid
        V = portfolio_value_nb(cash, h, p)
        value[t] = V
        if do:
            bars[K] = t
            for j in range(A):
                target_alloc[K, j] = w[j]
                realised_alloc[K, j] = h[j] * p[j] / V
            K += 1
    metrics = metrics_from_path_nb(value, init_cash, ann, rf, traded_total, fees_total, float(K))
    return (metrics, value, bars[:K].copy(), target_alloc[:K].copy(),
            realised_alloc[:K].copy(), orders[:n].copy())
