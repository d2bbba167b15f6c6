"""Reference walk-forward re-optimisation (DESIGN §7): the oracle for gpusim's fast paths.

Everything here is written to be read: one window, one period, one portfolio at a time, plain
loops, two-pass statistics. It never imports ``gpusim`` and shares no step function with
gpusim's kernels; the only shared code is the counter-based RNG of :mod:`cpu_ref.rng` (the
candidate streams must be identical) and the execution building blocks of
:mod:`cpu_ref.backtest` (``rebalance_bar_nb``, ``portfolio_value_nb``,
``metrics_from_path_nb``), which this module drives with time-varying targets.

Definitions (the contract the fast paths are tested against)
-------------------------------------------------------------
Estimation window of a rebalance at bar ``t`` with lookback ``L``: the simple returns
``r_s = p_s / p_{s-1} - 1`` of bars ``s = a .. t-1`` with ``a = max(1, t - L)`` (``L = None``:
``a = 1``). The close of bar ``t`` itself is not used: the weights traded at the close of ``t``
come from information up to the close of ``t - 1``. ``mu = mean(r)``, ``cov = cov(r, ddof=1)``,
and the beta of asset ``j`` to a benchmark ``b`` is ``cov(r_j, r_b) / var(r_b)`` on the same
window.

Candidate stream of the period at bar ``t`` (an index into the full price table):
``period_seed(seed, t) = mix64(seed_key(seed) + (t + 1) * GOLDEN)`` (uint64 arithmetic, the
functions of :mod:`cpu_ref.rng`); candidate ``i`` of that period is
``cpu_ref.rng.population_nb(period_seed(seed, t), i, 1, A, code, alpha, lo, hi_any)``. The stream
depends on the date only: every lookback, rule and ``num_tests`` that rebalances at ``t`` sees
the same candidates (common random numbers), and ``num_tests = n`` uses candidates ``0 .. n-1``.

Constraints of one period, as arrays: per-asset bounds ``lo <= w <= hi`` (lo is applied by the
sampler's affine map, see :func:`cpu_ref.rng.sample`), and ``M`` linear rows
``gl_m <= G_m . w <= gu_m`` (groups, portfolio beta, budget). A row with ``gl_m == gu_m`` is an
equality, which the random search accepts within ``eqtol_m``.

``cash=False`` (fully invested): a candidate ``w`` (sums to 1) is accepted when every bound holds.
``cash=True`` (weights may sum to less than 1; the rest is cash): the candidate is a direction
``y`` and its weights are ``w = s y`` with ``s`` the largest scale in (0, 1] allowed by the
upper-type limits (``y_j s <= hi_j``, ``G_m y s <= gu_m`` when ``G_m y > 0``, ``G_m y s >= gl_m``
when ``G_m y < 0``); it is accepted when every bound holds at that ``s`` (to a rounding slack of
``SLACK * (1 + |bound|)``). Ex-ante Sharpe ``ann (mu - rf/ann) . w / sqrt(ann w' cov w)`` is
scale-free, so it is scored on ``y``; with ``sum(w) = 1`` it is DESIGN §5's Sharpe.

Objectives (higher is better), of the weights ``w = s y`` of a candidate: ``max_sharpe`` the
ex-ante Sharpe above (scale-free, scored on ``y``); ``min_variance`` ``-ann w' cov w``;
``max_return`` ``(ann mu - rf) . w``; ``max_utility`` ``(ann mu - rf) . w - lam/2 ann w' cov w``
(``lam`` the risk aversion). With ``sum(w) = 1`` the ``rf`` terms are a constant.

Risk caps (Volatility, TrackingError), checked on ``w = s y`` after the rule above: cap ``k``
holds when ``ann var(r_w - r_b) = ann (w' cov w - 2 w . c_k + v_k) <= cap_k²`` (``c_k`` the
assets' covariances with the benchmark, ``v_k`` its variance; zero for a volatility cap).

Public API
----------
period_seed_nb, period_seeds        seeds of the per-period candidate streams
window_stats_1d_nb                  mu, cov (and betas) of one window, two-pass
var_floor_1d_nb                     the variance floor of a window (riskless below it)
excess_sharpe_1d_nb                 ex-ante Sharpe (cash earns rf)
objective_1d_nb                     the objective's score of one candidate
constrain_1d_nb                     acceptance rule and scale of one candidate
caps_ok_1d_nb                       the risk caps of one candidate
search_period_1d_nb                 best of n candidates of one period, all scored
simulate_1d_nb                      one portfolio with a target vector per rebalance bar
simulate_nb                         many portfolios in parallel (prange): metrics (C, 11)
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .backtest import N_METRICS, metrics_from_path_nb, portfolio_value_nb, rebalance_bar_nb
from .rng import GOLDEN, mix64_nb, sample_nb, seed_key_nb

SLACK = 1e-12
"""Relative rounding slack of the bound checks after scaling (cash mode)."""
VOL_FLOOR_RTOL = 1e-6
"""A candidate whose ex-ante volatility is at or below ``VOL_FLOOR_RTOL`` x the window's largest
asset volatility is riskless: its Sharpe is undefined and max_sharpe never chooses it (the rule
of ``gpusim.mvo.vol_floor``, restated here: this module never imports gpusim)."""
OBJECTIVES = ("max_sharpe", "min_variance", "max_return", "max_utility")
"""Objective names; the code of each is its position (MAX_SHARPE = 0, ...)."""
MAX_SHARPE, MIN_VARIANCE, MAX_RETURN, MAX_UTILITY = 0, 1, 2, 3


# --------------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def period_seed_nb(seed, t):
    """Seed of the candidate stream of the rebalance at bar ``t``: SplitMix64's stream of
    ``seed_key(seed)`` read at position ``t`` (a uint64).
    """
    return mix64_nb(seed_key_nb(np.uint64(seed)) + np.uint64(t + 1) * GOLDEN)


@njit(cache=True)
def _period_seeds_nb(seed, bars):
    out = np.empty(bars.shape[0], dtype=np.uint64)
    for k in range(bars.shape[0]):
        out[k] = period_seed_nb(seed, bars[k])
    return out


def period_seeds(seed, bars) -> np.ndarray:
    """uint64 seeds of the periods at ``bars`` (array of bar indices)."""
    return _period_seeds_nb(np.uint64(seed), np.ascontiguousarray(bars, dtype=np.int64))


# --------------------------------------------------------------------------------------------
# Window statistics
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def window_stats_1d_nb(close, a, t):
    """Mean and covariance (ddof=1) of the simple returns of bars ``a .. t-1``.

    Parameters
    ----------
    close : (T, K) float64 prices (assets and, optionally, benchmark columns after them).
    a, t : int, 1 <= a, a + 2 <= t <= T (at least two returns).

    Returns
    -------
    mu : (K,) float64; cov : (K, K) float64. Host arrays.
    """
    K = close.shape[1]
    n = t - a
    r = np.empty((n, K))
    for s in range(a, t):
        for j in range(K):
            r[s - a, j] = close[s, j] / close[s - 1, j] - 1.0
    mu = np.zeros(K)
    for i in range(n):
        for j in range(K):
            mu[j] += r[i, j]
    for j in range(K):
        mu[j] /= n
    cov = np.zeros((K, K))
    for j in range(K):
        for k in range(K):
            acc = 0.0
            for i in range(n):
                acc += (r[i, j] - mu[j]) * (r[i, k] - mu[k])
            cov[j, k] = acc / (n - 1)
    return mu, cov


@njit(cache=True)
def betas_1d_nb(close, bench, a, t):
    """(B, A) betas cov(r_j, r_b) / var(r_b) of every asset to every benchmark column of
    ``bench`` (T, B) on the window of bars ``a .. t-1``.
    """
    A = close.shape[1]
    B = bench.shape[1]
    both = np.empty((close.shape[0], A + B))
    both[:, :A] = close
    both[:, A:] = bench
    _, cov = window_stats_1d_nb(both, a, t)
    out = np.empty((B, A))
    for b in range(B):
        vb = cov[A + b, A + b]
        for j in range(A):
            out[b, j] = cov[j, A + b] / vb
    return out


# --------------------------------------------------------------------------------------------
# Scoring and constraints of one candidate
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def var_floor_1d_nb(cov, ann):
    """The annual variance floor ``(VOL_FLOOR_RTOL sqrt(ann max_j cov_jj))**2`` of a window."""
    d = 0.0
    for j in range(cov.shape[0]):
        d = max(d, cov[j, j])
    v = VOL_FLOOR_RTOL * math.sqrt(ann * d)
    return v * v


@njit(cache=True)
def excess_sharpe_1d_nb(w, mu, cov, ann, rf, vfl=0.0):
    """``ann * sum_j (mu_j - rf/ann) w_j / sqrt(ann * w' cov w)``; -inf when the annual variance
    is at or below ``vfl`` (>= 0; :func:`var_floor_1d_nb`: riskless, Sharpe undefined).
    Equals DESIGN §5's ``(ann mu.w - rf) / vol`` when ``sum(w) = 1``.
    """
    A = w.shape[0]
    ret = 0.0
    for j in range(A):
        ret += (ann * mu[j] - rf) * w[j]
    var = 0.0
    for j in range(A):
        for k in range(A):
            var += w[j] * cov[j, k] * w[k]
    var *= ann
    if var > vfl:
        return ret / math.sqrt(var)
    return -np.inf


@njit(cache=True)
def objective_1d_nb(y, s, mu, cov, ann, rf, obj, lam, vfl=0.0):
    """Score of the weights ``w = s y`` by objective code ``obj`` (module docstring; higher is
    better): max_sharpe is scored on ``y`` (scale-free; -inf at or below the variance floor
    ``vfl``), the others on ``w``.
    """
    if obj == MAX_SHARPE:
        return excess_sharpe_1d_nb(y, mu, cov, ann, rf, vfl)
    A = y.shape[0]
    w = np.empty(A)
    for j in range(A):
        w[j] = s * y[j]
    ret = 0.0
    for j in range(A):
        ret += (ann * mu[j] - rf) * w[j]
    var = 0.0
    for j in range(A):
        for k in range(A):
            var += w[j] * cov[j, k] * w[k]
    var *= ann
    if obj == MIN_VARIANCE:
        return -var
    if obj == MAX_RETURN:
        return ret
    return ret - 0.5 * lam * var


@njit(cache=True)
def constrain_1d_nb(y, lo, hi, G, gl, gu, eqtol, cash):
    """Acceptance of one candidate ``y`` (A,) and the scale of its weights (module docstring).

    Returns (accepted, scale): the weights are ``scale * y`` (scale 1 when ``cash`` is False).
    """
    A = y.shape[0]
    M = G.shape[0]
    vals = np.empty(M)
    for m in range(M):
        acc = 0.0
        for j in range(A):
            acc += G[m, j] * y[j]
        vals[m] = acc
    s = 1.0
    if cash:
        for j in range(A):
            if y[j] > 0.0:
                s = min(s, hi[j] / y[j])
        for m in range(M):
            v = vals[m]
            if v > 0.0 and gu[m] < np.inf:
                s = min(s, gu[m] / v)
            elif v < 0.0 and gl[m] > -np.inf:
                s = min(s, gl[m] / v)
        if not s > 0.0:
            return False, s
    for j in range(A):
        w = y[j] * s
        if w < lo[j] - SLACK * (1.0 + abs(lo[j])) or w > hi[j] + SLACK * (1.0 + abs(hi[j])):
            return False, s
    for m in range(M):
        v = vals[m] * s
        if gl[m] == gu[m]:
            if abs(v - gu[m]) > eqtol[m] + SLACK * (1.0 + abs(gu[m])):
                return False, s
        else:
            if v < gl[m] - SLACK * (1.0 + abs(gl[m])) or v > gu[m] + SLACK * (1.0 + abs(gu[m])):
                return False, s
    return True, s


@njit(cache=True)
def caps_ok_1d_nb(y, s, cov, CC, cv, cap2, ann):
    """True when the weights ``w = s y`` meet every risk cap ``k`` with ``cap2[k] < inf``:
    ``ann (w' cov w - 2 w . CC[k] + cv[k]) <= cap2[k]`` (module docstring).
    """
    A = y.shape[0]
    w = np.empty(A)
    for j in range(A):
        w[j] = s * y[j]
    var = 0.0
    for j in range(A):
        for k in range(A):
            var += w[j] * cov[j, k] * w[k]
    for k in range(cap2.shape[0]):
        if cap2[k] < np.inf:
            cross = 0.0
            for j in range(A):
                cross += w[j] * CC[k, j]
            if ann * (var - 2.0 * cross + cv[k]) > cap2[k]:
                return False
    return True


@njit(cache=True)
def search_period_1d_nb(pseed, n, code, alpha, lo, hi, G, gl, gu, eqtol, cash, mu, cov, ann,
                        rf, obj=0, lam=0.0):
    """:func:`search_period_caps_1d_nb` without risk caps."""
    A = mu.shape[0]
    return search_period_caps_1d_nb(pseed, n, code, alpha, lo, hi, G, gl, gu, eqtol, cash, mu,
                                    cov, ann, rf, obj, lam, np.zeros((0, A)), np.zeros(0),
                                    np.zeros(0))


@njit(cache=True)
def search_period_caps_1d_nb(pseed, n, code, alpha, lo, hi, G, gl, gu, eqtol, cash, mu, cov,
                             ann, rf, obj, lam, CC, cv, cap2):
    """Score candidates ``0 .. n-1`` of the stream ``pseed`` one by one by the objective
    ``obj`` (risk aversion ``lam``, :func:`objective_1d_nb` at the candidate's scale), keep the
    best.

    Candidates are drawn with lower bounds ``lo`` (the sampler's affine map) and no upper bound
    (``hi`` is checked by :func:`constrain_1d_nb`). Ties go to the smaller index. max_sharpe
    never chooses a riskless candidate (annual variance at or below :func:`var_floor_1d_nb` of
    ``cov``, computed once per period): its score is -inf.

    Returns
    -------
    best : int (index of the best accepted candidate, -1 when none)
    best_sharpe, best_scale : float
    n_accepted : int
    best_any : int (index of the best candidate ignoring every constraint but ``lo``)
    best_any_sharpe : float
    """
    A = mu.shape[0]
    key = seed_key_nb(np.uint64(pseed))
    lo_sum = 0.0
    for j in range(A):
        lo_sum += lo[j]
    no_hi = np.full(A, np.inf)
    y = np.empty(A)
    vfl = var_floor_1d_nb(cov, ann)
    best, best_s, best_scale = -1, -np.inf, 0.0
    best_any, best_any_s = -1, -np.inf
    n_acc = 0
    for i in range(n):
        sample_nb(key, i, code, alpha, lo, no_hi, lo_sum, y)
        ok, s = constrain_1d_nb(y, lo, hi, G, gl, gu, eqtol, cash)
        if ok and cap2.shape[0] > 0:
            ok = caps_ok_1d_nb(y, s, cov, CC, cv, cap2, ann)
        sh = objective_1d_nb(y, s, mu, cov, ann, rf, obj, lam, vfl)
        if sh > best_any_s:
            best_any, best_any_s = i, sh
        if ok:
            n_acc += 1
            if sh > best_s:
                best, best_s, best_scale = i, sh, s
    return best, best_s, best_scale, n_acc, best_any, best_any_s


# --------------------------------------------------------------------------------------------
# Execution with a target vector per rebalance bar
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def simulate_1d_nb(close, targets, mask, fee, init_cash, ann, rf):
    """One portfolio over all bars of ``close``; the k-th rebalance trades to ``targets[k]``.

    Parameters
    ----------
    close : (T, A) float64 prices; bar 0 is the first bar of the simulation.
    targets : (K, A) float64, one row per rebalance bar (K = 1 + number of True in mask[1:]).
    mask : (T,) bool rebalance bars (bar 0 always rebalances).
    fee, init_cash, ann, rf : as in :func:`cpu_ref.backtest.simulate_1d_nb`.

    Returns
    -------
    metrics (11,), value (T,), rebalance bars (K,) int64, realised allocations (K, A)
    (h_j p_j / V after that bar's orders). Host arrays.
    """
    T, A = close.shape
    cash = init_cash
    h = np.zeros(A)
    value = np.empty(T)
    bars = np.empty(T, dtype=np.int64)
    realised = np.empty((T, A))
    traded_total = 0.0
    fees_total = 0.0
    k = 0
    for t in range(T):
        p = close[t]
        rebalance = t == 0 or mask[t]
        if rebalance:
            cash, traded, paid = rebalance_bar_nb(cash, h, p, targets[k], fee)
            traded_total += traded
            fees_total += paid
        V = portfolio_value_nb(cash, h, p)
        value[t] = V
        if rebalance:
            bars[k] = t
            for j in range(A):
                realised[k, j] = h[j] * p[j] / V
            k += 1
    metrics = metrics_from_path_nb(value, init_cash, ann, rf, traded_total, fees_total, float(k))
    return metrics, value, bars[:k].copy(), realised[:k].copy()


@njit(parallel=True, cache=True)
def simulate_nb(close, W, woff, wsid, masks, mid, fees, init_cash, ann, rf):
    """Metrics of C walk-forward portfolios in parallel (prange over portfolios).

    Portfolio ``c`` rebalances on ``masks[mid[c]]`` and its k-th rebalance trades to
    ``W[woff[wsid[c]] + k]``. Returns a (C, 11) float64 host array (``cpu_ref.backtest.METRICS``).
    """
    C = wsid.shape[0]
    out = np.empty((C, N_METRICS))
    for c in prange(C):
        mask = masks[mid[c]]
        K = 1
        for t in range(1, mask.shape[0]):
            if mask[t]:
                K += 1
        o = woff[wsid[c]]
        res = simulate_1d_nb(close, W[o:o + K], mask, fees[c], init_cash, ann, rf)
        out[c, :] = res[0]
    return out


def reference_choice(close, bench, t, lookback, seed, n, code, alpha, lo, hi, static_G,
                     beta_rows, gl, gu, eqtol, cash, ann, rf, estimator=None, obj=0,
                     lam=0.0, cap_bench=(), cap=None):
    """The random-search choice of the rebalance at bar ``t``, recomputed from scratch.

    Window statistics of the assets and benchmark columns together by
    :func:`window_stats_1d_nb` (or ``estimator(returns (n, A + B), A) -> (mu, cov)``, e.g.
    built from :mod:`cpu_ref.estimators`); betas ``cov[j, A+b] / cov[A+b, A+b]`` fill the beta
    rows ``[(row, benchmark column)]`` of ``static_G`` (M, A); risk cap ``k`` (``cap[k]``,
    inf: none) uses benchmark column ``cap_bench[k]`` (-1: a volatility cap); the period's seed
    by :func:`period_seed_nb`, then every candidate scored by :func:`search_period_caps_1d_nb`.

    Returns ``(period seed, search_period_caps_1d_nb's tuple, mu, cov, G)``.
    """
    close = np.array(close, dtype=np.float64, order="C")   # writable C arrays: one signature
    A = close.shape[1]
    both = close if bench is None else np.ascontiguousarray(np.hstack([close, np.asarray(
        bench, dtype=np.float64).reshape(close.shape[0], -1)]))
    a = 1 if lookback is None else max(1, t - lookback)
    if estimator is None:
        mu_all, cov_all = window_stats_1d_nb(both, a, t)
    else:
        mu_all, cov_all = estimator(both[a:t] / both[a - 1:t - 1] - 1.0, A)
    mu = np.ascontiguousarray(mu_all[:A], dtype=np.float64)
    cov = np.ascontiguousarray(cov_all[:A, :A], dtype=np.float64)
    G = np.array(static_G, dtype=np.float64).copy()
    for row, col in beta_rows:
        G[row] = cov_all[:A, A + col] / cov_all[A + col, A + col]
    K = len(cap_bench)
    CC, cv = np.zeros((K, A)), np.zeros(K)
    for k, col in enumerate(cap_bench):
        if col >= 0:
            CC[k] = cov_all[:A, A + col]
            cv[k] = cov_all[A + col, A + col]
    cap2 = np.zeros(0) if K == 0 else np.asarray(cap, dtype=np.float64) ** 2
    pseed = period_seed_nb(np.uint64(seed), t)
    res = search_period_caps_1d_nb(np.uint64(pseed), n, code, alpha, lo, hi, G, gl, gu, eqtol,
                                   cash, mu, cov, ann, rf, obj, float(lam), CC, cv, cap2)
    return pseed, res, mu, cov, G
