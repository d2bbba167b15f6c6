"""The result of :func:`gpusim.tune`: the trials table, the best parameters, the comparison with
the full grid, and saving.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpusim.errors import GpusimError
from gpusim.results import atomic_dir, check_format, jsonable, versions, write_table

__all__ = ["GridComparison", "TuneResult"]


@dataclass
class _Study:
    """The live state of a tuning run (what :meth:`TuneResult.compare_grid` re-uses)."""

    target: Any
    data: Any
    dims: list
    fixed: dict
    backend: str
    objective: str
    direction: str
    study: Any                                   # the optuna.Study
    records: list = field(default_factory=list)  # one dict per finished trial, in order
    cache: dict = field(default_factory=dict)    # parameter key -> (metrics row, first trial)
    backend_label: str = ""                      # what the task's calls ran on

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    def best_value(self) -> float | None:
        vals = [float(r["row"][self.objective]) for r in self.records if r["ok"]]
        if not vals:
            return None
        return max(vals) if self.maximize else min(vals)

    def metric_columns(self) -> list[str]:
        if self.records:
            return [str(c) for c in self.records[0]["row"].index]
        return list(self.target.metric_names)

    def table(self) -> pd.DataFrame:
        return trials_frame(self.records, self.dims, self.metric_columns(), self.objective,
                            self.direction)

    def fixed_json(self) -> dict:
        from gpusim.tune.alloc import alloc_label

        return {k: alloc_label(v) if k == "alloc" and v is not None else
                jsonable(v) if not isinstance(v, (list, tuple)) else [jsonable(x) for x in v]
                for k, v in self.fixed.items()}


def trials_frame(records: list[dict], dims, metric_cols: list[str], objective: str,
                 direction: str) -> pd.DataFrame:
    """The trials table: index ``trial``; the tuned parameters, ``value`` (the objective, NaN
    for a failed trial), the metric columns, ``batch``, ``state``, ``repeat_of`` (the first
    trial with the same parameters, whose values it re-uses; -1 when none) and ``best_so_far``
    (best value of the trials up to this one).
    """
    names = [d.name for d in dims]
    tail = ["batch", "state", "repeat_of", "best_so_far"]
    if not records:
        return pd.DataFrame(columns=[*names, "value", *metric_cols, *tail],
                            index=pd.Index([], name="trial"))
    rows = []
    for r in records:
        rows.append({**r["params"], "value": float(r["row"][objective]) if r["ok"] else np.nan,
                     **{c: r["row"][c] for c in metric_cols}, "batch": r["batch"],
                     "state": "complete" if r["ok"] else "fail", "repeat_of": r["repeat_of"]})
    df = pd.DataFrame(rows, index=pd.Index([r["trial"] for r in records], name="trial"))
    for n in names:     # keep the values as asked (None stays None beside ints, not NaN)
        df[n] = _column([r["params"][n] for r in records], df.index)
    v = df["value"].to_numpy(dtype=float)
    worst = -np.inf if direction == "maximize" else np.inf
    filled = np.where(np.isnan(v), worst, v)
    acc = np.maximum if direction == "maximize" else np.minimum
    run = acc.accumulate(filled)
    df["best_so_far"] = np.where(np.isfinite(run), run, np.nan)
    return df


def _column(vals: list, index: pd.Index) -> pd.Series:
    """A parameter column: int64 / float64 / bool when every value is one, else object."""
    kinds = {type(v) for v in vals}
    if kinds <= {int} or kinds <= {float} or kinds <= {bool}:
        return pd.Series(vals, index=index)
    return pd.Series(vals, index=index, dtype=object)


def _storable(df: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """A copy whose parameter columns of mixed types (e.g. ``"W"`` and ``21``) are text, so
    that Parquet can store them.
    """
    out = df.copy()
    for c in names:
        if c in out.columns and out[c].dtype == object and len(
                {type(x) for x in out[c] if x is not None}) > 1:
            out[c] = out[c].map(lambda x: None if x is None else str(x))
    return out


@dataclass
class GridComparison:
    """The full grid of an enumerable space next to a tuning run.

    Attributes
    ----------
    table : DataFrame, shape (G, M), host
        One row per grid point (MultiIndex of the tuned parameters, in space order), the
        task's metric columns.
    summary : dict
        ``n_grid``, ``objective``, ``direction``, ``grid_best_value``, ``grid_best_params``,
        ``tuned_value``, ``tuned_params``, ``rank`` (1 + the grid points strictly better than
        the tuned best: 1 means the grid holds nothing better), ``n_distinct_tried`` (grid
        points the study evaluated), ``n_calls``, ``grid_s`` (time of the grid's calls).
    """

    table: pd.DataFrame
    summary: dict

    @property
    def rank(self) -> int:
        return int(self.summary["rank"])

    @property
    def best_value(self) -> float:
        return float(self.summary["grid_best_value"])

    @property
    def best_params(self) -> dict:
        return dict(self.summary["grid_best_params"])

    def __repr__(self) -> str:
        s = self.summary
        return (f"GridComparison(rank {s['rank']} of {s['n_grid']}, tuned {s['objective']} "
                f"{s['tuned_value']:.6g} vs grid best {s['grid_best_value']:.6g}, "
                f"{s['n_distinct_tried']} grid points tried)")


class TuneResult:
    """Result of :func:`gpusim.tune`.

    Attributes
    ----------
    trials : DataFrame, shape (n_done, ...), host
        One row per trial (index ``trial``, in the order asked): the tuned parameters,
        ``value`` (the objective), the task's metrics (walk-forward: and its report columns),
        ``batch`` (0-based), ``state`` (``complete``, or ``fail`` when the objective was not
        finite), ``repeat_of`` and ``best_so_far`` (:func:`trials_frame`).
    best_params : dict
        The parameters of the best trial (the first of equals).
    best_value : float
        Its objective value.
    summary : dict
        JSON-ready facts: task, objective, direction, seed, sampler, space, fixed arguments,
        counts (trials, batches, calls, points evaluated), timings, per-batch facts, best.
    partial : bool
        True when Ctrl-C stopped the run (``trials`` holds the finished batches).
    study : optuna.Study
        The Optuna study (e.g. for its visualisations).
    """

    def __init__(self, trials: pd.DataFrame, summary: dict, partial: bool, state: _Study):
        self.trials = trials
        self.summary = summary
        self.partial = partial
        self._st = state
        self.comparison: GridComparison | None = None
        ok = trials[trials["state"] == "complete"] if len(trials) else trials
        if len(ok):
            v = ok["value"].to_numpy(dtype=float)
            i = int(np.argmax(v) if state.maximize else np.argmin(v))
            self.best_trial = int(ok.index[i])
            self.best_value = float(v[i])
            rec = next(r for r in state.records if r["trial"] == self.best_trial)
            self.best_params = {d.name: _plain(rec["params"][d.name]) for d in state.dims}
        else:
            self.best_trial, self.best_value, self.best_params = None, float("nan"), {}
        summary["best"] = {"trial": self.best_trial, "value": jsonable(self.best_value),
                           "params": {k: jsonable(v) for k, v in self.best_params.items()}}

    @property
    def study(self):
        return self._st.study

    def __repr__(self) -> str:
        s = self.summary
        best = (f"best {s['objective']}={self.best_value:.6g} at {self.best_params}"
                if self.best_trial is not None else "no finished trial")
        return (f"TuneResult({s['task']}, {s['n_done']} of {s['n_trials']} trials in "
                f"{s['n_batches']} batches, {best}{', partial' if self.partial else ''})")

    # ------------------------------------------------------------------------- the grid
    def compare_grid(self, values: Mapping[str, Any] | None = None) -> GridComparison:
        """Run the full grid of the space (one call of the task) and rank the tuned best in it.

        Parameters
        ----------
        values : ``{parameter: list}`` for dimensions that cannot be listed (continuous float
            ranges) or to use other values; default: every value of each enumerable dimension.

        Returns
        -------
        GridComparison
            Also kept as ``self.comparison`` and in ``summary["compare_grid"]``.
        """
        from gpusim.tune.targets import _key, evaluate

        st = self._st
        if self.best_trial is None:
            raise GpusimError("no finished trial to compare with the grid")
        values = dict(values or {})
        bad = sorted(set(values) - {d.name for d in st.dims})
        if bad:
            raise GpusimError(f"values: {bad} are not tuned parameters")
        names = [d.name for d in st.dims]
        lists = [list(values[d.name]) if d.name in values else d.grid_values() for d in st.dims]
        combos = list(itertools.product(*lists))
        rows = [dict(zip(names, c)) for c in combos]
        t0 = time.perf_counter()
        table, calls, _ = evaluate(st.target, st.data, rows, st.fixed, st.backend)
        grid_s = time.perf_counter() - t0
        table.index = pd.MultiIndex.from_tuples(combos, names=names) if len(names) > 1 else \
            pd.Index([c[0] for c in combos], name=names[0])
        obj = table[st.objective].to_numpy(dtype=float)
        tuned = self.best_value
        better = obj > tuned if st.maximize else obj < tuned
        order = table[st.objective].sort_values(ascending=not st.maximize, kind="stable",
                                                na_position="last")
        gi = combos[table.index.get_loc(order.index[0])] if len(names) > 1 else (order.index[0],)
        tried = {tuple(_key(r["params"][n]) for n in names) for r in st.records}
        grid_keys = {tuple(_key(v) for v in c) for c in combos}
        summary = {"n_grid": len(combos), "objective": st.objective,
                   "direction": st.direction, "grid_best_value": float(order.iloc[0]),
                   "grid_best_params": {n: _plain(v) for n, v in zip(names, gi)},
                   "tuned_value": tuned, "tuned_params": self.best_params,
                   "rank": int(np.sum(better)) + 1,
                   "n_distinct_tried": len(tried & grid_keys), "n_calls": calls,
                   "grid_s": round(grid_s, 6)}
        self.comparison = GridComparison(table, summary)
        self.summary["compare_grid"] = {k: (jsonable(v) if not isinstance(v, dict) else
                                            {a: jsonable(b) for a, b in v.items()})
                                        for k, v in summary.items()}
        return self.comparison

    # ------------------------------------------------------------------------- saving
    def save(self, out_dir, fmt: str | None = None) -> Path:
        """Write ``trials.parquet`` (``trials.csv`` with ``fmt="csv"`` or without pyarrow),
        ``grid.parquet`` after :meth:`compare_grid`, and ``summary.json`` (the summary, package
        versions with Optuna's, the file names) into ``out_dir`` atomically: all files are
        written to a temporary folder first, then moved in.
        """
        check_format(fmt)
        import optuna

        names = [d.name for d in self._st.dims]
        tables = {"trials": _storable(self.trials, names)}
        if self.comparison is not None:
            tables["grid"] = self.comparison.table   # flat_table writes mixed levels as text
        stale = tuple(f"{stem}.{ext}" for stem in ("trials", "grid")
                      for ext in ("csv", "parquet"))
        with atomic_dir(out_dir, stale=stale) as tmp:
            files = {}
            for stem, df in tables.items():
                files[f"{stem}_file"] = f"{stem}.{write_table(df, tmp / stem, fmt)}"
            s = {**self.summary, **files,
                 "versions": {**versions(), "optuna": optuna.__version__}}
            (tmp / "summary.json").write_text(json.dumps(s, indent=2, default=jsonable))
        return Path(out_dir)


def _plain(v: Any) -> Any:
    v = v.item() if isinstance(v, np.generic) else v
    return None if isinstance(v, float) and np.isnan(v) else v
