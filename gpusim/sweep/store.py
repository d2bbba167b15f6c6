"""The sweep folder: atomic files, chunk tables with their records, and the manifest.

Every file of a sweep folder is written under a temporary name and renamed into place
(``os.replace``), so a crash or a SIGKILL never leaves a half-written file: a chunk's Parquet
file exists only once it is complete, and carries its own record (chunk id, job hash, timing,
run) in the Parquet schema metadata, so a resume can trust it even when the manifest missed it
(:func:`recover`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import time
import uuid
from pathlib import Path

import pandas as pd

META_KEY = b"gpusim.sweep"
MANIFEST, RESULTS, SUMMARY, CHUNKS = "manifest.json", "results.parquet", "summary.json", "chunks"
SAVE_EVERY_S = 0.5


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def chunk_name(cid: int) -> str:
    return f"c{cid:06d}.parquet"


def part_name(i: int) -> str:
    """Name of a part of the results folder (sorted names = plan order)."""
    return f"part-{i:06d}.parquet"


# ----------------------------------------------------------------------------- files
def tmp_name(path: Path) -> Path:
    """A hidden temporary name next to ``path`` (Parquet datasets skip names starting '.')."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def swap_dir(tmp: Path, path: Path) -> None:
    """Put the finished folder ``tmp`` at ``path`` (replacing a file or folder there)."""
    if path.is_dir():
        old = tmp_name(path)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if path.exists():
            path.unlink()
        os.replace(tmp, path)


