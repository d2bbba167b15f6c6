"""The ``dynopt`` sweep task: :func:`gpusim.dynopt` grids in sweeps.

Capital, shadow cost, buffer and rebalance are swept inside one call (a point is one chunk);
everything else is call-level, and a call-level value given a list in ``[grid]`` makes one
point per value, e.g. ``no_trade_rule = [false, true]``. The futures data come from the
``futures`` key, not ``[data]`` (a price table has no multipliers, FX or costs): a
pysystemtrade folder (default: ``../shared/data/pysystemtrade`` when present) or
``"synthetic:N:DAYS:SEED"``, with ``instruments``, ``start``/``end`` or ``years`` (default 10).

    task = "dynopt"
    [fixed]
    futures = "synthetic:6:500:1"
    idm = 2.0
    compare_static = true
    [grid]
    capital = [1e5, 1e6]
    buffer = [0.0, 0.0125, 0.03]
    no_trade_rule = [false, true]
"""

from __future__ import annotations

from gpusim.errors import GpusimError
from gpusim.sweep.tasks import TaskRunner, coerce_levels, level_kind, register_task

__all__ = ["DynoptTask", "load_job_futures"]

DO_ORDER = ("capital", "shadow_cost", "buffer", "rebalance")
DO_CALL = ("risk_target", "idm", "cov_every", "lookback", "min_periods", "shrinkage",
           "no_trade_rule", "compare_static", "static_buffer")
DATA_KEYS = ("futures", "instruments", "start", "end", "years")


def load_job_futures(fixed: dict):
    """The :class:`gpusim.data.futures.FuturesData` named by a job's ``futures``,
    ``instruments``, ``start``/``end`` and ``years`` keys.
    """
    from gpusim.data.futures import default_data_dir, load_futures, synthetic_futures

    spec = fixed.get("futures")
    names = fixed.get("instruments")
    if isinstance(names, str):
        names = [s.strip() for s in names.split(",") if s.strip()]
    if spec is None:
        spec = default_data_dir()
        if spec is None:
            spec = "synthetic"
    if str(spec).startswith("synthetic"):
        parts = str(spec).split(":")[1:]
        if len(parts) > 3 or not all(x.strip().isdigit() for x in parts):
            raise GpusimError(f"futures={spec!r} is not synthetic[:N[:DAYS[:SEED]]] with "
                              "integers")
        data = synthetic_futures(**dict(zip(("n_instruments", "n_days", "seed"),
                                            map(int, parts))))
    else:
        data = load_futures(str(spec), instruments=names)
    if fixed.get("start") is not None or fixed.get("end") is not None:
        return data.window(fixed.get("start"), fixed.get("end"))
    years = float(fixed.get("years", 10.0))
    if not years > 0:
        raise GpusimError(f"years={years!r} must be > 0")
    return data.last_years(years)


class DynoptTask(TaskRunner):
    """Integer-position dynamic optimisation (:func:`gpusim.dynopt`) as a sweep task. Rows: the
    levels and :data:`gpusim.dynopt.result.METRICS` (then the ``static_*`` columns with
    ``compare_static``).
    """

    name = "dynopt"
    params = {"capital": "account value, base currency", "shadow_cost": "shadow cost (>= 0)",
              "buffer": "tracking-error buffer (>= 0)",
              "rebalance": "rebalance rule: D | W | M | Q | Y | k",
              "risk_target": "annual risk target of the vol targeting", "idm": "instrument "
              "diversification multiplier", "cov_every": "covariance schedule: D | W | M | k",
              "lookback": "covariance window, days", "min_periods": "returns needed for a risk "
              "estimate", "shrinkage": "correlation shrinkage toward 0",
              "no_trade_rule": "pysystemtrade's early exit (true/false)",
              "compare_static": "also report Carver's static position buffer (static_*)",
              "static_buffer": "half-width of the static buffer, fraction of |position|",
              "futures": "pysystemtrade folder or synthetic:N:DAYS:SEED",
              "instruments": "instrument names (list or comma string)",
              "start": "first date", "end": "last date", "years": "last years of data"}
    native = frozenset(DO_ORDER)
    unit = "combinations"
    rank_by = ("sharpe", False)

    def prepare(self, market, fixed, native_axes, backend):
        from gpusim.grid import Param

        data = load_job_futures(fixed)
        native = {}
        for gi, a in enumerate(native_axes):
            level = f"zip{gi}" if len(a.names) > 1 else None
            for n in a.names:
                native[n] = Param(list(a.column(n)), name=n, level=level)
        for n in DO_ORDER:
            if n in fixed and n not in native:
                native[n] = fixed[n]
        call = {k: fixed[k] for k in DO_CALL if k in fixed}
        levels = [n for n in DO_ORDER if isinstance(native.get(n), Param)]
        kinds = {n: level_kind(list(native[n].values)) for n in levels}
        return {"data": data, "native": native, "call": call, "backend": backend.name,
                "levels": levels, "kinds": kinds}

    def levels(self, ctx):
        return list(ctx["levels"])

    def level_kinds(self, ctx):
        return dict(ctx["kinds"])

    def split(self, ctx, point, chunk_size):
        import math

        from gpusim.grid import Param

        size = math.prod(len(v) for v in ctx["native"].values() if isinstance(v, Param))
        return [{"size": int(size)}]

    def run(self, ctx, point, part):
        from gpusim.dynopt.api import dynopt

        kw = {**ctx["call"], **{k: v for k, v in point.items() if k not in DATA_KEYS}}
        res = dynopt(ctx["data"], **ctx["native"], **kw, backend=ctx["backend"],
                     progress=False)
        if res.partial:          # a cut-short run is never stored as a finished chunk
            raise KeyboardInterrupt
        table = res.metrics.reset_index()
        # one-value levels (always in dynopt's index) are not levels of the sweep
        table = table.drop(columns=[c for c in DO_ORDER if c in table.columns
                                    and c not in ctx["levels"]])
        return coerce_levels(table, ctx["kinds"]), {"compute_s": res.summary["elapsed_s"]}


register_task(DynoptTask())
