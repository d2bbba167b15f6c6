"""Choosing the walk-forward weights (DESIGN §7): the decisions of every weight set at each of
its rebalance dates, by random search (:mod:`gpusim.walkforward.search`) or the exact solver
(:mod:`gpusim.walkforward.exact`), and the report table of :func:`gpusim.walkforward.walkforward`.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gpusim.walkforward import chunked, search
from gpusim.walkforward.constraints import WalkState

METHOD_CODES = {"random": 0, "exact": 1}

__all__ = ["Ctx", "choose", "report_table"]


# --------------------------------------------------------------------------------------------
# Choosing the weights
# --------------------------------------------------------------------------------------------

@dataclass
class Ctx:
    be: Any
    xp: Any
    plan: Any
    code: int
    alpha: float
    seed: int
    ann: float
    rf: float
    solver: Any
    bind_tol: float
    U: np.ndarray
    index: pd.DatetimeIndex
    symbols: list
    dev: dict
    H: dict
    chk: np.ndarray
    pair_key: np.ndarray
    nL: int
    bounds: list
    progress: bool
    nE: int = 1
    estimators: dict | None = None
    stop: Any = None
    lams: tuple = (0.0,)
    objectives: tuple = ("max_sharpe",)

    def score(self, sid, w, obj: int, lam: float = 0.0) -> float:
        """Objective ``obj`` (code) of weights ``w`` on window ``sid`` (host; see
        :func:`cpu_ref.walkforward.objective_1d_nb`).
        """
        if obj == 0:
            return self.sharpe(sid, w)
        r = float(self.H["mex"][sid] @ w)
        v = self.ann * float(w @ self.H["cov"][sid] @ w)
        return (-v, r, r - 0.5 * lam * v)[obj - 1]

    def risks(self, sid, w):
        """(K,) annualised risk of ``w`` per cap: volatility or tracking error."""
        H = self.H
        v = float(w @ H["cov"][sid] @ w)
        return np.sqrt(np.maximum(self.ann * (v - 2.0 * (H["CC"][sid] @ w) + H["cv"][sid]), 0))

    def sharpe(self, sid, w) -> float:
        v = self.ann * float(w @ self.H["cov"][sid] @ w)
        return float(self.H["mex"][sid] @ w) / math.sqrt(v) if v > 0 else -math.inf


def _bar(ctx, total, desc):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False,
                disable=not ctx.progress or not sys.stderr.isatty())


def choose(ctx, method, ws_keys, ws_bars, ws_info, nt_vals, do_gap):
    """Choose the weights of every weight set at each of its rebalance dates.

    Decisions (weight set ``w``, its k-th date ``d``) are processed in batches in date order
    (Ctrl-C is checked between them, :mod:`gpusim.walkforward.chunked`): blocks of dates when
    no constraint is a callable (bounds per date: ``cid`` = date index), else one per date
    (bounds per decision, from the callables, which see the previous weights). Within a
    batch, identical (date, window, bounds, objective, method) problems are solved once: one
    random-search task with the largest ``num_tests`` (the others are checkpoints), or one exact
    solve. Each weight set's method is ``ws_info[w]["method"]`` (default ``method``). Returns
    one dict of (K,)-arrays per weight set (weights (K, A), status, candidate, ...).
    """
    plan, A, nC = ctx.plan, len(ctx.symbols), len(ctx.plan.constraints)
    dec = []
    for w_i, b in enumerate(ws_bars):
        K = len(b)
        dec.append({"bars": b, "weights": np.zeros((K, A)), "status": np.full(K, "ok", object),
                    "candidate": np.full(K, -1, np.int64), "scale": np.ones(K),
                    "seed": np.zeros(K, np.uint64), "n_accepted": np.zeros(K, np.int64),
                    "sharpe": np.full(K, np.nan), "exact_sharpe": np.full(K, np.nan),
                    "score": np.full(K, np.nan), "exact_score": np.full(K, np.nan),
                    "fallback": np.zeros(K, bool), "bound": np.zeros((K, nC), bool),
                    "n": nt_vals[ws_keys[w_i][2]]})
    bw = np.concatenate([np.full(len(b), w_i) for w_i, b in enumerate(ws_bars)])
    bk = np.concatenate([np.arange(len(b)) for b in ws_bars])
    bd = np.searchsorted(ctx.U, np.concatenate(ws_bars))
    cache: dict = {}
    prev: list = [None] * len(ws_keys)
    lk_of = np.array([k[1] * ctx.nE + k[3] for k in ws_keys], dtype=np.int64)
    obj_of = np.array([ctx.objectives.index(i["objective"]) if "objective" in i else 0
                       for i in ws_info], dtype=np.int64)
    meth_of = np.array([METHOD_CODES[i.get("method", method)] for i in ws_info], np.int64)
    lam_of = np.array([k[6] if len(k) > 6 else 0 for k in ws_keys], np.int64)
    n_of = np.array([D["n"] for D in dec], dtype=np.int64)
    work = np.where(meth_of[bw] == 0, chunked.work("random", do_gap, n_of[bw]),
                    chunked.work("exact", do_gap, n_of[bw]))
    batches = chunked.date_batches(bd, bw, work, plan.has_callable)
    for D, o, m in zip(dec, obj_of, meth_of):
        D["obj"], D["method"] = int(o), ("random", "exact")[m]
    ctx.H["scored"] = ctx.H["generated"] = 0
    pbar = _bar(ctx, len(bw), f"walkforward {method}")
    for sel in batches:
        if chunked.stop_before(ctx, bd[sel]):   # Ctrl-C: the dates from here on are dropped
            break
        w_b, k_b, d_b = bw[sel], bk[sel], bd[sel]
        sids = np.searchsorted(ctx.pair_key, d_b * ctx.nL * ctx.nE + lk_of[w_b]).astype(
            np.int64)
        if plan.has_callable:   # bounds per decision, from the callables
            rows = []
            for w_i, k, d, sid in zip(w_b, k_b, d_b, sids):
                H = ctx.H
                state = WalkState(date=ctx.index[ctx.U[d]], bar=int(ctx.U[d]),
                                  symbols=ctx.symbols, params=ws_info[w_i],
                                  prev_weights=prev[w_i], mu=H["mu"][sid], cov=H["cov"][sid],
                                  betas={} if H["betas"] is None else {
                                      n: H["betas"][sid, i] for i, n in
                                      enumerate(plan.bench_names)})
                r = [x[d].copy() for x in ctx.bounds]
                plan.apply_callables(state, *r)
                rows.append(r)
                dec[w_i].setdefault("cbounds", {})[k] = r
            bounds = [np.ascontiguousarray(np.stack([r[i] for r in rows]))
                      for i in range(len(rows[0]))]
            cids = np.arange(len(sel))
        else:
            bounds, cids = ctx.bounds, d_b
        m_b = meth_of[w_b]
        tkey, tinv = np.unique(np.stack([d_b, sids, cids, obj_of[w_b], m_b, lam_of[w_b]], 1),
                               axis=0, return_inverse=True)
        tinv = tinv.reshape(-1)
        rt = np.flatnonzero(tkey[:, 4] == 0)            # random-search tasks
        if len(rt):
            pos = np.full(len(tkey), -1)
            pos[rt] = np.arange(len(rt))
            rk, rj = tkey[rt], np.flatnonzero(m_b == 0)
            t_n = np.zeros(len(rk), np.int64)
            np.maximum.at(t_n, pos[tinv[rj]], n_of[w_b[rj]])
            res = search.run_search(ctx.be, ctx.xp, ctx.seed, ctx.U, rk[:, 1], rk[:, 2], t_n,
                                    rk[:, 0], ctx.code, ctx.alpha, ctx.dev, *bounds,
                                    ctx.plan.eqtol, plan.cash, ctx.ann, ctx.chk, rk[:, 3],
                                    np.asarray(ctx.lams, dtype=np.float64)[rk[:, 5]])
            ctx.H["scored"] += int(t_n.sum())
            ctx.H["generated"] += int(pd.Series(t_n).groupby(rk[:, 0]).max().sum())
            _fill_random(ctx, dec, w_b[rj], k_b[rj], res, pos[tinv[rj]], rk, bounds, n_of)
        if (m_b == 1).any() or do_gap:
            sol = []
            for _d, sid, cid, obj, _m, li in tkey:
                b = [x[cid] for x in bounds]
                args = (ctx.H["F"][sid], ctx.H["mex"][sid], *b[:2], ctx.H["G"][sid], *b[2:4])
                caps = _cap_values(ctx, sid, b[4])
                if obj == 0:
                    w, status = _solver(ctx, cache, b[2], b[3], obj).solve(*args, caps=caps)
                else:
                    w, status = _solver(ctx, cache, b[2], b[3], obj).solve(
                        *args, caps=caps, ann=ctx.ann, lam=ctx.lams[li])
                ok_w = w is not None
                if ok_w and obj != 1 and ctx.plan.K:
                    w = _polish(ctx, sid, w, obj, ctx.lams[li], b)
                sol.append((w, status, ctx.sharpe(sid, w) if ok_w else np.nan,
                            ctx.score(sid, w, obj, ctx.lams[li]) if ok_w else np.nan, b))
            for j, (w_i, k) in enumerate(zip(w_b, k_b)):
                w, status, sh, sc, b = sol[tinv[j]]
                D = dec[w_i]
                D["exact_sharpe"][k], D["exact_score"][k] = sh, sc
                if m_b[j] == 1:
                    D["status"][k] = "ok" if status == "optimal" else status
                    if w is not None:
                        D["weights"][k], D["sharpe"][k], D["score"][k] = w, sh, sc
                        D["bound"][k] = plan.activity(w, ctx.H["G"][sids[j]], *b[:4],
                                                      ctx.bind_tol) | plan.cap_flags(
                            ctx.risks(sids[j], w), b[4], ctx.bind_tol)
        for w_i in np.unique(w_b):   # fallbacks: keep the last good weights (cash before any)
            D = dec[w_i]
            ks = np.sort(k_b[w_b == w_i])
            ok = np.isin(D["status"][ks], ("ok", "optimal_inaccurate"))
            last = np.maximum.accumulate(np.where(ok, np.arange(len(ks)), -1))
            Wk = D["weights"][ks]
            fill = np.zeros(A) if prev[w_i] is None else prev[w_i]
            D["weights"][ks] = np.where(last[:, None] >= 0, Wk[np.maximum(last, 0)], fill)
            D["fallback"][ks] = ~ok
            D["bound"][ks[~ok]] = False
            prev[w_i] = D["weights"][ks[-1]].copy()
        pbar.update(len(sel))
    pbar.close()
    for D in dec:
        with np.errstate(divide="ignore", invalid="ignore"):  # min_variance: variance ratio
            num, den = ((D["exact_score"], D["score"]) if D["obj"] == 1 else
                        (D["score"], D["exact_score"]))
            D["gap"] = np.where(~D["fallback"] & (den * (-1.0 if D["obj"] == 1 else 1.0) > 0),
                                num / den, np.nan)
    return dec


def _solver(ctx, cache, gl, gu, obj=0):
    """The cvxpy problem for this objective and structure of equality rows (built once, then
    re-used).
    """
    from gpusim.walkforward.exact import ExactMaxSharpe
    from gpusim.walkforward.exact_objectives import ExactObjective

    eq = tuple(bool(x) for x in (gl == gu) & np.isfinite(gu))
    key = (eq, int(obj))
    A = len(ctx.symbols)
    rows = [A if b < 0 else A + 1 for b in ctx.plan.cap_bench]
    if key not in cache:
        cache[key] = (ExactMaxSharpe(A, np.array(eq, bool), ctx.plan.cash, ctx.solver,
                                     cap_rows=rows) if obj == 0 else
                      ExactObjective(A, np.array(eq, bool), ctx.plan.cash, ctx.objectives[obj],
                                     cap_rows=rows, solver=ctx.solver))
    return cache[key]


def _polish(ctx, sid, w, obj, lam, b):
    """:func:`~gpusim.walkforward.polish.polish_vol_cap` when exactly one volatility cap is in
    force and no other cap binds at ``w`` (else ``w``).
    """
    from gpusim.walkforward.polish import polish_vol_cap

    caps, plan = b[4], ctx.plan
    vol = [k for k, col in enumerate(plan.cap_bench) if col < 0 and np.isfinite(caps[k])]
    if len(vol) != 1:
        return w
    risk = ctx.risks(sid, w)
    if any(np.isfinite(caps[k]) and risk[k] >= caps[k] * (1 - 1e-6)
           for k in range(plan.K) if k != vol[0]):
        return w
    return polish_vol_cap(w, ctx.H["mex"][sid], ctx.H["cov"][sid], ctx.ann, caps[vol[0]],
                          b[0], np.minimum(b[1], 1.0), ctx.H["G"][sid], b[2], b[3], plan.cash,
                          lambda x: ctx.score(sid, x, obj, lam))


def _factor(M):
    """F with ``F' F = M`` (symmetric PSD ``M``): a square root from the eigendecomposition."""
    lam, V = np.linalg.eigh(0.5 * (M + M.T))
    return np.sqrt(np.maximum(lam, 0.0))[:, None] * V.T


