"""The ``search`` sweep task: the weight search over candidate-index ranges.

A sweep (:mod:`gpusim.sweep`) with ``task = "search"`` splits each search into ranges
``[start, start + m)`` of the counter-based stream (DESIGN §4); the chunks' top-k lists merge
into the top-k of a single :func:`gpusim.search` call, bit for bit. All its parameters are
call-level (seeds, samplers, bounds, ...).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gpusim.errors import GpusimError
from gpusim.sweep.engine import cores as _cores
from gpusim.sweep.tasks import TaskRunner, register_task

__all__ = ["SearchTask"]

@dataclass
class _SearchCtx:
    mu: np.ndarray
    cov: np.ndarray
    ann: float
    symbols: list[str]
    fixed: dict
    backend: str
    simulator: bool
    default_chunk: int


SEARCH_DEFAULTS = {"n": 1_000_000, "top_k": 10, "sampler": "dirichlet", "alpha": 1.0, "seed": 0,
                   "rf": 0.0, "dtype": "float64"}


class SearchTask(TaskRunner):
    """Weight searches over candidate-index ranges of the counter-based stream."""

    name = "search"
    params = {"n": "candidates per search", "top_k": "best candidates kept",
              "sampler": "dirichlet | uniform", "alpha": "Dirichlet concentration",
              "seed": "stream seed", "lo": "lower bound(s)", "hi": "upper bound(s)",
              "bounds": "(lo, hi) pair", "rf": "annual risk-free rate",
              "dtype": "float64 | float32 (GPU only)"}
    unit = "candidates"
    rank_by = ("sharpe", False)
    partial_points = False

    def prepare(self, market, fixed, native_axes, backend):
        from gpusim.search.inputs import stats_from

        mu, cov, ann, _, syms, _ = stats_from(market, None, None)
        if backend.name == "gpu":
            default = 2 ** 12 if backend.simulator else 2 ** 28
        else:
            default = 2 ** 22 * _cores()
        ctx = _SearchCtx(mu, cov, ann, syms, dict(fixed), backend.name, backend.simulator,
                         default)
        self.check_point(ctx, {})
        return ctx

    def _params(self, ctx, point) -> dict:

        from gpusim.search.inputs import check_args, resolve_bounds

        kw = {**SEARCH_DEFAULTS, **ctx.fixed, **point}
        a = check_args(n=kw["n"], top_k=kw["top_k"], seed=kw["seed"], sampler=kw["sampler"],
                       alpha=kw["alpha"], rf=kw["rf"], dtype=kw["dtype"],
                       backend_name=ctx.backend)
        if "bounds" in kw and ("lo" in kw or "hi" in kw):
            raise GpusimError("give bounds or lo/hi, not both")
        bounds = kw.get("bounds")
        if bounds is None and ("lo" in kw or "hi" in kw):
            bounds = (kw.get("lo"), kw.get("hi"))
        lo, hi = resolve_bounds(bounds, ctx.mu.size, ctx.symbols)
        return {"n": a["n"], "k": a["k"], "seed": a["seed"], "key": a["key"], "code": a["code"],
                "alpha": a["alpha"], "lo": lo, "hi": hi, "rf": a["rf"], "dtype": kw["dtype"],
                "sampler": kw["sampler"], "bounds": None if bounds is None else (lo, hi)}

    def check_point(self, ctx, point):
        self._params(ctx, point)

    def levels(self, ctx):
        return ["rank"]

    def split(self, ctx, point, chunk_size):
        n = self._params(ctx, point)["n"]
        m = int(chunk_size or ctx.default_chunk)
        return [{"start": s, "n": min(m, n - s), "size": min(m, n - s)} for s in range(0, n, m)]

    def describe(self, ctx, point, part):
        return {"candidates": f"{part['start']}..{part['start'] + part['n'] - 1}"}

    def run(self, ctx, point, part):
        from gpusim.search.api import search

        p = self._params(ctx, point)
        t0 = time.perf_counter()
        res = search((ctx.mu, ctx.cov), n=part["n"], start=part["start"], sampler=p["sampler"],
                     alpha=p["alpha"], seed=p["seed"], top_k=p["k"], bounds=p["bounds"],
                     rf=p["rf"], ann=ctx.ann, symbols=ctx.symbols, backend=ctx.backend,
                     dtype=p["dtype"], chunk_size=min(part["n"], ctx.default_chunk),
                     progress=False, baselines=False)
        table = res.top[["candidate", "sharpe"]].reset_index(drop=True)
        return table, {"n_valid": int(res.summary["n_valid"]),
                       "n_riskless": int(res.summary["n_riskless"]),
                       "compute_s": time.perf_counter() - t0}

    def reduce(self, ctx, point, items, info):
        from gpusim.search.inputs import merge_topk, rescore

        p = self._params(ctx, point)
        ss, ii, n_valid, n_low = [np.empty(0)], [np.empty(0, dtype=np.int64)], 0, 0
        for table, inf in items:
            ss.append(table["sharpe"].to_numpy(np.float64))
            ii.append(table["candidate"].to_numpy(np.int64))
            n_valid += int(inf.get("n_valid", 0))
            n_low += int(inf.get("n_riskless", 0))
        best_s, best_i = merge_topk(np, np.concatenate(ss), np.concatenate(ii), p["k"])
        # the same re-scoring as gpusim.search (bit-identical tables)
        W, stats, _ = rescore(p["seed"], best_i.astype(np.int64), p["code"], p["alpha"],
                              p["lo"], p["hi"], ctx.mu, ctx.cov, ctx.ann, p["rf"])
        top = pd.DataFrame(W, columns=ctx.symbols)
        top.insert(0, "expected_volatility", stats[:, 1])
        top.insert(0, "expected_return", stats[:, 0])
        top.insert(0, "sharpe", best_s)
        top.insert(0, "candidate", best_i.astype(np.int64))
        top.insert(0, "rank", np.arange(1, len(top) + 1, dtype=np.int64))
        info.update(n_evaluated=p["n"], n_valid=n_valid, n_riskless=n_low,
                    best_sharpe=float(best_s[0]) if best_s.size else None)
        yield top


register_task(SearchTask())
