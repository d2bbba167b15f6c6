"""A dedicated primal active-set solver for the two exact baselines of :mod:`gpusim.mvo`.

Both problems have one structure: every asset ``i`` is *free* or held at one of its bounds, and
the bounds are the only inequalities.

* min variance (``homogeneous=False``): minimise ``w'Qw`` s.t. ``1'w = 1``, ``lo <= w <= hi``.
  An asset at a bound has ``w_i = c_i`` (``lo_i`` or ``hi_i``).
* max Sharpe (``homogeneous=True``): minimise ``y'Qy`` s.t. ``a'y = 1``, ``1'y = kappa``,
  ``lo kappa <= y <= hi kappa`` (``a`` the excess means); ``w = y / kappa``. An asset at a bound
  has ``y_i = c_i kappa``.

For a working set (which assets are held at which bound) the equality-constrained problem in
the free variables ``z = (y_F[, kappa])`` is one small dense KKT solve of size ``n_F + 1 + 2``,
so an iteration costs ``O(n_F^3 + A n_F)`` instead of the ``O(A^3)`` of a general solver; the
multiplier of a held bound is ``r_i = (Qy)_i - nu_1 a_i - nu_2`` (``>= 0`` at a lower bound,
``<= 0`` at an upper one). The iteration is Nocedal & Wright's Algorithm 16.3: start at a feasible
vertex (greedy fill), step to the subspace minimiser or to the first bound that blocks it (which
joins the working set), and at a subspace minimiser release the held bound with the most
negative multiplier; stop when none is negative. Long-only answers are sparse, so ``n_F`` stays
small and the whole solve is a few milliseconds at A = 400.

:func:`solve` returns None whenever it cannot vouch for its answer (an asset with an infinite
lower bound but a finite upper one, a singular KKT system, no convergence, a KKT residual above
:data:`KKT_TOL`); the caller then falls back to cvxpy.
"""

from __future__ import annotations

import numpy as np

__all__ = ["KKT_TOL", "kkt_residual", "solve"]

KKT_TOL = 1e-9
"""Largest accepted KKT residual (scaled problem: stationarity, feasibility, multiplier sign)."""
_FREE, _LO, _HI = 0, 1, 2
_MAX_ITER_PER_ASSET = 10
_MULT_TOL = 1e-12  # a multiplier below -_MULT_TOL * (1 + |Qy|max) releases its bound
_STEP_TOL = 1e-15  # relative slack under which a free asset counts as sitting on its bound


def _start(lo, hi, order):
    """A feasible vertex: every asset at ``lo`` (or free when unbounded both ways), then raised
    to ``hi`` in ``order`` until the weights sum to 1. Returns (w (A,), state (A,) int8).
    """
    both = np.isneginf(lo) & np.isposinf(hi)
    state = np.where(both, _FREE, _LO).astype(np.int8)
    w = np.where(both, 0.0, lo)
    left = 1.0 - w.sum()
    if both.any():
        w[order[0]] += left  # every asset is unbounded (see solve)
        return w, state
    last = None
    for i in order:
        if left <= 0:
            break
        take = min(hi[i] - lo[i], left)
        w[i] += take
        left -= take
        state[i] = _HI if w[i] >= hi[i] else _FREE
        last = i
    if last is None:  # the lower bounds already sum to 1
        last = order[0]
    state[last] = _FREE  # one free asset keeps the equality system square at a vertex
    return w, state


def _subspace_min(q, a, state, c, homogeneous):
    """Minimiser of the problem with the held assets fixed. Returns (y (A,), kappa, nu (2,)) or
    None when the KKT system is singular.
    """
    free = state == _FREE
    f = np.flatnonzero(free)
    ch = np.where(free, 0.0, c)  # c on the held assets, 0 on the free ones
    u = q @ ch  # one mat-vec instead of gathering the large held block
    qfb = u[f]
    nf = f.size
    if homogeneous:  # z = (y_F, kappa); rows a'y = 1, 1'y - kappa = 0
        m = np.empty((nf + 3, nf + 3))
        m[:nf, :nf] = q[np.ix_(f, f)]
        m[:nf, nf] = m[nf, :nf] = qfb
        m[nf, nf] = ch @ u
        ca = np.append(a[f], a @ ch)
        c1 = np.append(np.ones(nf), ch.sum() - 1.0)
        m[:nf + 1, nf + 1], m[:nf + 1, nf + 2] = ca, c1
        m[nf + 1, :nf + 1], m[nf + 2, :nf + 1] = ca, c1
        m[nf + 1:, nf + 1:] = 0.0
        rhs = np.zeros(nf + 3)
        rhs[nf + 1] = 1.0
    else:  # z = y_F; row 1'y_F = 1 - sum(c_B)
        m = np.empty((nf + 1, nf + 1))
        m[:nf, :nf] = q[np.ix_(f, f)]
        m[:nf, nf] = m[nf, :nf] = 1.0
        m[nf, nf] = 0.0
        rhs = np.append(-qfb, 1.0 - ch.sum())
    try:
        sol = np.linalg.solve(m, rhs)
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(sol)):
        return None
    kappa = sol[nf] if homogeneous else 1.0
    y = ch * kappa
    y[f] = sol[:nf]
    # stationarity in z reads Q_F y = C' nu; report nu with the sign of the module docstring
    nu = -sol[nf + 1:] if homogeneous else np.array([0.0, -sol[nf]])
    return y, kappa, nu


