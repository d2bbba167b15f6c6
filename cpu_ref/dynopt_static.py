"""Reference *static* positions for the dynopt comparison (DESIGN §8): the optimal unrounded
positions rounded to whole contracts with Carver's classic position buffer, written to be read.

On a rebalance day t with optimal contracts ``x = w*_t x capital / notional_t`` (0 outside the
optimisation, i.e. when ``notional_t <= 0``) the band is ``x +- band |x|`` with its edges rounded
half to even (``np.rint``; pandas' ``.round()`` in Carver's code): ``top = rint(x + band |x|)``,
``bot = rint(x - band |x|)``. A position above ``top`` is traded down to ``top``, one below
``bot`` up to ``bot``; inside the band it is kept (AFTS ch. 8 ``apply_buffer``, trading to the
edge). Positions start at 0 and change only on rebalance days. With plain vol targeting (no
forecasts) ``|x|`` is Carver's *average position*, so the band is his ±10% of it for
``band = 0.1``.

The metrics are those of :mod:`cpu_ref.dynopt` (same P&L, costs and tracking error against w*)
but without the adjustment factor: :data:`STATIC_METRICS`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from cpu_ref.dynopt import METRICS, Metric, _metrics, tracking_error_1d_nb

STATIC_METRICS = tuple(f"static_{m}" for m in METRICS if m != "avg_adjustment_factor")
"""Metric columns of the static comparison, in order (the dynamic names with ``static_``)."""
N_STATIC = len(STATIC_METRICS)
STATIC_FROM = np.array([getattr(Metric, m[len("static_"):]) for m in STATIC_METRICS])
"""Index in :data:`cpu_ref.dynopt.METRICS` of each static metric."""


@njit(cache=True)
def buffered_position_1d_nb(held, x, band):
    """Carver's position buffer of one instrument on one day: ``held`` moved to the nearest edge
    of ``[rint(x - band |x|), rint(x + band |x|)]`` when outside it, else kept.
    """
    top = np.rint(x + band * abs(x))
    bot = np.rint(x - band * abs(x))
    if held > top:
        return top
    if held < bot:
        return bot
    return held


@njit(cache=True)
def static_1d_nb(dprice, notional, cost, w_star, covs, cov_id, mask, capital, band, ann):
    """Static positions of one (capital, rebalance mask) and their metrics.

    Arguments as :func:`cpu_ref.dynopt.dynopt_1d_nb`; ``band`` the half-width of the buffer as
    a fraction of |optimal contracts| (0.1 in Carver's books).

    Returns
    -------
    metrics : (N_STATIC,) float64, order of :data:`STATIC_METRICS`
    positions : (T, N) contracts held after each day's trades
    te : (T,) TE of the held positions against w* (NaN when no instrument is in the optimisation)
    returns : (T,) daily (P&L - costs) / capital
    """
    T, N = dprice.shape
    positions = np.zeros((T, N))
    te = np.full(T, np.nan)
    returns = np.zeros(T)
    n = np.zeros(N)
    turnover = 0.0
    costs_paid = 0.0
    for t in range(T):
        pnl = 0.0
        if t > 0:
            for i in range(N):
                pnl += n[i] * dprice[t, i]
        c = np.zeros(N)
        in_opt = False
        for i in range(N):
            if notional[t, i] > 0.0:
                c[i] = notional[t, i] / capital
                in_opt = True
        day_cost = 0.0
        if mask[t]:
            for i in range(N):
                x = w_star[t, i] * capital / notional[t, i] if c[i] > 0.0 else 0.0
                new = buffered_position_1d_nb(n[i], x, band)
                traded = abs(new - n[i])
                turnover += traded
                day_cost += traded * cost[t, i]
                n[i] = new
        positions[t] = n
        if in_opt:
            te[t] = tracking_error_1d_nb(n * c, w_star[t], covs[cov_id[t]])
        costs_paid += day_cost
        returns[t] = (pnl - day_cost) / capital
    full = _metrics(returns, te, np.full(T, np.nan), turnover, costs_paid, capital, ann)
    return full[STATIC_FROM], positions, te, returns
