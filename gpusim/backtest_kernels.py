"""CPU fast path of the rebalancing backtest (DESIGN §6, contract of issue 3).

One combination = (target weights ``W[wid[c]]``, rebalance mask ``masks[mid[c]]``, drift
threshold ``thresholds[c]``, fee ``fees[c]``), simulated bar by bar on the shared close prices.
Metrics are accumulated online (Welford mean/M2 of the per-bar returns, running downside sum of
squares, running peak and drawdown, running sums of V and of traded value), so no value path is
ever stored and prices are never tiled per combination: each (combination, bar) costs O(A).

The per-combination step functions below are plain Python bodies over scalars and 2-D scratch
arrays indexed ``[asset, col]``; :func:`compile_bodies` compiles them with ``numba.njit`` here
(the ``*_nb`` names) and with ``numba.cuda.jit(device=True)`` in
:mod:`gpusim.kernels.backtest_cuda`, so the CPU fast path and the GPU kernel run the same source
(the same idiom as :mod:`cpu_ref.rng`). They share nothing with :mod:`cpu_ref.backtest`, the
independent oracle they are tested against.

Scratch layout: ``h`` (holdings, units), ``oval`` (order values) and ``order`` (processing order)
are ``(A, ncols)`` arrays and a combination uses column ``col``. The CPU path allocates one
``(A, 1)`` set per parallel chunk (not per bar, not per combination); the GPU path allocates one
``(A, C)`` set in global memory and thread ``c`` uses column ``c`` (coalesced across a warp, and
no compile-time cap on the number of assets).
"""

from __future__ import annotations

import math
import types

import numpy as np
from numba import njit, prange

try:  # the tuple of names is owned by the reference (contract); fall back until it lands
    from cpu_ref.backtest import METRICS
except ImportError:  # pragma: no cover - only while cpu_ref/backtest.py is being written
    METRICS = (
        "total_return", "annual_return", "annual_volatility", "sharpe", "sortino",
        "max_drawdown", "calmar", "turnover", "fees_paid", "n_rebalances", "final_value",
    )

N_METRICS = 11
SKIP_RTOL = 1e-9  # order sizes within this relative distance of zero are skipped (DESIGN §6)
_NAN = float("nan")
_MAX_CHUNKS = 1024  # CPU work items (each allocates its scratch once); many per core balances
# the load (threshold combinations differ in cost). A constant, not numba.get_num_threads(), which
# would make the kernel uncacheable.


# --------------------------------------------------------------------------------------------
# Step bodies (plain Python; compiled for the CPU below and for the GPU in kernels/backtest_cuda)
# --------------------------------------------------------------------------------------------

def portfolio_value(close, t, cash, h, col):
    """V = C + sum_j h_j p_{t,j} (summed from the cash, assets in index order)."""
    v = cash
    for j in range(close.shape[1]):
        v += h[j, col] * close[t, j]
    return v


def band_breached(close, t, v, W, wi, h, col, threshold, relative):
    """True when some |a_j - w_j| >= threshold (or >= threshold * w_j when ``relative``),
    with current weights a_j = h_j p_{t,j} / v. Never true when v <= 0."""
    if not v > 0.0:
        return False
    for j in range(close.shape[1]):
        w = W[wi, j]
        d = abs(h[j, col] * close[t, j] / v - w)
        if relative:
            if d >= threshold * w:
                return True
        elif d >= threshold:
            return True
    return False


def rebalance(close, t, v, cash, W, wi, h, oval, order, col, fee):
    """Trade to targets at bar t with the pre-trade value ``v`` fixed for the whole bar.

    Orders are processed in ascending order value o_j = w_j v - h_j p_j (insertion sort, stable:
    ties by asset index); a buy that costs more than the cash left is partially filled.
    Updates ``h[:, col]`` in place and returns (cash, traded value, fees) of the bar.
    """
    A = close.shape[1]
    for j in range(A):
        oval[j, col] = W[wi, j] * v - h[j, col] * close[t, j]
        order[j, col] = j
    for i in range(1, A):
        k = order[i, col]
        key = oval[k, col]
        m = i - 1
        while m >= 0 and oval[order[m, col], col] > key:
            order[m + 1, col] = order[m, col]
            m -= 1
        order[m + 1, col] = k
    traded = 0.0
    fees = 0.0
    for i in range(A):
        j = order[i, col]
        p = close[t, j]
        hj = h[j, col]
        target = W[wi, j] * v / p
        s = target - hj
        if s == 0.0 or abs(s) <= SKIP_RTOL * max(abs(target), abs(hj)):
            continue
        if s < 0.0:
            val = -s * p
            cash += val * (1.0 - fee)
            fees += fee * val
            h[j, col] = target
            traded += val
        else:
            cost = s * p * (1.0 + fee)
            if cost > cash:
                if cash <= 0.0:
                    continue
                s = cash / (p * (1.0 + fee))
                cost = s * p * (1.0 + fee)
            val = s * p
            cash -= cost
            fees += fee * val
            h[j, col] = hj + s
            traded += val
    return cash, traded, fees


