"""The sweep folder: atomic files, chunk tables with their records, and the manifest.

Every file of a sweep folder is written under a temporary name and renamed into place
(``os.replace``), so a crash or a SIGKILL never leaves a half-written file: a chunk's Parquet
file exists only once it is complete, and carries its own record (chunk id, job hash, timing,
run) in the Parquet schema metadata, so a resume can trust it even when the manifest missed it
(:func:`recover`).

Damage after the fact (a truncated file, bytes overwritten) is caught: the SHA-256 of every
chunk file is recorded in the manifest when the chunk is written, and the Parquet pages carry
CRC checksums; :func:`verify_chunks` checks every chunk a resume reuses and drops the damaged
ones, to be computed again.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path

import pandas as pd

META_KEY = b"gpusim.sweep"
MANIFEST, RESULTS, SUMMARY, CHUNKS = "manifest.json", "results.parquet", "summary.json", "chunks"
LOCK = "sweep.lock"
CHUNK_RE = re.compile(r"c(\d{6,})\.parquet")
PART_RE = re.compile(r"part-(\d{6,})\.parquet")
SAVE_EVERY_S = 0.5


class SweepWarning(UserWarning):
    """Something a sweep repaired on its own (a damaged chunk computed again, a stale lock
    taken over); the CLI prints it as one ``warning: ...`` line.
    """


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def chunk_name(cid: int) -> str:
    return f"c{cid:06d}.parquet"


def part_name(i: int) -> str:
    """Name of a part of the results folder (sorted names = plan order)."""
    return f"part-{i:06d}.parquet"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def is_tmp(name: str) -> bool:
    """True for the temporary names of :func:`tmp_name`."""
    return name.startswith(".") and ".tmp-" in name


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
    they shrink to run lengths); the metric columns are written plain.
    """
    cols = [n for n in t.schema.names if n in set(levels or ())]
    return cols or False


def write_chunk(path: Path, table, meta: dict, levels=()) -> str:
    """Write one chunk's table (DataFrame or Arrow) and its record as Parquet, atomically
    (the ``levels`` columns dictionary-encoded, the rest plain and uncompressed, every page
    with a CRC). Returns the SHA-256 of the file's bytes (hashed in memory, not read back).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = to_arrow(table)
    t = t.replace_schema_metadata({**(t.schema.metadata or {}),
                                   META_KEY: json.dumps(meta, default=str).encode()})
    sink = pa.BufferOutputStream()
    # statistics and compressing random floats cost more than they save here
    pq.write_table(t, sink, use_dictionary=_dictionary(t, levels), write_statistics=False,
                   compression="none", write_page_checksum=True)
    buf = sink.getvalue()
    digest = hashlib.sha256(buf).hexdigest()
    tmp = tmp_name(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(buf)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return digest


def read_chunk(path: Path, arrow: bool = False):
    """(table, record) of a chunk file; the table as an Arrow table with ``arrow=True``."""
    import pyarrow.parquet as pq

    t = pq.read_table(path, use_threads=False, page_checksum_verification=True)
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
    atomically at :meth:`close`.
    """

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
                                           use_dictionary=_dictionary(t, self.levels),
                                           write_page_checksum=True)
        elif not t.schema.equals(self.schema, check_metadata=False):
            t = t.cast(self.schema)
        self.writer.write_table(t)
        self.rows += t.num_rows

    def close(self, empty: pd.DataFrame) -> None:
        """Finish (``empty``, the table's columns without rows, is written when no rows came)."""
        try:
            if self.writer is None:
                import pyarrow.parquet as pq

                pq.write_table(to_arrow(empty), self.tmp, write_page_checksum=True)
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
    is tens of MB of JSON; the chunk files themselves are the record of what is done).
    """

    def __init__(self, path: Path, data: dict):
        self.path, self.data, self.saved, self.took = path, data, 0.0, 0.0

    def save(self, force: bool = False) -> None:
        if force or time.monotonic() - self.saved >= max(SAVE_EVERY_S, 10 * self.took):
            t0 = time.monotonic()
            self.data["updated"] = now()
            write_json_atomic(self.path, self.data)
            self.saved = time.monotonic()
            self.took = self.saved - t0


def our_summary(path: Path) -> bool:
    """True when ``path`` is a summary written by a sweep (a JSON object, command "sweep")."""
    try:
        s = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(s, dict) and s.get("command") == "sweep"


def foreign_entries(out: Path, manifest: bool = True) -> list[str]:
    """Entries of the sweep folder ``out`` that a sweep did not write and would overwrite or
    delete: in ``chunks/`` and ``results.parquet/``, names other than a sweep's; a
    ``summary.json`` that is not a sweep's; with ``manifest=False`` (a folder without a
    manifest), anything but the lock, temporary files and those two folders.
    """
    bad = []
    for sub, pattern in ((CHUNKS, CHUNK_RE), (RESULTS, PART_RE)):
        d = out / sub
        if d.exists() and not d.is_dir():
            bad.append(sub)
        elif d.is_dir():
            bad += [f"{sub}/{f.name}" for f in sorted(d.iterdir())
                    if not (is_tmp(f.name) or pattern.fullmatch(f.name))]
    if (out / SUMMARY).exists() and not our_summary(out / SUMMARY):
        bad.append(SUMMARY)
    if not manifest:
        known = {CHUNKS, RESULTS, SUMMARY, LOCK}
        bad += [f.name for f in sorted(out.iterdir()) if f.name not in known
                and not is_tmp(f.name)]
    return bad


def _unlink_ours(d: Path, pattern: re.Pattern, ids: range | None) -> None:
    """Delete the temporary entries of folder ``d`` and the files named by ``pattern`` (with
    a number in ``ids`` when given); then ``d`` itself when it is left empty.
    """
    if not d.is_dir():
        return
    for f in d.iterdir():
        m = pattern.fullmatch(f.name)
        if is_tmp(f.name) and f.is_dir():
            shutil.rmtree(f, ignore_errors=True)
        elif is_tmp(f.name) or (m and (ids is None or int(m.group(1)) in ids)):
            f.unlink(missing_ok=True)
    try:
        d.rmdir()
    except OSError:
        pass                             # not empty: what is left is not ours


def remove_results(out: Path) -> None:
    """Delete the results folder's parts (and the folder when nothing else is in it)."""
    _unlink_ours(out / RESULTS, PART_RE, None)


