"""Inputs of the weight search: argument checks, ex-ante statistics, bounds, top-k merging
and the exact baselines, shared by :func:`gpusim.search` (``api``), the guided search and the
sweep task (so none of them imports ``api``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from cpu_ref import rng as _rng
from gpusim.errors import GpusimError

SAMPLERS = tuple(_rng.SAMPLERS)
DTYPES = ("float64", "float32")
# verify(): largest relative Sharpe difference accepted against the float64 reference
TOLERANCE = {"float64": 1e-10, "float32": 1e-4}


# ----------------------------------------------------------------------------- inputs
def _as_int(value, name: str, lo: int, hi: int) -> int:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise GpusimError(f"{name}={value!r} is not a number; pass a whole number "
                          f">= {lo}") from None
    if not math.isfinite(f) or f != int(f) or f < lo or f > hi:
        raise GpusimError(f"{name}={value!r} must be a whole number from {lo} to {hi:.3g}")
    return int(f)


ANN_ASSUMED = "default 1 (mu, cov taken as annual)"
"""``ann_source`` of a ``(mu, cov)`` search without ``ann``."""
ANN_NOTE = ("(mu, cov) given without ann: ann = 1 is assumed, i.e. mu and cov are taken as "
            "annual; pass ann=252 (or your bars per year) if they are per-bar statistics")
"""The warning (a DataWarning, and a line of the summary's ``warnings``) for that case."""


def stats_from(market, ann, symbols):
    """(mu, cov, ann, ann_source, symbols, name) from a Market, a price frame or (mu, cov)."""
    from gpusim.data.load import load_prices
    from gpusim.data.market import Market

    if isinstance(market, pd.DataFrame):
        market = load_prices(market, ann=ann)
    if isinstance(market, Market):
        if symbols is not None:
            market = market.subset(list(symbols))
        mu, cov = market.stats()
        return (mu.to_numpy(), cov.to_numpy(), float(market.ann), market.ann_source,
                list(market.symbols), market.name)
    if isinstance(market, tuple) and len(market) == 2:
        mu, cov = market
        names = (list(mu.index) if isinstance(mu, pd.Series) else
                 list(cov.columns) if isinstance(cov, pd.DataFrame) else None)
        if (isinstance(mu, pd.Series) and isinstance(cov, pd.DataFrame)
                and [str(x) for x in cov.columns] != [str(x) for x in mu.index]):
            raise GpusimError("the labels of mu and of cov's columns differ; pass cov "
                              "reindexed as cov.loc[mu.index, mu.index]")
        mu = np.asarray(mu, dtype=np.float64)
        cov = np.asarray(cov, dtype=np.float64)
        if mu.ndim != 1 or cov.shape != (mu.size, mu.size):
            raise GpusimError(f"(mu, cov) must have shapes (A,) and (A, A); got {mu.shape} and "
                              f"{cov.shape}")
        if not (np.isfinite(mu).all() and np.isfinite(cov).all()):
            raise GpusimError("mu and cov must be finite; remove NaN/inf before searching")
        if not np.allclose(cov, cov.T, rtol=1e-10, atol=1e-14):
            raise GpusimError("cov is not symmetric; pass (cov + cov.T) / 2")
        check_psd(cov)
        from gpusim.validate import check_ann

        a = 1.0 if ann is None else check_ann(ann, error=GpusimError)
        src = "given" if ann is not None else ANN_ASSUMED
        if ann is None:
            import warnings

            from gpusim.errors import DataWarning

            warnings.warn(ANN_NOTE, DataWarning, stacklevel=3)
        names = list(symbols) if symbols is not None else names
        names = names or [f"A{j:02d}" for j in range(mu.size)]
        if len(names) != mu.size:
            raise GpusimError(f"symbols has {len(names)} names for {mu.size} assets")
        return mu, cov, a, src, [str(s) for s in names], ""
    raise GpusimError("market must be a gpusim.Market, a price DataFrame or a (mu, cov) tuple; "
                      "load files with gpusim.load_prices(path)")


def resolve_bounds(bounds, A: int, symbols) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) arrays from None, (lo, hi) scalars/arrays or dicts keyed by symbol."""
    from gpusim.mvo import check_bounds  # cheap: cvxpy stays lazy

    if bounds is None:
        return np.zeros(A), np.ones(A)
    try:
        lo, hi = bounds
    except (TypeError, ValueError):
        raise GpusimError("bounds must be a pair (lo, hi) of numbers or per-asset arrays") from None

    def by_symbol(v, default, name):
        if v is None:
            return default
        if isinstance(v, dict):
            bad = sorted(set(v) - set(symbols))
            if bad:
                raise GpusimError(f"bounds {name} names unknown symbols {bad}; known: {symbols}")
            return [float(v.get(s, default)) for s in symbols]
        return v

    lo, hi = check_bounds((by_symbol(lo, 0.0, "lo"), by_symbol(hi, 1.0, "hi")), A, True,
                          names=symbols)
    return lo, np.minimum(hi, 1.0)


def merge_topk(xp, scores, index, k: int):
    """Top-k of (scores, index) by Sharpe descending then index ascending; drops empty slots.

    Works on NumPy or CuPy arrays (``xp``) and returns arrays of the same namespace. Large
    inputs are first cut to the entries scoring at least the k-th best (a partition, O(N)), so
    ties at the boundary are still resolved by index. A NaN score (undefined) is never kept:
    it used to become the k-th best of the partition and empty the whole result.
    """
    keep = (index >= 0) & ~xp.isnan(scores)
    scores, index = scores[keep], index[keep]
    if scores.size > 4 * k:
        kth = xp.partition(scores, scores.size - k)[scores.size - k]
        sel = scores >= kth
        scores, index = scores[sel], index[sel]
    order = xp.lexsort(xp.stack([index.astype(xp.float64), -scores]))[:k]
    return scores[order], index[order]


# ----------------------------------------------------------------------------- search


def check_args(*, n, top_k, seed, sampler, alpha, rf, dtype, backend_name, start=0) -> dict:
    """Validate and normalise search arguments (one-line :class:`GpusimError` on bad input).

    Returns ``{n, start, top_k, k, seed, alpha, rf, code, key}`` (``k = min(top_k, n)``,
    ``code`` the sampler code, ``key`` the stream key as uint64).
    """
    n = _as_int(n, "n", 1, _rng.MAX_CANDIDATES)
    start = _as_int(start, "start", 0, _rng.MAX_CANDIDATES - n)
    top_k = _as_int(top_k, "top_k", 1, 100_000)
    seed = _as_int(seed, "seed", 0, 2**63 - 1)
    if sampler not in SAMPLERS:
        raise GpusimError(f"sampler={sampler!r} is unknown; use one of {', '.join(SAMPLERS)}")
    try:
        alpha, rf = float(alpha), float(rf)
    except (TypeError, ValueError):
        raise GpusimError("alpha and rf must be numbers") from None
    if not (math.isfinite(alpha) and alpha > 0):
        raise GpusimError(f"alpha={alpha!r} must be a positive concentration (1 = flat)")
    if not math.isfinite(rf):
        raise GpusimError(f"rf={rf!r} must be a finite annual rate")
    if dtype not in DTYPES:
        raise GpusimError(f"dtype={dtype!r} is unknown; use 'float64' (default) or 'float32' "
                          "(GPU only)")
    if dtype == "float32" and backend_name != "gpu":
        raise GpusimError("dtype='float32' is GPU-only (the CPU path scores in float64); "
                          "use backend='gpu' or dtype='float64'")
    return {"n": n, "start": start, "top_k": top_k, "k": min(top_k, n), "seed": seed,
            "alpha": alpha, "rf": rf, "code": _rng.sampler_code(sampler, alpha),
            "key": np.uint64(_rng.seed_key_nb(seed))}


def rescore(seed, indices, code, alpha, lo, hi, mu, cov, ann, rf):
    """Regenerate candidates ``indices`` (m,) of stream ``seed`` and score them, in plain
    Python and NumPy (no compilation: for the few top-k rows of a result).

    The weights come from the uncompiled bodies of :mod:`cpu_ref.rng` (bit-identical to every
    kernel); the statistics are ex-ante (DESIGN §5). Returns what
    :func:`cpu_ref.search.score_nb` returns: W (m, A), stats (m, 3) = expected return,
    expected volatility, Sharpe (-inf when over ``hi`` or without variance) and ok (m,) bool.
    """
    mu = np.asarray(mu, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    indices = np.asarray(indices, dtype=np.int64)
    W = np.empty((indices.size, mu.size))
    ok = np.empty(indices.size, dtype=bool)
    lo_sum = 0.0
    for v in lo:           # the kernels' order of summation
        lo_sum += v
    with np.errstate(over="ignore"):   # uint64 arithmetic wraps, as in the kernels
        key = _rng.seed_key(np.uint64(seed))
        for r, i in enumerate(indices):
            ok[r] = _rng.sample(key, int(i), code, alpha, lo, hi, lo_sum, W[r])
    ret = ann * (W @ mu)
    var = ann * np.einsum("ij,jk,ik->i", W, cov, W)
    with np.errstate(divide="ignore", invalid="ignore"):
        vol = np.sqrt(np.maximum(var, 0.0))
        sharpe = np.where(var > 0.0, (ret - rf) / vol, -np.inf)
    sharpe[~ok] = -np.inf
    return W, np.column_stack([ret, vol, sharpe]).reshape(-1, 3), ok


def _baselines(mu, cov, ann, rf, lo, hi, bounded, solver, symbols=None) -> dict:
    from gpusim.mvo import max_sharpe, min_variance

    out = {}
    b = (lo, hi) if bounded else None
    for name, fn in (("max_sharpe", max_sharpe), ("min_variance", min_variance)):
        try:
            out[name] = fn(mu, cov, ann=ann, rf=rf, bounds=b, solver=solver)
            out[name].symbols = None if symbols is None else list(symbols)
        except GpusimError as exc:
            out[f"{name}_error"] = str(exc)
    return out


def undefined_sharpes(sharpe, vol, cov, ann, base=None) -> tuple[np.ndarray, list[str]]:
    """Sharpe ratios (k,) of portfolios whose volatility ``vol`` (k,) is at or below the floor
    :func:`gpusim.mvo.vol_floor` set to NaN (undefined: their variance is rounding noise, or an
    asset has none), and the reasons as warning lines (also about the exact baselines ``base``,
    whose Sharpe :mod:`gpusim.mvo` already reports as NaN).
    """
    from gpusim.mvo import VOL_FLOOR_RTOL, vol_floor

    floor = vol_floor(cov, ann)
    low = np.asarray(vol, dtype=np.float64) <= floor
    out = np.where(low, np.nan, np.asarray(sharpe, dtype=np.float64))
    why = f"at or below the floor {floor:.3g} ({VOL_FLOOR_RTOL:g} x the largest asset volatility)"
    notes = []
    if low.any():
        notes.append(f"{int(low.sum())} of the top {low.size} portfolios have a volatility {why}:"
                     " their Sharpe ratios are undefined (NaN)")
    for name, b in (base or {}).items():
        if hasattr(b, "vol") and b.vol <= floor:
            notes.append(f"exact {name.replace('_', ' ')}: volatility {b.vol:.3g} {why}: Sharpe "
                         "undefined (NaN)" + ("; an asset without variance makes the maximum "
                                              "unbounded" if name == "max_sharpe" else ""))
    return out, notes


def riskless_note(n_riskless, n_valid, cov, ann) -> str:
    """The one-line warning about ``n_riskless`` of ``n_valid`` candidates whose ex-ante
    variance was at or below :func:`gpusim.mvo.var_floor` (not ranked: Sharpe undefined).
    """
    from gpusim.mvo import VOL_FLOOR_RTOL, vol_floor

    return (f"{n_riskless:,} of {n_valid:,} candidates have a volatility at or below the floor "
            f"{vol_floor(cov, ann):.3g} ({VOL_FLOOR_RTOL:g} x the largest asset volatility): "
            "their Sharpe ratios are undefined and they were not ranked")


PSD_RTOL = 1e-10
"""An eigenvalue below ``-PSD_RTOL * max|eigenvalue|`` makes a covariance invalid."""
SINGULAR_RTOL = 1e-12
"""Eigenvalues at or below ``SINGULAR_RTOL * max eigenvalue`` count as zero (singular Σ)."""


def check_psd(cov: np.ndarray) -> None:
    """Raise a one-line :class:`GpusimError` unless ``cov`` (A, A) is a non-zero covariance
    (positive semi-definite within :data:`PSD_RTOL`).
    """
    ev = np.linalg.eigvalsh(cov)
    top = float(np.abs(ev).max()) if ev.size else 0.0
    if top == 0.0:
        raise GpusimError("cov is zero: no asset has any variance, so no Sharpe ratio is "
                          "defined; check the returns it was estimated from")
    if ev[0] < -PSD_RTOL * top:
        raise GpusimError(f"cov is not a covariance: it has a negative eigenvalue "
                          f"({ev[0]:.3g}); pass a positive semi-definite matrix")


def sigma_warnings(cov: np.ndarray, symbols: list[str], n_bars: int | None = None) -> list[str]:
    """Warnings about a covariance (A, A) that runs but deserves a look: assets with (near)
    zero variance (their weight is then free of risk: Sharpe ratios blow up) and a singular Σ
    (e.g. more assets than bars). Each is also emitted as a :class:`~gpusim.errors.DataWarning`.
    """
    import warnings

    from gpusim.errors import DataWarning

    out = []
    d = np.diag(cov)
    dmax = float(d.max()) if d.size else 0.0
    flat = [s for s, v in zip(symbols, d, strict=True) if v <= SINGULAR_RTOL * dmax]
    if flat and dmax > 0:
        out.append(f"asset(s) with (near) zero variance: {', '.join(flat[:8])}"
                   f"{' ...' if len(flat) > 8 else ''}; their Sharpe ratios are not meaningful "
                   "(drop them, e.g. with symbols=)")
    ev = np.linalg.eigvalsh(cov)
    rank = int((ev > SINGULAR_RTOL * ev[-1]).sum()) if ev.size and ev[-1] > 0 else 0
    if ev.size and rank < ev.size:
        why = (f" ({len(symbols)} assets but only {n_bars} bars)"
               if n_bars is not None and n_bars <= len(symbols) else "")
        out.append(f"the covariance is singular: rank {rank} of {ev.size}{why}; some portfolios "
                   "have (near) zero estimated risk and their Sharpe ratios are not meaningful")
    for w in out:
        warnings.warn(w, DataWarning, stacklevel=3)
    return out
