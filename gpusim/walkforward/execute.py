"""Walk-forward execution of time-varying targets with online metrics (DESIGN §7).

Execution (:func:`simulate_wf`): the step bodies of :mod:`gpusim.backtest.steps`
(``rebalance``, ``portfolio_value``, ``write_metrics``) driven with the k-th target row at the
k-th rebalance bar; compiled for the CPU here and for the GPU in
:mod:`gpusim.walkforward.cuda` from the same source.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from cpu_ref.jitting import compile_bodies as _compile_bodies
from gpusim.backtest import steps as _bk
from gpusim.backtest.steps import (  # noqa: F401 - bodies that simulate_wf calls by name
    bar_update,
    fadd,
    fmul,
    portfolio_value,
    rebalance,
    write_metrics,
)

_INF = float("inf")


def simulate_wf(close, W, row0, masks, mi, fee, init_cash, ann, rf, h, oval, order, col, out,
                c):
    """Simulate one walk-forward portfolio and write its 11 metrics to ``out[c]``.

    ``close`` (T, A) prices of the simulated bars; ``masks[mi]`` (T,) rebalance bars (bar 0
    always rebalances); the k-th rebalance trades to row ``W[row0 + k]``; scratch
    ``h``/``oval``/``order`` (A, ncols) column ``col``. Online metrics, as
    :func:`gpusim.backtest.steps.simulate_one`.
    """
    T = close.shape[0]
    A = close.shape[1]
    for j in range(A):
        h[j, col] = 0.0
    rf_bar = rf / ann
    cash = init_cash
    v = init_cash
    v_prev = init_cash
    mean = 0.0
    m2 = 0.0
    down = 0.0
    peak = -_INF
    mdd = 0.0
    sum_v = 0.0
    traded = 0.0
    fees = 0.0
    nreb = 0
    for t in range(T):
        v = portfolio_value(close, t, cash, h, col)
        if t == 0 or masks[mi, t]:
            cash, tr, fe = rebalance(close, t, v, cash, W, row0 + nreb, h, oval, order, col, fee)
            traded += tr
            fees += fe
            nreb += 1
            v = portfolio_value(close, t, cash, h, col)
        mean, m2, down, peak, mdd, sum_v = bar_update(t, v / v_prev - 1.0, v, rf_bar, mean,
                                                      m2, down, peak, mdd, sum_v)
        v_prev = v
    write_metrics(out, c, T, init_cash, ann, rf, v, mean, m2, down, mdd, sum_v, traded, fees,
                  nreb)


def compile_simulate(jit, overrides):
    """Compile :func:`simulate_wf` (and ``fmul``/``fadd`` unless given) with ``jit``; the
    ``overrides`` bind ``rebalance``, ``portfolio_value``, ``bar_update``, ``write_metrics``
    (and on the GPU ``fmul``/``fadd``) to compiled step bodies of
    :mod:`gpusim.backtest.steps`."""
    return _compile_bodies(jit, globals(), ("fmul", "fadd", "simulate_wf"), overrides)[
        "simulate_wf"]


simulate_wf_nb = compile_simulate(njit(cache=True, error_model="numpy"), {
    "rebalance": _bk.rebalance_nb, "portfolio_value": _bk.portfolio_value_nb,
    "bar_update": _bk.bar_update_nb, "write_metrics": _bk.write_metrics_nb})


@njit(parallel=True, nogil=True, cache=True, error_model="numpy")
def execute_cpu_nb(close, W, woff, wsid, masks, mid, fees, init_cash, ann, rf):
    """Metrics (C, 11) of C walk-forward portfolios, parallel over portfolios.

    Portfolio c rebalances on ``masks[mid[c]]`` and trades to rows ``W[woff[wsid[c]] + k]``.
    """
    A = close.shape[1]
    C = wsid.shape[0]
    out = np.empty((C, _bk.N_METRICS))
    nchunks = min(C, 256)
    if nchunks == 0:
        return out
    size = (C + nchunks - 1) // nchunks
    nchunks = (C + size - 1) // size
    for k in prange(nchunks):
        h = np.empty((A, 1))
        oval = np.empty((A, 1))
        order = np.empty((A, 1), dtype=np.int64)
        for c in range(k * size, min(C, (k + 1) * size)):
            simulate_wf_nb(close, W, woff[wsid[c]], masks, mid[c], fees[c], init_cash, ann, rf,
                           h, oval, order, 0, out, c)
    return out
