"""Reference simulation of user allocation functions (DESIGN §6, issue 11): the oracle for the
compiled CPU kernel and the CUDA kernel of :mod:`gpusim.strategy`.

A user allocation function ``alloc(c, params, targets) -> bool`` is called, as plain Python
(never compiled here), at bar 0 and at every bar of the call mask, after the bar's value is
marked and before any order. It reads the state ``c`` (:class:`State`), the combination's
parameter row ``params`` ((P,) float64) and may overwrite ``targets`` ((A,) float64, filled
with the targets in force before the call); returning True rebalances the whole portfolio to
``targets`` at that bar with the execution model of §6 (:func:`cpu_ref.backtest.rebalance_bar_nb`),
False holds (what it wrote is then discarded). Bar 0 always rebalances, as in every backtest.

Random draws: ``c.uniform(j, k)`` is the counter-based uniform of :mod:`cpu_ref.rng` for
candidate ``stream * n_bars + t``, asset ``j``, draw ``k`` (the one stream shared by every
backend), keyed by the seed. ``stream`` is the combination by default. Limits: ``j < 2**16``,
``k < 256``, ``stream * n_bars + t < 2**40``.

The value path is stored and the metrics are computed from it afterwards by
:func:`cpu_ref.backtest.metrics_from_path_nb` (two-pass), as the reference backtest does, so the
built-in threshold rule written as an allocation function gives metrics bit for bit equal to
:func:`cpu_ref.backtest.simulate_1d_nb`. This module never imports ``gpusim``.

Public API
----------
State               what the allocation function reads at bar t
simulate_alloc_1d   one combination: metrics, value path, rebalance and order records
simulate_alloc      many combinations (a Python loop): metrics (C, 11)
"""

from __future__ import annotations

import numpy as np

from .backtest import (
    N_METRICS,
    metrics_from_path_nb,
    portfolio_value_nb,
    rebalance_bar_nb,
)
from .rng import seed_key_nb, uniform_nb

ORDER_FIELDS = ("bar", "asset", "units", "price", "fee")
"""Columns of the order records of :func:`simulate_alloc_1d` (units < 0: a sale)."""


class State:
    """The portfolio as an allocation function sees it at bar ``t`` (before any order).

    Attributes
    ----------
    t : int, the bar; n_assets : int A; n_bars : int T.
    close : (t + 1, A) closes of bars 0..t (no look-ahead).
    weights : (A,) current weights a_j = h_j p_{t,j} / V_t (0 when V_t <= 0).
    targets : (A,) the targets in force (those of the last rebalance; the initial targets
        before bar 0).
    holdings : (A,) units held; cash : float; value : float V_t.
    last_rebalance : int, bar of the last rebalance (-1 before bar 0).
    key, stream : the random stream of :meth:`uniform` (seed key, stream number).
    """

    def __init__(self, t, close, weights, targets, holdings, cash, value, last_rebalance,
                 key, stream):
        self.t = t
        self.n_assets = close.shape[1]
        self.n_bars = close.shape[0]
        self.close = close[:t + 1]
        self.weights = weights
        self.targets = targets
        self.holdings = holdings
        self.cash = cash
        self.value = value
        self.last_rebalance = last_rebalance
        self.key = key
        self.stream = stream

    def uniform(self, j, k=0):
        """U(0, 1) for asset (or slot) ``j`` and draw ``k`` at this bar of this stream."""
        return uniform_nb(self.key, np.int64(self.stream * self.n_bars + self.t), np.int64(j),
                          np.int64(k))


def current_weights(h, p, value):
    """a_j = h_j p_j / V (zeros when V <= 0)."""
    a = np.zeros(h.shape[0])
    if value > 0.0:
        for j in range(h.shape[0]):
            a[j] = h[j] * p[j] / value
    return a


