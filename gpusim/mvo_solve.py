"""The solvers behind :mod:`gpusim.mvo`: the cvxpy chain (Clarabel, then the other installed
QP-capable solvers; an active-set polish of each answer) and the dedicated active-set solver
(:mod:`gpusim.activeset`) run with one BLAS thread. Moved out of ``mvo`` to keep modules short.
"""

from __future__ import annotations

import warnings

import numpy as np

from gpusim.errors import SolverError

ONE_THREAD_MAX = 1000
"""Up to this many assets the active-set solver runs with one BLAS thread."""
ACTIVE_SET = "ACTIVE_SET"
_CVXPY = "CVXPY"

_PREFERENCE = ("CLARABEL", "ECOS", "OSQP", "SCS", "HIGHS")
_OPTIONS = {
    "CLARABEL": dict(tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10, max_iter=500),
    "ECOS": dict(abstol=1e-10, reltol=1e-10, feastol=1e-10, max_iters=500),
    "OSQP": dict(eps_abs=1e-10, eps_rel=1e-10, max_iter=200_000),
    "SCS": dict(eps_abs=1e-9, eps_rel=1e-9, max_iters=200_000),
}
_OK = ("optimal", "optimal_inaccurate")
_DEFINITE = ("infeasible", "unbounded")  # problem-level answers: no fallback


def _candidates(solver):
    import cvxpy as cp

    installed = cp.installed_solvers()
    if solver is None or str(solver).upper().replace("-", "_") in (_CVXPY, ACTIVE_SET):
        found = [s for s in _PREFERENCE if s in installed]
        if not found:
            raise SolverError("no QP-capable cvxpy solver is installed (installed: "
                              f"{', '.join(installed) or 'none'}); pip install clarabel")
        return found
    name = str(solver).upper()
    if name not in installed:
        raise SolverError(f"solver {solver!r} is not installed; installed cvxpy solvers: "
                          f"{', '.join(installed)}; pass one of them or solver=None")
    return [name]


def _solve(prob, solver, what):
    """Solve ``prob`` with the first solver that succeeds; returns (status, solver name)."""
    tried = []
    for name in _candidates(solver):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                prob.solve(solver=name, **_OPTIONS.get(name, {}))
        except Exception as e:  # cvxpy.error.SolverError and solver-specific failures
            tried.append(f"{name} raised {type(e).__name__}")
            continue
        status = str(prob.status)
        if status in _OK or status in _DEFINITE:
            return status, name
        tried.append(f"{name} returned {status}")
    hint = "pass solver=None to try every installed solver" if solver else \
        "check the scale of mu/cov or pass repair='clip'"
    raise SolverError(f"{what} could not be solved ({'; '.join(tried)}); {hint}")


class _QP:
    """min x'Qx s.t. A x = b, G x <= h as ONE cvxpy problem (h is a Parameter, so it can be
    re-solved cheaply), plus an active-set polish of each answer.
    """

    def __init__(self, q, a, b, g, h):
        import cvxpy as cp

        self.q, self.a, self.b, self.g = q, a, b, g
        self.x = cp.Variable(q.shape[0])
        self.h = cp.Parameter(len(h))
        self.h.value = h
        cons = [a @ self.x == b] + ([g @ self.x <= self.h] if len(h) else [])
        self.prob = cp.Problem(cp.Minimize(cp.quad_form(self.x, cp.psd_wrap(q))), cons)

    def solve(self, solver, what):
        """Returns (x or None, status, solver name)."""
        status, used = _solve(self.prob, solver, what)
        if status in _DEFINITE or self.x.value is None:
            return None, status, used
        return self._polish(np.asarray(self.x.value, dtype=float)), status, used

    def _polish(self, x, tol=1e-7):
        """Solve the KKT system with the inequalities active at x as equalities; keep the result
        only if it is feasible, no worse, and its multipliers have the right sign.
        """
        q, h = self.q, self.h.value
        act = h - self.g @ x <= tol * (1 + np.abs(h)) if len(h) else np.zeros(0, bool)
        ae, be = np.vstack([self.a, self.g[act]]), np.concatenate([self.b, h[act]])
        n, m = x.size, len(be)
        kkt = np.block([[2 * q, ae.T], [ae, np.zeros((m, m))]])
        rhs = np.concatenate([np.zeros(n), be])
        try:  # an LU solve; the SVD of lstsq only when the active rows are dependent
            sol = np.linalg.solve(kkt, rhs)
            if not np.allclose(kkt @ sol, rhs, rtol=0.0, atol=1e-12 * (1 + np.abs(rhs).max())):
                raise np.linalg.LinAlgError
        except np.linalg.LinAlgError:
            sol = np.linalg.lstsq(kkt, rhs, rcond=None)[0]
        xn, lam = sol[:n], sol[n + len(self.b):]
        eps = 1e-12 * (1 + np.abs(xn).max())
        ok = (np.all(np.isfinite(sol)) and np.abs(self.a @ xn - self.b).max() <= eps
              and (not len(h) or np.all(self.g @ xn <= h + eps))
              and np.all(lam >= -1e-9 * (1 + np.abs(sol[n:]).max()))
              and xn @ q @ xn <= x @ q @ x + 1e-14 * (1 + abs(x @ q @ x)))
        return xn if ok else x


_CONTROLLER = []  # a threadpoolctl.ThreadpoolController, made once on first use


def _one_blas_thread(n):
    """Context limiting BLAS to one thread when ``n <= ONE_THREAD_MAX`` (no-op otherwise, or
    without threadpoolctl).
    """
    import contextlib

    if n > ONE_THREAD_MAX:
        return contextlib.nullcontext()
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn/scipy
            _CONTROLLER.append(None)
        else:
            _CONTROLLER.append(ThreadpoolController())
    ctl = _CONTROLLER[0]
    return contextlib.nullcontext() if ctl is None else ctl.limit(limits=1, user_api="blas")


def _active_set(solver, q, a, lo, hi, homogeneous, what):
    """Weights from :func:`gpusim.activeset.solve`, or None to go on with cvxpy. ``solver``:
    None (try it), ``"active_set"`` (only it: failure is an error) or a cvxpy name (skip it).
    """
    name = None if solver is None else str(solver).upper().replace("-", "_")
    if name not in (None, ACTIVE_SET):
        return None
    from gpusim import activeset

    out = activeset.solve(q, a, lo, hi, homogeneous)
    if out is None and name == ACTIVE_SET:
        raise SolverError(f"{what}: the active-set solver could not vouch for its answer "
                          "(singular covariance, or an asset with only an upper bound); pass "
                          "solver=None to fall back to cvxpy")
    return None if out is None else out[0]
