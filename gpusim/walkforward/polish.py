"""Polish of an exact solution whose volatility cap binds (the walk-forward's exact method).

Conic solvers stop near the optimum (Clarabel rarely reaches 1e-12 on a cone, and on a cone the
weights are only as accurate as about the square root of the gap). When a volatility cap is
active, every objective but min_variance (max_sharpe, max_return, max_utility) is optimal on
the same curve: with the active set fixed (weights at a bound, active rows ``E w = e`` including
the budget), the first-order conditions give ``w_F = w0 + tau d`` (``d = S^-1 (m - E' P^-1 E
S^-1 m)``, ``w0 = S^-1 (E' P^-1 (E S^-1 c + e) - c)``, ``P = E S^-1 E'``, ``S`` the free block
of ``ann cov`` and ``c`` its cross term with the fixed weights), and the cap fixes ``tau``
(a quadratic). :func:`polish_vol_cap` returns that point when it is feasible and no worse than
the solver's, else the solver's weights.
"""

from __future__ import annotations

import numpy as np

__all__ = ["polish_vol_cap"]

ACTIVE_TOLS = (1e-8, 1e-6, 1e-5)
"""Distances to a bound under which a weight or row is taken as active: each gives an active
set and a candidate point; the best feasible one is kept."""


def polish_vol_cap(w, mex, cov, ann, cap, lo, hi, G, gl, gu, cash, score):
    """The polished weights (A,) (or ``w`` unchanged); ``score(w)`` is the objective (higher
    is better); ``cap`` the volatility cap in force (finite); other arguments as the exact
    problems take them (host arrays).
    """
    S = ann * np.asarray(cov)
    vol = np.sqrt(max(w @ S @ w, 0.0))
    if not vol >= cap * (1 - 1e-5):
        return w                                   # the cap does not bind
    best = w
    feasible_in = (vol <= cap * (1 + 1e-12) and np.all(w >= lo - 1e-12)
                   and np.all(w <= hi + 1e-12) and (cash or abs(w.sum() - 1) <= 1e-12))
    for tol in ACTIVE_TOLS:
        out = _on_curve(w, mex, S, cap, lo, hi, G, gl, gu, cash, tol)
        if out is None:
            continue
        if (best is w and not feasible_in) or score(out) >= score(best) - 1e-12 * max(
                abs(score(best)), 1.0):
            best = out      # feasible, no worse than the solver's (or the solver's is not)
    return best


def _on_curve(w, mex, S, cap, lo, hi, G, gl, gu, cash, tol):
    """The first-order point of the active set at distance ``tol`` (module docstring), when
    it is feasible and near ``w``; else None.
    """
    at_lo, at_hi = w <= lo + tol, w >= hi - tol
    fix = at_lo | at_hi
    Fr = ~fix
    if not Fr.any():
        return None
    wx = np.where(at_lo, lo, np.where(at_hi, hi, w))
    rows, rhs = [], []
    if not cash or w.sum() >= 1 - tol:
        rows.append(np.ones(len(w)))
        rhs.append(1.0)
    v = G @ w if len(gl) else np.zeros(0)
    for m in range(len(gl)):
        for b in (gl[m], gu[m]):
            if np.isfinite(b) and abs(v[m] - b) <= tol:
                rows.append(G[m])
                rhs.append(b)
                break
    try:
        SF = S[np.ix_(Fr, Fr)]
        c = S[np.ix_(Fr, fix)] @ wx[fix]
        k = wx[fix] @ S[np.ix_(fix, fix)] @ wx[fix]
        mF = np.asarray(mex)[Fr]
        Si_m, Si_c = np.linalg.solve(SF, mF), np.linalg.solve(SF, c)
        if rows:
            E = np.array(rows)[:, Fr]
            e = np.array(rhs) - np.array(rows)[:, fix] @ wx[fix]
            Si_Et = np.linalg.solve(SF, E.T)
            P = E @ Si_Et
            d = Si_m - Si_Et @ np.linalg.solve(P, E @ Si_m)
            w0 = Si_Et @ np.linalg.solve(P, E @ Si_c + e) - Si_c
        else:
            d, w0 = Si_m, -Si_c
    except np.linalg.LinAlgError:
        return None
    a = d @ SF @ d
    b = 2.0 * (w0 @ SF @ d + d @ c)
    c0 = w0 @ SF @ w0 + 2.0 * (w0 @ c) + k - cap * cap
    disc = b * b - 4 * a * c0
    if not (a > 0 and disc >= 0):
        return None
    roots = [(-b + sg * np.sqrt(disc)) / (2 * a) for sg in (1.0, -1.0)]
    tau_hat = (w[Fr] - w0) @ d / (d @ d) if d @ d > 0 else 0.0
    tau = min((r for r in roots if r > 0), key=lambda r: abs(r - tau_hat), default=None)
    if tau is None:
        return None
    out = wx.copy()
    out[Fr] = w0 + tau * d
    ok = (np.all(out >= lo - 1e-12) and np.all(out <= hi + 1e-12)
          and np.abs(out - w).max() <= 1e-4
          and np.sqrt(out @ S @ out) <= cap * (1 + 1e-12)
          and (cash or abs(out.sum() - 1) <= 1e-12))
    if len(gl):
        gv = G @ out
        ok = ok and bool(np.all(gv >= gl - 1e-10) and np.all(gv <= gu + 1e-10))
    return out if ok else None
