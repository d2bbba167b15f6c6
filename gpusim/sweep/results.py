"""The final table of a sweep: ``results.parquet``, a folder of Parquet parts in plan order.

Pass-through tasks (whose rows are their chunks' rows, like ``backtest``) write each chunk's
final rows, call-level levels included as constant columns, into its chunk file; the results
folder then links those files as its parts, so every row is written to disk once, whatever the
engine and however many resumes. Other tasks (``search``) merge each point's chunks with their
``reduce`` into a part of their own.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpusim.errors import GpusimError
from gpusim.sweep.store import (
    CHUNKS,
    MANIFEST,
    PART_RE,
    RESULTS,
    SUMMARY,
    TableWriter,
    chunk_name,
    part_name,
    read_chunk,
    sha256_file,
    swap_dir,
    tmp_name,
    write_chunk,
)
from gpusim.sweep.tasks import TaskRunner, coerce_levels

BEST_K = 5
# ``s`` below is the sweep's set-up (gpusim.sweep.api._Setup): runner, ctx, call_axes,
# call_kinds, levels, n_points and point(p).


def label(v: Any) -> Any:
    """Index label of a call-level value (lists and tables become JSON text)."""
    return json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v


def _const_column(value, kind: str, n: int):
    """An Arrow column repeating one call-level label (as ``coerce_levels`` would type it)."""
    import pyarrow as pa

    if kind == "str":
        return pa.array([str(value)] * n, type=pa.string())
    typ = {"float": pa.float64(), "int": pa.int64(), "bool": pa.bool_()}[kind]
    if kind == "float" and value is None:
        value = float("nan")
    return pa.array([value] * n, type=typ)


def with_levels(s, pv: dict, t):
    """Arrow table ``t`` of a pass-through chunk with its point's call levels in front (the
    chunk file holds the chunk's final rows).
    """
    for i, name in enumerate([n for a in s.call_axes for n in a.names]):
        t = t.add_column(i, name, _const_column(label(pv[name]), s.call_kinds[name],
                                                t.num_rows))
    return t


def passthrough(runner: TaskRunner) -> bool:
    """True when the task's final rows are its chunks' rows (the default ``reduce``)."""
    return type(runner).reduce is TaskRunner.reduce


def _point_tables(s, out: Path, p: int, have: list[dict], info: dict):
    """The final rows of point ``p`` of a reducing task (DataFrames) with the call levels."""
    pv = s.point(p)
    items = (read_chunk(out / CHUNKS / chunk_name(c["id"])) for c in have)
    items = ((t, m.get("record", {}).get("info", {})) for t, m in items)
    for df in s.runner.reduce(s.ctx, pv, items, info):
        for i, name in enumerate([n for a in s.call_axes for n in a.names]):
            df.insert(i, name, [label(pv[name])] * len(df))
        yield coerce_levels(df, s.call_kinds)


class Best:
    """The BEST_K best rows seen, by the task's ``rank_by`` column (NaN last; ties: first
    seen). Keeps the best few rows of every table and ranks them at the end.
    """

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


def assemble(s, out: Path, d: dict, best: Best | None = None,
             best_ids: frozenset = frozenset()) -> dict:
    """Publish the final table ``results.parquet``: a folder of Parquet parts, read as one
    table in plan order (``pandas.read_parquet(folder)``, pyarrow datasets, DuckDB, ...).

    Pass-through tasks: the parts are the done chunk files themselves (hard links, copies where
    links are impossible), since each chunk file already holds the chunk's final rows; so the
    rows are written once. Other tasks: each point's chunks merged by ``reduce`` into one part.
    ``best``/``best_ids``: the best rows of the chunks already seen this run (other chunks are
    read for them). The folder is built under a temporary name and swapped in.

    Returns
    -------
    dict: ``n_rows``, ``columns``, ``incomplete_points``, ``best``, ``points`` (for the
    summary) and ``parts``, ``{part file name: SHA-256}`` (for the manifest, so that
    :attr:`SweepResult.table` can verify the parts it reads).
    """
    by_point: dict[int, list[dict]] = {}
    for c in d["plan"]["chunks"]:
        by_point.setdefault(c["point"], []).append(c)
    best = best if best is not None else Best(s.runner.rank_by)
    tmp = tmp_name(out / RESULTS)
    tmp.mkdir()
    points, skipped, n_rows, schema, linked, parts = [], 0, 0, None, [], {}
    try:
        writer = None if passthrough(s.runner) else TableWriter(tmp / part_name(0), s.levels)
        for p in range(s.n_points):
            chunks = by_point.get(p, [])
            have = [c for c in chunks if str(c["id"]) in d["done"]]
            if not have or (len(have) < len(chunks) and not s.runner.partial_points):
                skipped += len(have) < len(chunks)
                continue
            if writer is None:
                for c in have:
                    src = out / CHUNKS / chunk_name(c["id"])
                    linked.append((src, tmp / part_name(c["id"]),
                                   d["done"][str(c["id"])].get("sha256")))
                    n_rows += int(d["done"][str(c["id"])].get("rows", 0))
                    if str(c["id"]) not in best_ids:
                        best.add(read_chunk(src, arrow=True)[0])
                continue
            info: dict = {}
            for t in _point_tables(s, out, p, have, info):
                writer.write(t)
                best.add(t)
            if info and len(points) < 1000:
                points.append({**{k: label(v) for k, v in s.point(p).items()}, **info})
        if writer is not None:
            rows = best.rows
            cols = s.levels + (list(rows.columns.difference(s.levels)) if rows is not None
                               else [])
            writer.close(pd.DataFrame(columns=cols))
            n_rows, schema = writer.rows, writer.schema
            parts[part_name(0)] = sha256_file(tmp / part_name(0))
        elif linked:
            schema, parts = _publish_parts(linked, s.levels)
        else:                                     # nothing done: an empty table
            TableWriter(tmp / part_name(0), s.levels).close(pd.DataFrame(columns=s.levels))
            parts[part_name(0)] = sha256_file(tmp / part_name(0))
        swap_dir(tmp, out / RESULTS)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"n_rows": n_rows, "columns": [] if schema is None else
            list(schema.names), "incomplete_points": skipped,
            "best": _labelled(s, best.summary()), "points": points, "parts": parts}


def _labelled(s, summary: dict | None) -> dict | None:
    """The best rows with the task's labels added (e.g. a backtest's target weights by symbol,
    through the runner's optional ``label_rows(ctx, rows)``).
    """
    label_rows = getattr(s.runner, "label_rows", None)
    if summary and summary.get("rows") and label_rows is not None:
        summary["rows"] = label_rows(s.ctx, summary["rows"])
    return summary


def _publish_parts(parts: list[tuple[Path, Path, str | None]], levels):
    """Make each chunk file ``src`` (of SHA-256 ``sha``) part ``dst`` of the results folder:
    a hard link (a copy where linking fails); when the chunks' column types differ (a task
    returning ints in one chunk and floats in another), the parts that differ from the common
    schema are rewritten cast to it. Returns the parts' schema and ``{part name: SHA-256}``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schemas = [pq.read_schema(src).remove_metadata() for src, _, _ in parts]
    target = schemas[0]
    if any(not sc.equals(target) for sc in schemas[1:]):
        try:
            target = pa.unify_schemas(schemas, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise GpusimError(f"the chunks' tables have incompatible columns ({exc}); a task "
                              "must return the same columns and types for every chunk") from None
    sums = {}
    for (src, dst, sha), sc in zip(parts, schemas):
        if not sc.equals(target):
            t = read_chunk(src, arrow=True)[0]
            sums[dst.name] = write_chunk(dst, t.select(target.names).cast(target), {}, levels)
            continue
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
        sums[dst.name] = sha or sha256_file(dst)
    return target, sums


# ----------------------------------------------------------------------------- result
# ----------------------------------------------------------------------------- result
class SweepResult:
    """Outcome of a sweep.

    Attributes
    ----------
    out : the sweep folder (None for a sweep run without ``out``; its table is then in memory).
    summary : JSON-ready dict (status, chunks done/failed, failures with their parameters,
        timing, best rows, hashes, ...), as written to ``summary.json``.
    table : the final DataFrame (host): one row per result, a (Multi)Index of the parameter
        levels; read from ``results.parquet`` on first use, each part checked against the
        checksum recorded in the manifest (GpusimError naming a damaged part). Empty when
        interrupted.
    """

    def __init__(self, out: Path | None, summary: dict, table: pd.DataFrame | None = None):
        self.out, self.summary, self._table = out, summary, table

    @property
    def table(self) -> pd.DataFrame:
        if self._table is None:
            path = None if self.out is None else self.out / RESULTS
            if path is None or not path.exists():
                return pd.DataFrame()
            self._table = _indexed(read_results(self.out), self.summary["levels"])
        return self._table

    @property
    def status(self) -> str:
        return self.summary["status"]

    @property
    def ok(self) -> bool:
        return self.status == "complete"

    @property
    def failures(self) -> list[dict]:
        return list(self.summary.get("failures", []))

    def __repr__(self) -> str:
        s = self.summary
        return (f"SweepResult({s['task']}: {s['n_done']} of {s['n_chunks']} chunks, "
                f"{s['n_failed']} failed, status={s['status']!r}, out={str(self.out)!r})")

    def to_text(self) -> str:
        s = self.summary
        lines = [f"sweep {s['task']} [{s['engine']}, {s['backend']}]: {s['size']:,} "
                 f"{s['unit']} in {s['n_points']} point(s), {s['n_chunks']} chunk(s) -> "
                 f"{s['out']}",
                 f"{s['status']}: {s['n_done']} of {s['n_chunks']} chunks done "
                 f"({s['computed_this_run']} this run, {s['n_failed']} failed) in "
                 f"{s['elapsed_s']:.2f} s; chunk compute {s['compute_s']:.2f} s"]
        for f in s.get("failures", [])[:20]:
            lines.append(f"  failed chunk {f['chunk']} ({_params_text(f['params'])}) after "
                         f"{f['attempts']} attempts: {f['error']}")
        best = s.get("best")
        if best and best.get("rows"):
            from gpusim.tables import format_table

            t = format_table(pd.DataFrame(best["rows"]).rename(lambda i: i + 1))
            lines += [f"best {len(best['rows'])} by {best['by']}:", t]
        return "\n".join(lines)

    @classmethod
    def load(cls, out) -> SweepResult:
        """Read a finished sweep folder."""
        out = Path(out)
        try:
            summary = json.loads((out / SUMMARY).read_text())
        except FileNotFoundError:
            raise GpusimError(f"{out}/{SUMMARY} not found; pass a folder written by a sweep "
                              "(run it to the end, or --resume it)") from None
        return cls(out, summary)


def read_results(out: Path) -> pd.DataFrame:
    """The final table in ``out/results.parquet`` (flat), after checking its parts against the
    SHA-256 recorded in the manifest when they were published (a part is a hard link to its
    chunk file, so a damaged chunk damages it too); raises a one-line GpusimError naming the
    first damaged or missing part.
    """
    folder = out / RESULTS
    try:
        sums = json.loads((out / MANIFEST).read_text())["results"]["parts"]
        sums = sums if isinstance(sums, dict) else None
    except (OSError, ValueError, KeyError, TypeError):
        sums = None                                 # no record (an older sweep): not checked
    again = "run the sweep again with --resume to compute it again"
    if sums is not None:
        names = sorted(f.name for f in folder.iterdir() if PART_RE.fullmatch(f.name))
        for name in sorted(set(sums) ^ set(names)):
            why = "missing" if name in sums else "not written by this sweep"
            raise GpusimError(f"{folder / name} is {why}; {again}")
        for name in names:
            if sha256_file(folder / name) != sums[name]:
                raise GpusimError(f"{folder / name} is damaged (checksum mismatch); {again}")
    try:
        return pd.read_parquet(folder)
    except (OSError, ValueError) as exc:         # pyarrow's errors derive from these
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GpusimError(f"{folder} cannot be read ({msg}); {again}") from None


def _params_text(p: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in p.items())


def _indexed(df: pd.DataFrame, levels: list[str]) -> pd.DataFrame:
    levels = [x for x in levels if x in df.columns]
    return df.set_index(levels) if levels else df