def simulate_one(close, W, wi, masks, mi, threshold, relative, fee, init_cash, ann, rf,
                 h, oval, order, col, out, c):
    """Simulate one combination and write its 11 metrics (order of ``METRICS``) to ``out[c]``.

    ``close`` (T, A) shared prices; ``W[wi]`` target weights; ``masks[mi]`` (T,) rebalance mask
    (bar 0 always rebalances); ``threshold`` <= 0 or NaN disables the drift band; scratch
    ``h``/``oval``/``order`` (A, ncols) column ``col``.
    """
    T = close.shape[0]
    A = close.shape[1]
    for j in range(A):
        h[j, col] = 0.0
    use_band = threshold > 0.0
    rf_bar = rf / ann
    cash = init_cash
    v = init_cash
    v_prev = init_cash
    mean = 0.0
    m2 = 0.0
    down = 0.0
    peak = 0.0
    mdd = 0.0
    sum_v = 0.0
    traded = 0.0
    fees = 0.0
    nreb = 0
    for t in range(T):
        v = portfolio_value(close, t, cash, h, col)
        do = t == 0 or masks[mi, t]
        if not do and use_band:
            do = band_breached(close, t, v, W, wi, h, col, threshold, relative)
        if do:
            cash, tr, fe = rebalance(close, t, v, cash, W, wi, h, oval, order, col, fee)
            traded += tr
            fees += fe
            nreb += 1
            v = portfolio_value(close, t, cash, h, col)
        r = v / v_prev - 1.0
        d = r - mean
        mean += d / (t + 1)
        m2 += d * (r - mean)
        x = r - rf_bar
        if x < 0.0:
            down += x * x
        if t == 0 or v > peak:
            peak = v
        dd = v / peak - 1.0
        if dd < mdd:
            mdd = dd
        sum_v += v
        v_prev = v

    sq_ann = math.sqrt(ann)
    growth = v / init_cash
    ann_ret = growth ** (ann / T) - 1.0
    std = math.sqrt(m2 / (T - 1)) if T > 1 else _NAN
    excess = mean - rf_bar
    downside = math.sqrt(down / T)
    mean_v = sum_v / T
    out[c, 0] = growth - 1.0
    out[c, 1] = ann_ret
    out[c, 2] = std * sq_ann
    out[c, 3] = excess / std * sq_ann if std > 0.0 else _NAN
    out[c, 4] = excess / downside * sq_ann if downside > 0.0 else _NAN
    out[c, 5] = mdd
    out[c, 6] = ann_ret / abs(mdd) if mdd < 0.0 else _NAN
    out[c, 7] = traded / mean_v if mean_v != 0.0 else _NAN
    out[c, 8] = fees
    out[c, 9] = float(nreb)
    out[c, 10] = v


BODIES = ("portfolio_value", "band_breached", "rebalance", "simulate_one")


def compile_bodies(jit):
    """Compile the step bodies with ``jit`` so that their calls to each other resolve to the
    compiled versions; returns ``{name: compiled}``. Used with ``njit`` here and with
    ``cuda.jit(device=True)`` in :mod:`gpusim.kernels.backtest_cuda`."""
    g = dict(globals())
    out = {}
    for name in BODIES:
        f = g[name]
        out[name] = jit(types.FunctionType(f.__code__, g, name, f.__defaults__))
        g[name] = out[name]
    return out


_nb = compile_bodies(njit(cache=True))
simulate_one_nb = _nb["simulate_one"]


# --------------------------------------------------------------------------------------------
# CPU population kernel
# --------------------------------------------------------------------------------------------

