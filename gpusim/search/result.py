"""The result of :func:`gpusim.search.api.search`: the top-k table, the exact baselines, the
candidate cloud and plot, a text report, saving and loading.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cpu_ref.search import score_nb
from gpusim.compiling import compile_text
from gpusim.errors import GpusimError
from gpusim.results import atomic_dir
from gpusim.tables import format_table

__all__ = ["OUTPUT_FORMATS", "SearchResult"]

OUTPUT_FORMATS = ("parquet", "csv")


class TopKView:
    """What every search result shows of its ``top`` table and ``summary`` (shared by
    :class:`SearchResult` and the guided search's result).
    """

    top: pd.DataFrame
    summary: dict

    @property
    def symbols(self) -> list[str]:
        return list(self.summary["symbols"])

    @property
    def partial(self) -> bool:
        return bool(self.summary["partial"])

    @property
    def best(self) -> pd.Series:
        """The best candidate found (a row of ``top``)."""
        return self.top.iloc[0]

    def weights(self) -> pd.DataFrame:
        """Top-k weights only (rank x symbol)."""
        return self.top[self.symbols]

    def save(self, out, fmt: str = "parquet") -> Path:
        """Write ``top_k.<fmt>`` and ``summary.json`` into ``out`` atomically.

        Files are written to a temporary folder beside ``out`` and moved in only when all of
        them succeeded, so a failure never leaves half-written results.
        """
        if fmt not in OUTPUT_FORMATS:
            raise GpusimError(f"format {fmt!r} is unknown; use one of {OUTPUT_FORMATS}")
        with atomic_dir(out, stale=("top_k.parquet", "top_k.csv")) as tmp:
            if fmt == "parquet":
                self.top.to_parquet(tmp / "top_k.parquet")
            else:
                self.top.to_csv(tmp / "top_k.csv")
            (tmp / "summary.json").write_text(json.dumps(self.summary, indent=2) + "\n")
        return Path(out)


@dataclass
class SearchResult(TopKView):
    """Outcome of :func:`search`.

    Attributes
    ----------
    top : DataFrame indexed by rank (1..k): candidate index, sharpe, expected_return,
        expected_volatility and the weights by symbol (host memory).
    baselines : dict with ``"max_sharpe"`` / ``"min_variance"`` :class:`gpusim.mvo.Baseline`
        (or ``"max_sharpe_error"`` / ``"min_variance_error"`` messages), empty when skipped.
    summary : JSON-ready dict: seed, sampler, n, n_evaluated, backend, dtype, elapsed_s,
        candidates_per_s, partial, gap, versions, ...
    """

    top: pd.DataFrame
    baselines: dict
    summary: dict
    mu: np.ndarray = field(repr=False)
    cov: np.ndarray = field(repr=False)
    lo: np.ndarray = field(repr=False)
    hi: np.ndarray = field(repr=False)

    @property
    def gap(self) -> float | None:
        """Best found Sharpe / exact max Sharpe (None without a baseline)."""
        return self.summary.get("gap")

    def cloud(self, n: int = 4000) -> pd.DataFrame:
        """Annual return, volatility and Sharpe of candidates 0..n-1 (for plots)."""
        s = self.summary
        n = int(min(n, s["n"]))
        _, st, ok = score_nb(s["seed"], np.arange(n, dtype=np.int64), s["sampler_code"],
                             s["alpha"], self.lo, self.hi, self.mu, self.cov, s["ann"], s["rf"])
        st = st[ok]
        return pd.DataFrame({"ret": st[:, 0], "vol": st[:, 1], "sharpe": st[:, 2]})

    def plot(self, path, *, n_cloud: int = 4000, n_frontier: int = 40) -> Path:
        """PNG of the candidate cloud, the exact frontier, the best found and exact points."""
        from gpusim.plots.search import plot_search

        c = self.cloud(n_cloud)
        frontier = None
        if self.baselines.get("max_sharpe") is not None:
            from gpusim.mvo import efficient_frontier

            try:
                frontier = efficient_frontier(self.mu, self.cov, n_points=n_frontier,
                                              ann=self.summary["ann"], rf=self.summary["rf"],
                                              bounds=(self.lo, self.hi))
            except GpusimError:
                frontier = None

        def pt(b):
            return None if b is None else (b.vol, b.ret)

        best = None if self.top.empty else (self.best["expected_volatility"],
                                             self.best["expected_return"])
        return plot_search(path, cloud_vol=c["vol"].to_numpy(), cloud_ret=c["ret"].to_numpy(),
                           cloud_sharpe=c["sharpe"].to_numpy(), frontier=frontier, best=best,
                           exact=pt(self.baselines.get("max_sharpe")),
                           min_var=pt(self.baselines.get("min_variance")),
                           rf=self.summary["rf"], top=self.top,
                           title=f"weight search: best of {self.summary['n_evaluated']:,} "
                                 "candidates")

    def to_text(self, max_symbols: int | None = None) -> str:
        """Human-readable report: the top-k table, the exact baselines and the gap."""
        s = self.summary
        lines = [f"{s['n_evaluated']:,} candidates ({s['sampler']}, seed {s['seed']}) on "
                 f"{s['backend']} in {s['elapsed_s']:.2f} s: {s['candidates_per_s']:,.0f} "
                 f"candidates/s" + compile_text(s.get("compile_s"), s.get("compiled"))
                 + ("  [PARTIAL: interrupted]" if s["partial"] else "")]
        if s.get("n_valid") is not None and s["n_valid"] < s["n_evaluated"]:
            lines.append(f"{s['n_valid']:,} candidates were within the upper bounds")
        if s.get("n_riskless"):
            lines.append(f"{s['n_riskless']:,} of them were riskless (volatility at or below the "
                         "floor, Sharpe undefined): not ranked")
        cols = ["candidate", "sharpe", "expected_return", "expected_volatility"]
        syms = self.symbols[:max_symbols]
        table = self.top[cols + syms]
        lines += [f"\nTop {len(table)} by ex-ante Sharpe (weights by symbol"
                  + (f", first {len(syms)} of {len(self.symbols)}" if
                     len(syms) < len(self.symbols) else "") + "):",
                  format_table(table, groups=[syms])]
        rows = {}
        for name in ("max_sharpe", "min_variance"):
            b = self.baselines.get(name)
            if b is not None:
                rows[f"exact {name.replace('_', ' ')}"] = pd.Series(
                    [b.sharpe, b.ret, b.vol, *b.weights[:len(syms)]], index=cols[1:] + syms)
        if rows:
            lines += ["\nExact baselines (cvxpy):",
                      format_table(pd.DataFrame(rows).T, groups=[syms])]
        for name in ("max_sharpe_error", "min_variance_error"):
            if name in self.baselines:
                lines.append(f"{name.replace('_error', '')}: not available: "
                             f"{self.baselines[name]}")
        if s.get("gap") is not None:
            lines.append(f"\nGap: best found Sharpe / exact max Sharpe = {s['gap']:.6f}")
        return "\n".join(lines)

    @classmethod
    def load(cls, out) -> SearchResult:
        """Read a folder written by :meth:`save` (for ``gpusim verify``)."""
        out = Path(out)
        try:
            summary = json.loads((out / "summary.json").read_text())
        except FileNotFoundError:
            raise GpusimError(f"{out}/summary.json not found; pass a folder written by "
                              "`gpusim search --out`") from None
        if summary.get("task") != "search":
            raise GpusimError(f"{out} holds a {summary.get('task')!r} result, not a search")
        if (out / "top_k.parquet").exists():
            top = pd.read_parquet(out / "top_k.parquet")
        else:
            top = pd.read_csv(out / "top_k.csv", index_col="rank")
        A = summary["n_assets"]
        b = summary.get("bounds") or {"lo": [0.0] * A, "hi": [1.0] * A}
        return cls(top=top, baselines={}, summary=summary, mu=np.array(summary["mu"]),
                   cov=np.array(summary["cov"]), lo=np.array(b["lo"]), hi=np.array(b["hi"]))