def _cap_values(ctx, sid, cap):
    """[(C, c)] of the risk caps at window ``sid`` for caps ``cap`` (K,) (inf: none, C = 0):
    ``|C w - c| = risk(w) / cap`` (volatility ``sqrt(ann) |F w|``; tracking error
    ``sqrt(ann) |F_ab [w; -1]|`` with ``F_ab`` a factor of the joint (asset, benchmark)
    covariance).
    """
    out, A, sq = [], len(ctx.symbols), np.sqrt(ctx.ann)
    for k, col in enumerate(ctx.plan.cap_bench):
        rows = A if col < 0 else A + 1
        if not np.isfinite(cap[k]):
            out.append((np.zeros((rows, A)), np.zeros(rows)))
        elif col < 0:
            out.append((sq * ctx.H["F"][sid] / cap[k], np.zeros(A)))
        else:
            J = np.empty((A + 1, A + 1))
            J[:A, :A] = ctx.H["cov"][sid]
            J[:A, A] = J[A, :A] = ctx.H["CC"][sid, k]
            J[A, A] = ctx.H["cv"][sid, k]
            Fj = sq * _factor(J) / cap[k]
            out.append((Fj[:, :A], Fj[:, A]))
    return out


def _fill_random(ctx, dec, w_b, k_b, res, tinv, tkey, bounds, n_of):
    """Copy each decision's search result (its task, its checkpoint) into ``dec``: candidate,
    scale, weights = scale x the regenerated candidate, and which constraints bound (the best
    candidate ignoring the constraints breaks them).
    """
    c = np.searchsorted(ctx.chk, n_of[w_b])
    get = {k: res[k][tinv, c] for k in ("best", "scale", "n_accepted", "sharpe", "best_any")}
    d, sid, cid = tkey[tinv, 0], tkey[tinv, 1], tkey[tinv, 2]
    seeds, _ = search.period_keys_nb(np.uint64(ctx.seed), ctx.U[d])
    lo = np.ascontiguousarray(bounds[0][cid])
    Y = search.regenerate_nb(seeds, get["best"], ctx.code, ctx.alpha, lo) * get["scale"][:, None]
    bound = np.zeros((len(w_b), len(ctx.plan.constraints)), bool)
    if bound.shape[1]:
        Ya = search.regenerate_nb(seeds, get["best_any"], ctx.code, ctx.alpha, lo)
        for j in range(len(w_b)):
            b = [x[cid[j]] for x in bounds]
            bound[j] = ctx.plan.violations(Ya[j], ctx.H["G"][sid[j]], *b[:4]) | \
                ctx.plan.cap_flags(ctx.risks(sid[j], Ya[j]), b[4], 0.0, broken=True)
    for w_i in np.unique(w_b):
        sel = w_b == w_i
        D, ks = dec[w_i], k_b[sel]
        D["candidate"][ks], D["scale"][ks] = get["best"][sel], get["scale"][sel]
        D["n_accepted"][ks], D["score"][ks] = get["n_accepted"][sel], get["sharpe"][sel]
        D["sharpe"][ks] = [ctx.sharpe(sid[j], Y[j]) if get["best"][j] >= 0 else -np.inf
                           for j in np.flatnonzero(sel)]
        D["seed"][ks], D["weights"][ks], D["bound"][ks] = seeds[sel], Y[sel], bound[sel]
        D["status"][ks[get["best"][sel] < 0]] = "no_candidate"


