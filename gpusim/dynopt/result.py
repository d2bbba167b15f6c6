"""The result of :func:`gpusim.dynopt.api.dynopt`: the metrics table, positions and daily series
of chosen combinations (re-computed by the reference), saving.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gpusim.errors import GpusimError
from gpusim.results import MetricsResult
from gpusim.validate import positive

__all__ = ["LOWER_IS_BETTER", "METRICS", "STATIC_METRICS", "DynoptResult"]

METRICS = ("mean_return", "volatility", "sharpe", "contracts_per_year",
           "avg_tracking_error", "avg_adjustment_factor", "costs", "annual_cost")
"""Metric columns (the order of :data:`cpu_ref.dynopt.METRICS`; read its docstring)."""
STATIC_METRICS = ("static_mean_return", "static_volatility", "static_sharpe",
                  "static_contracts_per_year", "static_avg_tracking_error", "static_costs",
                  "static_annual_cost")
"""Columns of the static comparison (``compare_static=True``; the order of
:data:`cpu_ref.dynopt_static.STATIC_METRICS`): the metrics of the optimal positions rounded with
Carver's classic position buffer, on the same days, capital and costs."""
LOWER_IS_BETTER = frozenset({"volatility", "contracts_per_year", "avg_tracking_error",
                             "costs", "annual_cost", "static_volatility",
                             "static_contracts_per_year", "static_avg_tracking_error",
                             "static_costs", "static_annual_cost"})