@njit(parallel=True, cache=True)
def backtest_cpu_nb(close, W, wid, masks, mid, thresholds, relative, fees, init_cash, ann, rf):
    """Metrics of C combinations, parallel over combinations (numba prange over chunks).

    Parameters
    ----------
    close : (T, A) float64, C-contiguous, > 0 — shared by all combinations.
    W : (K, A) float64 target weights (long-only, rows sum to 1).
    wid : (C,) int64 — combination c uses ``W[wid[c]]``.
    masks : (M, T) bool rebalance masks; mid : (C,) int64 — combination c uses ``masks[mid[c]]``.
    thresholds : (C,) float64 drift bands (<= 0 or NaN: no band).
    relative : bool — relative band |a_j - w_j| >= threshold * w_j instead of absolute.
    fees : (C,) float64 proportional fees in [0, 1).
    init_cash, ann, rf : float — initial cash, periods per year, annual risk-free rate.

    Returns
    -------
    (C, 11) float64 host array, columns in the order of ``METRICS``.
    """
    T, A = close.shape
    C = wid.shape[0]
    out = np.empty((C, N_METRICS))
    nchunks = min(C, _MAX_CHUNKS)
    if nchunks == 0:
        return out
    size = (C + nchunks - 1) // nchunks
    nchunks = (C + size - 1) // size
    for k in prange(nchunks):
        h = np.empty((A, 1))
        oval = np.empty((A, 1))
        order = np.empty((A, 1), dtype=np.int64)
        stop = min(C, (k + 1) * size)
        for c in range(k * size, stop):
            simulate_one_nb(close, W, wid[c], masks, mid[c], thresholds[c], relative, fees[c],
                            init_cash, ann, rf, h, oval, order, 0, out, c)
    return out


# --------------------------------------------------------------------------------------------
# Host-side input checks (shared by the CPU and GPU entry points)
# --------------------------------------------------------------------------------------------

def prepare_inputs(close, W, wid, masks, mid, thresholds, relative, fees, init_cash, ann, rf):
    """Coerce and check the backtest inputs; returns them as a tuple in the kernel's order.

    Arrays become C-contiguous float64 / int64 / bool host arrays; raises ``ValueError`` on
    inconsistent shapes, out-of-range indices, fees outside [0, 1), non-positive or non-finite
    prices, or non-positive ``init_cash``/``ann``.
    """
    close = np.ascontiguousarray(close, dtype=np.float64)
    if close.ndim != 2 or close.shape[0] < 1 or close.shape[1] < 1:
        raise ValueError(f"close must be a non-empty (T, A) array, got shape {close.shape}")
    T, A = close.shape
    if not np.all(np.isfinite(close)) or not np.all(close > 0):
        raise ValueError("close prices must be finite and > 0")
    W = np.ascontiguousarray(W, dtype=np.float64)
    if W.ndim == 1:
        W = W.reshape(1, -1)
    if W.ndim != 2 or W.shape[1] != A:
        raise ValueError(f"W must be (K, {A}), got shape {W.shape}")
    masks = np.ascontiguousarray(masks, dtype=np.bool_)
    if masks.ndim == 1:
        masks = masks.reshape(1, -1)
    if masks.ndim != 2 or masks.shape[1] != T:
        raise ValueError(f"masks must be (M, {T}), got shape {masks.shape}")
    wid = np.ascontiguousarray(wid, dtype=np.int64).reshape(-1)
    C = wid.shape[0]
    mid = np.ascontiguousarray(np.broadcast_to(np.asarray(mid, dtype=np.int64), (C,)))
    thresholds = np.ascontiguousarray(
        np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (C,)))
    fees = np.ascontiguousarray(np.broadcast_to(np.asarray(fees, dtype=np.float64), (C,)))
    if C and (wid.min() < 0 or wid.max() >= W.shape[0]):
        raise ValueError(f"wid must index rows of W (0..{W.shape[0] - 1})")
    if C and (mid.min() < 0 or mid.max() >= masks.shape[0]):
        raise ValueError(f"mid must index rows of masks (0..{masks.shape[0] - 1})")
    if C and not (np.all(fees >= 0) and np.all(fees < 1)):
        raise ValueError("fees must lie in [0, 1)")
    init_cash, ann, rf = float(init_cash), float(ann), float(rf)
    if not (init_cash > 0 and ann > 0 and math.isfinite(rf)):
        raise ValueError("init_cash and ann must be > 0 and rf finite")
    return close, W, wid, masks, mid, thresholds, bool(relative), fees, init_cash, ann, rf


def backtest_cpu(close, W, wid, masks, mid, thresholds, relative=False, fees=0.0,
                 init_cash=1.0, ann=252.0, rf=0.0):
    """Checked entry point of :func:`backtest_cpu_nb` (scalars ``mid``/``thresholds``/``fees``
    broadcast over the C = len(wid) combinations). Returns a (C, 11) float64 host array."""
    return backtest_cpu_nb(*prepare_inputs(close, W, wid, masks, mid, thresholds, relative,
                                           fees, init_cash, ann, rf))
