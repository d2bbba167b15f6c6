"""Result of the guided and batched random searches (:mod:`gpusim.search.guided`).

Shaped like :class:`gpusim.search.api.SearchResult`: ``top`` (rank x [candidate, generation,
metric columns, held-out ``oos_*`` columns, weights by symbol]), ``baselines``, ``summary``,
``best``, ``gap``, ``partial``, ``weights()``, ``to_text()``, ``save()``; and ``verify()``, which
regenerates every reported candidate from its stream and re-scores it with :mod:`cpu_ref`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from gpusim.results import versions
from gpusim.search.guided_verify import OOS_PREFIX
from gpusim.search.result import TopKView
from gpusim.tables import format_table


@dataclass
class GuidedResult(TopKView):
    """Outcome of :func:`gpusim.search.guided.search_batched` (host memory).

    Attributes
    ----------
    top : DataFrame indexed by rank (1..k): ``candidate`` (global evaluation index; guided:
        ``generation * population + i``), ``generation`` (-1 for random), the objective's
        columns (ex-ante: sharpe, expected_return, expected_volatility; ex-post: the 11 backtest
        metrics), with ``holdout`` the same columns prefixed ``oos_`` on the held-out bars, and
        the weights by symbol.
    baselines : ex-ante only: ``"max_sharpe"``/``"min_variance"`` :class:`gpusim.mvo.Baseline`
        (bounds only: ``max_assets``/``min_weight`` are relaxed, so ``gap`` stays <= 1).
    summary : JSON-ready dict (method, objective, seed, budget, population, n_evaluated,
        generations, stopped, partial, elapsed_s, gap, holdout, generation_params, ...).
    """

    top: pd.DataFrame
    baselines: dict
    summary: dict
    problem: object = field(repr=False, default=None)
    trace: pd.DataFrame | None = field(repr=False, default=None)
    """Best score after each generation (guided) or chunk (random): columns n_evaluated,
    elapsed_s, best."""

    @property
    def gap(self) -> float | None:
        """Best found Sharpe / exact max Sharpe (ex-ante only; None otherwise)."""
        return self.summary.get("gap")

    def verify(self) -> dict:
        """Regenerate and re-score every reported candidate on the CPU reference.

        Checks that (1) each candidate's weights are regenerated bit for bit from its stream
        (seed, generation, index) and the recorded sampling distribution, (2) the weights meet
        the constraints (sum 1, bounds, at most ``max_assets`` held, none in (0, min_weight)),
        (3) every metric column equals :mod:`cpu_ref`'s value (``sharpe_1d_nb`` ex-ante,
        ``simulate_1d_nb`` ex-post; held-out columns on the held-out bars) within
        ``TOLERANCE`` relative. Returns ``{n_checked, max_rel_diff, tolerance,
        weights_identical, constraints_ok, ok}``.
        """
        from gpusim.search.guided_verify import verify_result

        return verify_result(self)

    def to_text(self, max_symbols: int | None = None) -> str:
        """Human-readable report: run, top-k table, baseline and gap, holdout drop."""
        s = self.summary
        lines = [f"{s['method']} search, objective {s['objective']} ({s['kind']}), seed "
                 f"{s['seed']}: {s['n_evaluated']:,} evaluations"
                 + (f" in {s['generations']} generations of {s['population']:,}"
                    if s["method"] == "guided" else "")
                 + f" on {s['backend']} in {s['elapsed_s']:.2f} s, stopped: {s['stopped']}"
                 + ("  [PARTIAL: interrupted]" if s["partial"] else "")]
        syms = self.symbols[:max_symbols]
        cols = [c for c in self.top.columns if c not in self.symbols]
        lines += [f"\nTop {len(self.top)} (weights by symbol"
                  + (f", first {len(syms)} of {len(self.symbols)}"
                     if len(syms) < len(self.symbols) else "") + "):",
                  format_table(self.top[cols + syms], width=220, groups=[syms])]
        b = self.baselines.get("max_sharpe")
        if b is not None:
            lines.append(f"\nExact max Sharpe (cvxpy{', bounds only' if s.get('relaxed') else ''}"
                         f"): {b.sharpe:.6f}")
        if s.get("gap") is not None:
            lines.append(f"Gap: best found / exact = {s['gap']:.6f}")
        h = s.get("holdout")
        if h and h.get("best_in_sample") is not None:
            lines.append(f"\nHoldout from {h['start']} ({h['n_train_bars']} training bars, "
                         f"{h['n_test_bars']} held out): the best in-sample {h['metric']} "
                         f"{h['best_in_sample']:.4f} is {h['best_out_of_sample']:.4f} out of "
                         f"sample (fell by {h['fell_by']:.4f})")
        return "\n".join(lines)



def _table(columns, values, prefix=""):
    return pd.DataFrame(values, columns=[prefix + c for c in columns])


def _holdout_summary(problem, top: pd.DataFrame) -> dict:
    h = dict(problem.info["holdout"])
    metric = problem.objective.metric
    h["metric"] = metric
    if len(top):
        h["best_in_sample"] = float(top[metric].iloc[0])
        h["best_out_of_sample"] = float(top[OOS_PREFIX + metric].iloc[0])
        h["fell_by"] = h["best_in_sample"] - h["best_out_of_sample"]
        h["fell_by_pct"] = (100.0 * h["fell_by"] / abs(h["best_in_sample"])
                            if h["best_in_sample"] else None)
    return h


def build_result(problem, top, run: dict, history: dict, baselines: bool, solver):
    """Assemble a :class:`GuidedResult` from the search state (host arrays)."""
    from gpusim.search.inputs import _baselines, undefined_sharpes

    obj = problem.objective
    k = top.score.size
    W = top.W if top.W is not None else np.empty((0, problem.A))
    table = top.table if top.table is not None else np.empty((0, len(obj.columns)))
    frame = pd.DataFrame({"candidate": top.ids, "generation": top.gen})
    parts = [frame, _table(obj.columns, table)]
    if problem.oos is not None:
        _, oos = problem.oos.score(W, np.ones(k, dtype=bool))
        parts.append(_table(obj.columns, oos, OOS_PREFIX))
    parts.append(pd.DataFrame(W, columns=problem.symbols))
    df = pd.concat(parts, axis=1)
    df.index = pd.RangeIndex(1, k + 1, name="rank")

    info = problem.info
    base = {}
    if obj.kind == "ex-ante" and baselines:
        base = _baselines(obj.mu, obj.cov, obj.ann, obj.rf, problem.lo, problem.hi,
                          info["bounds"] is not None, solver, problem.symbols)
    notes: list[str] = []
    if obj.kind == "ex-ante":      # a volatility at the noise floor: Sharpe undefined (NaN)
        df["sharpe"], notes = undefined_sharpes(df["sharpe"], df["expected_volatility"],
                                                obj.cov, obj.ann, base)
        if problem.oos is not None:
            df[OOS_PREFIX + "sharpe"] = undefined_sharpes(
                df[OOS_PREFIX + "sharpe"], df[OOS_PREFIX + "expected_volatility"],
                problem.oos.cov, problem.oos.ann)[0]
    summary = {"task": "guided_search", **info, **run, "kind": obj.kind,
               "symbols": problem.symbols, "n_assets": problem.A, "top_k": int(top.k),
               "best_score": float(top.score[0]) if k else None,
               "relaxed": info["max_assets"] is not None or info["min_weight"] > 0}
    if obj.kind == "ex-post":
        summary["backtest"] = obj.describe()
    ms = base.get("max_sharpe")
    summary["exact_max_sharpe"] = (None if ms is None or not np.isfinite(ms.sharpe)
                                   else ms.sharpe)   # undefined (NaN) is null in JSON
    summary["gap"] = (float(top.score[0]) / ms.sharpe if ms is not None and k and ms.sharpe > 0
                      else None)
    if notes:
        summary["warnings"] = [*(summary.get("warnings") or []), *notes]
    if problem.oos is not None:
        summary["holdout"] = _holdout_summary(problem, df)
    summary["generation_params"] = {
        str(g): {"mean": history[g][0].tolist(), "scale": history[g][1].tolist()}
        for g in sorted(set(top.gen.tolist())) if g in history}
    summary["versions"] = versions()
    return GuidedResult(top=df, baselines=base, summary=summary, problem=problem)
