"""Tuning a task's parameters with Optuna's TPE, a batch of trials per grid call (DESIGN §12).

:func:`tune` asks Optuna (ask/tell interface, seeded sampler) for ``batch`` trials at a time,
evaluates the batch as *one* call of the task (:func:`gpusim.tune.targets.evaluate`: the trials'
parameter rows as zipped Params; points already evaluated are not run again), tells the values
back, and repeats until ``n_trials``. The result (:class:`~gpusim.tune.result.TuneResult`) is a
labelled table of the trials, the best parameters and value, and
:meth:`~gpusim.tune.result.TuneResult.compare_grid` to compare with the full grid when the
space can be enumerated.

Optuna is an extra (``pip install "gpusim[tune]"``), imported only when :func:`tune` runs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from gpusim.errors import GpusimError
from gpusim.interrupt import deferred_interrupt
from gpusim.tune.alloc import load_alloc, uses_alloc
from gpusim.tune.result import TuneResult, _Study
from gpusim.tune.space import parse_space, space_json
from gpusim.tune.targets import _key, check_names, evaluate, get_target
from gpusim.validate import integer, listing

__all__ = ["DIRECTIONS", "SAMPLERS", "tune"]

DIRECTIONS = ("maximize", "minimize")
SAMPLERS = ("tpe", "random")


def _optuna():
    try:
        import optuna
    except ImportError:
        raise GpusimError("tuning needs Optuna: pip install \"gpusim[tune]\" (or pip install "
                          "optuna)") from None
    return optuna


@contextmanager
def _quiet(optuna):
    """Optuna's per-trial INFO lines off for the duration of the block."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def _sampler(optuna, sampler, seed: int):
    if isinstance(sampler, optuna.samplers.BaseSampler):
        return sampler, type(sampler).__name__
    if sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed), "TPESampler"
    if sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed), "RandomSampler"
    raise GpusimError(f"sampler={sampler!r} is unknown; use 'tpe', 'random' or an Optuna "
                      "sampler")


def _direction(target, objective: str, direction: str | None) -> str:
    metrics = target.metric_names
    if objective not in metrics:
        raise GpusimError(f"objective={objective!r} is not a metric of {target.name}; use one "
                          f"of {listing(metrics)}")
    if direction is None:
        return "minimize" if objective in target.lower_is_better else "maximize"
    if direction not in DIRECTIONS:
        raise GpusimError(f"direction={direction!r} must be 'maximize' or 'minimize'")
    return direction


def tune(task: str, data, space: Mapping[str, Any], *, n_trials: int = 100, batch: int = 32,
         objective: str = "sharpe", direction: str | None = None, seed: int = 0,
         sampler: Any = "tpe", fixed: Mapping[str, Any] | None = None, backend: str = "auto",
         progress: bool = True, **kwargs) -> TuneResult:
    """Tune the parameters of a grid task with Optuna, one grid call per batch of trials.

    Parameters
    ----------
    task : ``"walkforward"``, ``"backtest"`` or ``"dynopt"`` (:data:`gpusim.tune.targets.TARGETS`).
    data : the task's data: a Market or prices DataFrame (backtest, walkforward), futures data
        (dynopt).
    space : ``{argument: spec}``; a spec is a list of choices, ``(low, high)`` (floats; ints when
        both bounds are ints), ``(low, high, "log")`` or ``(low, high, step)``
        (:mod:`gpusim.tune.space`).
    n_trials : trials in all (int >= 1).
    batch : trials asked before their values are told back; each batch is one call of the task
        (or one per distinct value of the tuned arguments the task cannot sweep in a call).
    objective : a metric of the task (e.g. ``"sharpe"``, ``"max_drawdown"``, ``"turnover"``).
    direction : ``"maximize"`` or ``"minimize"``; default: minimise the task's lower-is-better
        metrics (volatility, turnover, fees, ...), maximise the others.
    seed : the sampler's seed (the same seed gives the same trials and table).
    sampler : ``"tpe"`` (Optuna's TPESampler, default), ``"random"``, or an Optuna sampler.
    fixed : fixed arguments of the task whose names clash with this function's (e.g.
        walk-forward's own ``seed``); merged with ``kwargs``.
    backend : ``"auto"``, ``"cpu"`` or ``"gpu"`` for the task's calls.
    progress : a tqdm bar over trials, updated per batch (only when stderr is a TTY).
    **kwargs : fixed arguments passed to every call of the task (e.g. ``fees=0.001``).
        A backtest with ``alloc`` (a user allocation function or its ``"FILE.py:NAME"`` spec)
        tunes the function's parameters: space and fixed names that are not backtest arguments
        are its parameters, ``params=[...]`` their row order (needed for two or more), and each
        trial's metrics equal a direct ``gpusim.backtest(alloc=..., params={...})`` call of its
        values (:mod:`gpusim.tune.alloc`).

    Returns
    -------
    TuneResult
        ``trials`` (one row per trial: parameters, ``value``, the task's metrics, ``batch``,
        ``state``, ``repeat_of``, ``best_so_far``), ``best_params``, ``best_value``,
        ``compare_grid()``, ``save()``. Ctrl-C stops after the current batch and returns the
        finished trials marked ``partial``.
    """
    t_all = time.perf_counter()
    optuna = _optuna()
    target = get_target(task)
    dims = parse_space(space)
    fixed_all = {**dict(fixed or {}), **kwargs}
    check_names(target, dims, fixed_all)
    n_trials = integer(n_trials, "n_trials", 1)
    batch = integer(batch, "batch", 1)
    integer(seed, "seed", 0, 2 ** 32 - 1)
    direction = _direction(target, objective, direction)
    smp, sampler_name = _sampler(optuna, sampler, int(seed))
    data = target.prepare_data(data)
    call_fixed = target.fixed_for(dims, fixed_all)
    if uses_alloc(target, call_fixed):     # a spec is loaded once, not once per batch
        call_fixed["alloc"] = load_alloc(call_fixed["alloc"])
    with _quiet(optuna):
        study = optuna.create_study(direction=direction, sampler=smp)
    st = _Study(target=target, data=data, dims=dims, fixed=call_fixed, backend=backend,
                objective=objective, direction=direction, study=study)
    partial, batches = _loop(st, optuna, n_trials, batch, progress)
    trials = st.table()
    summary = {
        "command": "tune", "task": target.name, "objective": objective,
        "direction": direction, "seed": int(seed), "sampler": sampler_name,
        "n_trials": n_trials, "n_done": len(trials), "batch": batch,
        "n_batches": len(batches), "n_calls": int(sum(b["calls"] for b in batches)),
        "n_evaluated": int(sum(b["new"] for b in batches)), "partial": partial,
        "space": space_json(dims), "fixed": st.fixed_json(),
        "backend": st.backend_label or backend,
        "timings_s": {"evaluate": round(sum(b["evaluate_s"] for b in batches), 6),
                      "sampler": round(sum(b["sampler_s"] for b in batches), 6),
                      "total": round(time.perf_counter() - t_all, 6)},
        "batches": batches,
    }
    return TuneResult(trials, summary, partial, st)


