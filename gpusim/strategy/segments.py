"""Segments of a simulation between two calls of a Python optimiser (CPU, Numba).

The state of C portfolios is carried between segments in host arrays: ``cash`` (C,), units
``h`` (A, C) (column c: the backtest's scratch layout), the online metrics ``acc`` (C, 6) (see
:func:`gpusim.backtest.steps.bar_update`) and the totals ``tot`` (C, 4) (rows of
:data:`Tot`). A segment [t0, t1) rebalances the combinations with ``do[c]`` to ``W[c]`` at bar
t0 and holds to t1 - 1, with the backtest's own step functions (same fills, fees and metric
updates): chaining segments is the same floating-point computation as one simulation of the
same targets, bar by bar.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from gpusim.backtest.steps import (
    N_METRICS,
    bar_update_nb,
    portfolio_value_nb,
    rebalance_nb,
    write_metrics_nb,
)


class TotT(NamedTuple):
    """Columns of the (C, 4) totals carried between segments."""

    v_prev: int = 0  # value of the previous bar (init_cash before bar 0)
    traded: int = 1  # traded value
    fees: int = 2  # fees paid
    nreb: int = 3  # rebalance bars


Tot = TotT()
N_ACC = 6


def new_state(C: int, A: int, init_cash: float):
    """Fresh carried state of C portfolios: (cash, h, acc, tot)."""
    acc = np.zeros((C, N_ACC))
    acc[:, 3] = -np.inf    # running peak
    tot = np.zeros((C, len(Tot)))
    tot[:, Tot.v_prev] = init_cash
    return np.full(C, float(init_cash)), np.zeros((A, C)), acc, tot


@njit(cache=True, error_model="numpy")
def mark_nb(close, t, cash, h):
    """(C,) values C_c + sum_j h_jc p_tj at bar ``t`` (before any order)."""
    C = cash.shape[0]
    v = np.empty(C)
    for c in range(C):
        v[c] = portfolio_value_nb(close, t, cash[c], h, c)
    return v


@njit(parallel=True, cache=True, error_model="numpy")
def segment_nb(close, t0, t1, W, do, fees, cash, h, acc, tot, rf_bar, values):
    """Advance C portfolios over bars [t0, t1) in place (see the module docstring).

    ``W`` (C, A) targets, used where ``do[c]``; ``fees`` (C,); ``values`` (C, T) receives V_t.
    """
    C = cash.shape[0]
    A = close.shape[1]
    for c in prange(C):
        oval = np.empty((A, 1))
        order = np.empty((A, 1), dtype=np.int64)
        hc = np.empty((A, 1))
        for j in range(A):
            hc[j, 0] = h[j, c]
        a = (acc[c, 0], acc[c, 1], acc[c, 2], acc[c, 3], acc[c, 4], acc[c, 5])
        cc = cash[c]
        v_prev = tot[c, Tot.v_prev]
        for t in range(t0, t1):
            v = portfolio_value_nb(close, t, cc, hc, 0)
            if t == t0 and do[c]:
                cc, tr, fe = rebalance_nb(close, t, v, cc, W, c, hc, oval, order, 0, fees[c])
                tot[c, Tot.traded] += tr
                tot[c, Tot.fees] += fe
                tot[c, Tot.nreb] += 1.0
                v = portfolio_value_nb(close, t, cc, hc, 0)
            a = bar_update_nb(t, v / v_prev - 1.0, v, rf_bar, a)
            values[c, t] = v
            v_prev = v
        for k in range(N_ACC):
            acc[c, k] = a[k]
        for j in range(A):
            h[j, c] = hc[j, 0]
        cash[c] = cc
        tot[c, Tot.v_prev] = v_prev


@njit(cache=True, error_model="numpy")
def finish_nb(T, acct, values, acc, tot):
    """(C, 11) metrics of C finished portfolios (order of ``METRICS``)."""
    C = acc.shape[0]
    out = np.empty((C, N_METRICS))
    for c in range(C):
        a = (acc[c, 0], acc[c, 1], acc[c, 2], acc[c, 3], acc[c, 4], acc[c, 5])
        write_metrics_nb(out, c, T, acct, values[c, T - 1], a, tot[c, Tot.traded],
                         tot[c, Tot.fees], int(tot[c, Tot.nreb]))
    return out
