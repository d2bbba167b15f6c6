"""The result of a user-function backtest: the backtest's metrics table, with records re-run
through the reference :func:`cpu_ref.strategy.simulate_alloc_1d` (orders included).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cpu_ref.backtest import METRICS
from gpusim.backtest.result import BacktestResult, Records
from gpusim.results import jsonable

__all__ = ["StrategyRecords", "StrategyResult"]


@dataclass
class StrategyRecords(Records):
    """:class:`~gpusim.backtest.result.Records` plus ``orders``: a DataFrame with one row per
    filled order (``date``, ``bar``, ``symbol``, ``units`` (< 0 sold), ``price``, ``fee``), in
    the order they were filled.
    """

    orders: pd.DataFrame = field(default=None, repr=False)


class StrategyResult(BacktestResult):
    """Result of ``gpusim.backtest(market, alloc=fn, ...)``: as
    :class:`~gpusim.backtest.result.BacktestResult`; :meth:`records` re-runs one combination
    through the reference, calling the user's function as plain Python.
    """

    def target_weights(self, keys=None) -> pd.DataFrame:
        """Target weights by symbol of the rows ``keys`` (default: every row), (len(keys), A):
        for a function that writes its targets, the targets in force after the last bar (each
        row re-run through the reference, ~5 ms a row at 756 bars); otherwise the initial
        targets ``weights=`` (which the function keeps).
        """
        ctx = self._ctx
        if not ctx.alloc.uses_targets:
            return super().target_weights(keys)
        idx = self.metrics.index if keys is None else keys
        rows = [self.records(key).target.iloc[-1].to_numpy() for key in idx]
        W = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(ctx.symbols))
        return pd.DataFrame(W, index=idx, columns=pd.Index(ctx.symbols))

    def records(self, key: tuple | None = None, **level_values) -> StrategyRecords:
        """Re-run one combination (by level values, e.g. ``records(tau=0.05)``, or by a row
        label of ``metrics``) through :func:`cpu_ref.strategy.simulate_alloc_1d`.
        """
        from cpu_ref.strategy import simulate_alloc_1d

        ctx = self._ctx
        flat = self._locate(key, level_values)
        a = ctx.chunk_args(flat, flat + 1)
        m, value, bars, tgt, real, orders = simulate_alloc_1d(
            ctx.alloc.func, ctx.close, a["W"][a["wid"][0]], a["params"][0],
            ctx.masks[a["mid"][0]], float(a["fees"][0]), ctx.init_cash, ctx.ann, ctx.rf,
            ctx.seed, int(a["streams"][0]))
        dates = ctx.market.prices.index
        sym = pd.Index(ctx.symbols)
        rb = pd.DatetimeIndex(dates[bars])
        V = np.asarray(value)
        seg = np.searchsorted(bars, np.arange(len(V)), side="right") - 1
        H = real[seg] * V[bars][seg][:, None] / ctx.close[bars][seg]   # units held
        alloc = H * ctx.close / V[:, None]
        daily = pd.DataFrame(alloc, index=dates, columns=sym)
        daily["cash"] = 1.0 - alloc.sum(axis=1)
        ob = orders[:, 0].astype(np.int64)
        od = pd.DataFrame({"date": dates[ob], "bar": ob,
                           "symbol": sym[orders[:, 1].astype(np.int64)],
                           "units": orders[:, 2], "price": orders[:, 3], "fee": orders[:, 4]})
        params = {**ctx.grid.labels_of(flat),
                  **{k: jsonable(v) for k, v in ctx.grid.fixed.items()},
                  "alloc": ctx.alloc.name, "seed": ctx.seed, "init_cash": ctx.init_cash}
        return StrategyRecords(params=params, rebalance_bars=rb, rebalance_idx=bars,
                               target=pd.DataFrame(tgt, index=rb, columns=sym),
                               realised=pd.DataFrame(real, index=rb, columns=sym),
                               value=pd.Series(V, index=dates, name="value"),
                               metrics=pd.Series(m, index=list(METRICS), name="reference"),
                               allocations=daily, orders=od)