def wipe(out: Path, n_chunks: int | None = None) -> None:
    """Delete a previous sweep's files, and only those: its manifest and summary, its chunk
    files and results parts (numbers below ``n_chunks``, the manifest's chunk count; any
    number when the manifest was unreadable), and temporary files.
    """
    ids = None if n_chunks is None else range(max(int(n_chunks), 1))
    _unlink_ours(out / CHUNKS, CHUNK_RE, ids)
    _unlink_ours(out / RESULTS, PART_RE, ids)
    if our_summary(out / SUMMARY):
        (out / SUMMARY).unlink()
    (out / MANIFEST).unlink(missing_ok=True)
    remove_tmp(out)


def recover(man: Manifest, out: Path, job_hash: str) -> list[dict]:
    """Reconcile the manifest with the chunk files (the truth after a kill): a done chunk
    whose file is gone is computed again; a complete chunk file of this job that the manifest
    missed counts as done (``recovered``; :func:`verify_chunks` reads it in full). Returns the
    chunk files found unreadable (deleted), as :func:`verify_chunks` does.
    """
    done, n = man.data["done"], man.data["plan"]["n_chunks"]
    damaged = []
    for cid in list(done):
        if not (out / CHUNKS / chunk_name(int(cid))).exists():
            del done[cid]                                   # file gone: compute it again
    for f in sorted((out / CHUNKS).glob("c*.parquet")):
        m = CHUNK_RE.fullmatch(f.name)
        if m is None or str(int(m.group(1))) in done:
            continue
        cid = int(m.group(1))
        meta = chunk_meta(f)
        if meta is None or meta.get("job_hash") != job_hash or not 0 <= cid < n:
            f.unlink()                   # damaged, or another job's: compute it again
            if meta is None and 0 <= cid < n:
                damaged.append({"chunk": cid, "file": f"{CHUNKS}/{f.name}",
                                "problem": "unreadable"})
            continue
        rec = {k: v for k, v in (meta.get("record") or {}).items()
               if k not in ("sha256", "bytes")}
        done[str(cid)] = {**rec, "recovered": True}
        man.data["failed"].pop(str(cid), None)
    return damaged


def _chunk_problem(path: Path, rec: dict, cid: int, job_hash: str) -> str | None:
    """Why the chunk file ``path`` cannot be reused (None when it can); fills in
    ``rec["sha256"]`` for a chunk that had no checksum recorded and reads well.
    """
    import pyarrow.parquet as pq

    try:
        size = path.stat().st_size
        if isinstance(rec.get("bytes"), int) and size != rec["bytes"]:
            return (f"{'truncated' if size < rec['bytes'] else 'resized'}: {size:,} bytes, "
                    f"{rec['bytes']:,} when written")
        digest = sha256_file(path)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    if rec.get("sha256") is not None:
        return None if digest == rec["sha256"] else "checksum mismatch"
    try:                                # no checksum recorded: read it all (page CRCs too)
        t = pq.read_table(path, use_threads=False, page_checksum_verification=True)
        meta = json.loads((t.schema.metadata or {}).get(META_KEY, b"null")) or {}
    except Exception as exc:
        return f"unreadable: {str(exc).splitlines()[0][:200] if str(exc) else type(exc)}"
    if meta.get("id") != cid or meta.get("job_hash") != job_hash:
        return "not this chunk's file"
    rec["sha256"], rec["bytes"] = digest, size
    return None


def verify_chunks(man: Manifest, out: Path, job_hash: str) -> list[dict]:
    """Check every chunk the manifest counts as done against the SHA-256 recorded when it
    was written (a chunk with none recorded, e.g. recovered, is read in full); a damaged one
    is deleted and dropped from ``done``, to be computed again. Returns one
    ``{"chunk", "file", "problem"}`` per damaged chunk.
    """
    damaged = []
    done = man.data["done"]
    for cid in sorted(done, key=int):
        path = out / CHUNKS / chunk_name(int(cid))
        problem = _chunk_problem(path, done[cid], int(cid), job_hash)
        if problem is not None:
            del done[cid]
            path.unlink(missing_ok=True)
            damaged.append({"chunk": int(cid), "file": f"{CHUNKS}/{path.name}",
                            "problem": problem})
    return damaged
