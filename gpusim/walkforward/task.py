"""The ``walkforward`` sweep task: walk-forward grids (:func:`gpusim.walkforward`) in sweeps."""

from __future__ import annotations

from gpusim.errors import GpusimError
from gpusim.parse import parse_beta
from gpusim.sweep.tasks import TaskRunner, coerce_levels, level_kind, register_task

__all__ = ["WalkforwardTask"]

WF_ORDER = ("method", "every", "lookback", "estimator", "objective", "risk_aversion",
            "num_tests", "fees")
WF_CALL = ("seed", "init_cash", "rf", "start", "sampler", "alpha", "gap", "solver",
           "weight_bounds", "beta", "cash", "max_vol", "max_te")


class WalkforwardTask(TaskRunner):
    """Walk-forward grids (:func:`gpusim.walkforward`) as a sweep task: every, lookback,
    num_tests, fees, method, objective and estimator are swept inside one call (the searches of
    a date are shared by its lookbacks and num_tests, so a point is one chunk); the rest are
    call-level. Constraints in job files: ``weight_bounds = [lo, hi]``, ``cash = true`` (or a
    minimum investment), ``beta = "spy.csv:SPY<=0.1"``, ``max_vol = 0.15``,
    ``max_te = "spy.csv:SPY<=0.05"`` (beta and max_te: a list for several; paths relative to
    the working folder).
    Rows: the levels, :data:`gpusim.walkforward.api.METRICS` and the report columns.
    """

    name = "walkforward"
    params = {"every": "rebalance rule: D | W | M | Q | Y | k", "lookback": "returns per window "
              "(none = all)", "num_tests": "random candidates per rebalance", "fees":
              "proportional fee", "method": "random | exact", "objective": "max_sharpe | "
              "min_variance | max_return | max_utility", "estimator": "sample | ewma:H | "
              "ledoit_wolf", "risk_aversion": "max_utility's lambda", "max_vol":
              "volatility cap", "max_te": "FILE[:COLUMN]<=VALUE (or a list)",
              "seed": "stream seed",
              "init_cash": "starting cash", "rf": "annual risk-free rate", "start":
              "first simulated bar (index or date)", "sampler": "dirichlet | uniform", "alpha":
              "Dirichlet concentration", "gap": "solve the exact problems for the gap report",
              "solver": "cvxpy solver", "weight_bounds": "[lo, hi] per asset",
              "beta": "FILE[:COLUMN]OPVALUE (or a list)", "cash": "allow cash: true or min"}
    native = frozenset(WF_ORDER)
    unit = "combinations"
    rank_by = ("sharpe", False)

    def prepare(self, market, fixed, native_axes, backend):
        from gpusim.grid import Param

        native = {}
        for gi, a in enumerate(native_axes):
            level = f"zip{gi}" if len(a.names) > 1 else None
            for n in a.names:
                col = [None if isinstance(v, str) and v.lower() in ("none", "all") else v
                       for v in a.column(n)]
                native[n] = Param(col, name=n, level=level)
        for n in WF_ORDER:
            if n in fixed and n not in native:
                native[n] = fixed[n]
        call = {k: fixed[k] for k in WF_CALL if k in fixed}
        levels = [n for n in WF_ORDER if isinstance(native.get(n), Param)]
        kinds = {n: level_kind(list(native[n].values)) for n in levels}
        ctx = {"market": market, "native": native, "call": call, "backend": backend.name,
               "levels": levels, "kinds": kinds}
        self.check_point(ctx, {})
        return ctx

    def _kwargs(self, ctx, point) -> dict:
        kw = {**ctx["call"], **point}
        cons = pop_job_constraints(kw)      # removes the constraint keys from kw
        return {**kw, "constraints": cons}

    def check_point(self, ctx, point):
        self._kwargs(ctx, point)      # constraint keys parse

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
        from gpusim.walkforward.api import walkforward

        res = walkforward(ctx["market"], **ctx["native"], **self._kwargs(ctx, point),
                          backend=ctx["backend"], progress=False)
        if res.partial:          # a cut-short run is never stored as a finished chunk
            raise KeyboardInterrupt
        rep = res.report
        table = res.metrics.join(rep[[c for c in rep.columns if c not in res.metrics.columns]])
        table = table.reset_index()
        if not ctx["levels"]:
            table = table.drop(columns=[c for c in WF_ORDER if c in table.columns])
        return coerce_levels(table, ctx["kinds"]), {"compute_s": res.summary["timings_s"][
            "total"], "statuses": res.summary["statuses"]}


register_task(WalkforwardTask())



def pop_job_constraints(kw: dict) -> list:
    """Remove the job-file constraint keys (``weight_bounds = [lo, hi]``, ``beta`` specs,
    ``max_vol``, ``max_te`` specs, ``cash``) from ``kw`` and return them as constraint objects
    (an empty list when none).
    """
    from gpusim.parse import parse_te
    from gpusim.walkforward.constraints import Budget, Volatility, WeightBounds

    cons = []
    wb = kw.pop("weight_bounds", None)
    if wb is not None:
        if not isinstance(wb, (list, tuple)) or len(wb) != 2:
            raise GpusimError(f"weight_bounds={wb!r} must be [lo, hi]")
        cons.append(WeightBounds(lo=wb[0], hi=wb[1]))
    beta = kw.pop("beta", None)
    for spec in ([] if beta is None else [beta] if isinstance(beta, str) else beta):
        cons.append(parse_beta(spec))
    vol = kw.pop("max_vol", None)
    if vol is not None:
        cons.append(Volatility(max=float(vol)))
    te = kw.pop("max_te", None)
    for spec in ([] if te is None else [te] if isinstance(te, str) else te):
        cons.append(parse_te(spec))
    cash = kw.pop("cash", None)
    if cash is not None and cash is not False:
        cons.append(Budget(min=0.0 if cash is True else float(cash)))
    return cons
