"""Exact mean-variance baselines (max Sharpe, min variance, efficient frontier) with cvxpy.

The searches of gpusim are compared against these convex solves (DESIGN §5, §9). Inputs are
per-bar statistics on the host: ``mu`` (A,) and ``cov`` (A, A) float64 numpy arrays, ``ann``
periods per year and ``rf`` the annual risk-free rate. For weights w (A,):

    return = ann * mu @ w,   vol = sqrt(ann * w @ cov @ w),   sharpe = (return - rf) / vol

:func:`max_sharpe` and :func:`min_variance` first run a dedicated active-set solver
(:mod:`gpusim.activeset`, BLAS limited to one thread up to :data:`ONE_THREAD_MAX` assets: these
small dense solves only lose to thread start-up, and collapse when the cores are busy); its
answer is accepted only with a KKT residual <= 1e-9 (``solver="ACTIVE_SET"``). Otherwise, or with
``solver="cvxpy"`` or a named cvxpy solver, cvxpy is used: it is imported only inside the
functions below, so ``import gpusim`` stays cheap. Solver order: Clarabel (tolerances 1e-10),
then the other installed QP-capable solvers (OSQP, SCS, HiGHS); every solve's status is checked
and any failure is a one-line :class:`gpusim.errors.SolverError`. Each cvxpy answer is then
polished: the KKT system of the QP is solved with the bounds active at the solver's point held as
equalities, and the result replaces the solver's point only if it is feasible, no worse and has
non-negative multipliers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpusim.errors import SolverError
from gpusim.mvo_solve import (  # noqa: F401  (_OPTIONS: tests patch it through this module)
    _OPTIONS,
    _QP,
    ACTIVE_SET,
    ONE_THREAD_MAX,
    _active_set,
    _one_blas_thread,
    _solve,
)

__all__ = ["ONE_THREAD_MAX", "VOL_FLOOR_RTOL", "Baseline", "efficient_frontier", "max_sharpe",
           "min_variance", "var_floor", "vol_floor"]

VOL_FLOOR_RTOL = 1e-6
"""A portfolio whose ex-ante volatility is at most ``VOL_FLOOR_RTOL`` x the largest asset
volatility has no meaningful Sharpe ratio (its variance is at the level of rounding noise, or an
asset has none): the Sharpe is reported as NaN (undefined), not as a number."""


def vol_floor(cov, ann) -> float:
    """The volatility floor ``VOL_FLOOR_RTOL * sqrt(ann * max_j cov_jj)`` (annual)."""
    d = np.diag(np.asarray(cov, dtype=np.float64))
    return float(VOL_FLOOR_RTOL * np.sqrt(ann * max(float(d.max()), 0.0))) if d.size else 0.0


def var_floor(cov, ann) -> float:
    """The annual variance floor ``vol_floor(cov, ann) ** 2`` of the search kernels: a candidate
    whose ``ann * w' cov w`` is at or below it is riskless (Sharpe undefined) and never ranked.
    Computed once per call on the host and passed to every kernel as the same float64 number.
    """
    return vol_floor(cov, ann) ** 2

_PSD_TOL = 1e-10  # smallest eigenvalue may be >= -_PSD_TOL * largest |eigenvalue|
_SYM_TOL = 1e-10  # max |cov - cov.T| <= _SYM_TOL * max |cov| is symmetrised silently


@dataclass
class Baseline:
    """An exact baseline portfolio.

    Attributes
    ----------
    weights : np.ndarray, shape (A,)
        Portfolio weights (host), summing to 1.
    ret, vol, sharpe : float
        Annualised ex-ante return, volatility and Sharpe ratio (see module docstring); the
        Sharpe is NaN when ``vol`` is at or below :func:`vol_floor` (undefined).
    kind, status, solver : str
        ``"max_sharpe"``/``"min_variance"``; cvxpy status of the accepted solve (``"optimal"``
        or ``"optimal_inaccurate"``); name of the cvxpy solver that produced it.
    """

    weights: np.ndarray
    ret: float
    vol: float
    sharpe: float
    kind: str
    status: str
    solver: str
    symbols: list[str] | None = None
    """The assets' names: from a labelled ``mu`` (Series) or ``cov`` (DataFrame), or set by the
    caller (the search does); None when unknown."""

    def as_series(self, symbols=None):
        """Weights as a ``pandas.Series`` indexed by symbol (``symbols``, else :attr:`symbols`,
        else ``w_0..w_{A-1}``).
        """
        import pandas as pd

        index = _labels(symbols if symbols is not None else self.symbols, len(self.weights))
        return pd.Series(self.weights, index=index, name=self.kind)


# ----------------------------------------------------------------------------- validation
def _labels(symbols, n):
    if symbols is None:
        return [f"w_{i}" for i in range(n)]
    symbols = [str(s) for s in symbols]
    if len(symbols) != n:
        raise SolverError(f"symbols has {len(symbols)} names but there are {n} assets; "
                          "pass one name per asset")
    return symbols


def _first_bad(a):
    return tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])


def _nearest_corr_psd(cov, max_iter=2000, tol=1e-13):
    """Higham (2002) nearest correlation matrix, rescaled to keep the variances of ``cov``."""
    d = np.sqrt(np.diag(cov))
    c = cov / np.outer(d, d)
    y, ds = c.copy(), np.zeros_like(c)
    for _ in range(max_iter):
        r = y - ds
        lam, v = np.linalg.eigh(r)
        x = (v * np.maximum(lam, 0.0)) @ v.T
        ds = x - r
        y_old, y = y, x.copy()
        np.fill_diagonal(y, 1.0)
        if np.linalg.norm(y - y_old) <= tol * np.linalg.norm(y):
            break
    s = np.sqrt(np.clip(np.diag(x), 1e-300, None))  # x is PSD; unit-diagonal rescale keeps it
    x = x / np.outer(s, s)
    return (x + x.T) / 2 * np.outer(d, d)


def _psd_by_cholesky(cov):
    """True when ``cov + _PSD_TOL * max(diag) I`` has a Cholesky factor: then the smallest
    eigenvalue is > -_PSD_TOL * max(diag) >= -_PSD_TOL * max |eigenvalue| (the PSD test below,
    at O(A^3 / 3) instead of an eigendecomposition). False means "ask eigvalsh".
    """
    d = np.diag(cov).max()
    if not d > 0:
        return False
    try:
        np.linalg.cholesky(cov + _PSD_TOL * d * np.eye(cov.shape[0]))
    except np.linalg.LinAlgError:
        return False
    return True


def _check_inputs(mu, cov, ann, rf, repair):
    """Validated (mu (A,), cov (A, A), ann, rf) as float64; repairs cov when asked."""
    try:
        mu, cov = np.array(mu, dtype=float), np.array(cov, dtype=float)
        ann, rf = float(ann), float(rf)
    except (TypeError, ValueError) as e:
        raise SolverError(f"mu, cov, ann and rf must be numeric ({e}); pass float arrays and "
                          "numbers") from None
    if mu.ndim != 1 or cov.ndim != 2 or cov.shape != (mu.size, mu.size) or mu.size == 0:
        raise SolverError(f"mu has shape {mu.shape} and cov has shape {cov.shape}; pass mu as "
                          "(A,) and cov as (A, A) for the same A >= 1 assets")
    for name, a in (("mu", mu), ("cov", cov)):
        if not np.all(np.isfinite(a)):
            raise SolverError(f"{name} contains NaN/inf at index {_first_bad(a)}; "
                              "drop or fill that asset before solving")
    if not (np.isfinite(ann) and ann > 0):
        raise SolverError(f"ann must be a positive number of periods per year, got {ann!r}")
    if not np.isfinite(rf):
        raise SolverError(f"rf must be a finite annual risk-free rate, got {rf!r}")
    if repair not in (None, "clip", "nearest"):
        raise SolverError(f"repair must be None, 'clip' or 'nearest', got {repair!r}")
    scale = max(np.abs(cov).max(), 1e-300)
    asym = np.abs(cov - cov.T).max()
    if asym > _SYM_TOL * scale and repair is None:
        raise SolverError(f"cov is not symmetric (max |cov - cov.T| = {asym:.3g}); fix the "
                          "estimator or pass repair='clip' or repair='nearest' to symmetrise it")
    cov = (cov + cov.T) / 2
    if _psd_by_cholesky(cov):
        return mu, cov, ann, rf
    lam = np.linalg.eigvalsh(cov)
    if lam[0] < -_PSD_TOL * max(np.abs(lam).max(), 1e-300):
        if repair is None:
            raise SolverError(f"cov is not positive semi-definite (smallest eigenvalue "
                              f"{lam[0]:.3g}, largest {lam[-1]:.3g}); pass repair='clip' "
                              "(zero the negative eigenvalues) or repair='nearest' "
                              "(Higham nearest correlation, variances kept)")
        if repair == "nearest":
            if np.any(np.diag(cov) <= 0):
                raise SolverError("cov has a non-positive variance on its diagonal at index "
                                  f"{int(np.argmin(np.diag(cov)))}; repair='nearest' needs "
                                  "positive variances, use repair='clip'")
            cov = _nearest_corr_psd(cov)
        else:
            lam, v = np.linalg.eigh(cov)
            cov = (v * np.maximum(lam, 0.0)) @ v.T
            cov = (cov + cov.T) / 2
    return mu, cov, ann, rf


def check_bounds(bounds, n, long_only, names=None):
    """Per-asset (lo, hi) arrays (A,), +-inf where unbounded; checks that some weights summing
    to 1 fit (also used by the search). ``names`` (A,) labels assets in messages.
    """
    try:
        lo, hi = (None, None) if bounds is None else bounds
    except (TypeError, ValueError):
        raise SolverError(f"bounds must be a pair (lo, hi), got {bounds!r}") from None
    lo = np.full(n, 0.0 if long_only else -np.inf) if lo is None else lo
    hi = np.full(n, np.inf) if hi is None else hi
    try:
        lo = np.broadcast_to(np.asarray(lo, dtype=float), (n,)).copy()
        hi = np.broadcast_to(np.asarray(hi, dtype=float), (n,)).copy()
    except ValueError:
        raise SolverError(f"bounds must be (lo, hi) with scalars or arrays of shape ({n},); "
                          f"got {bounds!r}") from None
    if np.isnan(lo).any() or np.isnan(hi).any():
        raise SolverError("bounds contain NaN; use -inf/inf (or None) for 'no bound'")
    if long_only and np.any(lo < 0):
        raise SolverError(f"bounds allow negative weights (lo={lo.min():g}) but long_only=True; "
                          "short positions need long_only=False (Python API; the command line "
                          "is long-only)")
    bad = np.flatnonzero(lo > hi)
    if bad.size:
        i = int(bad[0])
        who = names[i] if names is not None else f"asset {i}"
        raise SolverError(f"bounds make the simplex empty: lower bound {lo[i]:g} > upper bound "
                          f"{hi[i]:g} for {who}; make lo <= hi")
    if lo.sum() > 1 + 1e-12:
        raise SolverError(f"bounds make the simplex empty: the lower bounds sum to {lo.sum():g} "
                          "> 1; lower them so weights can sum to 1")
    if hi.sum() < 1 - 1e-12:
        raise SolverError(f"bounds make the simplex empty: the upper bounds sum to {hi.sum():g} "
                          "< 1; raise them so weights can sum to 1")
    return lo, hi


def _bound_rows(lo, hi, homogeneous=False):
    """Rows (G, h) of G x <= h for the finite bounds: x = w, or x = (y, kappa) when homogeneous
    (lo*kappa <= y <= hi*kappa).
    """
    eye, il, ih = np.eye(lo.size), np.isfinite(lo), np.isfinite(hi)
    g = np.vstack([-eye[il], eye[ih]])
    if homogeneous:
        g = np.hstack([g, np.concatenate([lo[il], -hi[ih]])[:, None]])
        return g, np.zeros(len(g))
    return g, np.concatenate([-lo[il], hi[ih]])


def _max_linear(c, lo, hi, solver):
    """Max c @ w s.t. sum(w) = 1, lo <= w <= hi (``inf`` when unbounded)."""
    if np.all(np.isfinite(lo)):  # greedy fill in order of decreasing c
        w, left = lo.copy(), 1.0 - lo.sum()
        for i in np.argsort(-c, kind="stable"):
            take = min(hi[i] - lo[i], left)
            w[i] += take
            left -= take
        return float(c @ w)
    # A recession ray e_i - e_j (hi_i = inf, lo_j = -inf, c_i > c_j) makes it unbounded.
    up, down = np.isposinf(hi), np.isneginf(lo)
    pairs = (c[up][:, None] > c[down][None, :]) & \
        (np.flatnonzero(up)[:, None] != np.flatnonzero(down)[None, :])
    if pairs.any():
        return np.inf
    import cvxpy as cp

    g, h = _bound_rows(lo, hi)
    w = cp.Variable(c.size)
    cons = [cp.sum(w) == 1] + ([g @ w <= h] if len(h) else [])
    prob = cp.Problem(cp.Maximize(c @ w), cons)
    status, _ = _solve(prob, solver, "maximum attainable return")
    return np.inf if status == "unbounded" else float(prob.value)


def _stats(w, mu, cov, ann, rf):
    ret = float(ann * mu @ w)
    vol = float(np.sqrt(max(ann * w @ cov @ w, 0.0)))
    if vol <= vol_floor(cov, ann):          # noise, or a riskless asset: undefined
        return ret, vol, float("nan")
    return ret, vol, float(np.float64(ret - rf) / vol)


def _clean(w, lo, hi):
    w = np.clip(w, lo, hi)  # removes solver round-off such as -1e-13 under a bound of 0
    return w / w.sum()


def _scales(mu, cov):
    """Positive scale factors that make mu and cov O(1) for the solver."""
    m, s = np.abs(mu).max(), np.abs(np.diag(cov)).max()
    return (m if m > 0 else 1.0), (s if s > 0 else 1.0)


# ----------------------------------------------------------------------------- public API
def max_sharpe(mu, cov, *, ann=1.0, rf=0.0, bounds=None, long_only=True, solver=None,
               repair=None) -> Baseline:
    """Exact maximum-Sharpe portfolio (sum of weights 1).

    Solves the convex reformulation: minimise y' cov y subject to (mu - rf/ann)' y = 1,
    kappa = sum(y) >= 0, lo*kappa <= y <= hi*kappa (y >= 0 when long-only); w = y / kappa.

    Parameters
    ----------
    mu : array_like, shape (A,)
        Expected return per bar.
    cov : array_like, shape (A, A)
        Covariance of returns per bar; symmetric positive semi-definite.
    ann, rf : float
        Periods per year used to annualise; annual risk-free rate.
    bounds : (lo, hi), optional
        Weight bounds, each a scalar, an (A,) array or None (no bound).
    long_only : bool
        Forbid negative weights (default). With False and no bounds, weights are unbounded.
    solver : str, optional
        None (default): the active-set solver, then cvxpy (Clarabel with fallback to the other
        installed solvers) if it cannot vouch for its answer. ``"active_set"``: only it;
        ``"cvxpy"``: only the cvxpy chain; a cvxpy solver name: that solver alone.
    repair : {None, "clip", "nearest"}
        What to do with a non-symmetric or non-PSD ``cov``: error (None), symmetrise and zero
        the negative eigenvalues ("clip"), or symmetrise and take Higham's nearest correlation
        matrix, keeping the variances ("nearest").

    Returns
    -------
    Baseline
        ``weights`` (A,) on the host plus annualised ``ret``, ``vol``, ``sharpe``.
    """
    with _one_blas_thread(np.size(mu)):
        return _named(_max_sharpe(mu, cov, ann, rf, bounds, long_only, solver, repair), mu, cov)


def _named(b: Baseline, mu, cov) -> Baseline:
    """``b`` with the symbols of a labelled ``mu`` (Series) or ``cov`` (DataFrame)."""
    for labels in (getattr(mu, "index", None), getattr(cov, "columns", None)):
        if labels is not None and len(labels) == len(b.weights):
            b.symbols = [str(x) for x in labels]
            break
    return b


def _max_sharpe(mu, cov, ann, rf, bounds, long_only, solver, repair):
    mu, cov, ann, rf = _check_inputs(mu, cov, ann, rf, repair)
    lo, hi = check_bounds(bounds, mu.size, long_only)
    ex = mu - rf / ann
    if _max_linear(ex, lo, hi, solver) <= 0:
        raise SolverError(f"no portfolio within the bounds has an expected return above the "
                          f"risk-free rate rf={rf:g}, so max Sharpe is undefined; lower rf "
                          "(or use min_variance)")
    m, s = _scales(ex, cov)
    n = mu.size
    w = _active_set(solver, cov / s, ex / m, lo, hi, True, "max Sharpe")
    if w is not None:
        w = _clean(w, lo, hi)
        return Baseline(w, *_stats(w, mu, cov, ann, rf), "max_sharpe", "optimal", ACTIVE_SET)
    q = np.zeros((n + 1, n + 1))  # x = (y, kappa)
    q[:n, :n] = cov / s
    a_eq = np.vstack([np.append(ex / m, 0.0), np.append(np.ones(n), -1.0)])  # ex'y=1, 1'y=kappa
    g, h = _bound_rows(lo, hi, homogeneous=True)
    g = np.vstack([g, np.append(np.zeros(n), -1.0)])  # kappa >= 0
    x, status, used = _QP(q, a_eq, np.array([1.0, 0.0]), g, np.append(h, 0.0)).solve(
        solver, "max Sharpe")
    if x is None:
        raise SolverError(f"max Sharpe problem is {status}: no portfolio within the bounds "
                          f"beats the risk-free rate rf={rf:g}; lower rf or loosen the bounds")
    y, k = x[:n], x[n]
    if not k > 1e-9 * np.abs(y).sum():
        raise SolverError("max Sharpe is not attained: the best portfolios have weights summing "
                          "to 0 (unbounded long-short); add bounds or use long_only=True")
    w = _clean(y / k, lo, hi)
    return Baseline(w, *_stats(w, mu, cov, ann, rf), "max_sharpe", status, used)


def _min_var_qp(mu, cov, lo, hi, with_target=False):
    """Standard-form min-variance QP on x = w; the last row of G is -mu/m'w <= h[-1]."""
    m, s = _scales(mu, cov)
    g, h = _bound_rows(lo, hi)
    if with_target:
        g, h = np.vstack([g, -mu / m]), np.append(h, 0.0)
    return _QP(cov / s, np.ones((1, mu.size)), np.ones(1), g, h), m


