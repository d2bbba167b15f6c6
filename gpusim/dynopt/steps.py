"""Step bodies of the integer-position dynamic optimisation, compiled for the CPU and the GPU
(DESIGN §8, issue 6).

One combination = (capital ``capitals[j]``, shadow cost ``shadow_costs[j]``, buffer
``buffers[j]``, rebalance mask ``masks[mid[j]]``), simulated day by day on inputs shared by all
combinations (prepared on the host by :func:`gpusim.dynopt.api.prepare`; never tiled per
combination): ``dprice``, ``notional``, ``cost``, ``k``, ``w_star`` (T, N), the covariances
``covs`` (P, N, N) and ``cov_id`` (T,). The semantics are those of :mod:`cpu_ref.dynopt` (read
its docstring); these bodies share no code with it and are tested against it.

Where the reference recomputes every objective value from scratch (O(N^2) per trial, O(N^3) per
greedy step), the bodies here keep ``g = Σ (w - w*)`` and ``TE^2`` up to date: a trial step of
``dw`` on instrument i costs O(1) (``TE^2 + dw (2 g_i + dw Σ_ii)``), an accepted step O(N)
(``g += dw Σ[:, i]``). Positions are whole numbers, so the fast paths and the reference agree
exactly on them unless two objective values tie to within a few ulp (no such tie occurs in the
tests); metrics agree to ~1e-12 relative (online Welford mean/variance here, two-pass there).

The step bodies are plain Python over scalars and 2-D scratch arrays indexed ``[instrument,
col]``; :func:`compile_bodies` compiles them with ``numba.njit`` here (the ``*_nb`` names) and
with ``numba.cuda.jit(device=True)`` in :mod:`gpusim.dynopt.cuda`, where
:func:`simulate_one` is the whole work of one GPU thread. Scratch: seven (N, ncols) arrays
``n`` (held contracts), ``ng`` (greedy contracts), ``c`` (weight per contract), ``w0`` (previous
weights), ``g`` (Σ (w - w*)), ``d`` (a gap vector) and ``ns`` (static positions); a combination
uses column ``col``. Options: pysystemtrade's no-trade rule (``no_trade``) and the static
comparison (positions of Carver's classic buffer, ``band >= 0``) as in :mod:`cpu_ref.dynopt`
and :mod:`cpu_ref.dynopt_static`. The CPU
path allocates (N, 1) arrays per combination; the GPU path one (N, C) set in global memory
(thread j uses column j: coalesced, and no compile-time cap on the number of instruments).

Rounding is half to even (:func:`round_half_even`, written out so that it is the same on the
CPU and in CUDA device code). On GPU hardware the compiler may fuse multiply-adds in the
objective, which moves values by an ulp: like the fast path against the reference, the GPU then
agrees exactly on positions unless two trial objectives tie to within a few ulp.

:func:`prepare_inputs` coerces and checks the inputs of both entry points (CPU and GPU).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from numba import njit

from cpu_ref.dynopt import METRICS, TE_ZERO, Metric  # the reference owns the names and their order
from cpu_ref.dynopt_static import N_STATIC
from cpu_ref.jitting import compile_bodies as _compile_bodies

N_METRICS = len(METRICS)
_NAN = float("nan")
NO_STATIC = -1.0
"""``band`` value of a run without the static comparison."""


def n_columns(band: float) -> int:
    """Width of the metrics output: METRICS, then STATIC_METRICS when ``band >= 0``."""
    return N_METRICS + (N_STATIC if band >= 0 else 0)


class Inputs(NamedTuple):
    """The inputs shared by all combinations (host or device arrays): ``dprice``, ``notional``,
    ``cost``, ``k``, ``w_star`` (T, N) float64 (see :func:`cpu_ref.dynopt.dynopt_1d_nb`),
    ``covs`` (P, N, N) float64 and ``cov_id`` (T,) int64.
    """

    dprice: Any
    notional: Any
    cost: Any
    k: Any
    w_star: Any
    covs: Any
    cov_id: Any


class Scratch(NamedTuple):
    """Per-combination state, (N, ncols) float64 arrays of which a combination uses column
    ``col``: held contracts ``n``, greedy contracts ``ng``, weight per contract ``c``, previous
    weights ``w0``, ``g = Σ (w - w*)``, a gap vector ``d`` and the static positions ``ns``.
    """

    n: Any
    ng: Any
    c: Any
    w0: Any
    g: Any
    d: Any
    ns: Any


# --------------------------------------------------------------------------------------------
# Step bodies (plain Python; compiled for the CPU below and for the GPU in dynopt/cuda.py)
# --------------------------------------------------------------------------------------------

def round_half_even(x):
    """Nearest whole number (as a float), ties to the even one (like ``np.rint``)."""
    r = float(math.floor(x))
    frac = x - r
    if frac > 0.5:
        return r + 1.0
    if frac == 0.5:
        h = r * 0.5
        if h != float(math.floor(h)):
            return r + 1.0
    return r


def quad_form(covs, p, d, col, N):
    """D' Σ d with Σ = covs[p] and d = d[:, col]."""
    q = 0.0
    for i in range(N):
        di = d[i, col]
        if di != 0.0:
            s = 0.0
            for j in range(N):
                s += covs[p, i, j] * d[j, col]
            q += di * s
    return q


