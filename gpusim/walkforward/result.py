"""The result of :func:`gpusim.walkforward.api.walkforward`: metrics, report, allocations and
decisions per combination, re-runs on the CPU reference, plots and saving.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cpu_ref.backtest import METRICS
from gpusim.backtest.result import LOWER_IS_BETTER
from gpusim.results import MetricsResult


@dataclass
class _State:
    close: np.ndarray
    s0: int
    masks: np.ndarray
    Wall: np.ndarray
    woff: np.ndarray
    counts: np.ndarray
    wsid: np.ndarray
    fee_c: np.ndarray
    dec: list
    ws_info: list
    grid: Any
    ctx: Any
    init_cash: float
    mid: np.ndarray


class WalkForwardResult(MetricsResult):
    """Result of :func:`walkforward`.

    Attributes
    ----------
    metrics : DataFrame (combination x :data:`METRICS`), host.
    report : DataFrame (combination x ...): ``n_rebalances``; ``n_fallback`` (dates where the
        previous weights were kept: no accepted candidate or a failed solve); ``insample_sharpe``
        (mean ex-ante Sharpe of the chosen weights on their windows); ``acceptance`` (random:
        mean fraction of candidates accepted); ``insample_score`` (mean objective value of the
        chosen weights); ``exact_sharpe``, ``gap_mean``, ``gap_min`` (when the gap was
        computed: objective_random / objective_exact per date, <= 1; min_variance: exact /
        chosen variance);
        ``bound_<constraint>``: fraction of dates at which the constraint bound - exact method:
        a non-trivial bound is active at the solution (within ``bind_tol``; a Volatility or
        TrackingError cap: the risk is within ``bind_tol`` of it); random search: the best
        candidate ignoring the constraints breaks it.
    summary : dict (backend, timings, statuses, ``bound_by_objective`` {objective:
        {constraint: rate}}, ...).

    Notes
    -----
    :meth:`best` ranks as :class:`~gpusim.backtest.result.BacktestResult` does (same metrics).
    ``partial`` is True after Ctrl-C: the combinations were simulated up to ``summary["end"]``
    only (the dates whose weights were chosen; see :mod:`gpusim.walkforward.chunked`).
    """

    metric_names = METRICS
    lower_is_better = LOWER_IS_BETTER

    def __init__(self, metrics: pd.DataFrame, report: pd.DataFrame, summary: dict,
                 state: _State):
        super().__init__(metrics, summary, bool(summary.get("partial", False)), state)
        self.report = report

    @property
    def _s(self) -> _State:
        return self._ctx

    def _repr_parts(self) -> list[str]:
        s = self.summary
        return [f"{s['n_combinations']} combinations", f"method={s['method']!r}",
                f"levels={list(self.metrics.index.names)}"]

    def _ws(self, key, level_values) -> tuple[int, int]:
        flat = self._locate(key, level_values)
        return flat, int(self._s.wsid[flat])

    def allocations(self, key: tuple | None = None, **level_values) -> pd.DataFrame:
        """Target weights chosen at each rebalance date of one combination (dates x symbols,
        plus ``cash`` when a Budget allows it). Pick it by level values or a full index key.
        """
        _, w = self._ws(key, level_values)
        D = self._s.dec[w]
        df = pd.DataFrame(D["weights"], index=self._s.ctx.index[D["bars"]],
                          columns=self._s.ctx.symbols)
        df.index.name = "date"
        if self._s.ctx.plan.cash:
            df["cash"] = 1.0 - df.sum(axis=1)
        return df

    def plot_weights(self, path, key: tuple | None = None, **level_values) -> Path:
        """PNG of the target weights chosen at each rebalance date of one combination, held
        until the next, with the rebalance dates marked. Returns the path.
        """
        from gpusim.plots import plot_weights_over_time

        flat = self._locate(key, level_values)
        w = self.allocations(key, **level_values)
        return plot_weights_over_time(path, w, end=self._s.ctx.index[-1],
                                      params=self._key_params(self.metrics.index[flat]))

    def _value_path(self, key) -> pd.Series:
        return self.records(key)["value"]

    def decisions(self, key: tuple | None = None, **level_values) -> pd.DataFrame:
        """Per rebalance date of one combination: bar, status, fallback, candidate index and
        period seed (random; regenerate with ``cpu_ref.rng.population_nb(seed, candidate, 1,
        ...)``), scale, n_accepted, ex-ante Sharpe on the window, ``score`` (the objective's
        value), exact Sharpe and score, gap, ``bound_<constraint>``.
        """
        _, w = self._ws(key, level_values)
        D = self._s.dec[w]
        cols = {"bar": D["bars"], "status": D["status"], "fallback": D["fallback"],
                "candidate": D["candidate"], "seed": D.get("seed", np.zeros(len(D["bars"]),
                                                                            np.uint64)),
                "scale": D["scale"], "n_accepted": D["n_accepted"], "sharpe": D["sharpe"],
                "score": D["score"], "exact_sharpe": D["exact_sharpe"],
                "exact_score": D["exact_score"], "gap": D["gap"]}
        for i, name in enumerate(self._s.ctx.plan.names):
            cols[f"bound_{name}"] = D["bound"][:, i]
        df = pd.DataFrame(cols, index=self._s.ctx.index[D["bars"]])
        df.index.name = "date"
        return df

    def records(self, key: tuple | None = None, **level_values) -> dict:
        """Re-run one combination through the reference ``cpu_ref.walkforward.simulate_1d_nb``:
        ``{"metrics": Series, "value": Series, "target": DataFrame, "realised": DataFrame}``.
        """
        from cpu_ref.walkforward import simulate_1d_nb

        flat, w = self._ws(key, level_values)
        s = self._s
        o, K = s.woff[w], s.counts[w]
        m, value, bars, real = simulate_1d_nb(np.ascontiguousarray(s.close[s.s0:]),
                                              s.Wall[o:o + K], s.masks[s.mid[flat]],
                                              float(s.fee_c[flat]), s.init_cash, s.ctx.ann,
                                              s.ctx.rf)
        dates = s.ctx.index[s.s0:]
        sym = s.ctx.symbols
        return {"metrics": pd.Series(m, index=list(METRICS), name="reference"),
                "value": pd.Series(value, index=dates, name="value"),
                "target": pd.DataFrame(s.Wall[o:o + K], index=dates[bars], columns=sym),
                "realised": pd.DataFrame(real, index=dates[bars], columns=sym)}

    def verify(self, n_combinations: int = 3, n_dates: int = 4) -> dict:
        """Re-check on the CPU reference (:mod:`cpu_ref.walkforward`): the metrics of up to
        ``n_combinations`` combinations, and (random method) the choice at up to ``n_dates``
        dates of each: reference window statistics and betas, every candidate re-generated and
        re-scored one by one - the same best index must come out, with the same Sharpe and
        weights. Returns ``{"max_rel_diff", "same_choices", "n_checked", "ok"}``.
        """
        from cpu_ref.walkforward import reference_choice

        s, ctx = self._s, self._s.ctx
        plan = ctx.plan
        C = len(self.metrics)
        picks = sorted(set(np.linspace(0, C - 1, min(C, n_combinations)).astype(int).tolist()))
        worst, same, n = 0.0, True, 0
        for flat in picks:
            ref = self.records(self.metrics.index[flat])["metrics"].to_numpy()
            got = self.metrics.iloc[flat].to_numpy()
            fin = np.isfinite(ref)
            same &= bool(np.array_equal(fin, np.isfinite(got)))
            worst = max(worst, float(np.max(np.abs(got[fin] - ref[fin]) / np.maximum(
                np.abs(ref[fin]), 1e-300), initial=0.0)))
            n += 1
            D = s.dec[s.wsid[flat]]
            if D.get("method", self.summary["method"]) != "random":
                continue
            info = s.ws_info[s.wsid[flat]]
            ks = np.unique(np.linspace(0, len(D["bars"]) - 1, min(len(D["bars"]), n_dates)
                                       ).astype(int))
            for k in ks:
                d = int(np.searchsorted(ctx.U, D["bars"][k]))
                lo, hi, gl, gu, cap = (D["cbounds"][k] if plan.has_callable else
                                       [x[d] for x in ctx.bounds])
                _, (bi, bsh, bsc, nacc, _, _), _, _, _ = reference_choice(
                    s.close, plan.bench_close, int(D["bars"][k]), info["lookback"], ctx.seed,
                    int(D["n"]), ctx.code, ctx.alpha, lo, hi, plan.static_G,
                    plan.beta_rows, gl, gu, plan.eqtol, plan.cash, ctx.ann, ctx.rf,
                    estimator=_reference_estimator(ctx.estimators[info["estimator"]],
                                                   ctx.symbols),
                    obj=ctx.objectives.index(info["objective"]), lam=info["risk_aversion"],
                    cap_bench=plan.cap_bench, cap=cap)
                same &= bool(bi == D["candidate"][k] and nacc == D["n_accepted"][k])
                if bi >= 0 and D["candidate"][k] >= 0:
                    worst = max(worst, abs(bsh - D["score"][k]) / max(abs(bsh), 1e-300),
                                abs(bsc - D["scale"][k]) / abs(bsc))
                n += 1
        return {"max_rel_diff": worst, "same_choices": same, "n_checked": n,
                "ok": bool(same and worst < 1e-9)}

    def save(self, out_dir, fmt: str | None = None) -> Path:
        """Write metrics, report (Parquet, CSV fallback or ``fmt="csv"``), ``allocations.csv``
        (long table: combination levels, date, weights) and ``summary.json`` atomically.
        """
        return self._save(out_dir, fmt)

    def _tables(self) -> dict[str, pd.DataFrame]:
        return {"report": self.report}

    def _extra_files(self, best, **options) -> dict:
        return {"allocations.csv": self._write_allocations}

    def _write_allocations(self, path: Path) -> None:
        """``allocations.csv``: each weight set's allocations once, its levels in front."""
        parts = []
        seen = set()
        for flat, w in enumerate(self._s.wsid):
            if w in seen:
                continue
            seen.add(w)
            a = self.allocations(self.metrics.index[flat]).reset_index()
            for k, v in self._s.ws_info[w].items():
                a.insert(0, k, v)
            parts.append(a)
        pd.concat(parts).to_csv(path, index=False)


def _reference_estimator(est, symbols):
    """The :mod:`cpu_ref.estimators` function ``f(returns (n, A + B), A) -> (mu, cov)`` of a
    parsed estimator (None: sample), for :func:`cpu_ref.walkforward.reference_choice`: EWMA
    of every column; Ledoit-Wolf or a user callable (given an unlabelled window) for the
    assets' block, sample covariances with the benchmarks.
    """
    from cpu_ref import estimators as ref

    if est.kind == "ewma":
        return lambda r, A: ref.ewma_stats(r, est.halflife)

    def block(r, A):
        mu, cov = ref.sample_stats(r)
        if est.kind == "ledoit_wolf":
            cov[:A, :A] = ref.ledoit_wolf_cov(r[:, :A])
        else:
            m, c = est.func(pd.DataFrame(r[:, :A], columns=symbols))
            mu[:A], cov[:A, :A] = m, c
        return mu, cov

    return None if est.kind == "sample" else block
