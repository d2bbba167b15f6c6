"""Exact max-Sharpe with weight bounds, linear rows (groups, beta, budget) and optional cash, as
ONE parametrised cvxpy problem re-solved date after date (the walk-forward's exact method).

Formulation (homogeneous, as :func:`gpusim.mvo.max_sharpe`): with ``m = ann mu - rf`` (annual
excess means) and a factor ``F`` of the covariance (``w' cov w = |F w|²``), minimise ``|F y|²``
subject to ``m' y = 1``, ``kappa >= 0``, ``lo kappa <= y <= hi kappa``,
``gl kappa <= G y <= gu kappa`` (equality rows: ``G y = g kappa``) and ``sum(y) = kappa`` (fully
invested) or ``sum(y) <= kappa`` (cash allowed); the weights are ``w = y / kappa``. Every input
is a ``cp.Parameter`` (DPP), so cvxpy compiles the problem once per structure and each date only
updates values; solves pass ``warm_start=True`` (used by solvers that support it). Infinite row
bounds become finite values that cannot bind (``|G_m w| <= sum |G_m|`` for weights in the
simplex). With cash allowed the optimal direction is scaled to the largest investment the
constraints allow (:func:`gpusim.walkforward.constraint_plan.max_scale`), as the random search does.

A date that cannot be solved (infeasible constraints, no positive expected excess return, solver
failure) returns ``(None, status)``; the caller keeps the previous weights. cvxpy is imported
lazily, inside :class:`ExactMaxSharpe`.
"""

from __future__ import annotations

import warnings

import numpy as np

from gpusim.errors import SolverError
from gpusim.walkforward.constraint_plan import max_scale

__all__ = ["SOLVER_PREFERENCE", "ExactMaxSharpe"]

SOLVER_PREFERENCE = ("CLARABEL", "OSQP", "SCS", "ECOS")
_OPTIONS = {
    "CLARABEL": {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10, "max_iter": 500},
    "OSQP": {"eps_abs": 1e-10, "eps_rel": 1e-10, "max_iter": 200_000},
    "SCS": {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 200_000},
    "ECOS": {"abstol": 1e-10, "reltol": 1e-10, "feastol": 1e-10, "max_iters": 500},
}
_OK = ("optimal", "optimal_inaccurate")
TIGHT_OPTIONS = {**_OPTIONS, "CLARABEL": {"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12,
                                          "tol_feas": 1e-12, "max_iter": 500}}
"""Options with second-order cones (risk caps; the non-Sharpe objectives): on a cone the
weights are accurate to about the square root of the gap tolerance, so Clarabel goes to 1e-12
(1e-10 leaves ~1e-6 errors in the weights)."""


def pick_solvers(solver, conic: bool) -> list[str]:
    """The cvxpy solvers to try, in order: ``solver`` alone, or the installed ones of
    :data:`SOLVER_PREFERENCE` (without OSQP when the problem has cones: not a conic solver).
    """
    import cvxpy as cp

    installed = cp.installed_solvers()
    if solver is not None:
        if str(solver).upper() not in installed:
            raise SolverError(f"solver={solver!r} is not installed; installed cvxpy solvers: "
                              f"{', '.join(installed)}")
        return [str(solver).upper()]
    out = [s for s in SOLVER_PREFERENCE if s in installed and not (conic and s == "OSQP")]
    if not out:
        raise SolverError("no suitable cvxpy solver is installed; pip install clarabel")
    return out


def set_rows(p, G, gl, gu, caps) -> None:
    """Parameter values of the linear rows (infinite bounds made finite and slack:
    ``|G_m w| <= sum |G_m|`` for weights in the simplex) and of the cone caps of problem ``p``
    (an :class:`ExactMaxSharpe` or ``ExactObjective``).
    """
    if p.Mi or p.Me:
        big = np.abs(G).sum(axis=1) + 1.0
        if p.Mi:
            ii = ~p.eq
            p.Gi.value = G[ii]
            p.gli.value = np.where(np.isfinite(gl[ii]), gl[ii], -big[ii])
            p.gui.value = np.where(np.isfinite(gu[ii]), gu[ii], big[ii])
        if p.Me:
            p.Ge.value = G[p.eq]
            p.ge.value = gu[p.eq]
    for (C, c), (Cv, cv) in zip(p.caps, caps):
        C.value, c.value = Cv, cv


def solve_chain(prob, solvers, options) -> tuple[str | None, str | None]:
    """Solve ``prob`` (warm-started) with each solver in turn until one gives an answer or a
    definite infeasible/unbounded status.

    Returns
    -------
    (status, None) when ``status`` is optimal (or optimal_inaccurate); (None, reason) otherwise,
    reason ``"infeasible"``, ``"unbounded"`` or ``"solver_error: ..."`` (what each solver did).
    """
    status, tried = None, []
    for name in solvers:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                prob.solve(solver=name, warm_start=True, **options.get(name, {}))
            status = str(prob.status)
        except Exception as exc:  # cvxpy.error.SolverError and solver-specific failures
            tried.append(f"{name} raised {type(exc).__name__}")
            continue
        if status in _OK or status.startswith(("infeasible", "unbounded")):
            break
        tried.append(f"{name} returned {status}")
    if status is not None and status in _OK:
        return status, None
    if status is not None and status.startswith(("infeasible", "unbounded")):
        return None, status.split("_")[0]
    return None, "solver_error: " + "; ".join(tried)