class DynoptResult(MetricsResult):
    """Result of :func:`~gpusim.dynopt.api.dynopt`.

    Attributes
    ----------
    metrics : DataFrame, one row per combination (levels ``capital``, ``shadow_cost``,
        ``buffer`` and ``rebalance`` when swept), columns :data:`METRICS` (then
        :data:`STATIC_METRICS` with ``compare_static=True``). Host memory.
    summary : dict (backend, sizes, dates, settings, avg_optimal_risk, timing, versions).
    partial : True when the run was interrupted (only the finished rows are in ``metrics``).

    Notes
    -----
    :meth:`best` ranks the smallest first for volatility, turnover, tracking error and costs
    (:data:`LOWER_IS_BETTER`), the largest first otherwise.
    """

    metric_names = METRICS + STATIC_METRICS  # the static ones only when compare_static=True
    lower_is_better = LOWER_IS_BETTER

    def best(self, metric: str = "sharpe", k: int = 10, ascending: bool | None = None
             ) -> pd.DataFrame:
        """As :meth:`gpusim.results.MetricsResult.best`; the ``static_*`` metrics need
        ``compare_static=True``.
        """
        if metric in STATIC_METRICS and metric not in self.metrics.columns:
            raise GpusimError(f"metric={metric!r} needs dynopt(..., compare_static=True) "
                              "(CLI: --static)")
        return super().best(metric, k, ascending)

    def _repr_parts(self) -> list[str]:
        s = self.summary
        return [f"{len(self.metrics)} of {s['n_combinations']} combinations",
                f"{s['n_instruments']} instruments x {s['n_days']} days"]

    def _locate(self, key, level_values) -> int:
        g = self._ctx.grid
        lv = dict(level_values)
        for name, val in list(lv.items()):
            if name in g.fixed and name not in g.names:
                if str(g.fixed[name]) != str(val):
                    raise GpusimError(f"{name}={val!r} was not run: it was fixed at "
                                      f"{g.fixed[name]!r}")
                del lv[name]
        return super()._locate(key, lv)

    def _run_ref(self, key, level_values):
        from cpu_ref.dynopt import dynopt_1d_nb

        ctx = self._ctx
        flat = self._locate(key, level_values)
        a = ctx.chunk_args(flat, flat + 1)
        inp = ctx.inputs
        res = dynopt_1d_nb(*inp.kernel_args(), ctx.masks[a["mid"][0]], float(a["capitals"][0]),
                           float(a["shadow_costs"][0]), float(a["buffers"][0]), inp.ann,
                           bool(ctx.no_trade_rule))
        return flat, res

    def static_positions(self, key: tuple | None = None, **level_values) -> pd.DataFrame:
        """Contracts of the static comparison (optimal positions with Carver's classic position
        buffer, ``cpu_ref.dynopt_static.static_1d_nb``) after each day's trades, dates x
        instruments, for the capital and rebalance days of one combination (picked as in
        :meth:`positions`). Needs ``compare_static=True``.
        """
        from cpu_ref.dynopt_static import static_1d_nb

        ctx = self._ctx
        if ctx.static_band is None:
            raise GpusimError("static positions need dynopt(..., compare_static=True) "
                              "(CLI: --static)")
        flat = self._locate(key, level_values)
        a = ctx.chunk_args(flat, flat + 1)
        dprice, notional, cost, _, w_star, covs, cov_id = ctx.inputs.kernel_args()
        _, pos, _, _ = static_1d_nb(dprice, notional, cost, w_star, covs, cov_id,
                                    ctx.masks[a["mid"][0]], float(a["capitals"][0]),
                                    float(ctx.static_band), ctx.inputs.ann)
        return pd.DataFrame(pos.astype(np.int64), index=ctx.inputs.index,
                            columns=ctx.inputs.symbols)

    def positions(self, key: tuple | None = None, **level_values) -> pd.DataFrame:
        """Contracts held after each day's trades (dates x instruments, int64) for one
        combination, re-computed by the reference ``cpu_ref.dynopt.dynopt_1d_nb``.

        Pick it by level values (``positions(capital=1e5, shadow_cost=50, buffer=0.0125)``;
        levels with one value may be omitted) or by a row label of ``metrics``.
        """
        _, (_, pos, _, _, _) = self._run_ref(key, level_values)
        inp = self._ctx.inputs
        return pd.DataFrame(pos.astype(np.int64), index=inp.index, columns=inp.symbols)

    def daily(self, key: tuple | None = None, **level_values) -> pd.DataFrame:
        """Daily series of one combination (reference re-run): ``return`` ((P&L - costs) /
        capital), ``tracking_error`` (held vs optimal, annualised), ``adjustment_factor``
        (alpha on rebalance days with TE_prior > 0, else NaN), ``optimal_risk`` (TE of
        holding nothing) and ``contracts`` (sum of |positions|).
        """
        _, (_, pos, te, alpha, ret) = self._run_ref(key, level_values)
        inp = self._ctx.inputs
        return pd.DataFrame({"return": ret, "tracking_error": te, "adjustment_factor": alpha,
                             "optimal_risk": inp.optimal_risk(),
                             "contracts": np.abs(pos).sum(axis=1)}, index=inp.index)

    def optimal_positions(self, capital: float) -> pd.DataFrame:
        """Optimal unrounded contracts ``w* x capital / notional`` (0 outside the
        optimisation), dates x instruments.
        """
        cap = positive(capital, "capital")
        inp = self._ctx.inputs
        with np.errstate(invalid="ignore", divide="ignore"):
            x = np.where(inp.notional > 0, inp.w_star * cap / np.where(
                inp.notional > 0, inp.notional, 1.0), 0.0)
        return pd.DataFrame(x, index=inp.index, columns=inp.symbols)

    def plot_positions(self, path, key: tuple | None = None, instruments=None,
                       **level_values) -> Path:
        """PNG of one combination's whole-contract positions against the optimal unrounded
        positions at its capital (reference re-run), one panel per instrument.
        """
        from gpusim.plots import plot_positions

        flat = self._locate(key, level_values)
        params = self._key_params(self.metrics.index[flat])
        capital = float(params["capital"])              # always a level of dynopt's grid
        return plot_positions(path, self.positions(key, **level_values),
                              self.optimal_positions(capital), instruments, params=params)

    def _value_path(self, key) -> pd.Series:
        return (1.0 + self.daily(key)["return"]).cumprod()

    def save(self, out_dir, best_k: int = 10, sort_by: str = "sharpe",
             fmt: str | None = None, positions: bool = False) -> Path:
        """Write ``metrics.parquet`` (``.csv`` when Parquet is unavailable or ``fmt="csv"``),
        ``best.csv`` (top ``best_k`` by ``sort_by``), ``summary.json`` and, with
        ``positions=True``, ``positions_best.csv`` (daily contracts of the best combination)
        into ``out_dir``, atomically (a temporary folder renamed into place).
        """
        return self._save(out_dir, fmt, best_k=best_k, sort_by=sort_by, positions=positions)

    def _extra_files(self, best: pd.DataFrame | None, positions: bool = False) -> dict:
        pos = self.positions(best.index[0]) if positions and len(best) else None
        return ({} if pos is None else
                {"positions_best.csv": lambda path: pos.to_csv(path, index_label="date")})
