"""CPU fast path of the integer-position dynamic optimisation (DESIGN §8, issue 6).

:func:`dynopt_cpu_nb` runs the step bodies of :mod:`gpusim.dynopt.steps` (compiled there for
the CPU, the ``*_nb`` names) over the combinations in parallel (numba prange), one (N, 1)
scratch set per combination; :func:`dynopt_cpu` is its checked entry point.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from cpu_ref.dynopt import MAX_STEPS  # the greedy safeguard is the contract's
from gpusim.dynopt.steps import NO_STATIC, Inputs, n_columns, prepare_inputs, simulate_one_nb

# --------------------------------------------------------------------------------------------
# CPU population kernel
# --------------------------------------------------------------------------------------------

@njit(parallel=True, nogil=True, cache=True)
def dynopt_cpu_nb(inp, masks, mid, capitals, shadow_costs, buffers, ann, max_steps, order,
                  rec, record, no_trade, band, width):
    """Metrics of C combinations, parallel over combinations (numba prange).

    Parameters
    ----------
    inp : :class:`gpusim.dynopt.steps.Inputs` of host arrays (dprice, notional, cost, k,
        w_star (T, N); covs (P, N, N); cov_id (T,)).
    masks : (M, T) bool; mid : (C,) int64 — combination j uses ``masks[mid[j]]``.
    capitals, shadow_costs, buffers : (C,) float64.
    ann : float; max_steps : int (greedy safeguard per day).
    order : (C,) int64 permutation: the order in which the prange hands out combinations
        (interleave expensive and cheap ones for load balance); results do not depend on it.
    rec : (T, N, C) float64 when ``record`` (contracts held per day), else any (1, 1, 1) array.
    no_trade : bool, pysystemtrade's no-trade rule; band : float, half-width of the static
        comparison's position buffer (< 0: no static comparison); width : columns of the output
        (:func:`gpusim.dynopt.steps.n_columns`).

    Returns
    -------
    (C, width) float64 host array: METRICS (then STATIC_METRICS).
    """
    N = inp.dprice.shape[1]
    C = mid.shape[0]
    out = np.empty((C, width))
    for jj in prange(C):
        j = order[jj]
        n = np.empty((N, 1))
        ng = np.empty((N, 1))
        c = np.empty((N, 1))
        w0 = np.empty((N, 1))
        g = np.empty((N, 1))
        d = np.empty((N, 1))
        ns = np.empty((N, 1))
        simulate_one_nb(inp, masks, mid[j],
                        (capitals[j], shadow_costs[j], buffers[j], no_trade, band), ann,
                        max_steps, (n, ng, c, w0, g, d, ns), 0, out, j, rec, record)
    return out


def interleave(C: int, stride: int = 8) -> np.ndarray:
    """(C,) int64 permutation 0, s, 2s, ..., 1, 1+s, ...: spreads neighbouring combinations
    (which tend to cost the same) over the prange's static chunks.
    """
    idx = np.arange(C, dtype=np.int64)
    return np.ascontiguousarray(idx[np.argsort(idx % max(1, stride), kind="stable")])


_DUMMY_REC = np.zeros((1, 1, 1))


def dynopt_cpu(dprice, notional, cost, k, w_star, covs, cov_id, masks, mid, capitals,
               shadow_costs, buffers, ann, *, record=False, max_steps=MAX_STEPS,
               no_trade_rule=False, static_band=None):
    """Checked entry point of :func:`dynopt_cpu_nb`.

    Returns the (C, width) metrics (METRICS, then STATIC_METRICS when ``static_band`` is a
    number), and with ``record=True`` also the (C, T, N) contracts held after each day's trades
    (host arrays).
    """
    band = NO_STATIC if static_band is None else float(static_band)
    a = prepare_inputs(dprice, notional, cost, k, w_star, covs, cov_id, masks, mid, capitals,
                       shadow_costs, buffers, ann)
    T, N = a[0].shape
    C = a[8].shape[0]
    rec = np.zeros((T, N, C)) if record else _DUMMY_REC
    out = dynopt_cpu_nb(Inputs(*a[:7]), *a[7:], int(max_steps), interleave(C), rec,
                        bool(record), bool(no_trade_rule), band, n_columns(band))
    if record:
        return out, np.ascontiguousarray(rec.transpose(2, 0, 1))
    return out