def min_variance(mu, cov, *, ann=1.0, rf=0.0, bounds=None, long_only=True, solver=None,
                 repair=None) -> Baseline:
    """Exact minimum-variance portfolio: minimise w' cov w s.t. sum(w) = 1, lo <= w <= hi.

    Parameters and returns are as in :func:`max_sharpe` (``rf`` only enters the Sharpe ratio).
    """
    with _one_blas_thread(np.size(mu)):
        return _named(_min_variance(mu, cov, ann, rf, bounds, long_only, solver, repair), mu,
                      cov)


def _min_variance(mu, cov, ann, rf, bounds, long_only, solver, repair):
    mu, cov, ann, rf = _check_inputs(mu, cov, ann, rf, repair)
    lo, hi = check_bounds(bounds, mu.size, long_only)
    w = _active_set(solver, cov / _scales(mu, cov)[1], mu, lo, hi, False, "min variance")
    if w is not None:
        w = _clean(w, lo, hi)
        return Baseline(w, *_stats(w, mu, cov, ann, rf), "min_variance", "optimal", ACTIVE_SET)
    x, status, used = _min_var_qp(mu, cov, lo, hi)[0].solve(solver, "min variance")
    if x is None:
        raise SolverError(f"min variance problem is {status}; check the bounds")
    wv = _clean(x, lo, hi)
    return Baseline(wv, *_stats(wv, mu, cov, ann, rf), "min_variance", status, used)