def simulate_alloc_1d(alloc, close, w0, params, mask, fee, init_cash, ann, rf, seed, stream):
    """Simulate one combination driven by the allocation function ``alloc``.

    Parameters
    ----------
    alloc : callable ``alloc(c, params, targets) -> bool`` (a Numba dispatcher is run through
        its ``py_func``).
    close : (T, A) float64 closes (> 0).
    w0 : (A,) float64 targets in force before bar 0.
    params : (P,) float64 the combination's parameter row.
    mask : (T,) bool bars at which ``alloc`` is called (bar 0 always).
    fee : float proportional fee.
    init_cash, ann, rf : as in :func:`cpu_ref.backtest.simulate_1d_nb`.
    seed : int; stream : int — the random stream of ``c.uniform``.

    Returns
    -------
    metrics : (11,) float64, columns as :data:`cpu_ref.backtest.METRICS`.
    value : (T,) float64 V_t after the bar's orders.
    bars : (K,) int64 rebalance bars.
    targets : (K, A) float64 targets traded to at each rebalance bar.
    realised : (K, A) float64 h_j p_j / V_t after that bar's orders.
    orders : (N, 5) float64 rows (bar, asset, units, price, fee) of the filled orders, in the
        order they were filled (units < 0: sold). Units are the change of holdings.
    """
    fn = getattr(alloc, "py_func", alloc)
    close = np.asarray(close, dtype=np.float64)
    T, A = close.shape
    params = np.asarray(params, dtype=np.float64)
    key = np.uint64(seed_key_nb(seed))   # typed uint64 (a Python int may be read as int64)
    cash = float(init_cash)
    h = np.zeros(A)
    in_force = np.array(w0, dtype=np.float64)
    value = np.empty(T)
    bars, tgt, real, orders = [], [], [], []
    traded_total = 0.0
    fees_total = 0.0
    last = -1
    for t in range(T):
        p = close[t]
        do = False
        if t == 0 or mask[t]:
            v = portfolio_value_nb(cash, h, p)
            c = State(t, close, current_weights(h, p, v), in_force.copy(), h.copy(), cash, v,
                      last, key, stream)
            proposal = in_force.copy()
            do = bool(fn(c, params, proposal)) or t == 0
            if do:
                in_force = proposal
        if do:
            before = h.copy()
            v_pre = portfolio_value_nb(cash, h, p)
            cash, traded, paid = rebalance_bar_nb(cash, h, p, in_force, fee)
            traded_total += traded
            fees_total += paid
            orders.extend(_orders(t, before, h, p, in_force, v_pre, fee))
            last = t
        V = portfolio_value_nb(cash, h, p)
        value[t] = V
        if do:
            bars.append(t)
            tgt.append(in_force.copy())
            real.append(h * p / V)
    metrics = metrics_from_path_nb(value, float(init_cash), float(ann), float(rf), traded_total,
                                   fees_total, float(len(bars)))
    return (metrics, value, np.array(bars, dtype=np.int64), np.array(tgt).reshape(-1, A),
            np.array(real).reshape(-1, A), np.array(orders, dtype=np.float64).reshape(-1, 5))


def _orders(t, before, after, p, w, V, fee):
    """Order rows of one rebalance bar in the order they were filled: ascending order value
    w_j V - h_j p_j (sells first, ties by asset), as :func:`cpu_ref.backtest.rebalance_bar_nb`.
    """
    d = after - before
    order = np.argsort(w * V - before * p, kind="mergesort")
    return [(float(t), float(j), d[j], p[j], fee * abs(d[j]) * p[j]) for j in order
            if d[j] != 0.0]


def simulate_alloc(alloc, close, W, wid, masks, mid, params, fees, init_cash, ann, rf, seed,
                   streams):
    """Metrics of C combinations (one :func:`simulate_alloc_1d` each, a Python loop).

    ``W`` (K, A) initial targets and ``wid`` (C,) rows; ``masks`` (M, T) call masks and ``mid``
    (C,) rows; ``params`` (C, P); ``fees`` (C,); ``streams`` (C,) random streams. Returns a
    (C, 11) float64 array.
    """
    C = len(wid)
    out = np.empty((C, N_METRICS))
    for c in range(C):
        out[c] = simulate_alloc_1d(alloc, close, W[wid[c]], params[c], masks[mid[c]], fees[c],
                                   init_cash, ann, rf, seed, int(streams[c]))[0]
    return out
