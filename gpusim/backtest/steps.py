"""Step bodies of the rebalancing backtest, compiled for the CPU and the GPU (DESIGN §6).

One backtest combination = (a target schedule: rows of ``W`` from ``wid[c]`` switching at the
bars ``wnxt``; rebalance mask ``masks[mid[c]]``; a band schedule: rows [rel | abs] of ``B``
from ``bid[c]`` switching at ``bnxt``; fee ``fees[c]``), simulated bar by bar on the shared
close prices by :func:`simulate_sched` (:func:`simulate_one` is the walk-forward form: a new
row of targets at each rebalance, a scalar band).
Metrics are accumulated online (Welford mean/M2 of the per-bar returns, running downside sum of
squares, running peak and drawdown, running sums of V and of traded value), so no value path is
ever stored and prices are never tiled per combination: each (combination, bar) costs O(A).

The per-combination step functions here are plain Python bodies over scalars and 2-D scratch
arrays indexed ``[asset, col]``; :func:`compile_bodies` compiles them with ``numba.njit`` here
(the ``*_nb`` names) and with ``numba.cuda.jit(device=True)`` in
:mod:`gpusim.backtest.cuda`, where :func:`simulate_sched` is the whole work of one GPU
thread (the same idiom as :mod:`cpu_ref.rng`). They share nothing with :mod:`cpu_ref.backtest`,
the independent oracle they are tested against.

Scratch: holdings ``h``, order values ``oval`` and processing order ``order`` are ``(A, ncols)``
arrays and a combination uses column ``col``. The CPU path allocates one ``(A, LANES)`` set (plus
the lane state) per parallel chunk, never per bar or per combination; the GPU path allocates one
``(A, C)`` set in global memory and thread ``c`` uses column ``c`` (coalesced across a warp, and
no compile-time cap on the number of assets).

Floating point: the threshold test is exact to the letter of the contract (a_j = h_j p_j / V,
``>=``); the Welford mean update multiplies by 1/(t+1) instead of dividing (a last-ulp
difference from a two-pass mean, far inside the 1e-10 tolerance of the tests).

:func:`prepare_inputs` coerces and checks the inputs of both entry points (CPU and GPU);
:func:`scalar_inputs` builds them for constant targets and one scalar band per combination.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from cpu_ref.backtest import METRICS, SIZE_RTOL, Metric  # the reference owns the contract's names
from cpu_ref.jitting import compile_bodies as _compile_bodies
from gpusim.schedule import NEVER  # the switch bar that never comes (last row of a schedule)

N_METRICS = len(METRICS)
_NAN = float("nan")
_INF = float("inf")
NO_BAND = -1.0
"""A drift threshold that disables the band of :func:`simulate_one` (any value <= 0 or NaN
does)."""
_BAND_MARGIN = 1e-12  # >> the gap between |h p (1/v) - w| and |h p / v - w| (a few ulp of |a|+|w|)


# --------------------------------------------------------------------------------------------
# Step bodies (plain Python; compiled for the CPU below and for the GPU in backtest/cuda.py)
# --------------------------------------------------------------------------------------------

def fmul(a, b):
    """A * b rounded once. The GPU binds this to libdevice ``dmul_rn``, which the compiler never
    fuses into a multiply-add: the GPU then rounds every step exactly as the CPU does (numba's
    CPU code is never contracted without fastmath), so CPU and GPU results are bit-identical.
    """
    return a * b


def fadd(a, b):
    """A + b rounded once (``dadd_rn`` on the GPU; see :func:`fmul`)."""
    return a + b


def portfolio_value(close, t, cash, h, col):
    """V = C + sum_j h_j p_{t,j} (summed from the cash, assets in index order)."""
    v = cash
    for j in range(close.shape[1]):
        v = fadd(v, fmul(h[j, col], close[t, j]))
    return v


def band_breached(close, t, v, W, wi, h, col, threshold, relative):
    """True when some |a_j - w_j| >= threshold (or >= threshold * w_j when ``relative``),
    with current weights a_j = h_j p_{t,j} / v. Never true when v <= 0.

    Screened with one reciprocal (a_j ~ h_j p_j * (1/v)); only an asset within a tiny margin
    of its band is re-tested with the exact division, so the decision is the exact one.
    """
    if not v > 0.0:
        return False
    inv = 1.0 / v
    for j in range(close.shape[1]):
        w = W[wi, j]
        lim = threshold * w if relative else threshold
        hp = h[j, col] * close[t, j]
        a = fmul(hp, inv)
        e = fadd(abs(a - w), fmul(_BAND_MARGIN, 1.0 + abs(a) + abs(w)))
        if not e < lim:  # NaN: exact test too
            if abs(hp / v - w) >= lim:
                return True
    return False


def band_limit(B, bi, j, w, A):
    """Drift limit of asset ``j`` under band row ``B[bi]`` = [rel (A,) | abs (A,)] and target
    ``w``: max(rel_j * w, abs_j). Absolute band: rel 0; relative band: abs 0; hybrid: both; no
    band on the asset: rel 0, abs inf.
    """
    return max(fmul(B[bi, j], w), B[bi, A + j])


def band_on(B, bi, A):
    """Whether band row ``B[bi]`` limits some asset (an abs column below inf)."""
    for j in range(A):
        if B[bi, A + j] < _INF:
            return True
    return False


def band_breached_rows(close, t, v, W, wi, h, col, B, bi):
    """As :func:`band_breached` with the per-asset limits of band row ``B[bi]``
    (:func:`band_limit`): True when some |a_j - w_j| >= max(rel_j w_j, abs_j).
    """
    if not v > 0.0:
        return False
    A = close.shape[1]
    inv = 1.0 / v
    for j in range(A):
        w = W[wi, j]
        lim = band_limit(B, bi, j, w, A)
        hp = h[j, col] * close[t, j]
        a = fmul(hp, inv)
        e = fadd(abs(a - w), fmul(_BAND_MARGIN, 1.0 + abs(a) + abs(w)))
        if not e < lim:  # NaN: exact test too
            if abs(hp / v - w) >= lim:
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
        oval[j, col] = fadd(fmul(W[wi, j], v), -fmul(h[j, col], close[t, j]))
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
        if s == 0.0 or abs(s) <= SIZE_RTOL * max(abs(target), abs(hj)):
            continue
        if s < 0.0:
            val = fmul(-s, p)
            cash = fadd(cash, fmul(val, 1.0 - fee))
            fees = fadd(fees, fmul(fee, val))
            h[j, col] = target
            traded += val
        else:
            cost = fmul(fmul(s, p), 1.0 + fee)
            if cost > cash:
                if cash <= 0.0:
                    continue
                s = cash / fmul(p, 1.0 + fee)
                cost = fmul(fmul(s, p), 1.0 + fee)
            val = fmul(s, p)
            cash -= cost
            fees = fadd(fees, fmul(fee, val))
            h[j, col] = hj + s
            traded += val
    return cash, traded, fees


def simulate_one(close, W, target, rule, fee, acct, scratch, col, out, c):
    """Simulate one portfolio and write its 11 metrics (order of ``METRICS``) to ``out[c]``.

    ``close`` (T, A) shared prices. ``target = (wi, step)``: the k-th rebalance trades to
    ``W[wi + k * step]`` (``step`` 0: fixed targets, a backtest combination; 1: one row per
    rebalance, a walk-forward portfolio). ``rule = (masks, mi, threshold, relative)``:
    ``masks[mi]`` (T,) rebalance mask (bar 0 always rebalances) and the drift band against the
    targets of the last rebalance (``threshold`` <= 0 or NaN: none). ``fee`` proportional fee;
    ``acct = (init_cash, ann, rf)``; ``scratch = (h, oval, order)`` (A, ncols) arrays, column
    ``col``.
    """
    wi, step = target
    masks, mi, threshold, relative = rule
    init_cash, ann, rf = acct
    h, oval, order = scratch
    T = close.shape[0]
    A = close.shape[1]
    for j in range(A):
        h[j, col] = 0.0
    use_band = threshold > 0.0
    rf_bar = rf / ann
    cash = init_cash
    v = init_cash
    v_prev = init_cash
    acc = (0.0, 0.0, 0.0, -_INF, 0.0, 0.0)  # online metrics, see bar_update
    traded = 0.0
    fees = 0.0
    nreb = 0
    row = wi  # the targets of the next rebalance
    for t in range(T):
        v = portfolio_value(close, t, cash, h, col)
        do = t == 0 or masks[mi, t]
        if not do and use_band:
            do = band_breached(close, t, v, W, row - step, h, col, threshold, relative)
        if do:
            cash, tr, fe = rebalance(close, t, v, cash, W, row, h, oval, order, col, fee)
            row += step
            traded += tr
            fees += fe
            nreb += 1
            v = portfolio_value(close, t, cash, h, col)
        acc = bar_update(t, v / v_prev - 1.0, v, rf_bar, acc)
        v_prev = v

    write_metrics(out, c, T, acct, v, acc, traded, fees, nreb)


def simulate_sched(close, W, wsched, rule, fee, acct, scratch, col, out, c):
    """Simulate one backtest combination and write its 11 metrics to ``out[c]``.

    ``wsched = (wi, wnxt)``: target schedule; row ``wi`` of ``W`` is in force from bar 0 and
    row r + 1 takes over at bar ``wnxt[r]`` (:data:`NEVER`: row r is the last); a bar where the
    targets change rebalances. ``rule = (masks, mi, B, bi, bnxt)``: rebalance mask
    ``masks[mi]`` (bar 0 always rebalances) ORed with the drift band against the targets in
    force, band rows ``B`` (R, 2A) = [rel | abs] (:func:`band_limit`) in force from row ``bi``
    at bar 0, row r + 1 from bar ``bnxt[r]``. Other arguments as :func:`simulate_one`.
    """
    wi, wnxt = wsched
    masks, mi, B, bi, bnxt = rule
    init_cash, ann, rf = acct
    h, oval, order = scratch
    T = close.shape[0]
    A = close.shape[1]
    for j in range(A):
        h[j, col] = 0.0
    rf_bar = rf / ann
    cash = init_cash
    v = init_cash
    v_prev = init_cash
    acc = (0.0, 0.0, 0.0, -_INF, 0.0, 0.0)  # online metrics, see bar_update
    traded = 0.0
    fees = 0.0
    nreb = 0
    row = wi
    tn = wnxt[row]
    br = bi
    bn = bnxt[br]
    use_band = band_on(B, br, A)
    for t in range(T):
        v = portfolio_value(close, t, cash, h, col)
        do = t == 0 or masks[mi, t]
        while tn <= t:
            row += 1
            tn = wnxt[row]
            do = True
        if bn <= t:
            while bn <= t:
                br += 1
                bn = bnxt[br]
            use_band = band_on(B, br, A)
        if not do and use_band:
            do = band_breached_rows(close, t, v, W, row, h, col, B, br)
        if do:
            cash, tr, fe = rebalance(close, t, v, cash, W, row, h, oval, order, col, fee)
            traded += tr
            fees += fe
            nreb += 1
            v = portfolio_value(close, t, cash, h, col)
        acc = bar_update(t, v / v_prev - 1.0, v, rf_bar, acc)
        v_prev = v

    write_metrics(out, c, T, acct, v, acc, traded, fees, nreb)


def bar_update(t, r, v, rf_bar, acc):
    """The online metrics ``acc = (mean, m2, down, peak, mdd, sum_v)`` after bar ``t`` (return
    ``r``, value ``v``): Welford ``mean``/``m2``, downside sum of squares below ``rf_bar``,
    running ``peak`` and max drawdown ``mdd``, sum of values. Returns the updated tuple (start
    from ``(0, 0, 0, -inf, 0, 0)``).
    """
    mean, m2, down, peak, mdd, sum_v = acc
    d = r - mean
    mean = fadd(mean, fmul(d, 1.0 / (t + 1)))
    m2 = fadd(m2, fmul(d, r - mean))
    x = r - rf_bar
    if x < 0.0:
        down = fadd(down, fmul(x, x))
    peak = max(v, peak)
    mdd = min(v / peak - 1.0, mdd)
    return mean, m2, down, peak, mdd, sum_v + v


def write_metrics(out, c, T, acct, v, acc, traded, fees, nreb):
    """Finish the online metrics of one combination into ``out[c, :]`` (order of ``METRICS``).

    ``acct = (init_cash, ann, rf)``; ``v`` final value; ``acc`` the online metrics of
    :func:`bar_update` after the T bars: Welford mean and sum of squared deviations of the
    per-bar returns, sum of min(R - rf/ann, 0)^2, peak, max drawdown (<= 0), sum of the values;
    ``traded``/``fees`` totals; ``nreb`` rebalance bars. A ratio with a zero (or undefined)
    denominator is NaN.
    """
    init_cash, ann, rf = acct
    mean, m2, down, _peak, mdd, sum_v = acc
    rf_bar = rf / ann
    sq_ann = math.sqrt(ann)
    growth = v / init_cash
    ann_ret = growth ** (ann / T) - 1.0
    std = math.sqrt(m2 / (T - 1)) if T > 1 else _NAN
    excess = mean - rf_bar
    downside = math.sqrt(down / T)
    mean_v = sum_v / T
    out[c, Metric.total_return] = growth - 1.0
    out[c, Metric.cagr] = ann_ret
    out[c, Metric.volatility] = std * sq_ann
    out[c, Metric.sharpe] = excess / std * sq_ann if std > 0.0 else _NAN
    out[c, Metric.sortino] = excess / downside * sq_ann if downside > 0.0 else _NAN
    out[c, Metric.max_drawdown] = mdd
    out[c, Metric.calmar] = ann_ret / abs(mdd) if mdd < 0.0 else _NAN
    out[c, Metric.turnover] = traded / mean_v * (ann / T) if mean_v != 0.0 else _NAN
    out[c, Metric.fees_paid] = fees / init_cash
    out[c, Metric.n_rebalances] = float(nreb)
    out[c, Metric.final_value] = v


BODIES = ("fmul", "fadd", "portfolio_value", "band_breached", "band_limit", "band_on",
          "band_breached_rows", "rebalance", "bar_update", "write_metrics", "simulate_one",
          "simulate_sched")


def compile_bodies(jit, overrides=None):
    """Compile the step bodies with ``jit`` (``njit`` here, ``cuda.jit(device=True)`` in
    :mod:`gpusim.backtest.cuda`); see :func:`cpu_ref.jitting.compile_bodies`.
    """
    return _compile_bodies(jit, globals(), BODIES, overrides)


_nb = compile_bodies(njit(cache=True, error_model="numpy"))
portfolio_value_nb = _nb["portfolio_value"]
band_breached_nb = _nb["band_breached"]
rebalance_nb = _nb["rebalance"]
bar_update_nb = _nb["bar_update"]
write_metrics_nb = _nb["write_metrics"]
simulate_one_nb = _nb["simulate_one"]
band_limit_nb = _nb["band_limit"]
band_breached_rows_nb = _nb["band_breached_rows"]
simulate_sched_nb = _nb["simulate_sched"]
band_on_nb = _nb["band_on"]


# --------------------------------------------------------------------------------------------
# Host-side input checks (shared by the CPU and GPU entry points)
# --------------------------------------------------------------------------------------------

def scalar_bands(thresholds, relative, n_assets):
    """Band rows of per-combination scalar thresholds: ``(B, bid, bnxt)`` for the kernels.

    ``thresholds`` (C,): a drift band per combination (<= 0 or NaN: none); ``relative``: the
    band |a_j - w_j| >= threshold * w_j instead of >= threshold. One constant row per distinct
    threshold (``bnxt`` all :data:`NEVER`); ``bid`` (C,) its row.
    """
    A = int(n_assets)
    th = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    th = np.where(th > 0, th, np.inf)       # NaN and <= 0: no band
    uniq, bid = np.unique(th, return_inverse=True)
    if uniq.size == 0:
        uniq = np.array([np.inf])
    B = np.zeros((uniq.size, 2 * A))
    on = np.isfinite(uniq)
    if relative:
        B[:, :A] = np.where(on, uniq, 0.0)[:, None]
        B[:, A:] = np.where(on, 0.0, np.inf)[:, None]
    else:
        B[:, A:] = uniq[:, None]
    return (B, np.ascontiguousarray(bid.reshape(-1), dtype=np.int64),
            np.full(uniq.size, NEVER, dtype=np.int64))


def scalar_inputs(close, W, wid, masks, mid, thresholds, relative, fees, init_cash, ann, rf):
    """Kernel arguments (:func:`prepare_inputs`, checked) of constant targets ``W[wid[c]]`` and
    a scalar drift band per combination (absolute, or ``relative``): the form of issue 3.
    """
    A = np.shape(close)[1]
    W = np.asarray(W, dtype=np.float64)
    K = W.shape[0] if W.ndim == 2 else 1
    wid = np.asarray(wid, dtype=np.int64).reshape(-1)
    th = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), wid.shape)
    B, bid, bnxt = scalar_bands(th, relative, A)
    return prepare_inputs(close, W, wid, np.full(K, NEVER, dtype=np.int64), masks, mid, B, bid,
                          bnxt, fees, init_cash, ann, rf)


def _check_schedule(nxt, what):
    """Switch bars of stacked schedules: strictly increasing inside one, :data:`NEVER` last."""
    if nxt.size and nxt[-1] != NEVER:
        raise ValueError(f"{what}: the last row must be NEVER")
    live = nxt[:-1] != NEVER
    if np.any(nxt[:-1][live] >= nxt[1:][live]) or np.any(nxt < 0):
        raise ValueError(f"{what}: switch bars must increase within a schedule")


def prepare_inputs(close, W, wid, wnxt, masks, mid, B, bid, bnxt, fees, init_cash, ann, rf):
    """Coerce and check the backtest inputs; returns them as a tuple in the kernel's order.

    Arrays become C-contiguous float64 / int64 / bool host arrays (``mid``/``bid``/``fees``
    scalars broadcast over C = len(wid)); raises ``ValueError`` on inconsistent shapes,
    out-of-range indices, schedules whose switch bars do not increase, fees outside [0, 1),
    non-positive or non-finite prices, or non-positive ``init_cash``/``ann``.
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
    wnxt = np.ascontiguousarray(wnxt, dtype=np.int64).reshape(-1)
    if wnxt.shape != (W.shape[0],):
        raise ValueError(f"wnxt must be ({W.shape[0]},), got shape {wnxt.shape}")
    _check_schedule(wnxt, "wnxt")
    B = np.ascontiguousarray(B, dtype=np.float64)
    if B.ndim != 2 or B.shape[1] != 2 * A or B.shape[0] < 1:
        raise ValueError(f"B must be (R, {2 * A}), got shape {B.shape}")
    if np.any(np.isnan(B)) or np.any(B < 0):
        raise ValueError("B must hold band limits >= 0 (inf: none), not NaN")
    bnxt = np.ascontiguousarray(bnxt, dtype=np.int64).reshape(-1)
    if bnxt.shape != (B.shape[0],):
        raise ValueError(f"bnxt must be ({B.shape[0]},), got shape {bnxt.shape}")
    _check_schedule(bnxt, "bnxt")
    masks = np.ascontiguousarray(masks, dtype=np.bool_)
    if masks.ndim == 1:
        masks = masks.reshape(1, -1)
    if masks.ndim != 2 or masks.shape[1] != T:
        raise ValueError(f"masks must be (M, {T}), got shape {masks.shape}")
    wid = np.ascontiguousarray(wid, dtype=np.int64).reshape(-1)
    C = wid.shape[0]
    mid = np.ascontiguousarray(np.broadcast_to(np.asarray(mid, dtype=np.int64), (C,)))
    bid = np.ascontiguousarray(np.broadcast_to(np.asarray(bid, dtype=np.int64), (C,)))
    fees = np.ascontiguousarray(np.broadcast_to(np.asarray(fees, dtype=np.float64), (C,)))
    if C and (wid.min() < 0 or wid.max() >= W.shape[0]):
        raise ValueError(f"wid must index rows of W (0..{W.shape[0] - 1})")
    if C and (mid.min() < 0 or mid.max() >= masks.shape[0]):
        raise ValueError(f"mid must index rows of masks (0..{masks.shape[0] - 1})")
    if C and (bid.min() < 0 or bid.max() >= B.shape[0]):
        raise ValueError(f"bid must index rows of B (0..{B.shape[0] - 1})")
    if C and not (np.all(fees >= 0) and np.all(fees < 1)):
        raise ValueError("fees must lie in [0, 1)")
    init_cash, ann, rf = float(init_cash), float(ann), float(rf)
    if not (init_cash > 0 and ann > 0 and math.isfinite(rf)):
        raise ValueError("init_cash and ann must be > 0 and rf finite")
    return close, W, wid, wnxt, masks, mid, B, bid, bnxt, fees, init_cash, ann, rf