def greedy(covs, p, w_star, k, t, c, w0, ng, g, col, N, shadow_cost, max_steps):
    """Greedy contracts of day t into ``ng[:, col]`` (start at 0, one contract at a time in the
    direction of sign(w*_i), best strictly improving trial, ties to the lowest index).

    Uses ``c[:, col]`` (weight per contract, 0 = outside the optimisation), ``w0[:, col]``
    (previous weights) and the scratch ``g[:, col]``. Returns the number of accepted steps.
    """
    te2 = 0.0
    penalty = 0.0
    for i in range(N):
        ng[i, col] = 0.0
        s = 0.0
        for j in range(N):
            s += covs[p, i, j] * w_star[t, j]
        g[i, col] = -s
        te2 += w_star[t, i] * s
        penalty += k[t, i] * abs(w0[i, col])
    current = math.sqrt(max(te2, 0.0)) + shadow_cost * penalty
    steps = 0
    while steps < max_steps:
        best = current
        bi = -1
        b_dir = 0.0
        b_dw = 0.0
        b_dte2 = 0.0
        b_dpen = 0.0
        for i in range(N):
            ci = c[i, col]
            ws = w_star[t, i]
            if not ci > 0.0 or ws == 0.0:
                continue
            sgn = 1.0 if ws > 0.0 else -1.0
            dw = sgn * ci
            dte2 = dw * (2.0 * g[i, col] + dw * covs[p, i, i])
            wi = ng[i, col] * ci
            wn = (ng[i, col] + sgn) * ci
            dpen = k[t, i] * (abs(wn - w0[i, col]) - abs(wi - w0[i, col]))
            value = math.sqrt(max(te2 + dte2, 0.0)) + shadow_cost * (penalty + dpen)
            if value < best:
                best = value
                bi = i
                b_dir = sgn
                b_dw = dw
                b_dte2 = dte2
                b_dpen = dpen
        if bi < 0:
            break
        ng[bi, col] += b_dir
        te2 += b_dte2
        penalty += b_dpen
        current = best
        for j in range(N):
            g[j, col] += covs[p, j, bi] * b_dw
        steps += 1
    return steps


def buffered_position(held, x, band):
    """Carver's position buffer (:func:`cpu_ref.dynopt_static.buffered_position_1d_nb`)."""
    top = round_half_even(x + band * abs(x))
    bot = round_half_even(x - band * abs(x))
    if held > top:
        return top
    if held < bot:
        return bot
    return held


def static_day(dprice, notional, cost, w_star, t, rebalance, capital, band, ns, col, N):
    """One day of the static positions ``ns[:, col]``: returns (P&L of yesterday's positions,
    contracts traded, cost of the trades).
    """
    pnl = 0.0
    if t > 0:
        for i in range(N):
            pnl += ns[i, col] * dprice[t, i]
    traded = 0.0
    day_cost = 0.0
    if rebalance:
        for i in range(N):
            x = 0.0
            if notional[t, i] > 0.0:
                x = w_star[t, i] * capital / notional[t, i]
            new = buffered_position(ns[i, col], x, band)
            q = abs(new - ns[i, col])
            traded += q
            day_cost += q * cost[t, i]
            ns[i, col] = new
    return pnl, traded, day_cost


def write_metrics(out, row, base, mean, m2, T, ann, turnover, te_sum, te_cnt, costs_paid,
                  capital, with_alpha, a_sum, a_cnt):
    """Metrics from the online sums into ``out[row, base:]`` (order of ``METRICS``; without
    ``avg_adjustment_factor`` when not ``with_alpha``, the order of ``STATIC_METRICS``).
    """
    std = math.sqrt(m2 / (T - 1)) if T > 1 else _NAN
    sq = math.sqrt(ann)
    out[row, base + Metric.mean_return] = mean * ann
    out[row, base + Metric.volatility] = std * sq
    out[row, base + Metric.sharpe] = mean / std * sq if std > 0.0 else _NAN
    out[row, base + Metric.contracts_per_year] = turnover * ann / T
    out[row, base + Metric.avg_tracking_error] = te_sum / te_cnt if te_cnt > 0 else _NAN
    shift = 0
    if with_alpha:
        out[row, base + Metric.avg_adjustment_factor] = a_sum / a_cnt if a_cnt > 0 else _NAN
    else:
        shift = 1
    out[row, base + Metric.costs - shift] = costs_paid / capital
    out[row, base + Metric.annual_cost - shift] = costs_paid / capital * ann / T


