"""Exact walk-forward problems for the objectives other than max Sharpe (DESIGN §7): one
parametrised cvxpy problem per structure, re-solved date after date (warm-started), in the
weights ``w`` directly.

``min_variance``   minimise ``w' cov w``
``max_return``     maximise ``m . w`` (``m = ann mu - rf``; a volatility or tracking-error cap
                   makes it PyPortfolioOpt's ``efficient_risk``)
``max_utility``    maximise ``m . w - lam/2 ann w' cov w`` (PyPortfolioOpt's
                   ``max_quadratic_utility`` with ``risk_aversion = lam``)

subject to ``lo <= w <= hi``, ``gl <= G w <= gu`` (equality rows exactly), ``sum(w) = 1`` (or
``<= 1`` with cash allowed) and the cone caps ``|C_k w - c_k| <= 1`` (a volatility cap ``v``:
``C = sqrt(ann) F / v``, ``c = 0``; a tracking-error cap, :mod:`gpusim.walkforward.caps`).
Every input is a ``cp.Parameter`` (DPP): cvxpy compiles the problem once per structure.
"""

from __future__ import annotations

import numpy as np

from gpusim.walkforward.exact import TIGHT_OPTIONS, pick_solvers, set_rows, solve_chain

__all__ = ["ExactObjective"]


class ExactObjective:
    """One objective (``"min_variance"``, ``"max_return"`` or ``"max_utility"``) for ``A``
    assets with equality structure ``eq_rows`` (M,), cash allowed or not, and ``cap_rows`` (the
    row count of each cone cap, e.g. ``[A, A + 1]`` for a volatility and a tracking-error cap).
    """

    def __init__(self, A: int, eq_rows, cash: bool, objective: str, cap_rows=(),
                 solver: str | None = None):
        import cvxpy as cp

        eq_rows = np.asarray(eq_rows, dtype=bool)
        self.A, self.eq, self.cash, self.objective = int(A), eq_rows, bool(cash), objective
        self.solvers = pick_solvers(solver, conic=True)
        self.w = w = cp.Variable(A)
        self.F = cp.Parameter((A, A))
        self.m = cp.Parameter(A)
        self.lo = cp.Parameter(A)
        self.hi = cp.Parameter(A)
        cons = [w >= self.lo, w <= self.hi, (cp.sum(w) <= 1) if cash else (cp.sum(w) == 1)]
        Mi, Me = int((~eq_rows).sum()), int(eq_rows.sum())
        if Mi:
            self.Gi, self.gli, self.gui = (cp.Parameter((Mi, A)), cp.Parameter(Mi),
                                           cp.Parameter(Mi))
            cons += [self.Gi @ w >= self.gli, self.Gi @ w <= self.gui]
        if Me:
            self.Ge, self.ge = cp.Parameter((Me, A)), cp.Parameter(Me)
            cons += [self.Ge @ w == self.ge]
        self.caps = [(cp.Parameter((k, A)), cp.Parameter(k)) for k in cap_rows]
        cons += [cp.norm(C @ w - c, 2) <= 1 for C, c in self.caps]
        if objective == "min_variance":
            goal = cp.Minimize(cp.sum_squares(self.F @ w))
        elif objective == "max_return":
            goal = cp.Maximize(self.m @ w)
        elif objective == "max_utility":
            goal = cp.Minimize(cp.sum_squares(self.F @ w) - self.m @ w)
        else:
            raise ValueError(objective)
        self.prob = cp.Problem(goal, cons)
        self.Mi, self.Me = Mi, Me

    def solve(self, F, mex, lo, hi, G, gl, gu, caps=(), ann=1.0, lam=0.0):
        """Optimal weights for one date.

        Parameters
        ----------
        F : (A, A) factor of the per-bar covariance (``w' cov w = |F w|²``).
        mex : (A,) annual excess means; lo, hi (A,); G (M, A), gl, gu (M,) rows.
        caps : [(C (k, A), c (k,))] cone caps ``|C w - c| <= 1`` (as many as ``cap_rows``).
        ann : periods per year; lam : risk aversion (max_utility).

        Returns
        -------
        (weights (A,), status) or (None, status) as :meth:`ExactMaxSharpe.solve`.
        """
        mex = np.asarray(mex, dtype=float)
        if self.objective == "min_variance":
            self.F.value = F / max(np.abs(F).max(), 1e-300)
            self.m.value = np.zeros(self.A)
        elif self.objective == "max_return":
            self.F.value = np.zeros((self.A, self.A))
            self.m.value = mex / max(np.abs(mex).max(), 1e-300)
        else:
            Fu = np.sqrt(0.5 * lam * ann) * F
            c = 1.0 / max(np.abs(mex).max(), np.abs(Fu).max() ** 2, 1e-300)
            self.F.value = np.sqrt(c) * Fu
            self.m.value = c * mex
        self.lo.value = np.asarray(lo, dtype=float)
        self.hi.value = np.minimum(np.asarray(hi, dtype=float), 1.0)
        set_rows(self, G, gl, gu, caps)
        status, why = solve_chain(self.prob, self.solvers, TIGHT_OPTIONS)
        if status is None:
            return None, why
        w = np.asarray(self.w.value, dtype=float)
        if not np.isfinite(w).all():
            return None, "not_attained"
        return np.clip(w, self.lo.value, self.hi.value), status
