"""Results: the base class of labelled metric tables, and writing them (flat tables in Parquet
or CSV, JSON summaries, versions, atomic folders).

:class:`MetricsResult` holds what the grid results of backtest, walk-forward and dynopt share
(``metrics``, ``summary``, ``partial``, ``best``, ``save``, the repr). Every command writes its
outputs through :func:`atomic_dir`: files go to a temporary folder beside the destination and
are moved in only when all of them were written, so a failure never leaves half-written
results.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import sys
import uuid
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpusim.errors import GpusimError

TABLE_FORMATS = (None, "parquet", "csv")  # None: Parquet, falling back to CSV


def versions() -> dict:
    """Versions of gpusim, Python and the main dependencies loaded (for summaries)."""
    import numba

    from gpusim._version import __version__

    v = {"gpusim": __version__, "python": platform.python_version(), "numpy": np.__version__,
         "pandas": pd.__version__, "numba": numba.__version__,
         "platform": platform.platform(), "cpu_count": os.cpu_count()}
    for mod in ("cvxpy", "cupy"):
        m = sys.modules.get(mod)
        if m is not None:
            v[mod] = getattr(m, "__version__", "?")
    return v


def jsonable(v):
    """A JSON-ready scalar: NumPy scalars unwrapped, NaN as null, anything else as text.

    The one converter for summaries (values and ``json.dumps(..., default=jsonable)``). NaN
    becomes null also inside a NumPy scalar (``np.float32('nan')``), so summaries stay valid
    JSON. (Sweep job hashes use ``default=str`` on purpose: their text must never change.)
    """
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v if isinstance(v, (int, float, str, bool, type(None))) else str(v)


def flat_table(df: pd.DataFrame) -> pd.DataFrame:
    """Flat table (index levels as columns); mixed-type object columns become strings."""
    t = df.reset_index()
    for c in t.columns[: df.index.nlevels]:
        if t[c].dtype == object and len({type(x) for x in t[c] if x is not None}) > 1:
            t[c] = t[c].map(lambda x: None if x is None else str(x))
    return t


def write_table(df: pd.DataFrame, stem: Path, fmt: str | None = None) -> str:
    """Write ``stem.parquet`` (or ``stem.csv``: when asked, or when Parquet fails with
    ``fmt=None``); returns the format written.
    """
    t = flat_table(df)
    try:
        if fmt == "csv":
            raise ImportError
        t.to_parquet(stem.with_suffix(".parquet"), index=False)
        return "parquet"
    except Exception:  # pyarrow missing or a column it cannot store
        if fmt == "parquet":
            raise
        stem.with_suffix(".parquet").unlink(missing_ok=True)
        t.to_csv(stem.with_suffix(".csv"), index=False)
        return "csv"


@contextmanager
def atomic_dir(out_dir, stale=()):
    """Yield a temporary folder; on success move its files into ``out_dir``.

    A new (or empty) ``out_dir`` is the temporary folder renamed; an existing one gets the new
    files one by one (``os.replace``), and the names in ``stale`` that were not written this
    time are removed (e.g. the other format of a table). On failure nothing is moved.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise GpusimError(f"out_dir={str(out)!r} is a file; give a folder path")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()  # not mkdtemp: the folder renamed into place keeps the umask's mode
    try:
        yield tmp
        written = {f.name for f in tmp.iterdir()}
        if out.exists() and any(out.iterdir()):
            for f in sorted(tmp.iterdir()):
                os.replace(f, out / f.name)
            for name in stale:
                if name not in written:
                    (out / name).unlink(missing_ok=True)
        else:
            if out.exists():
                out.rmdir()
            os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_format(fmt: str | None) -> None:
    """Raise a one-line :class:`GpusimError` unless ``fmt`` is one of :data:`TABLE_FORMATS`."""
    if fmt not in TABLE_FORMATS:
        raise GpusimError(f"fmt={fmt!r} is unknown; use 'parquet' or 'csv'")