def _multipliers(q, a, y, nu):
    return q @ y - nu[0] * a - nu[1]


def kkt_residual(q, a, lo, hi, y, kappa, nu, state, homogeneous):
    """Largest violation of the KKT conditions (scaled by 1 + max |Qy|): stationarity on the
    free assets, the equalities, the bounds, and the sign of the held bounds' multipliers.
    """
    r = _multipliers(q, a, y, nu)
    scale = 1.0 + np.abs(q @ y).max()
    free, low, high = state == _FREE, state == _LO, state == _HI
    fin_lo, fin_hi = np.where(np.isfinite(lo), lo, -1e300), np.where(np.isfinite(hi), hi, 1e300)
    k = kappa if homogeneous else 1.0
    viol = [np.abs(r[free]).max(initial=0.0) / scale,
            np.maximum(-r[low], 0.0).max(initial=0.0) / scale,
            np.maximum(r[high], 0.0).max(initial=0.0) / scale,
            np.maximum(fin_lo * k - y, 0.0).max(initial=0.0),
            np.maximum(y - fin_hi * k, 0.0).max(initial=0.0),
            abs(y.sum() - k)]
    if homogeneous:
        viol += [abs(a @ y - 1.0), max(-kappa, 0.0)]
    return float(max(viol))


def solve(q, a, lo, hi, homogeneous):
    """Solve the scaled problem of the module docstring.

    Parameters
    ----------
    q : np.ndarray, shape (A, A)
        Symmetric positive (semi-)definite matrix, O(1) scale.
    a : np.ndarray, shape (A,)
        Excess means, O(1) scale (used when ``homogeneous``; ignored otherwise).
    lo, hi : np.ndarray, shape (A,)
        Weight bounds; ``lo`` finite, or both infinite for every asset.
    homogeneous : bool
        Max Sharpe (True) or min variance (False).

    Returns
    -------
    (w (A,), kkt residual) or None
        The optimal weights summing to 1, or None when the answer cannot be vouched for.
    """
    n = q.shape[0]
    both = np.isneginf(lo) & np.isposinf(hi)
    if not (np.all(np.isfinite(lo)) or both.all()):
        return None
    if homogeneous:
        order = np.argsort(-a, kind="stable")
    else:
        order = np.argsort(np.diag(q), kind="stable")
    w, state = _start(lo, hi, order)
    if homogeneous:
        aw = a @ w
        if not aw > 0:
            return None
        y, kappa = w / aw, 1.0 / aw
    else:
        y, kappa = w, 1.0
    fin_lo, fin_hi = np.where(np.isfinite(lo), lo, 0.0), np.where(np.isfinite(hi), hi, 0.0)
    has_lo, has_hi = np.isfinite(lo), np.isfinite(hi)
    for _ in range(_MAX_ITER_PER_ASSET * n + 50):
        c = np.where(state == _HI, fin_hi, fin_lo)
        sub = _subspace_min(q, a, state, c, homogeneous)
        if sub is None:
            return None
        y_new, k_new, nu = sub
        py, pk = y_new - y, k_new - kappa
        # blocking bounds of the free assets: slack s = y - lo k (>= 0), decreasing by ds
        alpha, block, to = 1.0, -1, _FREE
        f = np.flatnonzero(state == _FREE)
        for has, bnd, sign, tag in ((has_lo, fin_lo, 1.0, _LO), (has_hi, fin_hi, -1.0, _HI)):
            g = f[has[f]]
            if not g.size:
                continue
            slack = sign * (y[g] - bnd[g] * kappa)
            ds = sign * (py[g] - bnd[g] * pk)
            dec = ds < 0
            if not dec.any():
                continue
            ratio = np.maximum(slack[dec], 0.0) / -ds[dec]
            j = int(np.argmin(ratio))
            if ratio[j] < alpha:
                alpha, block, to = float(ratio[j]), int(g[dec][j]), tag
        if homogeneous and pk < 0 and kappa + pk <= 0:
            if -kappa / pk <= alpha:
                return None  # kappa would reach 0: leave it to the general solver
        y, kappa = y + alpha * py, kappa + alpha * pk
        if block >= 0:
            state[block] = to
            y[block] = (fin_lo if to == _LO else fin_hi)[block] * kappa
            continue
        r = _multipliers(q, a, y, nu)
        tol = _MULT_TOL * (1.0 + np.abs(q @ y).max())
        viol = np.where(state == _LO, -r, np.where(state == _HI, r, 0.0))
        j = int(np.argmax(viol))
        if viol[j] <= tol:
            res = kkt_residual(q, a, lo, hi, y, kappa, nu, state, homogeneous)
            if res > KKT_TOL:
                return None
            w = y / kappa
            return w, res
        state[j] = _FREE
    return None
