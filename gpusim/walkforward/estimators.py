"""Estimators of (mu, cov) on the walk-forward windows (DESIGN §7), batched over windows.

Names (``estimator=`` of :func:`gpusim.walkforward`, one of them or a Param of several):

``"sample"``
    sample mean and covariance (ddof=1) of the window's simple returns (the default;
    :func:`gpusim.walkforward.stats.window_stats`, prefix sums).
``"ewma:<half-life>"``
    exponentially weighted mean and covariance with weights ``(1 - a)^(t-1-s)`` for the return of
    bar ``s`` in a window ending before bar ``t``, ``a = 1 - exp(-ln 2 / half-life)``: equal to
    pandas ``returns.ewm(halflife=h).mean()`` / ``.cov()`` (``adjust=True``, ``bias=False``)
    read at the window's last return.
``"ledoit_wolf"``
    sample mean; covariance shrunk toward ``mu_v I`` (``mu_v`` = mean variance; identity
    target) with the Ledoit-Wolf intensity on the window's MLE covariance (``1/n``): equal to
    scikit-learn's ``LedoitWolf().fit(returns).covariance_`` (PyPortfolioOpt's
    ``CovarianceShrinkage(...).ledoit_wolf("constant_variance")`` before annualisation).
a callable ``f(returns) -> (mu, cov)``
    called once per window with the window's simple returns (a DataFrame, dates x symbols) and
    returning the per-bar mean (A,) and covariance (A, A); slower (a Python call per window).

With benchmark columns (Beta, TrackingError), ``"sample"`` and ``"ewma"`` estimate assets and
benchmarks together; ``"ledoit_wolf"`` and a callable estimate the assets' block, and the
covariances with the benchmarks are the sample ones.

The EWMA and Ledoit-Wolf windows are gathered into padded (windows, rows, columns) blocks and
reduced with batched matrix products in ``xp`` (NumPy or CuPy), chunked to bounded memory.
The readable one-window versions are in :mod:`cpu_ref.estimators` (the oracle).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gpusim.errors import GpusimError
from gpusim.walkforward.stats import window_stats

__all__ = ["Estimator", "estimate", "parse_estimator"]

CHUNK_BYTES = 1 << 26
"""Memory of one padded block of windows (bytes)."""


@dataclass(frozen=True)
class Estimator:
    """A parsed estimator: ``kind`` in sample | ewma | ledoit_wolf | callable; ``halflife``
    (ewma); ``func`` (callable); ``label`` (its name in tables).
    """

    kind: str
    label: str
    halflife: float = math.nan
    func: Any = None


def parse_estimator(x) -> Estimator:
    """Estimator of a name (``"sample"``, ``"ewma:63"``, ``"ledoit_wolf"``) or a callable."""
    if isinstance(x, Estimator):
        return x
    if callable(x):
        name = getattr(x, "__name__", "custom")
        return Estimator("callable", "custom" if name == "<lambda>" else str(name), func=x)
    s = str(x).strip().lower().replace("-", "_")
    if s in ("sample", "ledoit_wolf"):
        return Estimator(s, s)
    if s.startswith("ewma:"):
        try:
            hl = float(s[5:])
        except ValueError:
            hl = math.nan
        if not (math.isfinite(hl) and hl > 0):
            raise GpusimError(f"estimator={x!r}: the half-life must be a number > 0, e.g. "
                              "'ewma:63'")
        return Estimator("ewma", f"ewma:{s[5:]}", halflife=hl)
    raise GpusimError(f"estimator={x!r} is unknown; use 'sample', 'ewma:<half-life>', "
                      "'ledoit_wolf' or a callable f(returns) -> (mu, cov)")


def _padded(xp, R, a, t, L):
    """(S, L, K) returns of the windows [a, t) right-aligned (row L-1 = return of bar t-1),
    zero-padded, and the (S, L) mask of real rows.
    """
    k = np.arange(L)
    rows = (t - 1)[:, None] - L + k[None, :]            # return row of bar s is s - 1
    valid = rows >= (a - 1)[:, None]
    rows = np.where(valid, rows, 0)
    X = R[xp.asarray(rows)] * xp.asarray(valid)[:, :, None]
    return X, xp.asarray(valid.astype(np.float64))


def _weighted(xp, X, w):
    """Weighted mean (S, K) and pandas-``bias=False`` covariance (S, K, K) with weights w (S, L)."""
    sw = w.sum(axis=1)
    sw2 = (w * w).sum(axis=1)
    m = xp.einsum("sl,slk->sk", w, X) / sw[:, None]
    D = (X - m[:, None, :]) * (w > 0)[:, :, None]
    cov = xp.einsum("sli,slj->sij", D * w[:, :, None], D) / sw[:, None, None]
    cov = cov * (sw * sw / (sw * sw - sw2))[:, None, None]
    return m, 0.5 * (cov + xp.swapaxes(cov, 1, 2))


def _ledoit_wolf(xp, X, mask):
    """Ledoit-Wolf covariance (S, A, A) of the masked windows X (S, L, A) (scikit-learn's
    formula: MLE covariance, identity target scaled by the mean variance).
    """
    n = mask.sum(axis=1)
    p = X.shape[2]
    m = X.sum(axis=1) / n[:, None]
    Xc = (X - m[:, None, :]) * mask[:, :, None]
    emp = xp.einsum("sli,slj->sij", Xc, Xc) / n[:, None, None]
    if p == 1:
        return emp
    X2 = Xc * Xc
    tr = X2.sum(axis=1) / n[:, None]                    # (S, A) emp_cov diagonal
    mu = tr.sum(axis=1) / p
    beta_ = (X2.sum(axis=2) ** 2).sum(axis=1)           # sum of <X2', X2>
    delta_ = (emp * emp).sum(axis=(1, 2))               # sum((X'X)^2) / n^2
    beta = (beta_ / n - delta_) / (p * n)
    delta = (delta_ - 2.0 * mu * tr.sum(axis=1) + p * mu * mu) / p
    beta = xp.minimum(beta, delta)
    shrink = xp.where(beta == 0, 0.0, beta / xp.where(delta == 0, 1.0, delta))
    cov = (1.0 - shrink)[:, None, None] * emp
    eye = xp.eye(p)[None]
    return cov + (shrink * mu)[:, None, None] * eye


def _chunks(S, L, K):
    step = max(1, int(CHUNK_BYTES // max(1, 8 * L * K * 4)))
    return [(i, min(S, i + step)) for i in range(0, S, step)]


def estimate(xp, close, a, t, est: Estimator, n_assets: int, index=None, symbols=None):
    """Per-bar mean (S, K) and covariance (S, K, K) of every window ``[a[s], t[s])`` by ``est``.

    Parameters
    ----------
    xp : numpy or cupy; close : (T, K) prices in ``xp`` (assets, then benchmark columns).
    a, t : (S,) host int arrays, ``1 <= a < t - 1``.
    est : :class:`Estimator`; n_assets : A (the first A columns are the assets).
    index, symbols : dates of ``close`` and asset names (labels of a callable's window).

    Returns
    -------
    mu (S, K), cov (S, K, K) in ``xp``.
    """
    a = np.asarray(a, dtype=np.int64)
    t = np.asarray(t, dtype=np.int64)
    mu, cov = window_stats(xp, close, a, t)
    if est.kind == "sample" or len(a) == 0:
        return mu, cov
    A = n_assets
    if est.kind == "callable":
        return _call(xp, close, a, t, est, A, index, symbols, mu, cov)
    R = close[1:] / close[:-1] - 1.0
    L = int((t - a).max())
    K = close.shape[1]
    decay = math.exp(-math.log(2.0) / est.halflife) if est.kind == "ewma" else 1.0
    powers = xp.asarray(decay ** np.arange(L - 1, -1, -1, dtype=np.float64))
    mu, cov = xp.array(mu), xp.array(cov)
    for i0, i1 in _chunks(len(a), L, K):
        X, mask = _padded(xp, R, a[i0:i1], t[i0:i1], L)
        if est.kind == "ewma":
            mu[i0:i1], cov[i0:i1] = _weighted(xp, X, mask * powers[None, :])
        else:
            cov[i0:i1, :A, :A] = _ledoit_wolf(xp, X[:, :, :A], mask)
    return mu, cov


def _call(xp, close, a, t, est, A, index, symbols, mu, cov):
    """Overwrite the assets' block of (mu, cov) with the callable's answer, window by window."""
    host = close if xp is np else xp.asnumpy(close)
    R = pd.DataFrame(host[1:, :A] / host[:-1, :A] - 1.0,
                     index=None if index is None else index[1:], columns=symbols)
    mu_h = np.array(mu if xp is np else xp.asnumpy(mu))
    cov_h = np.array(cov if xp is np else xp.asnumpy(cov))
    for s, (lo, hi) in enumerate(zip(a, t)):
        win = R.iloc[lo - 1:hi - 1]
        try:
            out = est.func(win)
            m, c = out
            m = np.asarray(m, dtype=np.float64).reshape(-1)
            c = np.asarray(c, dtype=np.float64)
        except Exception as exc:  # user code: one line naming the estimator and the window
            raise GpusimError(f"estimator {est.label!r} failed on the window ending "
                              f"{win.index[-1] if len(win) else hi}: {type(exc).__name__}: "
                              f"{exc}".splitlines()[0]) from None
        if m.shape != (A,) or c.shape != (A, A) or not (np.isfinite(m).all()
                                                        and np.isfinite(c).all()):
            raise GpusimError(f"estimator {est.label!r} must return finite (mu (A,), cov (A, A)) "
                              f"with A={A}; got shapes {m.shape} and {c.shape}")
        mu_h[s, :A] = m
        cov_h[s, :A, :A] = 0.5 * (c + c.T)
    return xp.asarray(mu_h), xp.asarray(cov_h)
