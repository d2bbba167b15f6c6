"""The result of :func:`gpusim.backtest.api.backtest`: the metrics table, records and
allocation plots of chosen combinations (re-run through the reference), saving.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cpu_ref.backtest import METRICS  # the 11 metric names, in column order
from gpusim.results import MetricsResult, jsonable

__all__ = ["LOWER_IS_BETTER", "METRICS", "BacktestResult", "Records", "rows_table"]

LOWER_IS_BETTER = frozenset({"volatility", "turnover", "fees_paid", "n_rebalances"})
"""Metrics whose best value is the smallest; for all others (max_drawdown included: <= 0,
closest to 0 is best) the largest is best."""


@dataclass
class Records:
    """One combination re-run through ``cpu_ref.backtest.simulate_1d_nb`` (host objects).

    Attributes
    ----------
    params : ``{level or fixed argument: value}``.
    rebalance_bars : DatetimeIndex of the bars on which the rebalance routine ran.
    rebalance_idx : (K,) int64 bar indices of the same.
    target, realised : (K, A) DataFrames (rebalance dates x symbols): target weights and the
        allocations h_j p_j / V after that bar's orders.
    value : (T,) Series of V_t.
    metrics : Series of :data:`METRICS` from the reference.
    allocations : (T, A + 1) DataFrame of daily allocations h_j p_{t,j} / V_t plus ``cash``
        (holdings are constant between rebalance bars, so they follow from ``realised``).
    orders : DataFrame, one row per filled order in fill order (sells first within a bar):
        ``date``, ``bar``, ``symbol``, ``size`` (signed units, sells < 0), ``price`` (the
        close), ``value`` (|size| * price), ``fee`` (paid), ``side`` ("buy"/"sell").
    """

    params: dict
    rebalance_bars: pd.DatetimeIndex
    rebalance_idx: np.ndarray
    target: pd.DataFrame
    realised: pd.DataFrame
    value: pd.Series
    metrics: pd.Series
    allocations: pd.DataFrame = field(repr=False)
    orders: pd.DataFrame = field(default=None, repr=False)

    def __getitem__(self, key: str):
        return getattr(self, key)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _rows_from(rows: np.ndarray, nxt: np.ndarray, r0: int) -> tuple[np.ndarray, np.ndarray]:
    """One schedule out of stacked kernel rows: ``(rows (S, .), start bars (S,))`` from row
    ``r0`` to the first row whose switch bar is NEVER.
    """
    from gpusim.schedule import NEVER

    r1 = r0
    while nxt[r1] != NEVER:
        r1 += 1
    bars = np.r_[0, nxt[r0:r1]].astype(np.int64)
    return np.ascontiguousarray(rows[r0:r1 + 1]), bars


class BacktestResult(MetricsResult):
    """Result of :func:`~gpusim.backtest.api.backtest`.

    Attributes
    ----------
    metrics : DataFrame, one row per combination (MultiIndex of the parameter levels), columns
        :data:`METRICS`. Host memory.
    summary : dict (backend, n_combinations, elapsed_s, combination_bars_per_s, versions, ...).
    partial : True when the run was interrupted (only the finished rows are in ``metrics``).

    Notes
    -----
    :meth:`best` ranks the largest value first, except for ``volatility``,
    ``turnover``, ``fees_paid`` and ``n_rebalances`` (smallest first); for ``max_drawdown``
    (<= 0) best means closest to 0. :meth:`save` writes ``metrics``, ``best.csv`` and
    ``summary.json`` (:meth:`MetricsResult.save`).
    """

    metric_names = METRICS
    lower_is_better = LOWER_IS_BETTER

    def target_weights(self, keys=None) -> pd.DataFrame:
        """Target weights by symbol of the rows ``keys`` (row labels of ``metrics``; default:
        every row), shape (len(keys), A), indexed like those rows. Random targets are
        regenerated from their seed and row number.
        """
        ctx = self._ctx
        idx = self.metrics.index if keys is None else keys
        rows = []
        for key in idx:
            flat = ctx.grid.locate(key)
            a = ctx.chunk_args(flat, flat + 1)
            rows.append(a["W"][a["wid"][0]])
        W = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(ctx.symbols))
        return pd.DataFrame(W, index=idx, columns=pd.Index(ctx.symbols))

    def best(self, metric: str = "sharpe", k: int = 10, ascending: bool | None = None, *,
             weights: bool = False) -> pd.DataFrame:
        """The ``k`` best rows by ``metric`` (:meth:`MetricsResult.best`); with
        ``weights=True`` their target weights by symbol follow the metrics (as in the CLI's
        table and ``best.csv``).
        """
        b = super().best(metric, k, ascending)
        if not weights:
            return b
        return pd.concat([b, self.target_weights(b.index)], axis=1)

    def _best_rows(self, metric: str, k: int) -> pd.DataFrame:
        return self.best(metric, k, weights=True)

    def records(self, key: tuple | None = None, **level_values) -> Records:
        """Re-run one combination through the reference and return its :class:`Records`.

        Pick it by level values (``records(threshold=0.05)``; levels with one value may be
        omitted) or by a full row label of ``metrics`` (``records(res.best().index[0])``).
        """
        from cpu_ref.backtest_sched import ORDER_FIELDS, simulate_schedule_1d_nb

        ctx = self._ctx
        flat = self._locate(key, level_values)
        a = ctx.chunk_args(flat, flat + 1)
        W, wbars = _rows_from(a["W"], a["wnxt"], int(a["wid"][0]))
        B, bbars = _rows_from(ctx.B, ctx.bnxt, int(a["bid"][0]))
        A = len(ctx.symbols)
        mask = ctx.masks[a["mid"][0]]
        fee = float(a["fees"][0])
        m, value, bars, tgt, real, orders = simulate_schedule_1d_nb(
            ctx.close, W, wbars, mask, np.ascontiguousarray(B[:, :A]),
            np.ascontiguousarray(B[:, A:]), bbars, fee, ctx.init_cash, ctx.ann, ctx.rf)
        dates = ctx.market.prices.index
        sym = pd.Index(ctx.symbols)
        rb = dates[bars]
        V = np.asarray(value)
        seg = np.searchsorted(bars, np.arange(len(V)), side="right") - 1
        with np.errstate(divide="ignore", invalid="ignore"):
            H = real[seg] * V[bars][seg][:, None] / ctx.close[bars][seg]   # units held
            alloc = H * ctx.close / V[:, None]
        daily = pd.DataFrame(alloc, index=dates, columns=sym)
        daily["cash"] = 1.0 - alloc.sum(axis=1)
        params = {**ctx.grid.labels_of(flat),
                  **{k: jsonable(v) for k, v in ctx.grid.fixed.items()},
                  "relative": ctx.band == "relative",
                  **({"band": ctx.band} if ctx.band == "hybrid" else {}),
                  "init_cash": ctx.init_cash}
        o = dict(zip(ORDER_FIELDS, np.asarray(orders).T))
        bar_i, asset_i = o["bar"].astype(np.int64), o["asset"].astype(np.int64)
        order_table = pd.DataFrame({
            "date": dates[bar_i], "bar": bar_i, "symbol": sym[asset_i].to_numpy(),
            "size": o["size"], "price": o["price"], "value": np.abs(o["size"]) * o["price"],
            "fee": o["fee"], "side": np.where(o["size"] < 0, "sell", "buy")})
        return Records(params=params, rebalance_bars=pd.DatetimeIndex(rb), rebalance_idx=bars,
                       target=pd.DataFrame(tgt, index=rb, columns=sym),
                       realised=pd.DataFrame(real, index=rb, columns=sym),
                       value=pd.Series(V, index=dates, name="value"),
                       metrics=pd.Series(m, index=list(METRICS), name="reference"),
                       allocations=daily, orders=order_table)

    def plot_allocations(self, path, key: tuple | None = None, **level_values) -> Path:
        """Write a PNG: stacked daily allocations of one combination (re-run through the
        reference), with a marker at each rebalance bar. Returns the path.
        """
        from gpusim.plots import plot_allocations

        rec = self.records(key, **level_values)
        alloc = rec.allocations
        if float(alloc["cash"].abs().max()) < 1e-9:
            alloc = alloc.drop(columns="cash")
        return plot_allocations(path, alloc, rec.rebalance_bars, params=rec.params)

    def _value_path(self, key) -> pd.Series:
        return self.records(key).value

    to_parquet = MetricsResult.save


def rows_table(grid, out: np.ndarray, kinds: Mapping[str, str], labels: Mapping | None = None,
               start: int = 0):
    """Flat Arrow table of a backtest's rows: the grid's levels (typed by ``kinds``, as
    :func:`gpusim.sweep.tasks.coerce_levels` would; ``labels``: a level's labels in place of
    the grid's), then the metric columns (float64) of ``out``, whose rows are the combinations
    ``start ..`` of ``grid``.
    """
    import pyarrow as pa

    pos = grid.group_positions(start, start + out.shape[0])
    cols = {}
    for a in grid.axes:
        labs = (labels or {}).get(a.name, a.labels)
        arr, kind = np.asarray(labs, dtype=object), kinds.get(a.name, "str")
        if kind in ("float", "int", "bool"):
            dt = {"float": np.float64, "int": np.int64, "bool": np.bool_}[kind]
            cols[a.name] = pa.array(arr.astype(dt)[pos[a.group]])
        else:
            cols[a.name] = pa.array([str(x) for x in arr], type=pa.string()).take(
                pa.array(pos[a.group]))
    for j, c in enumerate(METRICS):
        cols[c] = pa.array(np.ascontiguousarray(out[:, j]))
    return pa.table(cols)