def save_metrics(out_dir, metrics: pd.DataFrame, best: pd.DataFrame | None, summary: dict, *,
                 sort_by: str | None = None, best_k: int | None = None, fmt: str | None = None,
                 tables: Mapping[str, pd.DataFrame] | None = None,
                 extra: Mapping[str, Callable[[Path], Any]] | None = None) -> Path:
    """Write a grid result atomically into ``out_dir``.

    Files: ``metrics.parquet`` (or ``.csv``) and one such file per entry of ``tables``
    (``{stem: DataFrame}``, e.g. a report); ``best.csv`` unless ``best`` is None; any ``extra``
    ``{file name: writer(path)}``; ``summary.json``: ``summary`` plus ``<stem>_file`` for each
    table and, with ``best``, ``"best": {"sort_by", "k"}``. A table of the other format left in
    ``out_dir`` by an earlier save is removed. Returns ``Path(out_dir)``.
    """
    check_format(fmt)
    named = {"metrics": metrics, **(tables or {})}
    stale = tuple(f"{stem}.{ext}" for stem in named for ext in ("csv", "parquet"))
    with atomic_dir(out_dir, stale=stale) as tmp:
        files = {f"{stem}_file": f"{stem}.{write_table(df, tmp / stem, fmt)}"
                 for stem, df in named.items()}
        if best is not None:
            flat_table(best).to_csv(tmp / "best.csv", index=False)
        for name, write in (extra or {}).items():
            write(tmp / name)
        s = {**summary, **files}
        if best is not None:
            s["best"] = {"sort_by": sort_by, "k": int(best_k)}
        (tmp / "summary.json").write_text(json.dumps(s, indent=2, default=jsonable))
    return Path(out_dir)