class ExactMaxSharpe:
    """A max-Sharpe problem for ``A`` assets and fixed row structure.

    Parameters
    ----------
    A : number of assets.
    eq_rows : (M,) bool, which linear rows are equalities (the structure of the problem).
    cash : weights may sum to less than 1.
    solver : cvxpy solver name, or None for Clarabel with fallback to OSQP, SCS, ECOS.
    cap_rows : row counts of the risk caps ``|C w - c| <= 1``, homogeneous:
        ``|C y - c kappa| <= kappa`` (fully invested only).
    """

    def __init__(self, A: int, eq_rows, cash: bool, solver: str | None = None, cap_rows=()):
        import cvxpy as cp

        eq_rows = np.asarray(eq_rows, dtype=bool)
        self.A, self.eq, self.cash = int(A), eq_rows, bool(cash)
        self.solvers = pick_solvers(solver, conic=bool(len(cap_rows)))
        Mi, Me = int((~eq_rows).sum()), int(eq_rows.sum())
        self.y = cp.Variable(A)
        self.k = cp.Variable()
        self.F = cp.Parameter((A, A))
        self.m = cp.Parameter(A)
        self.lo = cp.Parameter(A)
        self.hi = cp.Parameter(A)
        cons = [self.m @ self.y == 1, self.k >= 0, self.y >= cp.multiply(self.lo, self.k),
                self.y <= cp.multiply(self.hi, self.k),
                (cp.sum(self.y) <= self.k) if cash else (cp.sum(self.y) == self.k)]
        if Mi:
            self.Gi = cp.Parameter((Mi, A))
            self.gli = cp.Parameter(Mi)
            self.gui = cp.Parameter(Mi)
            cons += [self.Gi @ self.y >= cp.multiply(self.gli, self.k),
                     self.Gi @ self.y <= cp.multiply(self.gui, self.k)]
        if Me:
            self.Ge = cp.Parameter((Me, A))
            self.ge = cp.Parameter(Me)
            cons += [self.Ge @ self.y == cp.multiply(self.ge, self.k)]
        self.caps = [(cp.Parameter((r, A)), cp.Parameter(r)) for r in cap_rows]
        cons += [cp.norm(C @ self.y - c * self.k, 2) <= self.k for C, c in self.caps]
        self.prob = cp.Problem(cp.Minimize(cp.sum_squares(self.F @ self.y)), cons)
        self.Mi, self.Me = Mi, Me

    def solve(self, F, mex, lo, hi, G, gl, gu, caps=()):
        """Max-Sharpe weights for one date.

        Parameters
        ----------
        F : (A, A) covariance factor (``w' cov w = |F w|²``, any scale).
        mex : (A,) annual excess means ``ann mu - rf``.
        lo, hi : (A,) weight bounds; G (M, A), gl, gu (M,) rows (``+-inf``: no bound).
        caps : [(C (k, A), c (k,))] values of the risk caps (as many as ``cap_rows``).

        Returns
        -------
        (weights (A,) host array, status) on success; (None, status) otherwise, status one of
        ``"no_positive_excess_return"``, ``"infeasible"``, ``"unbounded"``, ``"not_attained"``,
        ``"solver_error: ..."``.
        """
        mex = np.asarray(mex, dtype=float)
        if not np.max(mex) > 0:
            return None, "no_positive_excess_return"
        lo = np.asarray(lo, dtype=float)
        hi = np.minimum(np.asarray(hi, dtype=float), 1.0)
        self.F.value = F / max(np.abs(F).max(), 1e-300)
        self.m.value = mex / np.abs(mex).max()
        self.lo.value = lo
        self.hi.value = hi
        set_rows(self, G, gl, gu, caps)
        status, why = solve_chain(self.prob, self.solvers, TIGHT_OPTIONS if self.caps else _OPTIONS)
        if status is None:
            return None, why
        y, k = np.asarray(self.y.value, dtype=float), float(self.k.value)
        if not (np.isfinite(y).all() and k > 1e-12 * max(np.abs(y).sum(), 1e-300)):
            return None, "not_attained"
        w = np.clip(y / k, lo, hi)
        tot = w.sum()
        if not tot > 0:
            return None, "not_attained"
        w = w / tot
        if self.cash:
            w = w * max_scale(w, lo, hi, G, gl, gu)
        return w, status

    @property
    def M(self) -> int:
        return self.Mi + self.Me