def efficient_frontier(mu, cov, *, n_points=50, ann=1.0, rf=0.0, bounds=None, long_only=True,
                       solver=None, repair=None, symbols=None):
    """Exact efficient frontier: min variance for a grid of target returns.

    One cvxpy problem (minimise w' cov w s.t. sum(w) = 1, bounds, mu'w >= t) with a
    ``cp.Parameter`` target t, re-solved on ``n_points`` evenly spaced targets from the
    min-variance return to the maximum attainable return (max of mu @ w under the bounds).
    When weights are unbounded (long_only=False, no bounds) the frontier has no end; the grid then
    stops at max(mu) (or, if that is below the min-variance return, one spread of mu above it).

    Parameters
    ----------
    mu, cov, ann, rf, bounds, long_only, solver, repair
        As in :func:`max_sharpe`.
    n_points : int
        Number of frontier points (>= 2).
    symbols : sequence of str, optional
        Names for the weight columns (default ``w_0..w_{A-1}``).

    Returns
    -------
    pandas.DataFrame, shape (n_points, 3 + A)
        Columns ``ret``, ``vol``, ``sharpe`` (annualised) and one weight column per asset;
        row 0 is the min-variance portfolio. ``df.attrs["status"]`` and ``df.attrs["solver"]``
        list each point's solver status and solver name.
    """
    import pandas as pd

    mu, cov, ann, rf = _check_inputs(mu, cov, ann, rf, repair)
    lo, hi = check_bounds(bounds, mu.size, long_only)
    names = _labels(symbols, mu.size)
    if not isinstance(n_points, (int, np.integer)) or n_points < 2:
        raise SolverError(f"n_points must be an integer >= 2, got {n_points!r}")
    mv = min_variance(mu, cov, ann=ann, rf=rf, bounds=(lo, hi), long_only=long_only,
                      solver=solver)
    r_lo = float(mu @ mv.weights)
    r_hi = _max_linear(mu, lo, hi, solver)
    if not np.isfinite(r_hi):
        r_hi = mu.max() if mu.max() > r_lo else r_lo + np.ptp(mu)
    r_hi = max(r_hi, r_lo)
    qp, m = _min_var_qp(mu, cov, lo, hi, with_target=True)
    rows, statuses, solvers = [], [], []
    for t in np.linspace(r_lo, r_hi, n_points):
        h = qp.h.value.copy()
        h[-1] = -t / m
        qp.h.value = h
        x, status, used = qp.solve(solver, f"efficient frontier at target return {ann * t:.4g}")
        if x is None:
            raise SolverError(f"efficient frontier point at target return {ann * t:.4g} is "
                              f"{status}; reduce n_points or check the bounds")
        wv = _clean(x, lo, hi)
        rows.append([*_stats(wv, mu, cov, ann, rf), *wv])
        statuses.append(status)
        solvers.append(used)
    df = pd.DataFrame(rows, columns=["ret", "vol", "sharpe", *names])
    df.attrs.update(status=statuses, solver=solvers)
    return df