def _loop(st: _Study, optuna, n_trials: int, batch: int, progress: bool
          ) -> tuple[bool, list[dict]]:
    """Ask, evaluate and tell batch after batch; returns (partial, per-batch facts)."""
    from optuna.trial import TrialState
    from tqdm.auto import tqdm

    dists = {d.name: d.distribution() for d in st.dims}
    names = [d.name for d in st.dims]
    batches: list[dict] = []
    partial = False
    bar = tqdm(total=n_trials, unit="trial", desc=f"tune {st.target.name}", leave=False,
               disable=not progress or not sys.stderr.isatty())
    pending: list = []
    with deferred_interrupt() as flag, _quiet(optuna):
        try:
            while len(st.records) < n_trials and not flag:
                k = min(batch, n_trials - len(st.records))
                t0 = time.perf_counter()
                pending = []
                for _ in range(k):
                    pending.append(st.study.ask(dists))
                params = [{n: tr.params[n] for n in names} for tr in pending]
                keys = [tuple(_key(p[n]) for n in names) for p in params]
                new = list(dict.fromkeys(k_ for k_ in keys if k_ not in st.cache))
                todo = [params[keys.index(k_)] for k_ in new]     # one row per new point
                t1 = time.perf_counter()
                table, calls, label = evaluate(st.target, st.data, todo, st.fixed, st.backend)
                t2 = time.perf_counter()
                st.backend_label = label or st.backend_label
                first = {k_: pending[keys.index(k_)].number for k_ in new}
                for j, k_ in enumerate(new):
                    st.cache[k_] = (table.iloc[j], first[k_])
                for tr, p, k_ in zip(pending, params, keys):
                    row, rep = st.cache[k_]
                    v = float(row[st.objective])
                    ok = bool(np.isfinite(v))
                    st.study.tell(tr, v if ok else None,
                                  state=TrialState.COMPLETE if ok else TrialState.FAIL)
                    st.records.append({"trial": tr.number, "params": p, "row": row,
                                       "batch": len(batches), "ok": ok,
                                       "repeat_of": -1 if rep == tr.number else rep})
                pending = []
                batches.append({"batch": len(batches), "trials": k, "new": len(new),
                                "calls": calls, "evaluate_s": round(t2 - t1, 6),
                                "sampler_s": round(t1 - t0 + time.perf_counter() - t2, 6)})
                bar.update(k)
                best = st.best_value()
                if best is not None:
                    bar.set_postfix_str(f"best {st.objective} {best:.6g}")
        except KeyboardInterrupt:     # a second Ctrl-C: drop the batch in flight
            partial = True
            for tr in pending:
                st.study.tell(tr, state=TrialState.FAIL, skip_if_finished=True)
        finally:
            bar.close()
    partial = partial or len(st.records) < n_trials
    return partial, batches