def simulate_one(inp, masks, mi, params, ann, max_steps, scratch, col, out, row, rec, record):
    """Simulate one combination; write its metrics (order of ``METRICS``, then
    ``STATIC_METRICS`` when the static comparison is on) to ``out[row]`` and, when ``record``,
    the contracts held after each day's trades to ``rec[:, :, row]``.

    ``inp`` :class:`Inputs`; ``masks[mi]`` (T,) rebalance days; ``params = (capital,
    shadow_cost, buffer, no_trade_rule, band)`` with ``band < 0`` for no static comparison;
    ``max_steps`` greedy safeguard; ``scratch`` :class:`Scratch` (or the same tuple), column
    ``col``.
    """
    dprice, notional, cost, k, w_star, covs, cov_id = inp
    capital, shadow_cost, buffer, no_trade, band = params
    n, ng, c, w0, g, d, ns = scratch
    static = band >= 0.0
    T = dprice.shape[0]
    N = dprice.shape[1]
    for i in range(N):
        n[i, col] = 0.0
        ns[i, col] = 0.0
    mean = 0.0
    m2 = 0.0
    turnover = 0.0
    costs_paid = 0.0
    te_sum = 0.0
    te_cnt = 0
    a_sum = 0.0
    a_cnt = 0
    s_mean = 0.0
    s_m2 = 0.0
    s_turnover = 0.0
    s_costs = 0.0
    s_te_sum = 0.0
    for t in range(T):
        p = cov_id[t]
        pnl = 0.0
        if t > 0:
            for i in range(N):
                pnl += n[i, col] * dprice[t, i]
        in_opt = False
        for i in range(N):
            x = notional[t, i]
            if x > 0.0:
                c[i, col] = x / capital
                in_opt = True
            else:
                c[i, col] = 0.0
        day_cost = 0.0
        if masks[mi, t]:
            for i in range(N):
                w0[i, col] = n[i, col] * c[i, col]
            keep = False
            if no_trade:  # pysystemtrade: TE(previous vs unrounded optimum) < B: no trade
                for i in range(N):
                    d[i, col] = w0[i, col] - w_star[t, i]
                keep = math.sqrt(max(quad_form(covs, p, d, col, N), 0.0)) < buffer
            if not keep:
                greedy(covs, p, w_star, k, t, c, w0, ng, g, col, N, shadow_cost, max_steps)
                if no_trade:  # ... and an all-zero greedy answer keeps the previous positions
                    keep = True
                    for i in range(N):
                        if ng[i, col] != 0.0:
                            keep = False
            alpha = 0.0
            if keep:
                for i in range(N):
                    ng[i, col] = n[i, col]
            else:
                for i in range(N):
                    d[i, col] = w0[i, col] - ng[i, col] * c[i, col]
                te_prior = math.sqrt(max(quad_form(covs, p, d, col, N), 0.0))
                if te_prior > TE_ZERO:
                    alpha = max((te_prior - buffer) / te_prior, 0.0)
                    a_sum += alpha
                    a_cnt += 1
            for i in range(N):
                old = n[i, col]
                new = 0.0
                if c[i, col] > 0.0:
                    new = old + round_half_even(alpha * (ng[i, col] - old))
                traded = abs(new - old)
                turnover += traded
                day_cost += traded * cost[t, i]
                n[i, col] = new
        if record:
            for i in range(N):
                rec[t, i, row] = n[i, col]
        if in_opt:
            for i in range(N):
                d[i, col] = n[i, col] * c[i, col] - w_star[t, i]
            te_sum += math.sqrt(max(quad_form(covs, p, d, col, N), 0.0))
            te_cnt += 1
        costs_paid += day_cost
        r = (pnl - day_cost) / capital
        delta = r - mean
        mean += delta / (t + 1)
        m2 += delta * (r - mean)
        if static:
            s_pnl, s_traded, s_cost = static_day(dprice, notional, cost, w_star, t, masks[mi, t],
                                                 capital, band, ns, col, N)
            s_turnover += s_traded
            s_costs += s_cost
            if in_opt:
                for i in range(N):
                    d[i, col] = ns[i, col] * c[i, col] - w_star[t, i]
                s_te_sum += math.sqrt(max(quad_form(covs, p, d, col, N), 0.0))
            r = (s_pnl - s_cost) / capital
            delta = r - s_mean
            s_mean += delta / (t + 1)
            s_m2 += delta * (r - s_mean)
    write_metrics(out, row, 0, mean, m2, T, ann, turnover, te_sum, te_cnt, costs_paid, capital,
                  True, a_sum, a_cnt)
    if static:
        write_metrics(out, row, N_METRICS, s_mean, s_m2, T, ann, s_turnover, s_te_sum, te_cnt,
                      s_costs, capital, False, 0.0, 0)


