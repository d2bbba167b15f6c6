"""Massive weight search: score huge random populations by ex-ante Sharpe, keep the best k.

``search(market, n=...)`` streams candidates ``0 .. n-1`` of a counter-based stream (DESIGN §4)
through a fused generate -> score -> top-k kernel on the chosen backend, in chunks (progress
bar; Ctrl-C returns the best so far, marked partial), then compares the best with the exact
max-Sharpe and min-variance portfolios from cvxpy. ``verify(result)`` re-checks a result on
the CPU reference.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

from cpu_ref import rng as _rng
from cpu_ref.search import score_nb, search_ref
from gpusim.backend import Backend, resolve_backend
from gpusim.compiling import compile_notice
from gpusim.errors import GpusimError
from gpusim.interrupt import Interrupt
from gpusim.mvo import var_floor
from gpusim.results import versions
from gpusim.search.inputs import (
    ANN_ASSUMED,
    ANN_NOTE,
    TOLERANCE,
    _as_int,
    _baselines,
    check_args,
    merge_topk,
    rescore,
    resolve_bounds,
    riskless_note,
    sigma_warnings,
    stats_from,
    undefined_sharpes,
)
from gpusim.search.result import OUTPUT_FORMATS as OUTPUT_FORMATS  # re-exported
from gpusim.search.result import SearchResult
from gpusim.validate import dirichlet_alpha

COMPILE_ESTIMATE_S = {"cpu": 5.0, "gpu": None}
"""Typical first-run compilation of the search kernel (seconds, measured on a 2-core machine;
None: not measured, the notice gives no figure)."""


class _CpuRunner:
    """Fused CPU kernel over chunks (:class:`gpusim.search.cpu.CpuSearch`: per-task top-k heaps
    that persist across chunks; symmetric scoring up to SYM_MAX_A assets, BLAS above).
    """

    def __init__(self, key, code, alpha, lo, hi, mu, cov, ann, rf, k, vfl):
        from gpusim.search.cpu import CpuSearch
        from gpusim.search.steps import Stream

        self.state = CpuSearch(Stream(key, code, alpha, lo, hi), mu, cov, ann, rf, k, vfl)

    def run(self, start, n):
        return self.state.run(start, n)

    @property
    def n_riskless(self):
        return self.state.n_riskless

    def best(self):
        return self.state.best()

    def reset(self):
        self.state.reset()

    def close(self):
        self.state.close()


class _GpuRunner:
    """numba.cuda kernel over chunks (device arrays on hardware, host in the simulator); the
    launcher keeps the top-k and its threshold across chunks.
    """

    def __init__(self, be: Backend, key, code, alpha, lo, hi, mu, cov, ann, rf, k, chunk, dtype,
                 vfl):
        from gpusim.search.cuda import SearchLauncher

        try:
            self.launcher = SearchLauncher(key, code, alpha, lo, hi, mu, cov, ann, rf, k, chunk,
                                           xp=be.xp, merge=merge_topk, vfl=vfl, dtype=dtype)
        except ValueError as exc:
            raise GpusimError(str(exc)) from None

    def run(self, start, n):
        return self.launcher.run(start, n)

    @property
    def n_riskless(self):
        return self.launcher.n_riskless

    def best(self):
        return self.launcher.best()

    def reset(self):
        self.launcher.reset()

    def close(self):
        pass


def search(market, n=1_000_000, *, sampler: str = "dirichlet", alpha: float = 1.0,
           seed: int = 0, top_k: int = 10, bounds=None, rf: float = 0.0, ann=None,
           symbols=None, backend="auto", dtype: str = "float64", chunk_size=None,
           progress=None, baselines: bool = True, solver=None, start: int = 0,
           method: str = "random", path: str = "auto", device: int | None = None,
           **options) -> SearchResult:
    """Score candidates ``start .. start+n-1`` of the stream ``seed`` by ex-ante Sharpe; keep
    the top k.

    Parameters
    ----------
    market : :class:`gpusim.Market`, a price DataFrame, or ``(mu, cov)`` per-bar arrays
        (then ``ann`` annualises them; default 1 = already annual).
    n : number of candidates (up to 2**40); never held in memory.
    sampler : ``"dirichlet"`` (flat Dirichlet, uniform on the simplex; ``alpha`` = its
        concentration) or ``"uniform"`` (normalised uniforms, as the vectorbt notebook).
    bounds : optional ``(lo, hi)``: scalars, (A,) arrays or dicts by symbol. Lower bounds are
        exact (affine map of the simplex), upper bounds by rejection.
    rf : annual risk-free rate; Sharpe = (ann mu.w - rf) / sqrt(ann w'Σw).
    backend : ``"auto"`` | ``"gpu"`` | ``"gpu:N"`` | ``"cpu"`` (``GPUSIM_BACKEND`` in the
        environment).
    device : CUDA device number (default ``GPUSIM_DEVICE``, else 0).
    dtype : ``"float64"`` (default, every backend) or ``"float32"`` (GPU only: weights are still
        generated in float64, so populations are identical; scoring runs in float32, Sharpe to
        ~1e-5 relative, so candidates closer than that may swap ranks).
    chunk_size : candidates per kernel call (default: adaptive, ~0.5 s per chunk on the CPU).
    progress : show a tqdm bar (default: when stderr is a terminal).
    baselines : also solve the exact max-Sharpe and min-variance portfolios with cvxpy.
    start : first candidate index (default 0): ranges of one stream searched separately merge
        (:func:`merge_topk`) into exactly the top-k of one search over their union.
    path : ``"fused"`` (generate, score and keep the top-k in one kernel), ``"gemm"`` (tiles of
        candidates scored by one matrix product, NumPy/BLAS or CuPy/cuBLAS; float64 only; the
        same population and top-k) or ``"auto"``: GEMM from
        :data:`gpusim.search.gemm.GEMM_MIN_ASSETS` assets on, per backend.
    method : ``"random"`` (this fused kernel) or ``"guided"`` (cross-entropy method); options
        (``budget``, ``objective``, ``max_assets``, ``min_weight``, ``rebalance``, ``threshold``,
        ``fees``, ``holdout``, ``population``, ...) go to
        :func:`gpusim.search.guided.search_batched`, which also runs ``"random"`` when given
        any of them (then returning a :class:`~gpusim.search.guided_result.GuidedResult`).

    Returns
    -------
    SearchResult (host memory). Interrupted with Ctrl-C, it holds the best of the candidates
    evaluated so far and ``summary["partial"]`` is True.
    """
    if device is not None:   # one device for numba.cuda and CuPy (gpusim.backend)
        from gpusim.backend import resolve_backend as _resolve

        backend = _resolve(backend, device)
    if method != "random" or options:
        from gpusim.search.guided import search_batched

        return search_batched(market, method=method, budget=options.pop("budget", n),
                              sampler=sampler, alpha=alpha, seed=seed, top_k=top_k,
                              bounds=bounds, rf=rf, ann=ann, symbols=symbols, backend=backend,
                              dtype=dtype, chunk_size=chunk_size, progress=progress,
                              baselines=baselines, solver=solver, start=start, **options)
    be = resolve_backend(backend)
    a = check_args(n=n, top_k=top_k, seed=seed, sampler=sampler, alpha=alpha, rf=rf,
                   dtype=dtype, backend_name=be.name, start=start)
    n, start, seed, alpha, rf, code, key, k = (a["n"], a["start"], a["seed"], a["alpha"],
                                               a["rf"], a["code"], a["key"], a["k"])
    mu, cov, ann_v, ann_src, syms, name = stats_from(market, ann, symbols)
    notes = sigma_warnings(cov, syms, getattr(getattr(market, "prices", None), "shape", (None,))[0])
    notes = ([ANN_NOTE] if ann_src == ANN_ASSUMED else []) + notes
    A = mu.size
    if sampler == "dirichlet":
        dirichlet_alpha(alpha, A)
    if A > _rng.MAX_ASSETS:
        raise GpusimError(f"{A} assets exceed the generator's limit of {_rng.MAX_ASSETS}")
    lo, hi = resolve_bounds(bounds, A, syms)

    if chunk_size is not None:
        chunk = _as_int(chunk_size, "chunk_size", 1, _rng.MAX_CANDIDATES)
    elif be.name == "gpu":
        chunk = min(n, 1 << 12) if be.simulator else min(n, 1 << 24)
    else:
        chunk = min(n, 1 << 16)
    adaptive = chunk_size is None and be.name == "cpu"

    from gpusim.search.gemm import choose_path, gemm_runner

    path = choose_path(path, be.name, A, dtype)
    vfl = var_floor(cov, ann_v)     # riskless candidates (at or below it) are never ranked
    if path == "gemm":
        runner = gemm_runner(be, key, code, alpha, lo, hi, mu, cov, ann_v, rf, k, merge_topk, vfl)
    elif be.name == "cpu":
        runner = _CpuRunner(key, code, alpha, lo, hi, mu, cov, ann_v, rf, k, vfl)
    else:
        runner = _GpuRunner(be, key, code, alpha, lo, hi, mu, cov, ann_v, rf, k, chunk, dtype,
                            vfl)
    show = progress if progress is not None else sys.stderr.isatty()
    # compile (or load from the disk cache) on one candidate, before the bar and the clock
    # start; the result is discarded. A first run says so before it waits.
    with compile_notice("the search kernel", COMPILE_ESTIMATE_S[be.name],
                        enabled=progress is not False) as watch:
        runner.run(start, 1)
    runner.reset()
    from tqdm.auto import tqdm

    bar = tqdm(total=n, unit="cand", unit_scale=True, disable=not show, desc="search",
               smoothing=0.1)
    done = n_valid = 0
    partial = False
    t0 = time.perf_counter()
    stop = Interrupt().install()    # Ctrl-C ends the loop at a chunk boundary
    try:
        while done < n and not stop:
            m = min(chunk, n - done)
            tc = time.perf_counter()
            ok = runner.run(start + done, m)  # the runner keeps the top-k across chunks
            dt = time.perf_counter() - tc
            done += m
            n_valid += ok
            bar.update(m)
            if adaptive and dt > 0:
                chunk = int(min(max(chunk * min(4.0, 0.5 / dt), 1 << 14), 1 << 26))
    except KeyboardInterrupt:
        partial = True
    finally:
        stop.restore()
        bar.close()
        runner.close()
    partial = partial or stop.requested
    best_s, best_i = runner.best()
    elapsed = time.perf_counter() - t0

    W, stats, _ = rescore(seed, best_i, code, alpha, lo, hi, mu, cov, ann_v, rf)
    base = (_baselines(mu, cov, ann_v, rf, lo, hi, bounds is not None, solver, syms)
            if baselines else {})
    n_riskless = runner.n_riskless
    best_s, low = undefined_sharpes(best_s, stats[:, 1], cov, ann_v, base)
    if n_riskless:
        low = [riskless_note(n_riskless, n_valid, cov, ann_v), *low]
    top = pd.DataFrame(W, columns=syms)
    top.insert(0, "expected_volatility", stats[:, 1])
    top.insert(0, "expected_return", stats[:, 0])
    top.insert(0, "sharpe", best_s)
    top.insert(0, "candidate", best_i.astype(np.int64))
    top.index = pd.RangeIndex(1, len(top) + 1, name="rank")
    summary = {
        "task": "search", "market": name, "symbols": syms, "n_assets": A, "ann": ann_v,
        "ann_source": ann_src, "rf": rf, "seed": seed, "sampler": sampler,
        "sampler_code": code, "alpha": alpha, "bounds": None if bounds is None else
        {"lo": lo.tolist(), "hi": hi.tolist()}, "start": start, "n": n, "n_evaluated": done,
        "n_valid": n_valid, "n_riskless": n_riskless, "top_k": k, "backend": be.label,
        "dtype": dtype, "path": path,
        "compile_s": watch.seconds, "compiled": watch.compiled,
        "elapsed_s": elapsed, "candidates_per_s": done / elapsed if elapsed > 0 else float("nan"),
        "partial": partial,
        "best_sharpe": float(best_s[0]) if best_s.size and np.isfinite(best_s[0]) else None,
        "warnings": notes + low,
        "mu": mu.tolist(), "cov": cov.tolist(),
    }
    ms = base.get("max_sharpe")
    summary["exact_max_sharpe"] = (None if ms is None or not np.isfinite(ms.sharpe)
                                   else ms.sharpe)   # undefined (NaN) is null in JSON
    summary["gap"] = (float(best_s[0]) / ms.sharpe if ms is not None and best_s.size
                      and np.isfinite(best_s[0]) and ms.sharpe > 0 else None)
    mv = base.get("min_variance")
    summary["exact_min_variance_vol"] = None if mv is None else mv.vol
    summary["best_weights"] = (dict(zip(syms, W[0].tolist(), strict=True)) if len(W) else None)
    for key, b in (("exact_max_sharpe_weights", ms), ("exact_min_variance_weights", mv)):
        summary[key] = None if b is None else dict(zip(syms, b.weights.tolist(), strict=True))
    summary["versions"] = versions()
    return SearchResult(top=top, baselines=base, summary=summary, mu=mu, cov=cov, lo=lo, hi=hi)


# ----------------------------------------------------------------------------- verify
def _rel(got, want) -> np.ndarray:
    """|got - want| / |want| per entry; 0 where both are NaN (undefined), inf where one is."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.abs(got - want) / np.maximum(np.abs(want), 1e-300)
    return np.where(np.isnan(got) & np.isnan(want), 0.0, np.nan_to_num(r, nan=np.inf))


def verify(result: SearchResult, *, sample: int = 20_000, backend=None) -> dict:
    """Re-check a search result on the CPU reference (:mod:`cpu_ref`).

    1. Regenerates every top-k candidate from (seed, index) and re-scores it in float64: the
       weights must be identical and the Sharpe equal within the dtype's tolerance
       (``TOLERANCE``: 1e-10 for float64, 1e-4 for float32).
    2. Re-runs candidates ``0 .. sample-1`` through the reference search and through the
       result's backend and dtype (or ``backend``; the CPU when that backend is not available
       here): float64 must find the same top-k indices; float32 may swap candidates whose
       Sharpe differ by less than its tolerance, so its top-k must match the reference's
       values within that tolerance.

    Returns a dict with ``max_rel_diff`` (Sharpe), ``weights_identical``, ``same_topk``,
    ``tolerance``, ``backend`` (of the re-run), ``n_checked`` and ``ok``.
    """
    from gpusim.errors import BackendError

    if not isinstance(result, SearchResult) and hasattr(result, "verify"):
        return result.verify()  # guided / batched random results check themselves
    s = result.summary
    dtype = s.get("dtype", "float64")
    tol = TOLERANCE[dtype]
    args = (s["sampler_code"], s["alpha"], result.lo, result.hi, result.mu, result.cov,
            s["ann"], s["rf"])
    vfl = var_floor(result.cov, s["ann"])
    idx = result.top["candidate"].to_numpy(np.int64)
    W, stats, ok = score_nb(s["seed"], idx, *args, vfl)
    ann = s["ann"]
    rel = _rel(result.top["sharpe"].to_numpy(),
               undefined_sharpes(stats[:, 2], stats[:, 1], result.cov, ann)[0])
    same_w = bool(np.array_equal(W, result.weights().to_numpy()))
    m = int(min(sample, s["n"]))
    k = int(min(s["top_k"], m))
    ref_i, ref_s = search_ref(s["seed"], 0, m, *args, k, vfl)
    kw = dict(n=m, sampler=s["sampler"], alpha=s["alpha"], seed=s["seed"], top_k=k,
              bounds=(result.lo, result.hi), rf=s["rf"], ann=s["ann"], symbols=result.symbols,
              progress=False, baselines=False)
    try:
        again = search((result.mu, result.cov), backend=backend or (
            "gpu" if s["backend"].startswith("gpu") else "cpu"), dtype=dtype, **kw)
    except BackendError:
        again = search((result.mu, result.cov), backend="cpu", **kw)
    got_i = again.top["candidate"].to_numpy(np.int64)
    same = bool(np.array_equal(got_i, ref_i))
    # the re-run's top-k re-scored in float64, against the reference's top-k values
    got_s = np.sort(score_nb(s["seed"], got_i, *args)[1][:, 2])[::-1]
    rel2 = np.abs(got_s - ref_s) / np.abs(ref_s) if got_s.size == ref_s.size else [np.inf]
    ref_v = score_nb(s["seed"], ref_i.astype(np.int64), *args)[1][:, 1]
    rel3 = (_rel(again.top["sharpe"].to_numpy(),
                 undefined_sharpes(ref_s, ref_v, result.cov, ann)[0]) if same else [])
    worst = float(max(np.max(rel, initial=0.0), np.max(rel2, initial=0.0),
                      np.max(rel3, initial=0.0)))
    topk_ok = same if dtype == "float64" else bool(np.max(rel2, initial=0.0) < tol)
    return {"n_checked": int(idx.size) + m, "max_rel_diff": worst, "tolerance": tol,
            "weights_identical": same_w, "same_topk": same,
            "backend": again.summary["backend"],
            "ok": bool(same_w and topk_ok and worst < tol and ok.all())}
