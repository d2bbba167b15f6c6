"""CPU fast path of the rebalancing backtest (DESIGN §6, contract of issue 3).

One combination = (a target schedule starting at ``W[wid[c]]``, rebalance mask
``masks[mid[c]]``, a band schedule starting at ``B[bid[c]]``, fee ``fees[c]``), simulated bar by
bar on the shared close prices.
Metrics are accumulated online (Welford mean/M2 of the per-bar returns, running downside sum of
squares, running peak and drawdown, running sums of V and of traded value), so no value path is
ever stored and prices are never tiled per combination: each (combination, bar) costs O(A).

The step bodies (one combination, one bar) live in :mod:`gpusim.backtest.steps`, compiled
for the CPU there (the ``*_nb`` names) and for the GPU in :mod:`gpusim.backtest.cuda`.

CPU fast path (:func:`backtest_cpu_nb`): prange over chunks of blocks of up to ``LANES``
combinations simulated in lockstep (:func:`_simulate_block`): per bar, the portfolio values, a
division-free screen of the drift band and the online metric updates are loops over the lanes
that LLVM vectorises (SIMD across combinations; ``error_model="numpy"`` is what lets divisions
vectorise); lanes that rebalance, or whose drift is within a rounding margin of the band, go
through the scalar step bodies. The result is bit-identical to running
:func:`~gpusim.backtest.steps.simulate_one` per combination (:func:`backtest_scalar_nb`, the GPU
thread's code path), which the tests check.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from gpusim.backtest.steps import (
    _BAND_MARGIN,
    N_METRICS,
    NEVER,
    band_breached_rows_nb,
    band_limit_nb,
    band_on_nb,
    portfolio_value_nb,
    rebalance_nb,
    scalar_inputs,
    simulate_sched_nb,
    write_metrics_nb,
)

_INF = float("inf")
_TINY_V = 1e-300
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
# CPU population kernel: LANES combinations in lockstep, so the per-bar work vectorises
# --------------------------------------------------------------------------------------------

class LaneT(NamedTuple):
    """Rows of the (NSTATE, LANES) per-chunk lane state of :func:`_simulate_block`."""

    cash: int = 0  # cash
    v: int = 1  # portfolio value of the bar
    vprev: int = 2  # value of the previous bar
    mean: int = 3  # Welford mean of the returns
    m2: int = 4  # Welford sum of squared deviations
    down: int = 5  # downside sum of squares
    peak: int = 6  # running peak value
    mdd: int = 7  # max drawdown (<= 0)
    sumv: int = 8  # sum of the values
    traded: int = 9  # traded value
    fees: int = 10  # fees paid
    nreb: int = 11  # rebalance bars
    do: int = 12  # 1.0 when the lane rebalances at this bar
    inv: int = 13  # 1 / value (band screen)
    cand: int = 14  # band screen: >= 0 when the exact test is needed


Lane = LaneT()
_NSTATE = len(Lane)


class SchedT(NamedTuple):
    """Rows of the (4, LANES) int64 per-chunk schedule state of :func:`_simulate_block`."""

    row: int = 0  # row of W in force
    tn: int = 1  # bar at which the next row of W takes over (NEVER: none)
    brow: int = 2  # band row in force
    bn: int = 3  # bar at which the next band row takes over


Sched = SchedT()


@njit(cache=True, error_model="numpy")
def _lane_limits(W, B, sc, wt, lim, b):
    """Targets ``wt[:, b]`` and band limits ``lim[:, b]`` of lane b from its rows in force."""
    A = W.shape[1]
    row = sc[Sched.row, b]
    brow = sc[Sched.brow, b]
    for j in range(A):
        w = W[row, j]
        wt[j, b] = w
        lim[j, b] = band_limit_nb(B, brow, j, w, A)


@njit(cache=True, error_model="numpy")
def _init_lanes(W, wid, wnxt, mid, B, bid, bnxt, init_cash, c0, nb, lanes):
    """Start lanes 0 .. nb-1 of ``lanes`` (see :func:`_simulate_block`) on combinations
    ``c0 ..``: no holdings, the first rows of their schedules, targets ``wt``, band limits
    ``lim``, the initial lane state. Returns (has_band, same_mask, next_event): whether some
    band row of some lane limits an asset, whether all lanes share one rebalance mask, and the
    first bar at which a lane's targets or band change.
    """
    h, _oval, _order, wt, lim, st, sc = lanes
    A = W.shape[1]
    has_band = False
    m0 = mid[c0]
    same_mask = True
    nxt = NEVER
    for b in range(nb):
        c = c0 + b
        sc[Sched.row, b] = wid[c]
        sc[Sched.tn, b] = wnxt[wid[c]]
        sc[Sched.brow, b] = bid[c]
        sc[Sched.bn, b] = bnxt[bid[c]]
        nxt = min(nxt, sc[Sched.tn, b], sc[Sched.bn, b])
        _lane_limits(W, B, sc, wt, lim, b)
        for j in range(A):
            h[j, b] = 0.0
        r = bid[c]
        while not has_band:
            has_band = band_on_nb(B, r, A)
            if bnxt[r] == NEVER:
                break
            r += 1
        if mid[c] != m0:
            same_mask = False
        for k in range(_NSTATE):
            st[k, b] = 0.0
        st[Lane.cash, b] = init_cash
        st[Lane.vprev, b] = init_cash
        st[Lane.peak, b] = -_INF
    return has_band, same_mask, nxt


@njit(cache=True, error_model="numpy")
def _switch_rows(t, W, wnxt, B, bnxt, nb, lanes):
    """Advance the lanes whose targets or band change at bar ``t`` (a target change marks the
    lane to rebalance); returns the next bar at which some lane changes.
    """
    _h, _oval, _order, wt, lim, st, sc = lanes
    do = st[Lane.do]
    nxt = NEVER
    for b in range(nb):
        moved = False
        while sc[Sched.tn, b] <= t:
            sc[Sched.row, b] += 1
            sc[Sched.tn, b] = wnxt[sc[Sched.row, b]]
            do[b] = 1.0
            moved = True
        while sc[Sched.bn, b] <= t:
            sc[Sched.brow, b] += 1
            sc[Sched.bn, b] = bnxt[sc[Sched.brow, b]]
            moved = True
        if moved:
            _lane_limits(W, B, sc, wt, lim, b)
        nxt = min(nxt, sc[Sched.tn, b], sc[Sched.bn, b])
    return nxt


@njit(cache=True, error_model="numpy")
def _band_screen(close, t, W, B, nb, lanes):
    """Set ``do[b]`` (lane state) for the lanes whose drift band is breached at bar ``t``: a
    division-free screen over all lanes (vectorised), then the exact test of
    :func:`~.steps.band_breached_rows` for the lanes within a rounding margin of their band.
    """
    h, _oval, _order, wt, lim, st, sc = lanes
    A = close.shape[1]
    v = st[Lane.v]
    do = st[Lane.do]
    inv = st[Lane.inv]
    cand = st[Lane.cand]
    # screen: a_j ~ h_j p_j (1/v) within a margin that covers the rounding gap to
    # h_j p_j / v; lanes that may breach get the exact test of band_breached_rows
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
            if band_breached_rows_nb(close, t, v[b], W, sc[Sched.row, b], h, b, B,
                                     sc[Sched.brow, b]):
                do[b] = 1.0


@njit(cache=True, error_model="numpy")
def _simulate_block(close, W, wid, wnxt, masks, mid, B, bid, bnxt, fees, acct, c0, nb, lanes,
                    out):
    """Simulate combinations c0 .. c0+nb-1 (nb <= LANES) in lockstep (arguments as
    :func:`backtest_cpu_nb`, ``acct = (init_cash, ann, rf)``); lane b uses column b of the
    scratch ``lanes = (h, oval, order, wt, lim, st, sc)``: (A, LANES) arrays, the
    (NSTATE, LANES) lane state ``st`` (rows :data:`Lane`) and the (4, LANES) int64 schedule
    state ``sc`` (rows :data:`Sched`).

    Per bar, the value, the band screen and the metric updates are branch-free loops over the
    lanes (SIMD across combinations; ``error_model="numpy"`` keeps divisions vectorisable);
    target and band changes (only at the bars of a schedule), the exact band test and the
    rebalances run lane by lane with the scalar step bodies. Every lane performs the same
    floating-point operations in the same order as :func:`~.steps.simulate_sched` (the band
    screen only decides which lanes get the exact test), so the results are bit-identical to it.
    """
    init_cash, ann, rf = acct
    h, oval, order, _wt, _lim, st, sc = lanes
    T = close.shape[0]
    rf_bar = rf / ann
    has_band, same_mask, nxt = _init_lanes(W, wid, wnxt, mid, B, bid, bnxt, init_cash, c0, nb,
                                           lanes)
    m0 = mid[c0]
    cash = st[Lane.cash]
    v = st[Lane.v]
    do = st[Lane.do]
    v_prev = st[Lane.vprev]
    mean = st[Lane.mean]
    m2 = st[Lane.m2]
    down = st[Lane.down]
    peak = st[Lane.peak]
    mdd = st[Lane.mdd]
    sum_v = st[Lane.sumv]
    A = close.shape[1]
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
        if nxt <= t:
            nxt = _switch_rows(t, W, wnxt, B, bnxt, nb, lanes)
        if has_band and t > 0:
            _band_screen(close, t, W, B, nb, lanes)
        for b in range(nb):
            if do[b] != 0.0:
                c = c0 + b
                cash[b], tr, fe = rebalance_nb(close, t, v[b], cash[b], W, sc[Sched.row, b], h,
                                               oval, order, b, fees[c])
                st[Lane.traded, b] += tr
                st[Lane.fees, b] += fe
                st[Lane.nreb, b] += 1.0
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
        acc = (mean[b], m2[b], down[b], peak[b], mdd[b], sum_v[b])
        write_metrics_nb(out, c0 + b, T, acct, v[b], acc, st[Lane.traded, b], st[Lane.fees, b],
                         int(st[Lane.nreb, b]))


@njit(parallel=True, nogil=True, cache=True, error_model="numpy")
def backtest_cpu_nb(close, W, wid, wnxt, masks, mid, B, bid, bnxt, fees, init_cash, ann, rf):
    """Metrics of C combinations, parallel over combinations (numba prange over chunks).

    Parameters
    ----------
    close : (T, A) float64, C-contiguous, > 0 — shared by all combinations.
    W : (R, A) float64 target weights (long-only, rows sum to 1), schedules stacked.
    wid : (C,) int64 — combination c starts (bar 0) with targets ``W[wid[c]]``.
    wnxt : (R,) int64 — row r + 1 takes over at bar ``wnxt[r]`` (and that bar rebalances);
        ``NEVER`` for the last row of a schedule (constant targets: all ``NEVER``).
    masks : (M, T) bool rebalance masks; mid : (C,) int64 — combination c uses ``masks[mid[c]]``.
    B : (RB, 2A) float64 band rows [rel | abs]: asset j drifts out when |a_j - w_j| >=
        max(rel_j w_j, abs_j) (absolute band: rel 0; relative: abs 0; none: rel 0, abs inf).
    bid : (C,) int64 — combination c starts with band row ``B[bid[c]]``; bnxt : (RB,) int64
        as ``wnxt`` for the band rows (a change of band does not rebalance by itself).
    fees : (C,) float64 proportional fees in [0, 1).
    init_cash, ann, rf : float — initial cash, periods per year, annual risk-free rate.

    Returns
    -------
    (C, 11) float64 host array, columns in the order of ``METRICS``.

    Each parallel chunk allocates its scratch once and runs blocks of ``LANES`` combinations in
    lockstep (:func:`_simulate_block`); results are bit-identical to
    :func:`gpusim.backtest.steps.simulate_one`.
    """
    A = close.shape[1]
    C = wid.shape[0]
    out = np.empty((C, N_METRICS))
    if C == 0:
        return out
    acct = (init_cash, ann, rf)
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
        sc = np.empty((4, LANES), dtype=np.int64)
        scratch = (h, oval, order, wt, lim, st, sc)
        for blk in range(k * per, min(nblocks, (k + 1) * per)):
            c0 = blk * lanes
            _simulate_block(close, W, wid, wnxt, masks, mid, B, bid, bnxt, fees, acct, c0,
                            min(lanes, C - c0), scratch, out)
    return out


@njit(parallel=True, nogil=True, cache=True, error_model="numpy")
def backtest_scalar_nb(close, W, wid, wnxt, masks, mid, B, bid, bnxt, fees, init_cash, ann, rf):
    """Same result as :func:`backtest_cpu_nb`, one combination at a time with
    :func:`~.steps.simulate_sched` (the GPU thread's code path); kept for tests and benchmarks.
    """
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
            simulate_sched_nb(close, W, (wid[c], wnxt), (masks, mid[c], B, bid[c], bnxt),
                              fees[c], (init_cash, ann, rf), (h, oval, order), 0, out, c)
    return out


def backtest_cpu(close, W, wid, masks, mid, thresholds, relative=False, fees=0.0,
                 init_cash=1.0, ann=252.0, rf=0.0):
    """Checked entry point of :func:`backtest_cpu_nb` for constant targets ``W[wid[c]]`` and a
    scalar drift band per combination (absolute, or ``relative``; scalars
    ``mid``/``thresholds``/``fees`` broadcast over the C = len(wid) combinations). Returns a
    (C, 11) float64 host array.
    """
    return backtest_cpu_nb(*scalar_inputs(close, W, wid, masks, mid, thresholds, relative, fees,
                                          init_cash, ann, rf))