BODIES = ("round_half_even", "quad_form", "greedy", "buffered_position", "static_day",
          "write_metrics", "simulate_one")


def compile_bodies(jit):
    """Compile the step bodies with ``jit`` (``njit`` here, ``cuda.jit(device=True)`` in
    :mod:`gpusim.dynopt.cuda`); see :func:`cpu_ref.jitting.compile_bodies`.
    """
    return _compile_bodies(jit, globals(), BODIES)


_nb = compile_bodies(njit(cache=True))
round_half_even_nb = _nb["round_half_even"]
greedy_nb = _nb["greedy"]
simulate_one_nb = _nb["simulate_one"]


# --------------------------------------------------------------------------------------------
# Host-side input checks (shared by the CPU and GPU entry points)
# --------------------------------------------------------------------------------------------

def prepare_inputs(dprice, notional, cost, k, w_star, covs, cov_id, masks, mid, capitals,
                   shadow_costs, buffers, ann):
    """Coerce and check the kernel inputs; returns them as a tuple in the kernel's order.

    Arrays become C-contiguous float64 / int64 / bool host arrays; scalar ``mid``,
    ``capitals``, ``shadow_costs`` and ``buffers`` broadcast to the longest of them. Raises
    ``ValueError`` on inconsistent shapes, non-finite inputs, out-of-range indices, capital
    <= 0, or negative shadow costs / buffers / costs.
    """
    arrs = [np.ascontiguousarray(a, dtype=np.float64) for a in (dprice, notional, cost, k,
                                                                w_star)]
    T, N = arrs[0].shape
    for name, a in zip(("dprice", "notional", "cost", "k", "w_star"), arrs):
        if a.shape != (T, N):
            raise ValueError(f"{name} must be ({T}, {N}), got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} must be finite (use 0 where an instrument has no data)")
    if np.any(arrs[2] < 0) or np.any(arrs[3] < 0):
        raise ValueError("cost and k must be >= 0")
    covs = np.ascontiguousarray(covs, dtype=np.float64)
    if covs.ndim == 2:
        covs = covs.reshape(1, N, N)
    if covs.ndim != 3 or covs.shape[1:] != (N, N) or not np.all(np.isfinite(covs)):
        raise ValueError(f"covs must be finite (P, {N}, {N}), got shape {covs.shape}")
    cov_id = np.ascontiguousarray(np.broadcast_to(np.asarray(cov_id, dtype=np.int64), (T,)))
    if cov_id.min() < 0 or cov_id.max() >= covs.shape[0]:
        raise ValueError(f"cov_id must index covs (0..{covs.shape[0] - 1})")
    masks = np.ascontiguousarray(masks, dtype=np.bool_)
    if masks.ndim == 1:
        masks = masks.reshape(1, -1)
    if masks.ndim != 2 or masks.shape[1] != T:
        raise ValueError(f"masks must be (M, {T}), got shape {masks.shape}")
    vecs = [np.atleast_1d(np.asarray(v)) for v in (mid, capitals, shadow_costs, buffers)]
    C = max(v.shape[0] for v in vecs)
    mid, capitals, shadow_costs, buffers = (
        np.ascontiguousarray(np.broadcast_to(v, (C,)), dtype=dt)
        for v, dt in zip(vecs, (np.int64, np.float64, np.float64, np.float64)))
    if C and (mid.min() < 0 or mid.max() >= masks.shape[0]):
        raise ValueError(f"mid must index rows of masks (0..{masks.shape[0] - 1})")
    if C and not (np.all(capitals > 0) and np.all(np.isfinite(capitals))):
        raise ValueError("capitals must be finite and > 0")
    for name, v in (("shadow_costs", shadow_costs), ("buffers", buffers)):
        if C and not (np.all(v >= 0) and np.all(np.isfinite(v))):
            raise ValueError(f"{name} must be finite and >= 0")
    ann = float(ann)
    if not (ann > 0 and math.isfinite(ann)):
        raise ValueError("ann must be finite and > 0")
    return (*arrs, covs, cov_id, masks, mid, capitals, shadow_costs, buffers, ann)
