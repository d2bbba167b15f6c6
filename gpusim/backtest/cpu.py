"""CPU fast path of the rebalancing backtest (DESIGN §6, contract of issue 3).

One combination = (target weights ``W[wid[c]]``, rebalance mask ``masks[mid[c]]``, drift
threshold ``thresholds[c]``, fee ``fees[c]``), simulated bar by bar on the shared close prices.
Metrics are accumulated online (Welford mean/M2 of the per-bar returns, running downside sum of
squares, running peak and drawdown, running sums of V and of traded value), so no value path is
ever stored and prices are never tiled per combination: each (combination, bar) costs O(A).

The per-combination step functions below are plain Python bodies over scalars and 2-D scratch
arrays indexed ``[asset, col]``; :func:`compile_bodies` compiles them with ``numba.njit`` here
(the ``*_nb`` names) and with ``numba.cuda.jit(device=True)`` in
:mod:`gpusim.backtest.cuda`, where :func:`simulate_one` is the whole work of one GPU
thread (the same idiom as :mod:`cpu_ref.rng`). They share nothing with :mod:`cpu_ref.backtest`,
the independent oracle they are tested against.

CPU fast path (:func:`backtest_cpu_nb`): prange over chunks of blocks of up to ``LANES``
combinations simulated in lockstep (:func:`_simulate_block`): per bar, the portfolio values, a
division-free screen of the drift band and the online metric updates are loops over the lanes
that LLVM vectorises (SIMD across combinations; ``error_model="numpy"`` is what lets divisions
vectorise); lanes that rebalance, or whose drift is within a rounding margin of the band, go
through the scalar step bodies. The result is bit-identical to running :func:`simulate_one` per
combination (:func:`backtest_scalar_nb`, the GPU thread's code path), which the tests check.

Scratch: holdings ``h``, order values ``oval`` and processing order ``order`` are ``(A, ncols)``
arrays and a combination uses column ``col``. The CPU path allocates one ``(A, LANES)`` set (plus
the lane state) per parallel chunk, never per bar or per combination; the GPU path allocates one
``(A, C)`` set in global memory and thread ``c`` uses column ``c`` (coalesced across a warp, and
no compile-time cap on the number of assets).

Floating point: the threshold test is exact to the letter of the contract (a_j = h_j p_j / V,
``>=``); the Welford mean update multiplies by 1/(t+1) instead of dividing (a last-ulp
difference from a two-pass mean, far inside the 1e-10 tolerance of the tests).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from cpu_ref.backtest import METRICS  # the reference owns the names and their order
from cpu_ref.jitting import compile_bodies as _compile_bodies

N_METRICS = len(METRICS)
SKIP_RTOL = 1e-9  # order sizes within this relative distance of zero are skipped (DESIGN §6)
_NAN = float("nan")
_INF = float("inf")
_TINY_V = 1e-300
_BAND_MARGIN = 1e-12  # >> the gap between |h p (1/v) - w| and |h p / v - w| (a few ulp of |a|+|w|)
# CPU lockstep blocks (SIMD across combinations): LANES combinations per block (64 measured
# best for A = 5; narrower blocks pay more loop overhead per lane), narrowed down to MIN_LANES
# for small C so that there are at least MIN_BLOCKS blocks to spread over the cores.
LANES = 64
MIN_LANES = 16
MIN_BLOCKS = 64
_MAX_CHUNKS = 1024  # CPU work items (each allocates its scratch once); many per core balances
# the load (threshold combinations differ in cost). A constant, not numba.get_num_threads(), which
# would make the kernel uncacheable.


# --------------------------------------------------------------------------------------------
# Step bodies (plain Python; compiled for the CPU below and for the GPU in kernels/backtest_cuda)
# --------------------------------------------------------------------------------------------

def fmul(a, b):
    """a * b rounded once. The GPU binds this to libdevice ``dmul_rn``, which the compiler never
    fuses into a multiply-add: the GPU then rounds every step exactly as the CPU does (numba's
    CPU code is never contracted without fastmath), so CPU and GPU results are bit-identical."""
    return a * b


def fadd(a, b):
    """a + b rounded once (``dadd_rn`` on the GPU; see :func:`fmul`)."""
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
        if s == 0.0 or abs(s) <= SKIP_RTOL * max(abs(target), abs(hj)):
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
    peak = -_INF
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
        mean, m2, down, peak, mdd, sum_v = bar_update(t, v / v_prev - 1.0, v, rf_bar, mean,
                                                      m2, down, peak, mdd, sum_v)
        v_prev = v

    write_metrics(out, c, T, init_cash, ann, rf, v, mean, m2, down, mdd, sum_v, traded, fees,
                  nreb)


def bar_update(t, r, v, rf_bar, mean, m2, down, peak, mdd, sum_v):
    """The online metrics after bar ``t`` (return ``r``, value ``v``): Welford ``mean``/``m2``,
    downside sum of squares below ``rf_bar``, running ``peak`` and max drawdown ``mdd``, sum of
    values. Returns the updated (mean, m2, down, peak, mdd, sum_v)."""
    d = r - mean
    mean = fadd(mean, fmul(d, 1.0 / (t + 1)))
    m2 = fadd(m2, fmul(d, r - mean))
    x = r - rf_bar
    if x < 0.0:
        down = fadd(down, fmul(x, x))
    peak = max(v, peak)
    mdd = min(v / peak - 1.0, mdd)
    return mean, m2, down, peak, mdd, sum_v + v


def write_metrics(out, c, T, init_cash, ann, rf, v, mean, m2, down, mdd, sum_v, traded, fees,
                  nreb):
    """Finish the online metrics of one combination into ``out[c, :]`` (order of ``METRICS``).

    ``v`` final value; ``mean``/``m2`` Welford mean and sum of squared deviations of the T
    per-bar returns; ``down`` sum of min(R - rf/ann, 0)^2; ``mdd`` max drawdown (<= 0);
    ``sum_v`` sum of the T values; ``traded``/``fees`` totals; ``nreb`` rebalance bars.
    A ratio with a zero (or undefined) denominator is NaN.
    """
    rf_bar = rf / ann
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


BODIES = ("fmul", "fadd", "portfolio_value", "band_breached", "rebalance", "bar_update",
          "write_metrics", "simulate_one")


def compile_bodies(jit, overrides=None):
    """Compile the step bodies with ``jit`` (``njit`` here, ``cuda.jit(device=True)`` in
    :mod:`gpusim.backtest.cuda`); see :func:`cpu_ref.jitting.compile_bodies`."""
    return _compile_bodies(jit, globals(), BODIES, overrides)


_nb = compile_bodies(njit(cache=True, error_model="numpy"))
portfolio_value_nb = _nb["portfolio_value"]
band_breached_nb = _nb["band_breached"]
rebalance_nb = _nb["rebalance"]
bar_update_nb = _nb["bar_update"]
write_metrics_nb = _nb["write_metrics"]
simulate_one_nb = _nb["simulate_one"]


# --------------------------------------------------------------------------------------------
# CPU population kernel: LANES combinations in lockstep, so the per-bar work vectorises
# --------------------------------------------------------------------------------------------

# Lane state rows of the (NSTATE, LANES) per-chunk array
(_CASH, _V, _VPREV, _MEAN, _M2, _DOWN, _PEAK, _MDD, _SUMV, _TRADED, _FEES, _NREB, _DO, _INV,
 _CAND) = range(15)
_NSTATE = 15


@njit(cache=True, error_model="numpy")
def _simulate_block(close, W, wid, masks, mid, thresholds, relative, fees, init_cash, ann, rf,
                    c0, nb, h, oval, order, wt, lim, st, out):
    """Simulate combinations c0 .. c0+nb-1 (nb <= LANES) in lockstep; lane b uses column b of
    the (A, LANES) scratch ``h``/``oval``/``order``/``wt``/``lim`` and of the (NSTATE, LANES)
    lane state ``st``.

    Per bar, the value, the band screen and the metric updates are branch-free loops over the
    lanes (SIMD across combinations; ``error_model="numpy"`` keeps divisions vectorisable);
    the exact band test and the rebalances run lane by lane with the scalar step bodies. Every
    lane performs the same floating-point operations in the same order as :func:`simulate_one`
    (the band screen only decides which lanes get the exact test), so the results are
    bit-identical to it.
    """
    T = close.shape[0]
    A = close.shape[1]
    rf_bar = rf / ann
    has_band = False
    m0 = mid[c0]
    same_mask = True
    for b in range(nb):
        c = c0 + b
        th = thresholds[c]
        wi = wid[c]
        for j in range(A):
            h[j, b] = 0.0
            wt[j, b] = W[wi, j]
            if th > 0.0:
                lim[j, b] = th * W[wi, j] if relative else th
            else:
                lim[j, b] = _INF
        if th > 0.0:
            has_band = True
        if mid[c] != m0:
            same_mask = False
        for k in range(_NSTATE):
            st[k, b] = 0.0
        st[_CASH, b] = init_cash
        st[_VPREV, b] = init_cash
        st[_PEAK, b] = -_INF
    cash = st[_CASH]
    v = st[_V]
    v_prev = st[_VPREV]
    mean = st[_MEAN]
    m2 = st[_M2]
    down = st[_DOWN]
    peak = st[_PEAK]
    mdd = st[_MDD]
    sum_v = st[_SUMV]
    do = st[_DO]
    inv = st[_INV]
    cand = st[_CAND]
    for t in range(T):
        for b in range(nb):
            v[b] = cash[b]
        for j in range(A):
            p = close[t, j]
            hj = h[j]
            for b in range(nb):
                v[b] += hj[b] * p
        if t == 0:
            for b in range(nb):
                do[b] = 1.0
        elif same_mask:
            m = 1.0 if masks[m0, t] else 0.0
            for b in range(nb):
                do[b] = m
        else:
            for b in range(nb):
                do[b] = 1.0 if masks[mid[c0 + b], t] else 0.0
        if has_band and t > 0:
            # screen: a_j ~ h_j p_j (1/v) within a margin that covers the rounding gap to
            # h_j p_j / v; lanes that may breach get the exact test of band_breached
            for b in range(nb):
                inv[b] = 1.0 / v[b]
                cand[b] = -_INF if v[b] > _TINY_V else 0.0  # 1/v may overflow: exact test
            for j in range(A):
                p = close[t, j]
                hj = h[j]
                wj = wt[j]
                lj = lim[j]
                for b in range(nb):
                    a = hj[b] * p * inv[b]
                    w = wj[b]
                    e = abs(a - w) + _BAND_MARGIN * (1.0 + abs(a) + abs(w))
                    cand[b] = max(cand[b], e - lj[b])  # max, not a select: vectorises
            for b in range(nb):
                if cand[b] >= 0.0 and do[b] == 0.0:
                    c = c0 + b
                    if band_breached_nb(close, t, v[b], W, wid[c], h, b, thresholds[c],
                                        relative):
                        do[b] = 1.0
        for b in range(nb):
            if do[b] != 0.0:
                c = c0 + b
                cash[b], tr, fe = rebalance_nb(close, t, v[b], cash[b], W, wid[c], h, oval,
                                               order, b, fees[c])
                st[_TRADED, b] += tr
                st[_FEES, b] += fe
                st[_NREB, b] += 1.0
                v[b] = portfolio_value_nb(close, t, cash[b], h, b)
        inv_n = 1.0 / (t + 1)
        for b in range(nb):
            vb = v[b]
            r = vb / v_prev[b] - 1.0
            d = r - mean[b]
            mb = mean[b] + d * inv_n
            mean[b] = mb
            m2[b] += d * (r - mb)
            x = r - rf_bar
            down[b] += x * x if x < 0.0 else 0.0
            pk = max(vb, peak[b])
            peak[b] = pk
            dd = vb / pk - 1.0
            mdd[b] = min(dd, mdd[b])
            sum_v[b] += vb
            v_prev[b] = vb
    for b in range(nb):
        write_metrics_nb(out, c0 + b, T, init_cash, ann, rf, v[b], mean[b], m2[b], down[b],
                         mdd[b], sum_v[b], st[_TRADED, b], st[_FEES, b], int(st[_NREB, b]))


@njit(parallel=True, nogil=True, cache=True, error_model="numpy")
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

    Each parallel chunk allocates its scratch once and runs blocks of ``LANES`` combinations in
    lockstep (:func:`_simulate_block`); results are bit-identical to :func:`simulate_one`.
    """
    A = close.shape[1]
    C = wid.shape[0]
    out = np.empty((C, N_METRICS))
    if C == 0:
        return out
    # block width: LANES, narrowed (down to MIN_LANES) so that there are >= MIN_BLOCKS blocks
    lanes = min(LANES, max(MIN_LANES, (C + MIN_BLOCKS - 1) // MIN_BLOCKS))
    nblocks = (C + lanes - 1) // lanes
    nchunks = min(nblocks, _MAX_CHUNKS)
    per = (nblocks + nchunks - 1) // nchunks
    nchunks = (nblocks + per - 1) // per
    for k in prange(nchunks):
        h = np.empty((A, LANES))
        oval = np.empty((A, LANES))
        order = np.empty((A, LANES), dtype=np.int64)
        wt = np.empty((A, LANES))
        lim = np.empty((A, LANES))
        st = np.empty((_NSTATE, LANES))
        for blk in range(k * per, min(nblocks, (k + 1) * per)):
            c0 = blk * lanes
            _simulate_block(close, W, wid, masks, mid, thresholds, relative, fees, init_cash,
                            ann, rf, c0, min(lanes, C - c0), h, oval, order, wt, lim, st, out)
    return out


@njit(parallel=True, nogil=True, cache=True, error_model="numpy")
def backtest_scalar_nb(close, W, wid, masks, mid, thresholds, relative, fees, init_cash, ann,
                       rf):
    """Same result as :func:`backtest_cpu_nb`, one combination at a time with
    :func:`simulate_one` (the GPU thread's code path); kept for tests and benchmarks."""
    A = close.shape[1]
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
        for c in range(k * size, min(C, (k + 1) * size)):
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
