"""Re-check a guided or batched random search result on the CPU reference (:mod:`cpu_ref`)."""

from __future__ import annotations

import numpy as np

from gpusim.search import sampling as smp

TOLERANCE = 1e-10       # verify(): largest relative difference accepted against cpu_ref
SUM_TOL = 1e-12         # weights sum to 1 within this
OOS_PREFIX = "oos_"     # column prefix of the held-out metrics


def regenerate(result) -> np.ndarray:
    """Weights (k, A) of the top-k candidates, rebuilt from their streams alone."""
    from cpu_ref.rng import population_nb, sampler_code

    s, p = result.summary, result.problem
    ids = result.top["candidate"].to_numpy(np.int64)
    gens = result.top["generation"].to_numpy(np.int64)
    A = p.A
    W = np.empty((ids.size, A))
    for r, (i, g) in enumerate(zip(ids, gens)):
        if s["method"] == "guided":
            par = s["generation_params"][str(g)]
            X = smp.draw_logits_nb(smp.generation_key(s["seed"], int(g)),
                                   int(i - g * s["population"]), 1, np.array(par["mean"]),
                                   np.array(par["scale"]))
            W[r] = p.weights(X, True)[0][0]
        else:
            S, _ = population_nb(s["seed"], int(i), 1, A, sampler_code(s["sampler"], s["alpha"]),
                                 s["alpha"], np.zeros(A), np.ones(A))
            W[r] = p.weights(S, False)[0][0]
    return W


def constraints_ok(W: np.ndarray, problem) -> bool:
    """Sum 1, bounds on held assets, at most ``max_assets`` held, none in (0, min_weight)."""
    held = W > 0
    floor = np.maximum(problem.lo, problem.min_weight)
    return bool(np.all(np.abs(W.sum(axis=1) - 1.0) <= SUM_TOL)
                and np.all(W >= 0)
                and np.all(held.sum(axis=1) <= problem.max_assets)
                and np.all(np.where(held, W >= floor, problem.lo <= 0))
                and np.all(W <= problem.hi + SUM_TOL))


def reference_table(objective, W: np.ndarray) -> np.ndarray:
    """The objective's columns for each row of ``W`` computed by :mod:`cpu_ref`, one by one."""
    if objective.kind == "ex-ante":
        from cpu_ref.search import sharpe_1d_nb
        from gpusim.mvo import vol_floor

        rows = [sharpe_1d_nb(w, objective.mu, objective.cov, objective.ann, objective.rf)
                for w in W]
        floor = vol_floor(objective.cov, objective.ann)     # undefined below it (NaN)
        return np.array([[sh if vol > floor else np.nan, ret, vol] for ret, vol, sh in rows]
                        ).reshape(-1, 3)
    from cpu_ref.backtest import simulate_1d_nb

    o = objective
    return np.array([simulate_1d_nb(o.close, np.ascontiguousarray(w), o.masks[0], o.threshold,
                                    o.relative, o.fees, o.init_cash, o.ann, o.rf)[0]
                     for w in W]).reshape(-1, len(o.columns))


def rel_diff(got: np.ndarray, ref: np.ndarray) -> float:
    """Largest |got - ref| / |ref| (0 where both are equal, NaN or infinite alike)."""
    same = (got == ref) | (np.isnan(got) & np.isnan(ref))
    d = np.abs(got - ref) / np.maximum(np.abs(ref), 1e-300)
    return float(np.max(np.where(same, 0.0, d), initial=0.0))


def verify_result(result) -> dict:
    """See :meth:`gpusim.search.guided_result.GuidedResult.verify`."""
    p = result.problem
    if p is None:
        raise ValueError("this result was loaded from disk without its market; re-run the "
                         "search to verify it")
    W = result.weights().to_numpy()
    same = bool(np.array_equal(regenerate(result), W))
    cols = list(p.objective.columns)
    worst = rel_diff(result.top[cols].to_numpy(), reference_table(p.objective, W))
    if p.oos is not None:
        got = result.top[[OOS_PREFIX + c for c in cols]].to_numpy()
        worst = max(worst, rel_diff(got, reference_table(p.oos, W)))
    cons = constraints_ok(W, p)
    return {"n_checked": int(W.shape[0]), "max_rel_diff": worst, "tolerance": TOLERANCE,
            "weights_identical": same, "constraints_ok": cons,
            "ok": bool(same and cons and worst <= TOLERANCE)}