class MetricsResult:
    """Base of the results that hold one labelled metric table: one row per combination of a
    parameter grid (:class:`~gpusim.backtest.result.BacktestResult`,
    :class:`~gpusim.dynopt.result.DynoptResult`,
    :class:`~gpusim.walkforward.result.WalkForwardResult`).

    Subclasses set :attr:`metric_names` and :attr:`lower_is_better`, and may extend the hooks
    :meth:`_repr_parts` (what the repr shows), :meth:`_tables` (labelled tables saved beside
    ``metrics``) and :meth:`_extra_files` (files derived from the best rows).

    Attributes
    ----------
    metrics : DataFrame, shape (C, M), host memory
        One row per combination run (index: the grid levels in order, a MultiIndex), one column
        per name of :attr:`metric_names`. After an interrupted run C counts the finished rows.
    summary : dict
        JSON-ready facts of the run: backend, n_combinations, timings, versions, ...
    partial : bool
        True when the run was interrupted (only the finished rows are in ``metrics``).
    """

    metric_names: tuple[str, ...] = ()
    """The metric columns, in order."""
    lower_is_better: frozenset[str] = frozenset()
    """Metrics whose best value is the smallest; for the others the largest is best."""

    def __init__(self, metrics: pd.DataFrame, summary: dict, partial: bool = False,
                 ctx: Any = None):
        self.metrics = metrics
        self.summary = summary
        self.partial = partial
        self._ctx = ctx

    def __repr__(self) -> str:
        parts = [*self._repr_parts(), f"backend={self.summary['backend']!r}"]
        return (f"{type(self).__name__}({', '.join(parts)}"
                f"{', partial' if self.partial else ''})")

    def _repr_parts(self) -> list[str]:
        """The repr's fields before the backend."""
        return [f"{len(self.metrics)} of {self.summary['n_combinations']} combinations",
                f"levels={list(self.metrics.index.names)}"]

    def best(self, metric: str = "sharpe", k: int = 10, ascending: bool | None = None
             ) -> pd.DataFrame:
        """The ``k`` best rows of ``metrics`` by ``metric`` (NaN last, ties in grid order).

        Parameters
        ----------
        metric : one of :attr:`metric_names`.
        k : number of rows (at most).
        ascending : True for the smallest first; default: True for the metrics of
            :attr:`lower_is_better`, False (largest first) for the others.

        Returns
        -------
        DataFrame, shape (min(k, C), M): rows of ``metrics``, best first.
        """
        if metric not in self.metric_names:
            raise GpusimError(f"metric={metric!r} is unknown; use one of "
                              f"{', '.join(self.metric_names)}")
        if ascending is None:
            ascending = metric in self.lower_is_better
        return self.metrics.sort_values(metric, ascending=ascending, na_position="last",
                                        kind="stable").head(int(k))

    def _locate(self, key: tuple | None, level_values: dict) -> int:
        """Flat position of the combination given by a row label of ``metrics`` or by level
        values; it must have been run.
        """
        flat = self._ctx.grid.locate(key, **level_values)
        if flat >= len(self.metrics):
            raise GpusimError("that combination was not run (the run was interrupted); run again")
        return flat

    def save(self, out_dir, best_k: int = 10, sort_by: str = "sharpe",
             fmt: str | None = None) -> Path:
        """Write ``metrics.parquet`` (``metrics.csv`` when Parquet is unavailable, or with
        ``fmt="csv"``), ``best.csv`` (top ``best_k`` by ``sort_by``) and ``summary.json`` into
        ``out_dir``.

        Atomic: everything is written to a temporary folder next to ``out_dir`` first, then
        renamed into place (file by file when ``out_dir`` already holds files), so a failure
        leaves nothing half-written.
        """
        return self._save(out_dir, fmt, best_k=best_k, sort_by=sort_by)

    def _save(self, out_dir, fmt: str | None, best_k: int | None = None,
              sort_by: str = "sharpe", **options) -> Path:
        """:func:`save_metrics` with this result's tables and extra files; no ``best.csv``
        when ``best_k`` is None. ``options`` go to :meth:`_extra_files`.
        """
        check_format(fmt)
        # best() validates sort_by before anything is written
        best = None if best_k is None else self._best_rows(sort_by, best_k)
        return save_metrics(out_dir, self.metrics, best, self.summary, sort_by=sort_by,
                            best_k=best_k, fmt=fmt, tables=self._tables(),
                            extra=self._extra_files(best, **options))

    def _best_rows(self, metric: str, k: int) -> pd.DataFrame:
        """The rows written to ``best.csv`` (subclasses add columns, e.g. weights by symbol)."""
        return self.best(metric, k)

    def _tables(self) -> dict[str, pd.DataFrame]:
        """Labelled tables saved like ``metrics`` (``{file stem: DataFrame}``)."""
        return {}

    def _extra_files(self, best: pd.DataFrame | None, **options) -> dict[str, Callable]:
        """Other files to save, ``{file name: writer(path)}``."""
        return {}

    # ------------------------------------------------------------------------- pictures
    def _value_path(self, key) -> pd.Series:
        """Portfolio value (dates,) of the combination with row label ``key`` (subclasses)."""
        raise GpusimError(f"{type(self).__name__} has no value paths to plot")

    def _key_params(self, key) -> dict:
        """``{level: value}`` of a row label of ``metrics``."""
        names = list(self.metrics.index.names)
        vals = key if isinstance(key, tuple) else (key,)
        return {str(n): jsonable(v) for n, v in zip(names, vals, strict=False) if n is not None}

    def plot_equity(self, path, k: int = 5, metric: str = "sharpe", *, logy: bool = False
                    ) -> Path:
        """PNG of the value (from 1) and drawdown of the ``k`` best combinations by ``metric``.

        The paths are re-computed by the CPU reference for those rows only. Returns the path.
        """
        from gpusim.plots import describe_params, plot_equity

        best = self.best(metric, k)
        if best.empty:
            raise GpusimError("no finished combination to plot")
        values = pd.DataFrame({describe_params(self._key_params(key)) or str(key):
                               self._value_path(key) for key in best.index})
        return plot_equity(path, values, title=f"best {len(best)} by {metric}", logy=logy)

    def plot_heatmap(self, path, metric: str = "sharpe", x: str | None = None,
                     y: str | None = None, agg: str = "max") -> Path:
        """PNG of ``metric`` over two swept levels ``x`` and ``y`` (default: the first two
        levels with more than one value), aggregated by ``agg`` over the other levels.
        """
        from gpusim.plots import plot_heatmap

        if metric not in self.metric_names:
            raise GpusimError(f"metric={metric!r} is unknown; use one of "
                              f"{', '.join(self.metric_names)}")
        idx = self.metrics.index
        swept = [n for n in idx.names
                 if n is not None and idx.get_level_values(n).nunique() > 1]
        if x is None or y is None:
            free = [n for n in swept if n not in (x, y)]
            x = x or (free.pop(0) if free else None)
            y = y or (free.pop(0) if free else None)
        if x is None or y is None:
            raise GpusimError(f"a heatmap needs two swept levels; this result sweeps "
                              f"{swept or 'none'} (pass x= and y= level names)")
        for name, v in (("x", x), ("y", y)):
            if v not in idx.names:
                raise GpusimError(f"{name}={v!r} is not a level; use one of {list(idx.names)}")
        return plot_heatmap(path, self.metrics, metric, x, y, agg=agg)
