"""What the batched search methods maximise: ex-ante Sharpe, or ex-post backtest metrics.

An objective scores a batch of weight vectors ``W`` (n, A) with a feasibility mask ``ok`` (n,)
and returns ``(score (n,), table (n, len(columns)))``, both host float64 arrays; infeasible rows
and NaN metrics score -inf. Every objective is maximised.

* :class:`ExAnte` — Sharpe from (mu, cov) (DESIGN §5), scored by
  :func:`gpusim.search.sampling.sharpe_rows_nb` on the CPU or its CUDA twin
  (:mod:`gpusim.search.guided_cuda`), bit-identical.
* :class:`ExPost` — a metric of the §6 backtest of each weight vector under a rebalance rule,
  drift threshold and fees, through the backtest fast path
  (:func:`gpusim.backtest.cpu.backtest_cpu_nb`, or ``backtest_gpu``; bit-identical except the
  last ulp of ``cagr``/``calmar``, see :mod:`gpusim.backtest.cuda`).

:func:`split_holdout` cuts a market into training and held-out bars for ``holdout=``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from cpu_ref.backtest import METRICS
from gpusim.errors import GpusimError

EX_POST = {"sharpe": "sharpe", "sortino": "sortino", "calmar": "calmar",
           "max_drawdown": "max_drawdown", "cagr": "cagr"}
"""objective name -> column of :data:`cpu_ref.backtest.METRICS` that is maximised
(``max_drawdown`` is <= 0: maximising it minimises the drawdown)."""
OBJECTIVES = tuple(EX_POST)
EX_ANTE_COLUMNS = ("sharpe", "expected_return", "expected_volatility")
MIN_BARS = 3  # a covariance (ex-ante) or a volatility (ex-post) needs at least 3 bars


def _finite_or_neg_inf(x: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(x), -np.inf, x)


class ExAnte:
    """Ex-ante Sharpe ``(ann mu.w - rf) / sqrt(ann w'Σw)`` of per-bar (mu, cov)."""

    kind = "ex-ante"
    columns = EX_ANTE_COLUMNS
    metric = "sharpe"

    def __init__(self, mu, cov, ann: float, rf: float, backend):
        from gpusim.search.steps import upper_doubled

        self.mu = np.ascontiguousarray(mu, dtype=np.float64)
        self.cov = np.ascontiguousarray(cov, dtype=np.float64)
        self.U = upper_doubled(self.cov)
        self.ann, self.rf = float(ann), float(rf)
        self.gpu = backend.name == "gpu"

    def score(self, W: np.ndarray, ok: np.ndarray):
        """(n,) Sharpe and (n, 3) table [sharpe, expected_return, expected_volatility]."""
        if self.gpu:
            from gpusim.search.guided_cuda import sharpe_rows_gpu as rows
        else:
            from gpusim.search.sampling import sharpe_rows_nb as rows
        st = rows(W, ok, self.mu, self.U, self.ann, self.rf)
        table = np.column_stack([st[:, 2], st[:, 0], st[:, 1]])
        return table[:, 0].copy(), table


class ExPost:
    """A metric of the §6 backtest of each weight vector on the bars of ``market``."""

    kind = "ex-post"
    columns = METRICS

    def __init__(self, market, metric: str, rebalance, threshold, relative: bool, fees: float,
                 init_cash: float, rf: float, backend):
        from gpusim.specs import fee_value, rebalance_mask, threshold_value

        self.metric = metric
        self.col = METRICS.index(EX_POST[metric])
        self.close = np.ascontiguousarray(market.prices.to_numpy(dtype=np.float64))
        self.rule, mask = rebalance_mask(rebalance, market.prices.index)
        self.masks = np.ascontiguousarray(mask.reshape(1, -1))
        self.threshold = np.nan if threshold is None else threshold_value(threshold)
        self.fees = fee_value(fees)
        self.relative = bool(relative)
        self.init_cash, self.ann, self.rf = float(init_cash), float(market.ann), float(rf)
        if not (self.init_cash > 0 and math.isfinite(self.init_cash)):
            raise GpusimError(f"init_cash={init_cash!r} must be a finite number > 0")
        self.gpu = backend.name == "gpu"

    def metrics(self, W: np.ndarray) -> np.ndarray:
        """(n, 11) backtest metrics of the rows of ``W`` (each one combination)."""
        n = W.shape[0]
        if self.gpu:
            from gpusim.backtest.cuda import backtest_gpu_scalar as kernel
        else:
            from gpusim.backtest.cpu import backtest_cpu as kernel
        return kernel(self.close, np.ascontiguousarray(W), np.arange(n, dtype=np.int64),
                      self.masks, np.zeros(n, dtype=np.int64), np.full(n, self.threshold),
                      self.relative, np.full(n, self.fees), self.init_cash, self.ann, self.rf)

    def score(self, W: np.ndarray, ok: np.ndarray):
        """(n,) objective (-inf where infeasible or NaN) and the (n, 11) metrics."""
        table = np.full((W.shape[0], len(METRICS)), np.nan)
        if ok.any():
            table[ok] = self.metrics(W[ok])
        score = _finite_or_neg_inf(table[:, self.col])
        score[~ok] = -np.inf
        return score, table

    def describe(self) -> dict:
        return {"rebalance": self.rule, "threshold": None if np.isnan(self.threshold) else
                self.threshold, "relative": self.relative, "fees": self.fees,
                "init_cash": self.init_cash}


def split_holdout(market, holdout):
    """``(train, test)`` Markets: the bars before and from the held-out start.

    ``holdout`` is a fraction in (0, 1) (the last ``round(holdout * T)`` bars are held out) or
    a date (bars on or after it are held out). Each part needs at least ``MIN_BARS`` bars.
    """
    from gpusim.data.market import Market

    idx = market.prices.index
    T = len(idx)
    if isinstance(holdout, (float, np.floating)) and not isinstance(holdout, bool):
        if not 0.0 < holdout < 1.0:
            raise GpusimError(f"holdout={holdout!r}: a fraction must lie strictly between 0 "
                              "and 1 (e.g. 0.3 holds out the last 30% of the bars)")
        cut = T - round(holdout * T)
    else:
        try:
            when = pd.Timestamp(holdout)
        except (TypeError, ValueError):
            raise GpusimError(f"holdout={holdout!r} is neither a fraction in (0, 1) nor a "
                              "date") from None
        cut = int(idx.searchsorted(when, side="left"))
    if cut < MIN_BARS or T - cut < MIN_BARS:
        raise GpusimError(f"holdout={holdout!r} leaves {cut} training and {T - cut} held-out "
                          f"bars of {T}; each part needs at least {MIN_BARS}")
    p = market.prices
    return (Market(p.iloc[:cut], market.ann, market.ann_source, market.name),
            Market(p.iloc[cut:], market.ann, market.ann_source, market.name))