def report_table(dec, wsid, idx, plan, method, do_gap):
    """One row per combination: rebalances, fallbacks, in-sample Sharpe and score, acceptance
    (random), exact Sharpe and gap (when computed), ``bound_<constraint>`` rates.
    """
    rows = []
    for D in dec:
        ok = ~D["fallback"]
        r = {"n_rebalances": len(ok), "n_fallback": int((~ok).sum()),
             "insample_sharpe": float(np.mean(D["sharpe"][ok])) if ok.any() else np.nan,
             "insample_score": float(np.mean(D["score"][ok])) if ok.any() else np.nan}
        if D["method"] == "random":
            r["acceptance"] = float(np.mean(D["n_accepted"] / D["n"]))
        if do_gap or D["method"] == "exact":
            es = D["exact_sharpe"][np.isfinite(D["exact_sharpe"])]
            r["exact_sharpe"] = float(es.mean()) if es.size else np.nan
        if do_gap and D["method"] == "random":
            g = D["gap"][np.isfinite(D["gap"])]
            r["gap_mean"] = float(g.mean()) if g.size else np.nan
            r["gap_min"] = float(g.min()) if g.size else np.nan
        for i, name in enumerate(plan.names):
            r[f"bound_{name}"] = float(D["bound"][ok, i].mean()) if ok.any() else np.nan
        rows.append(r)
    return pd.DataFrame([rows[w] for w in wsid], index=idx)

