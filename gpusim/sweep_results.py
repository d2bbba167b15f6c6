"""The final table of a sweep: its chunks merged, in plan order, into ``results.parquet``.

Pass-through tasks (whose rows are their chunks' rows, like ``backtest``) stay in Arrow: the
call-level levels are added as constant columns. While the chunks of a fresh local run finish
in plan order, :class:`Streamer` appends them to ``results.parquet`` as they come, so the rows
are written once more, not twice more; any other case (a resume, failures in the way, Dask's
completion order) merges the chunk files at the end with :func:`assemble`, which writes the
same file. Other tasks (``search``) merge each point's chunks with their ``reduce``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .sweep_store import CHUNKS, RESULTS, TableWriter, chunk_name, read_chunk
from .sweep_tasks import TaskRunner, coerce_levels

BEST_K = 5
# ``s`` below is the sweep's set-up (gpusim.sweep._Setup): runner, ctx, call_axes,
# call_kinds, levels, n_points and point(p).


def label(v: Any) -> Any:
    """Index label of a call-level value (lists and tables become JSON text)."""
    return json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v


def _const_column(value, kind: str, n: int):
    """An Arrow column repeating one call-level label (as ``coerce_levels`` would type it)."""
    import pyarrow as pa  # noqa: PLC0415

    if kind == "str":
        return pa.array([str(value)] * n, type=pa.string())
    typ = {"float": pa.float64(), "int": pa.int64(), "bool": pa.bool_()}[kind]
    if kind == "float" and value is None:
        value = float("nan")
    return pa.array([value] * n, type=typ)


def _with_levels(s, pv: dict, t):
    """Arrow table ``t`` of a pass-through chunk with its point's call levels in front."""
    for i, name in enumerate([n for a in s.call_axes for n in a.names]):
        t = t.add_column(i, name, _const_column(label(pv[name]), s.call_kinds[name],
                                                t.num_rows))
    return t


def passthrough(runner: TaskRunner) -> bool:
    """True when the task's final rows are its chunks' rows (the default ``reduce``)."""
    return type(runner).reduce is TaskRunner.reduce


def _point_tables(s, out: Path, p: int, have: list[dict], info: dict):
    """The final rows of point ``p`` (Arrow tables or DataFrames) with the call levels."""
    pv = s.point(p)
    if passthrough(s.runner):                      # rows pass through: stay in Arrow
        for c in have:
            yield _with_levels(s, pv, read_chunk(out / CHUNKS / chunk_name(c["id"]),
                                                 arrow=True)[0])
        return
    items = (read_chunk(out / CHUNKS / chunk_name(c["id"])) for c in have)
    items = ((t, m.get("record", {}).get("info", {})) for t, m in items)
    for df in s.runner.reduce(s.ctx, pv, items, info):
        for i, name in enumerate([n for a in s.call_axes for n in a.names]):
            df.insert(i, name, [label(pv[name])] * len(df))
        yield coerce_levels(df, s.call_kinds)


class Best:
    """The BEST_K best rows seen, by the task's ``rank_by`` column (NaN last; ties: first
    seen). Keeps the best few rows of every table and ranks them at the end."""

    def __init__(self, rank):
        self.rank, self.pieces = rank, []

    def add(self, t) -> None:
        if self.rank is None or not len(t):
            return
        col, ascending = self.rank
        cols = t.columns if isinstance(t, pd.DataFrame) else t.column_names
        if col in cols:
            self.pieces.append(self._top(t, col, ascending))
            if len(self.pieces) > 64:
                self.pieces = [self.rows]

    @staticmethod
    def _top(t, col, ascending):
        v = np.asarray(t[col].to_numpy() if isinstance(t, pd.DataFrame) else
                       t.column(col).to_numpy(zero_copy_only=False), dtype=np.float64)
        key = v if ascending else -v
        nan = np.isnan(key)
        cand = np.arange(key.size)
        if key.size > 4 * BEST_K:                  # O(n) pre-selection, ties kept
            kth = np.partition(np.where(nan, np.inf, key), BEST_K - 1)[BEST_K - 1]
            cand = np.flatnonzero((key <= kth) | (nan if np.isinf(kth) else False))
        order = cand[np.lexsort((cand, key[cand], nan[cand]))][:BEST_K]
        return t.iloc[order] if isinstance(t, pd.DataFrame) else t.take(order)

    @property
    def rows(self) -> pd.DataFrame | None:
        if not self.pieces:
            return None
        frames = [p if isinstance(p, pd.DataFrame) else p.to_pandas() for p in self.pieces]
        return self._top(pd.concat(frames, ignore_index=True), *self.rank)

    def summary(self):
        if self.rank is None:
            return None
        rows = self.rows
        return {"by": self.rank[0],
                "rows": [] if rows is None else json.loads(rows.to_json(orient="records"))}


class Streamer:
    """Writes results.parquet while the chunks of a pass-through task finish in plan order,
    so a sweep that is never interrupted writes every row once more, not twice more. Any
    other order (a resume, Dask) abandons it: the rows are then merged from the chunk files,
    which gives the same file."""

    def __init__(self, s, out: Path):
        self.s, self.out, self.next = s, out, 0
        self.writer = TableWriter(out / RESULTS)
        self.best = Best(s.runner.rank_by)

    def done(self, c: dict, table) -> None:
        if self.writer is None:
            return
        if c["id"] != self.next:
            return self.abort()
        t = _with_levels(self.s, c["point_values"], table)
        self.writer.write(t)
        self.best.add(t)
        self.next += 1

    def failed(self, c: dict) -> None:
        if self.writer is not None and c["id"] == self.next:
            self.next += 1
        else:
            self.abort()

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            self.writer = None

    def finish(self, n_chunks: int) -> dict | None:
        """The assembly facts, or None when the file could not be streamed to the end."""
        if self.writer is None or self.next != n_chunks:
            self.abort()
            return None
        self.writer.close(pd.DataFrame(columns=self.s.levels))
        return {"n_rows": self.writer.rows, "columns": list(self.writer.schema.names)
                if self.writer.schema is not None else [], "incomplete_points": 0,
                "best": self.best.summary(), "points": [], "streamed": True}


def assemble(s, out: Path, d: dict) -> dict:
    """Merge the done chunks, point by point in plan order, into results.parquet (streamed:
    one chunk, or one point's merge, in memory at a time)."""
    by_point: dict[int, list[dict]] = {}
    for c in d["plan"]["chunks"]:
        by_point.setdefault(c["point"], []).append(c)
    writer = TableWriter(out / RESULTS)
    best = Best(s.runner.rank_by)
    points, skipped = [], 0
    try:
        for p in range(s.n_points):
            chunks = by_point.get(p, [])
            have = [c for c in chunks if str(c["id"]) in d["done"]]
            if not have or (len(have) < len(chunks) and not s.runner.partial_points):
                skipped += len(have) < len(chunks)
                continue
            info: dict = {}
            for t in _point_tables(s, out, p, have, info):
                writer.write(t)
                best.add(t)
            if info and len(points) < 1000:
                points.append({**{k: label(v) for k, v in s.point(p).items()}, **info})
        rows = best.rows
        cols = s.levels + (list(rows.columns.difference(s.levels)) if rows is not None else [])
        writer.close(pd.DataFrame(columns=cols))
    except BaseException:
        writer.abort()
        raise
    return {"n_rows": writer.rows, "columns": [] if writer.schema is None else
            list(writer.schema.names), "incomplete_points": skipped,
            "best": best.summary(), "points": points, "streamed": False}
