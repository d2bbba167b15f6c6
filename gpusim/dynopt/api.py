"""Integer-position dynamic optimisation (Carver, AFTS ch. 25) over parameter grids (DESIGN §8,
issue 6).

:func:`dynopt` prepares the inputs shared by every combination on the host
(:func:`~gpusim.dynopt.inputs.prepare`: per-contract notional values, costs, optimal unrounded
weights, covariances on a schedule), runs
the grid of capital x shadow cost x buffer (x rebalance frequency) through the fast path of the
chosen backend — :func:`gpusim.dynopt.cpu.dynopt_cpu_nb` or
:func:`gpusim.dynopt.cuda.dynopt_gpu` — in chunks (metrics only), and returns a
:class:`DynoptResult`. Positions and daily series of chosen combinations are re-computed by the
reference :func:`cpu_ref.dynopt.dynopt_1d_nb`.

Inputs and conventions (all on the dates of ``prices``; N instruments)
--------------------------------------------------------------------------
- ``prices``: back-adjusted prices; NaN before an instrument's first price (not listed yet),
  forward-filled after it. P&L of holding n contracts from day t-1 to t:
  ``n (p_t - p_{t-1}) x multiplier x fx_t`` (base currency).
- ``notional_prices`` (default ``prices``): the price used for the value of one contract,
  ``notional = notional_price x multiplier x fx`` (Carver uses the current contract's price
  here; back-adjusted prices can approach or cross 0). Per-contract weight
  ``c = notional / capital``.
- Risk: percentage returns ``r_t = (p_t - p_{t-1}) / notional_price_{t-1}``; on the days of the
  ``cov_every`` schedule the annualised vols and the correlations (shrunk toward zero by
  ``shrinkage``) are re-estimated over the last ``lookback`` days
  (:func:`cpu_ref.dynopt.estimate_covariances_nb`); each day uses the latest estimate.
- Costs per contract (instrument currency) are converted with the day's FX; the cost per unit
  of weight traded is ``k = cost x fx / notional``.
- Optimal unrounded positions: either given (``optimal_positions``, contracts for
  ``optimal_capital``; weights ``w* = contracts x notional / optimal_capital``, so they scale
  linearly with capital), or by **vol targeting** from instrument ``weights`` and a
  ``risk_target``: ``w*_i = idm x weight_i x risk_target / vol_i`` — i.e. Carver's
  ``contracts = capital x idm x weight x risk_target / (multiplier x price x fx x vol)``.
  ``weights`` may be a (T, N) table (e.g. instrument weight x forecast / 10) for time-varying
  targets; the default is equal weights 1/N.
- An instrument is *outside the optimisation* on a day when it has no price or FX, no risk
  estimate yet, a notional <= 0, or no cost: its w* is 0 and any position in it is closed on the
  next rebalance day.

Index levels, in this order: ``capital``, ``shadow_cost``, ``buffer`` (always, a scalar is a
one-value level) and ``rebalance`` when it is a Param.

Tracking error: every TE here is annualised and in units of capital (a TE of 0.02 is 2% a
year). **Documented range**: the average TE of a combination lies between 0 and the average risk
of the optimal portfolio itself, ``summary["avg_optimal_risk"]`` (the TE of holding nothing);
it falls as capital grows and rises with the shadow cost and the buffer. On the pysystemtrade
data (18 instruments, 2014-03 .. 2024-03, equal weights, risk target 20%, idm 2; average
optimal risk 0.116) the 36 combinations of capital 1e5/5e5/1e6 x shadow cost 10/50/100 x
buffer 0/0.01/0.0125/0.02 give average TEs from 0.014 (1e6, 10, 0) to 0.093 (1e5, 100, 0.02).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gpusim.backend import resolve_backend
from gpusim.chunks import run_chunks
from gpusim.compiling import compile_notice
from gpusim.dynopt.inputs import DynoptInputs, prepare
from gpusim.dynopt.result import LOWER_IS_BETTER, METRICS, STATIC_METRICS, DynoptResult
from gpusim.errors import GpusimError
from gpusim.grid import Grid, Param, build_grid
from gpusim.specs import rebalance_mask
from gpusim.validate import check_chunk_size, positive

__all__ = ["LOWER_IS_BETTER", "METRICS", "STATIC_METRICS", "DynoptInputs", "DynoptResult",
           "dynopt", "prepare"]

CPU_CHUNK_CAP = 4096
GPU_CHUNK_CAP = 2 ** 17


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------

def _axis(x, name: str, allow_zero: bool) -> tuple[Param, np.ndarray]:
    vals = list(x.values) if isinstance(x, Param) else [x]
    conv = np.array([positive(v, name, allow_zero=allow_zero) for v in vals])
    pname = x.name if isinstance(x, Param) else None
    level = x.level if isinstance(x, Param) else None
    return Param([float(v) for v in conv], pname, level), conv


def dynopt(prices, multipliers=None, fx=None, costs=None, optimal_positions=None, weights=None,
           *, risk_target: float = 0.2, idm: float = 1.0, optimal_capital: float | None = None,
           capital: Any = 1e6, shadow_cost: Any = 10.0, buffer: Any = 0.0125,
           rebalance: Any = "D", cov_every: Any = "W", lookback: int = 250,
           min_periods: int = 20, shrinkage: float = 0.5, notional_prices=None,
           ann: float | None = None, no_trade_rule: bool = False, compare_static: bool = False,
           static_buffer: float = 0.1, backend: str = "auto", chunk_size: int | None = None,
           progress: bool = True, device: int | None = None) -> DynoptResult:
    """Greedy integer-position dynamic optimisation over a grid of parameters.

    Parameters
    ----------
    prices : (T, N) DataFrame of daily (back-adjusted) prices, dates x instruments (NaN before
        listing), or a :class:`gpusim.data.futures.FuturesData` (then ``multipliers``, ``fx`` and
        ``costs`` default to its own).
    multipliers : per-instrument contract multipliers (dict/Series by name, or (N,) array).
    fx : None (all in the base currency), a number, or a DataFrame/dict of Series by instrument:
        base currency per unit of the instrument's currency (forward-filled onto the dates).
    costs : cost of trading one contract, instrument currency: per instrument (dict/Series/(N,))
        or a (T, N) DataFrame; default 0.
    optimal_positions : (T, N) DataFrame of optimal unrounded contracts for ``optimal_capital``.
    weights : instrument weights for vol targeting (dict/Series/(N,), or a (T, N) DataFrame);
        default equal weights when ``optimal_positions`` is None.
    risk_target, idm : annual risk target and instrument diversification multiplier of the vol
        targeting (``w* = idm x weight x risk_target / vol``).
    capital, shadow_cost, buffer : float or :class:`~gpusim.grid.Param` (sweep axes): account
        value (base currency, > 0), shadow cost (>= 0; multiplies the cost penalty) and
        tracking-error buffer B (>= 0, annualised TE units).
    rebalance : ``"D"``, ``"W"``, ``"M"``, ``"Q"``, ``"Y"`` (first day of each period), an int k
        (every k days), a (T,) bool mask, or a Param of those: the days the optimisation runs.
    cov_every, lookback, min_periods, shrinkage : covariance schedule (a rule like
        ``rebalance``), window length in days, minimum returns for an estimate, and the
        shrinkage of correlations toward zero (R_ij = (1 - shrinkage) rho_ij).
    notional_prices : optional (T, N) prices for the contract values (default ``prices``).
    ann : days per year (default: inferred from the dates, 252 for business days).
    no_trade_rule : pysystemtrade's early exit (DESIGN §8): on a rebalance day keep yesterday's
        positions when their TE against the unrounded optimum is below the buffer, or when the
        greedy answer is all zeros (see :mod:`cpu_ref.dynopt`). Default: the plain steps.
    compare_static : also simulate the *static* positions (optimal positions rounded with
        Carver's classic position buffer, :mod:`cpu_ref.dynopt_static`) on the same rebalance
        days and report their metrics side by side, columns ``static_*``
        (:data:`~gpusim.dynopt.result.STATIC_METRICS`).
    static_buffer : half-width of the static buffer as a fraction of |optimal position|
        (Carver's 10% of the average position; >= 0).
    backend : ``"auto"``, ``"cpu"``, ``"gpu"`` or ``"gpu:N"``; ``device``: the CUDA device
        (default ``GPUSIM_DEVICE``, else 0).
    chunk_size : combinations per kernel launch (default: planned).
    progress : tqdm bar over combinations (only when stderr is a TTY).

    Returns
    -------
    DynoptResult
        ``metrics`` (host DataFrame, one row per combination, columns :data:`METRICS`, then
        ``static_*`` with ``compare_static``);
        ``positions(...)``; ``daily(...)``; ``save(...)``. Ctrl-C stops after the current chunk
        and returns the finished rows with ``partial=True``.
    """
    inp = prepare(prices, multipliers, fx, costs, optimal_positions, weights,
                  risk_target=risk_target, idm=idm, optimal_capital=optimal_capital,
                  notional_prices=notional_prices, cov_every=cov_every, lookback=lookback,
                  min_periods=min_periods, shrinkage=shrinkage, ann=ann)
    T, N = inp.dprice.shape
    cap_e, caps = _axis(capital, "capital", False)
    sh_e, shs = _axis(shadow_cost, "shadow_cost", True)
    bu_e, bus = _axis(buffer, "buffer", True)

    def reb_rule(r):
        if isinstance(r, str) and r.strip().lower() == "never":
            raise GpusimError("rebalance='never' would never trade; use 'D', 'W', 'M', an int "
                              "k or a bool mask")
        return rebalance_mask(r, inp.index)

    if isinstance(rebalance, Param):
        rl = [reb_rule(r) for r in rebalance.values]
        labels = [lab if lab != "mask" else f"mask{i}" for i, (lab, _) in enumerate(rl)]
        reb_entry: Any = Param(labels, rebalance.name, rebalance.level)
        masks = np.ascontiguousarray(np.stack([m for _, m in rl]))
    else:
        lab, m = reb_rule(rebalance)
        reb_entry, masks = lab, np.ascontiguousarray(m.reshape(1, T))
    check_chunk_size(chunk_size)
    if not isinstance(no_trade_rule, (bool, np.bool_)):
        raise GpusimError(f"no_trade_rule={no_trade_rule!r} must be True or False")
    if not isinstance(compare_static, (bool, np.bool_)):
        raise GpusimError(f"compare_static={compare_static!r} must be True or False")
    band = positive(static_buffer, "static_buffer", allow_zero=True) if compare_static else None
    columns = list(METRICS) + (list(STATIC_METRICS) if compare_static else [])

    entries = {"capital": cap_e, "shadow_cost": sh_e, "buffer": bu_e, "rebalance": reb_entry}
    grid = build_grid(entries)
    axis_of = {k: (e.name or k) for k, e in entries.items() if isinstance(e, Param)}
    ctx = _Context(inp, grid, axis_of, masks, caps, shs, bus, bool(no_trade_rule), band)
    be = resolve_backend(backend, device)
    if be.name == "gpu":
        from gpusim.dynopt.cuda import dynopt_gpu as kernel
    else:
        from gpusim.dynopt.cpu import dynopt_cpu as kernel
    C = grid.size
    cap = GPU_CHUNK_CAP if be.name == "gpu" else CPU_CHUNK_CAP
    cs = int(chunk_size) if chunk_size else max(1, min(C, cap, (2 ** 28) // (48 * N + 64)))
    out = np.empty((C, len(columns)))
    opts = {"no_trade_rule": bool(no_trade_rule), "static_band": band}
    tc = time.perf_counter()   # compile / load the kernel on a 2-day slice, outside the timing
    a = ctx.chunk_args(0, 1)
    with compile_notice("the dynopt kernel", 6 if be.name == "cpu" else None,
                        enabled=bool(progress)):
        kernel(*(x[:2] for x in inp.kernel_args()[:5]), inp.covs, inp.cov_id[:2],
               masks[:, :2], a["mid"], a["capitals"], a["shadow_costs"], a["buffers"], inp.ann,
               **opts)
    resident = None
    if be.name == "gpu":   # inputs and scratch on the device once, for every chunk
        from gpusim.dynopt.cuda import DynoptGpuRunner

        resident = DynoptGpuRunner(*inp.kernel_args(), masks, inp.ann, min(cs, C), **opts)
    t0 = time.perf_counter()

    def chunk(start, stop):
        a = ctx.chunk_args(start, stop)
        if resident is not None:
            return resident(a["mid"], a["capitals"], a["shadow_costs"], a["buffers"])
        return kernel(*inp.kernel_args(), masks, a["mid"], a["capitals"], a["shadow_costs"],
                      a["buffers"], inp.ann, **opts)

    r = run_chunks(out, cs, chunk, desc=f"dynopt [{be.label}]", progress=progress)
    done, partial, n_chunks, elapsed = r.done, r.partial, r.n_chunks, r.elapsed_s

    from gpusim.results import jsonable, versions

    metrics = pd.DataFrame(out[:done], index=grid.index_block(0, done), columns=columns)
    risk = inp.optimal_risk()
    summary = {
        "command": "dynopt", "backend": be.label, "n_combinations": C, "n_done": done,
        "partial": partial, "n_days": T, "n_instruments": N, "instruments": inp.symbols,
        "start": str(inp.index[0].date()), "end": str(inp.index[-1].date()), "ann": inp.ann,
        "levels": {ax.name: len(ax.labels) for ax in grid.axes},
        "fixed": {k: jsonable(v) for k, v in grid.fixed.items()},
        **{k: jsonable(v) for k, v in inp.info.items()},
        "avg_optimal_risk": float(np.nanmean(risk)) if np.isfinite(risk).any() else None,
        "no_trade_rule": bool(no_trade_rule), "compare_static": bool(compare_static),
        "static_buffer": band,
        "chunk_size": cs, "n_chunks": n_chunks, "compile_s": round(t0 - tc, 6),
        "elapsed_s": round(elapsed, 6),
        "combination_days_per_s": float(done * T / elapsed) if elapsed > 0 else None,
        "versions": versions(),
    }
    return DynoptResult(metrics, summary, partial, ctx)


@dataclass
class _Context:
    inputs: DynoptInputs
    grid: Grid
    axis_of: dict
    masks: np.ndarray
    capitals: np.ndarray
    shadow_costs: np.ndarray
    buffers: np.ndarray
    no_trade_rule: bool = False
    static_band: float | None = None

    def chunk_args(self, start: int, stop: int) -> dict:
        codes = self.grid.codes(start, stop)
        zeros = np.zeros(stop - start, dtype=np.int64)
        pos = {k: codes[self.axis_of[k]] if k in self.axis_of else zeros
               for k in ("capital", "shadow_cost", "buffer", "rebalance")}
        c = np.ascontiguousarray
        return {"mid": c(pos["rebalance"]), "capitals": c(self.capitals[pos["capital"]]),
                "shadow_costs": c(self.shadow_costs[pos["shadow_cost"]]),
                "buffers": c(self.buffers[pos["buffer"]])}