def write_json_atomic(path: Path, obj, indent: int | None = None) -> None:
    tmp = tmp_name(path)
    try:
        tmp.write_text(json.dumps(obj, indent=indent, default=str) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def to_arrow(table):
    """An Arrow table from a DataFrame (or an Arrow table), without a chunk record."""
    import pyarrow as pa

    t = table if isinstance(table, pa.Table) else pa.Table.from_pandas(
        table, preserve_index=False, nthreads=1)   # no thread pool: chunks are small
    md = t.schema.metadata
    if md and META_KEY in md:
        t = t.replace_schema_metadata({k: v for k, v in md.items() if k != META_KEY})
    return t


def _dictionary(t, levels) -> list[str] | bool:
    """Columns to dictionary-encode: the parameter levels (few distinct values, repeated, so
    they shrink to run lengths); the metric columns are written plain."""
    cols = [n for n in t.schema.names if n in set(levels or ())]
    return cols or False


def write_chunk(path: Path, table, meta: dict, levels=()) -> None:
    """Write one chunk's table (DataFrame or Arrow) and its record as Parquet, atomically
    (the ``levels`` columns dictionary-encoded, the rest plain and uncompressed)."""
    import pyarrow.parquet as pq

    t = to_arrow(table)
    t = t.replace_schema_metadata({**(t.schema.metadata or {}),
                                   META_KEY: json.dumps(meta, default=str).encode()})
    tmp = tmp_name(path)
    try:   # statistics and compressing random floats cost more than they save here
        pq.write_table(t, tmp, use_dictionary=_dictionary(t, levels), write_statistics=False,
                       compression="none")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_chunk(path: Path, arrow: bool = False):
    """(table, record) of a chunk file; the table as an Arrow table with ``arrow=True``."""
    import pyarrow.parquet as pq

    t = pq.read_table(path, use_threads=False)
    meta = json.loads((t.schema.metadata or {}).get(META_KEY, b"{}"))
    t = to_arrow(t)
    return (t if arrow else t.to_pandas(use_threads=False)), meta


def chunk_meta(path: Path) -> dict | None:
    """The record stored in a chunk file (None when unreadable)."""
    import pyarrow.parquet as pq

    try:
        md = pq.read_schema(path).metadata or {}
        return json.loads(md.get(META_KEY, b"null"))
    except Exception:  # a foreign or damaged file: recompute the chunk
        return None


def remove_tmp(folder: Path) -> int:
    """Delete temporary files (and results folders) left by a killed run; returns how many."""
    n = 0
    for d in (folder, folder / "chunks"):
        if d.is_dir():
            for f in d.glob(".*.tmp-*"):
                if f.is_dir():
                    shutil.rmtree(f, ignore_errors=True)
                else:
                    f.unlink(missing_ok=True)
                n += 1
    return n


class TableWriter:
    """Stream tables (DataFrames or Arrow tables) with one schema into a Parquet file,
    atomically at :meth:`close`."""

    def __init__(self, path: Path, levels=()):
        self.path, self.tmp, self.levels = path, tmp_name(path), levels
        self.writer = self.schema = None
        self.rows = 0

    def write(self, table) -> None:
        import pyarrow.parquet as pq

        t = to_arrow(table)
        if self.writer is None:
            self.schema = t.schema
            self.writer = pq.ParquetWriter(self.tmp, self.schema, compression="none",
                                           use_dictionary=_dictionary(t, self.levels))
        elif not t.schema.equals(self.schema, check_metadata=False):
            t = t.cast(self.schema)
        self.writer.write_table(t)
        self.rows += t.num_rows

    def close(self, empty: pd.DataFrame) -> None:
        """Finish (``empty``, the table's columns without rows, is written when no rows came)."""
        try:
            if self.writer is None:
                import pyarrow.parquet as pq

                pq.write_table(to_arrow(empty), self.tmp)
            else:
                self.writer.close()
            os.replace(self.tmp, self.path)
        finally:
            self.tmp.unlink(missing_ok=True)

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- folder
class Manifest:
    """``manifest.json`` in memory, saved atomically (unless forced, at most every SAVE_EVERY_S
    seconds, or 10 times the last save's duration when that is longer: a plan of 10^5 chunks
    is tens of MB of JSON; the chunk files themselves are the record of what is done)."""

    def __init__(self, path: Path, data: dict):
        self.path, self.data, self.saved, self.took = path, data, 0.0, 0.0

    def save(self, force: bool = False) -> None:
        if force or time.monotonic() - self.saved >= max(SAVE_EVERY_S, 10 * self.took):
            t0 = time.monotonic()
            self.data["updated"] = now()
            write_json_atomic(self.path, self.data)
            self.saved = time.monotonic()
            self.took = self.saved - t0


def ours(out: Path) -> bool:
    """True when ``out`` holds only files a sweep writes (or nothing)."""
    known = {MANIFEST, RESULTS, SUMMARY, CHUNKS}
    return all(f.name in known or ".tmp-" in f.name for f in out.iterdir())


def wipe(out: Path) -> None:
    """Delete a previous sweep's files (only the names a sweep writes)."""
    for name in (MANIFEST, RESULTS, SUMMARY):
        if (out / name).is_dir():
            shutil.rmtree(out / name)
        else:
            (out / name).unlink(missing_ok=True)
    ch = out / CHUNKS
    if ch.is_dir():
        for f in ch.iterdir():
            if f.name.startswith(("c", ".c")) and (f.suffix == ".parquet" or ".tmp-" in f.name):
                f.unlink()
        try:
            ch.rmdir()
        except OSError:
            pass
    remove_tmp(out)


def recover(man: Manifest, out: Path, job_hash: str) -> None:
    """Reconcile the manifest with the chunk files (the truth after a kill)."""
    done, n = man.data["done"], man.data["plan"]["n_chunks"]
    for cid in list(done):
        if not (out / CHUNKS / chunk_name(int(cid))).exists():
            del done[cid]                                   # file gone: compute it again
    for f in sorted((out / CHUNKS).glob("c*.parquet")):
        try:
            cid = int(f.stem[1:])
        except ValueError:
            continue
        if str(cid) in done:
            continue
        meta = chunk_meta(f)
        if meta is None or meta.get("job_hash") != job_hash or not 0 <= cid < n:
            f.unlink()
            continue
        done[str(cid)] = {**meta.get("record", {}), "recovered": True}
        man.data["failed"].pop(str(cid), None)
