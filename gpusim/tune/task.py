"""The ``tune`` sweep task: tuning studies as the points of a sweep (one study per chunk).

A sweep job with ``task = "tune"`` runs :func:`gpusim.tune` once per point of its grid — e.g.
over sampler seeds and batch sizes, to measure how reliably a study finds the grid's best —
with the sweep's checkpoints, resume and Dask engine. Every parameter is call-level::

    task = "tune"
    out = "runs/tune-seeds"
    [data]
    synthetic = { n_assets = 5, n_bars = 756, seed = 0 }
    [fixed]
    target = "walkforward"          # the task tuned (walkforward or backtest)
    space = { every = ["W", "M", 21], lookback = [63, 126, 252], num_tests = [100, 1000, 5000] }
    n_trials = 30
    objective = "sharpe"
    compare_grid = true
    args = { fees = 0.001 }         # fixed arguments of the tuned task
    [grid]
    seed = { start = 0, stop = 19 }
    batch = [5, 10, 32]

A backtest study may tune a user allocation function's parameters: ``args = { alloc =
"strategies.py:band", seed = 7 }`` (the file relative to the job file's folder) and the
function's parameters in ``space`` (:mod:`gpusim.tune.alloc`).

Rows: one per study — ``best_value``, ``best_trial``, ``best_params`` (JSON text), the counts
(trials done, batches, calls, points evaluated), timings, and with ``compare_grid`` the grid's
size, best value and the ``rank`` of the tuned best in it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from gpusim.errors import GpusimError
from gpusim.sweep.tasks import TaskRunner, register_task

__all__ = ["TuneTask"]

DEFAULTS = {"n_trials": 100, "batch": 32, "objective": "sharpe", "direction": None, "seed": 0,
            "sampler": "tpe", "compare_grid": False, "grid_values": None, "args": None}
COLUMNS = ("best_value", "best_trial", "best_params", "n_done", "n_batches", "n_calls",
           "n_evaluated", "evaluate_s", "sampler_s", "total_s", "n_grid", "grid_best_value",
           "rank")


class TuneTask(TaskRunner):
    """Tuning studies (:func:`gpusim.tune`), one per point of the sweep's grid."""

    name = "tune"
    params = {"target": "the task tuned: walkforward | backtest",
              "space": "the search space (a table: lists and { low, high, log, step } ranges)",
              "n_trials": "trials per study", "batch": "trials per grid call",
              "objective": "a metric of the tuned task", "direction": "maximize | minimize",
              "seed": "the sampler's seed", "sampler": "tpe | random",
              "compare_grid": "also run the full grid and rank the tuned best (bool)",
              "grid_values": "values of continuous dimensions for the grid (a table)",
              "args": "fixed arguments of the tuned task (a table; a backtest's may hold "
                      "alloc = \"FILE.py:NAME\", relative to the job file, and params)"}
    unit = "studies"
    rank_by = ("best_value", False)

    def prepare(self, market, fixed, native_axes, backend):
        ctx = {"market": market, "fixed": dict(fixed), "backend": backend.name}
        self.check_point(ctx, {})
        return ctx

    def _kw(self, ctx, point) -> dict:
        from gpusim.tune.job import fixed_args

        kw = {**DEFAULTS, **ctx["fixed"], **point}
        for key in ("target", "space"):
            if key not in kw:
                raise GpusimError(f"a tune sweep needs {key} under [fixed]; see gpusim.tune.task")
        if kw["target"] == "dynopt":
            raise GpusimError("target='dynopt' cannot be tuned in a sweep (its data are futures,"
                              " not a price table); use gpusim.tune or gpusim tune")
        args = kw["args"] or {}
        if not isinstance(args, dict):
            raise GpusimError(f"args={args!r} must be a table of the tuned task's arguments")
        kw["args"] = fixed_args(kw["target"], args, Path.cwd(), list(ctx["market"].symbols))
        return kw

    def check_point(self, ctx, point):
        from gpusim.tune.space import parse_space
        from gpusim.tune.targets import check_names, get_target

        kw = self._kw(ctx, point)
        check_names(get_target(kw["target"]), parse_space(kw["space"]), kw["args"])

    def run(self, ctx, point, part):
        from gpusim.tune.api import tune

        kw = self._kw(ctx, point)
        res = tune(kw["target"], ctx["market"], kw["space"], n_trials=kw["n_trials"],
                   batch=kw["batch"], objective=kw["objective"], direction=kw["direction"],
                   seed=kw["seed"], sampler=kw["sampler"], fixed=kw["args"],
                   backend=ctx["backend"], progress=False)
        if res.partial:
            raise KeyboardInterrupt
        s = res.summary
        row = {"best_value": res.best_value,
               "best_trial": -1 if res.best_trial is None else res.best_trial,
               "best_params": json.dumps(res.best_params, default=str),
               "n_done": s["n_done"], "n_batches": s["n_batches"], "n_calls": s["n_calls"],
               "n_evaluated": s["n_evaluated"], "evaluate_s": s["timings_s"]["evaluate"],
               "sampler_s": s["timings_s"]["sampler"], "total_s": s["timings_s"]["total"],
               "n_grid": -1, "grid_best_value": np.nan, "rank": -1}
        if kw["compare_grid"] and res.best_trial is not None:
            c = res.compare_grid(kw["grid_values"])
            row.update(n_grid=c.summary["n_grid"], grid_best_value=c.best_value, rank=c.rank)
        table = pd.DataFrame([row], columns=list(COLUMNS))
        return table, {"compute_s": s["timings_s"]["total"]}


register_task(TuneTask())
