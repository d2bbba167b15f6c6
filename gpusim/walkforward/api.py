"""Walk-forward re-optimisation over parameter grids (DESIGN §7, issue 5).

At each rebalance date ``t`` of a rule (``every``), estimate mu and cov on the lookback window
(returns of bars ``t - lookback .. t-1``; all earlier bars with ``lookback=None``), choose
weights - the best ex-ante Sharpe of ``num_tests`` random candidates, or the exact cvxpy
optimum - subject to the constraints in force at ``t``, and trade to them at the close of ``t``
with the execution model of DESIGN §6. Every combination of the grid
``every x lookback x num_tests x fees`` (each may be a :class:`~gpusim.grid.Param`) is
simulated on the same bars ``start .. T-1`` so that their metrics compare.

Batching: the windows' statistics of every (date, lookback) are computed at once
(:func:`gpusim.walkforward.stats.window_stats`, NumPy or CuPy); the random search runs every
(date, lookback) task of the grid in one fused kernel, candidates shared by all tasks of a date
(the period's stream depends on (seed, date) only, see :mod:`cpu_ref.walkforward`) and every
``num_tests`` value read from one pass as a checkpoint; fees do not change the weights, so each
(every, lookback, num_tests) weight set is chosen once and executed for every fee.

Callable constraints see the weights chosen at the previous rebalance, so with a callable the
dates are processed in order (still batched across the weight sets rebalancing that day).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pandas as pd

from cpu_ref.backtest import METRICS
from cpu_ref.walkforward import OBJECTIVES
from gpusim.backend import resolve_backend
from gpusim.compiling import compile_notice
from gpusim.data.load import as_market
from gpusim.errors import GpusimError
from gpusim.grid import Param, build_grid
from gpusim.results import jsonable, versions
from gpusim.specs import axis_values, fee_value, rebalance_mask
from gpusim.validate import cash_and_rate, date_text, dirichlet_alpha, integer, number
from gpusim.walkforward import chunked, execute, stats
from gpusim.walkforward.choose import Ctx, choose, report_table
from gpusim.walkforward.constraint_plan import compile_constraints
from gpusim.walkforward.estimators import estimate, parse_estimator
from gpusim.walkforward.result import WalkForwardResult, _State

__all__ = ["DEFAULT_HISTORY", "METHODS", "METRICS", "WalkForwardResult", "walkforward"]

METHODS = ("random", "exact")
DEFAULT_HISTORY = 63
"""Returns before the first rebalance when every lookback is None and ``start`` is not given."""
WS_KEYS = ("every", "lookback", "num_tests", "estimator", "objective", "method",
           "risk_aversion")
"""Grid axes that change the weights (fees do not): one weight set per combination of them."""


def _lookback(x):
    if x is None or (isinstance(x, str) and x.lower() in ("none", "all")):
        return None
    try:
        ok = not isinstance(x, (bool, np.bool_)) and float(x) == int(x) and int(x) >= 2
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise GpusimError(f"lookback={x!r} must be None (all past returns) or an int >= 2")
    return int(x)


def _num_tests(x):
    from cpu_ref.rng import MAX_CANDIDATES

    try:
        ok = not isinstance(x, (bool, np.bool_)) and float(x) == int(x) and 1 <= int(
            x) <= MAX_CANDIDATES
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise GpusimError(f"num_tests={x!r} must be a whole number from 1 to 2**40")
    return int(x)


def _axis(arg, conv):
    """(grid entry, values) for an argument that may be a Param of values."""
    if isinstance(arg, Param):
        vals = [conv(v) for v in arg.values]
        return Param(vals, arg.name, arg.level), vals
    return conv(arg), [conv(arg)]


def _start(start, index, lookbacks) -> int:
    T = len(index)
    finite = [L for L in lookbacks if L is not None]
    if start is None:
        s = 1 + (max(finite) if finite else DEFAULT_HISTORY)
    elif isinstance(start, (int, np.integer)) and not isinstance(start, (bool, np.bool_)):
        s = int(start)
    else:
        try:
            s = int(index.searchsorted(pd.Timestamp(start)))
        except (TypeError, ValueError):
            raise GpusimError(f"start={start!r} is not a bar index or a date") from None
    if not 3 <= s <= T - 2:
        raise GpusimError(f"start={start!r} gives bar {s} of {T}: the first rebalance needs at "
                          f"least 2 returns before it and 2 bars after it; use a start from 3 to "
                          f"{T - 2} (or fewer/shorter lookbacks)")
    return s


def _method(x) -> str:
    if x not in METHODS:
        raise GpusimError(f"method={x!r} is unknown; use 'random' or 'exact'")
    return x


def _risk_aversion(x) -> float:
    lam = number(x, "risk_aversion")
    if not (lam >= 0 and math.isfinite(lam)):
        raise GpusimError(f"risk_aversion={x!r} must be a number >= 0")
    return lam


def _objective(x) -> str:
    name = str(x).strip().lower()
    if name not in OBJECTIVES:
        raise GpusimError(f"objective={x!r} is unknown; use one of {', '.join(OBJECTIVES)}")
    return name


def _bound_by_objective(dec, ws_info, plan) -> dict:
    """{objective: {constraint: fraction of the (non-fallback) rebalances where it bound}}."""
    out = {}
    for obj in dict.fromkeys(i["objective"] for i in ws_info):
        rows = [D["bound"][~D["fallback"]] for D, i in zip(dec, ws_info)
                if i["objective"] == obj]
        b = np.concatenate(rows) if rows else np.zeros((0, len(plan.names)), bool)
        out[obj] = {n: (float(b[:, j].mean()) if len(b) else None)
                    for j, n in enumerate(plan.names)}
    return out


def _cap_stats(xp, cov_all, plan, A):
    """(CC (S, K, A), cv (S, K)) of the risk caps: the assets' covariances with each cap's
    benchmark and its variance (zeros for a volatility cap), contiguous in ``xp``.
    """
    S, K = cov_all.shape[0], plan.K
    CC, cv = xp.zeros((S, K, A)), xp.zeros((S, K))
    for k, col in enumerate(plan.cap_bench):
        if col >= 0:
            CC[:, k] = cov_all[:, :A, A + col]
            cv[:, k] = cov_all[:, A + col, A + col]
    return xp.ascontiguousarray(CC), xp.ascontiguousarray(cv)


def _estimate(xp, close, a, t, pair_e, est_vals, A, index, symbols):
    """(mu (S, K), cov (S, K, K)) of every window by its estimator (one batch per estimator)."""
    if len(est_vals) == 1:
        return estimate(xp, close, a, t, est_vals[0], A, index, symbols)
    K = close.shape[1]
    mu, cov = xp.empty((len(a), K)), xp.empty((len(a), K, K))
    for e, est in enumerate(est_vals):
        sel = np.flatnonzero(pair_e == e)
        if len(sel):
            m, c = estimate(xp, close, a[sel], t[sel], est, A, index, symbols)
            mu[xp.asarray(sel)], cov[xp.asarray(sel)] = m, c
    return mu, cov


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------

def walkforward(market, every: Any = "M", lookback: Any = None, num_tests: Any = 1000,
                fees: Any = 0.0, method: Any = "random", constraints=None, seed: int = 0,
                init_cash: float = 1.0, rf: float = 0.0, start: Any = None,
                sampler: str = "dirichlet", alpha: float = 1.0, gap: bool | None = None,
                solver: str | None = None, bind_tol: float = 1e-6, backend: str = "auto",
                progress: bool = True, estimator: Any = "sample", objective: Any = "max_sharpe",
                risk_aversion: float = 1.0, device: int | None = None) -> WalkForwardResult:
    """Walk-forward re-optimisation over the grid every x lookback x num_tests x fees.

    Parameters
    ----------
    market : Market or prices DataFrame.
    every : rebalance rule ("D", "W", "M", "Q", "Y", an int k, "never" or a bool mask) or a Param.
    lookback : estimation window in returns (int >= 2) or None (all past returns), or a Param.
    num_tests : random candidates per rebalance (int >= 1), or a Param (read as checkpoints of
        one pass: ``num_tests=n`` is candidates 0..n-1 of the period's stream). Ignored by
        ``method="exact"`` (the level is kept so that tables of both methods align).
    fees : proportional fee in [0, 1), or a Param.
    method : "random" (best of num_tests candidates) or "exact" (cvxpy optimum), or a Param of
        both (a ``method`` level).
    constraints : a list of :mod:`gpusim.walkforward.constraints` objects (WeightBounds,
        GroupBounds, Beta, Budget, Volatility, TrackingError), or None (long-only, fully
        invested).
    seed : candidate streams are seeded per period by (seed, date), see :mod:`cpu_ref.walkforward`.
    init_cash, rf : starting cash; annual risk-free rate (ex-ante Sharpe and metrics).
    start : first simulated bar (int bar index or date; bar 0 of the execution). Default: the
        first bar with a full window for every finite lookback (1 + max lookback), or
        1 + DEFAULT_HISTORY when every lookback is None.
    sampler, alpha : candidate sampler ("dirichlet" default, or "uniform") and concentration.
    gap : solve the exact problem too and report the in-sample gap, Sharpe of the chosen
        weights / exact max Sharpe (<= 1; 1 is optimal, as in search): True computes it (one
        exact solve per date and lookback); None (default) and False do not.
    solver : cvxpy solver for the exact problems (default Clarabel, then OSQP, SCS, ECOS).
    bind_tol : a bound is active at weights within this distance of it (reports).
    backend : "auto", "cpu", "gpu" or "gpu:N"; ``device``: the CUDA device (default
        ``GPUSIM_DEVICE``, else 0).
    progress : tqdm bar on a TTY.
    estimator : (mu, cov) of each window: "sample", "ewma:<half-life>", "ledoit_wolf", a
        callable ``f(returns DataFrame) -> (mu, cov)`` (per bar; called once per window), or a
        Param of them (:mod:`gpusim.walkforward.estimators`).
    objective : "max_sharpe", "min_variance", "max_return" or "max_utility", or a Param
        (:mod:`cpu_ref.walkforward` defines each score).
    risk_aversion : lambda of max_utility, ``(ann mu - rf) . w - lambda/2 ann w' cov w``, or a
        Param of values (other objectives ignore it).

    Returns
    -------
    WalkForwardResult
        ``metrics`` (one row per combination, :data:`METRICS`), ``report`` (constraint binding
        rates, acceptance, fallbacks, in-sample gap), ``allocations(**levels)``,
        ``decisions(**levels)``, ``records(**levels)``, ``verify()``, ``save(out)``.
    """
    t_all = time.perf_counter()
    mkt = as_market(market)
    prices = mkt.prices
    index = prices.index
    symbols = [str(s) for s in prices.columns]
    close = np.array(prices.to_numpy(dtype=np.float64), order="C")  # writable C copy
    T, A = close.shape
    ann = float(mkt.ann)
    meth_entry, meth_vals = _axis(method, _method)
    method = ",".join(dict.fromkeys(meth_vals))     # the label in summaries
    from cpu_ref.rng import sampler_code

    if sampler == "dirichlet":
        alpha = dirichlet_alpha(alpha, A)
    try:
        code = sampler_code(sampler, float(alpha))
    except ValueError as exc:
        raise GpusimError(str(exc)) from None
    if not (float(alpha) > 0 and math.isfinite(alpha)):
        raise GpusimError(f"alpha={alpha!r} must be > 0")
    integer(seed, "seed", 0, 2 ** 64 - 1, expect="an int >= 0")
    init_cash, rf = cash_and_rate(init_cash, rf)
    bind_tol = number(bind_tol, "bind_tol")
    if gap not in (None, True, False):
        raise GpusimError(f"gap={gap!r} must be True (compute the in-sample gap), False or None "
                          "(do not)")

    if isinstance(every, Param):
        rl = [rebalance_mask(r, index, "every") for r in every.values]
        labels = [lab if lab != "mask" else f"mask{i}" for i, (lab, _) in enumerate(rl)]
        every_entry: Any = Param(labels, every.name, every.level)
        masks_full = np.stack([m for _, m in rl])
    else:
        lab, m = rebalance_mask(every, index, "every")
        every_entry, labels, masks_full = lab, [lab], m[None, :]
    lb_entry, lb_vals = _axis(lookback, _lookback)
    nt_entry, nt_vals = _axis(num_tests, _num_tests)
    fee_entry, fee_vals = axis_values(fees, fee_value)
    est_vals = [parse_estimator(v) for v in (estimator.values if isinstance(estimator, Param)
                                             else [estimator])]
    est_labels = [e.label for e in est_vals]
    if len(set(est_labels)) != len(set(est_vals)):   # (a zipped Param may repeat one)
        raise GpusimError(f"estimator: two estimators are labelled alike ({est_labels}); give "
                          "the callables distinct function names")
    est_entry = (Param(est_labels, estimator.name, estimator.level)
                 if isinstance(estimator, Param) else est_labels[0])
    obj_entry, obj_vals = _axis(objective, _objective)
    ra_entry, ra_vals = _axis(risk_aversion, _risk_aversion)
    if not any(isinstance(e, Param) for e in (every_entry, lb_entry, nt_entry, fee_entry,
                                              est_entry, obj_entry, meth_entry, ra_entry)):
        every_entry = Param(labels)
    entries = {"method": meth_entry, "every": every_entry, "lookback": lb_entry,
               "estimator": est_entry, "objective": obj_entry, "risk_aversion": ra_entry,
               "num_tests": nt_entry, "fees": fee_entry}
    grid = build_grid(entries, {"lookback": pd.Index(lb_vals, dtype=object)}
                      if isinstance(lb_entry, Param) else None)
    axis_of = {k: (e.name or k) for k, e in entries.items() if isinstance(e, Param)}
    s0 = _start(start, index, lb_vals)
    plan = compile_constraints(constraints, symbols, index)
    be = resolve_backend(backend, device)
    xp = be.xp

    # ---- weight sets, dates and windows ------------------------------------------------------
    C = grid.size
    codes = grid.codes(0, C)
    z = np.zeros(C, dtype=np.int64)
    cc = {k: codes[axis_of[k]] if k in axis_of else z for k in entries}
    ws_keys, wsid = np.unique(np.stack([cc[k] for k in WS_KEYS], 1), axis=0,
                              return_inverse=True)
    wsid = wsid.reshape(-1).astype(np.int64)
    masks = np.ascontiguousarray(masks_full[:, s0:])
    masks[:, 0] = True
    ws_bars = [s0 + np.flatnonzero(masks[k[0]]) for k in ws_keys]
    U = np.unique(np.concatenate(ws_bars))
    nL, nE = len(lb_vals), len(est_vals)
    pair_key = np.unique(np.concatenate([(np.searchsorted(U, b) * nL + k[1]) * nE + k[3]
                                         for b, k in zip(ws_bars, ws_keys)]))
    pair_e = pair_key % nE
    pair_d, pair_l = pair_key // nE // nL, pair_key // nE % nL
    t_end = U[pair_d]
    t_beg = np.array([1 if lb_vals[lk] is None else max(1, t - lb_vals[lk])
                      for t, lk in zip(t_end, pair_l)], dtype=np.int64)
    chk = np.array(sorted(set(nt_vals)), dtype=np.int64)

    tc = time.perf_counter()
    allp = close if plan.bench_close is None else np.hstack([close, plan.bench_close])
    mu_all, cov_all = _estimate(xp, xp.asarray(allp), t_beg, t_end, pair_e, est_vals, A, index,
                                symbols)
    mu, cov = mu_all[:, :A], xp.ascontiguousarray(cov_all[:, :A, :A])
    nb = len(plan.bench_names)
    betas = (xp.stack([cov_all[:, :A, A + b] / cov_all[:, A + b, A + b][:, None]
                       for b in range(nb)], axis=1) if nb else None)
    mex = xp.ascontiguousarray(ann * mu - rf)
    F, tri = stats.factorize(xp, cov)
    gb = stats.bound_vectors(xp, cov)
    vfl = stats.var_floors(xp, cov, ann)
    G = plan.G(xp, betas, len(pair_key))
    CC, cv = _cap_stats(xp, cov_all, plan, A)
    H = {k: (v if xp is np or v is None else xp.asnumpy(v)) for k, v in (
        ("mu", mu), ("cov", cov), ("F", F), ("mex", mex), ("G", G), ("betas", betas),
        ("CC", CC), ("cv", cv), ("vfl", vfl))}
    lo, hi, gl, gu, cap = plan.bounds(index[U])
    t_stats = time.perf_counter() - tc

    ctx = Ctx(be=be, xp=xp, plan=plan, code=code, alpha=float(alpha), seed=int(seed), ann=ann,
               rf=rf, solver=solver, bind_tol=bind_tol, U=U, index=index, symbols=symbols,
               dev={"F": F, "tri": tri, "mex": mex, "gb": gb, "G": G, "CC": CC, "cv": cv,
                    "vfl": vfl},
               H=H, chk=chk, pair_key=pair_key, nL=nL, bounds=[lo, hi, gl, gu, cap],
               progress=progress, nE=nE,
              estimators=dict(zip(est_labels, est_vals)), lams=tuple(ra_vals),
              objectives=OBJECTIVES)
    do_gap = "random" in meth_vals and gap is True  # None: not computed unless asked
    if plan.K and plan.cash and "max_sharpe" in obj_vals and ("exact" in meth_vals or do_gap):
        raise GpusimError("the exact max_sharpe problem with a Budget (cash) does not take "
                          "Volatility/TrackingError caps; use objective='max_return' or "
                          "'max_utility', method='random', or drop the Budget")
    ws_info = [{"every": labels[k[0]], "lookback": lb_vals[k[1]], "num_tests": nt_vals[k[2]],
                "estimator": est_labels[k[3]], "objective": obj_vals[k[4]],
                "method": meth_vals[k[5]], "risk_aversion": ra_vals[k[6]]} for k in ws_keys]
    tc = time.perf_counter()
    with (compile_notice("the walk-forward kernels", 15, enabled=bool(progress)),
          chunked.interruptible(ctx)):       # Ctrl-C: stop between blocks of dates
        dec = choose(ctx, method, ws_keys, ws_bars, ws_info, nt_vals, do_gap)
    t_choose = time.perf_counter() - tc
    if chunked.stopped(ctx):               # simulate the bars before the first date not chosen
        close, masks, ws_bars = chunked.trim(dec, ws_bars, masks, close, ctx, s0)
        T, index = len(close), ctx.index

    # ---- execution -------------------------------------------------------------------------
    counts = np.array([len(b) for b in ws_bars], dtype=np.int64)
    woff = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    Wall = np.ascontiguousarray(np.concatenate([d["weights"] for d in dec]))
    mid = np.ascontiguousarray(ws_keys[wsid, 0].astype(np.int64))
    fee_c = np.ascontiguousarray(fee_vals[cc["fees"]])
    close_sim = np.ascontiguousarray(close[s0:])
    tc = time.perf_counter()
    if be.name == "gpu":
        from gpusim.walkforward.cuda import execute_gpu

        out = execute_gpu(close_sim, Wall, woff, wsid, masks, mid, fee_c, init_cash, ann, rf)
    else:
        out = execute.execute_cpu_nb(close_sim, Wall, woff, wsid, masks, mid, fee_c, init_cash, ann,
                                rf)
    t_exec = time.perf_counter() - tc

    idx = grid.index_block(0, C)
    metrics = pd.DataFrame(out, index=idx, columns=list(METRICS))
    report = report_table(dec, wsid, idx, plan, method, do_gap)
    statuses: dict[str, int] = {}
    for d in dec:
        for s in d["status"]:
            statuses[s] = statuses.get(s, 0) + 1
    summary = {
        "command": "walkforward", "method": method, "backend": be.label, "n_combinations": C,
        "n_weight_sets": len(ws_keys), "n_dates": len(U), "n_windows": len(pair_key),
        "n_bars": T, "start": date_text(index[s0]), "start_bar": s0, "end": date_text(index[-1]),
        "n_simulated_bars": T - s0, "n_assets": A, "symbols": symbols, "ann": ann,
        "ann_source": getattr(mkt, "ann_source", ""), "seed": int(seed), "sampler": sampler,
        "alpha": float(alpha), "num_tests": [int(x) for x in chk], "init_cash": init_cash,
        "rf": rf, "constraints": [repr(c) for c in plan.constraints], "cash_allowed": plan.cash,
        "gap": do_gap, "estimators": est_labels, "objectives": obj_vals,
        "risk_aversion": ra_vals if isinstance(ra_entry, Param) else ra_vals[0],
        "bound_by_objective": _bound_by_objective(dec, ws_info, plan),
        "statuses": statuses,
        "levels": {a.name: len(a.labels) for a in grid.axes},
        "fixed": {k: jsonable(v) for k, v in grid.fixed.items()},
        "timings_s": {"statistics": round(t_stats, 6), "choose": round(t_choose, 6),
                      "execution": round(t_exec, 6),
                      "total": round(time.perf_counter() - t_all, 6)},
        "candidates_scored": ctx.H["scored"], "candidates_generated": ctx.H["generated"],
        "data": mkt.data_info() if hasattr(mkt, "data_info") else {"name": mkt.name},
        "versions": versions(), "partial": chunked.stopped(ctx), "n_dates_done": len(ctx.U),
    }
    st = _State(close=close, s0=s0, masks=masks, Wall=Wall, woff=woff, counts=counts,
                wsid=wsid, fee_c=fee_c, dec=dec, ws_info=ws_info, grid=grid, ctx=ctx,
                init_cash=init_cash, mid=mid)
    return WalkForwardResult(metrics, report, summary, st)
