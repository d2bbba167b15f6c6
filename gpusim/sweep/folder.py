"""Opening a sweep folder: a new sweep, a resumed one (refused when the job or the data
changed), or a restart (``force``). The caller holds the folder's lock
(:class:`gpusim.sweep.lock.FolderLock`).

A folder is a sweep only when its ``manifest.json`` carries gpusim's format marker
(``"format": "gpusim-sweep/N"``). ``force`` deletes only what such a manifest lists as the
sweep's (:func:`gpusim.sweep.store.wipe`), and nothing is deleted or overwritten in a folder
that holds files a sweep did not write: it is refused with one line.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from gpusim.errors import GpusimError
from gpusim.sweep.job import describe_changes
from gpusim.sweep.plan import _plan, _Setup
from gpusim.sweep.store import (
    CHUNKS,
    MANIFEST,
    SUMMARY,
    Manifest,
    SweepWarning,
    foreign_entries,
    now,
    our_summary,
    recover,
    remove_results,
    remove_tmp,
    verify_chunks,
    wipe,
)

FORMAT = "gpusim-sweep/2"
MARKER = "gpusim-sweep/"


# ----------------------------------------------------------------------------- manifest
def _shape_problem(d: dict) -> str | None:
    """What is wrong with the shape of a manifest of the current format (None: nothing)."""
    kinds = {"job_hash": str, "data_hash": str, "job": dict, "grid": dict, "plan": dict,
             "done": dict, "failed": dict, "runs": list}
    for key, typ in kinds.items():
        if not isinstance(d.get(key), typ):
            return f"{key} is {'missing' if key not in d else 'not a ' + typ.__name__}"
    plan = d["plan"]
    chunks, n = plan.get("chunks"), plan.get("n_chunks")
    if not isinstance(chunks, list) or not isinstance(n, int) or len(chunks) != n:
        return "plan.chunks does not list plan.n_chunks chunks"
    for i, c in enumerate(chunks):
        if not (isinstance(c, dict) and c.get("id") == i and isinstance(c.get("point"), int)
                and isinstance(c.get("size"), int) and isinstance(c.get("part"), dict)):
            return f"plan.chunks[{i}] is not a chunk of the plan"
    if not all(isinstance(r, dict) and k.isdigit() and int(k) < n for k, r in
               d["done"].items()):
        return "done lists chunks that are not in the plan"
    if not isinstance(d["grid"].get("size"), int):
        return "grid.size is missing"
    return None


def read_manifest(path: Path) -> tuple[str, dict | None, str]:
    """Classify ``path``: ``("none", None, "")`` when absent; ``("ok", data, "")``;
    ``("other", data, "")`` for a gpusim manifest of another format version;
    ``("damaged", data_or_None, why)`` for a gpusim manifest that cannot be used;
    ``("foreign", None, why)`` for a file without gpusim's format marker.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        return "none", None, ""
    except (OSError, UnicodeDecodeError) as exc:
        return "foreign", None, f"it cannot be read: {exc}"
    try:
        d = json.loads(text)
    except ValueError as exc:
        if text.lstrip().startswith('{"format": "' + MARKER):
            return "damaged", None, f"invalid JSON: {exc}"
        return "foreign", None, "it is not JSON"
    if not isinstance(d, dict):
        return "foreign", None, f"a JSON {type(d).__name__}, not an object"
    fmt = d.get("format")
    if not (isinstance(fmt, str) and fmt.startswith(MARKER)):
        return "foreign", None, "it has no gpusim format marker"
    if fmt != FORMAT:
        return "other", d, ""
    why = _shape_problem(d)
    return ("damaged", d, why) if why else ("ok", d, "")


def _n_chunks(d: dict | None) -> int | None:
    """The chunk count a (possibly damaged or older) manifest gives, or None."""
    n = ((d or {}).get("plan") or {}).get("n_chunks") if isinstance(
        (d or {}).get("plan"), dict) else None
    return n if isinstance(n, int) and n >= 0 else None


# ----------------------------------------------------------------------------- the folder
def _refusal(out: Path, old: dict, s: _Setup) -> str | None:
    if old.get("format") != FORMAT:
        return (f"cannot resume {out}: its manifest has format {old.get('format')!r}, not "
                f"{FORMAT!r}")
    why = []
    if old.get("data_hash") != s.fp["data_hash"]:
        why.append(f"the data changed (prices hash {str(old.get('data_hash'))[:12]} -> "
                   f"{s.fp['data_hash'][:12]}; now {s.market.describe()})")
    changes = describe_changes(old.get("job") or {}, s.fp["job"])
    if changes:
        more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
        why.append(f"the job changed ({'; '.join(changes[:3])}{more})")
    if not why and old.get("job_hash") != s.fp["job_hash"]:
        why.append("the job hash changed")
    if not why:
        return None
    n = len(old.get("done") or {})
    return (f"cannot resume {out}: {' and '.join(why)} since the sweep started; use a new "
            f"output folder, or --force (force=True) to discard its {n} finished chunk(s) "
            "and start over")


def _check_existing(s: _Setup, out: Path, resume: bool, force: bool) -> dict | None:
    """Decide what to do with the sweep folder ``out`` before anything is written: raise a
    one-line GpusimError on a refusal; wipe it for ``force``; return the manifest a resume
    continues (None: start a new sweep).
    """
    mpath = out / MANIFEST
    kind, old, why = read_manifest(mpath)
    if kind == "foreign":
        raise GpusimError(f"{mpath} is not a gpusim sweep manifest ({why}); give a new or "
                          "empty output folder (--force deletes only a gpusim sweep's files)")
    if kind == "none":
        bad = foreign_entries(out, manifest=False)
        if bad:
            raise GpusimError(f"{out} is not empty and holds no sweep ({_names(bad)}); give a "
                              "new or empty output folder")
        return None
    if kind == "damaged" and not force:
        raise GpusimError(f"{mpath} is a damaged gpusim sweep manifest ({why}); use --force "
                          "to start over or a new output folder")
    if not resume and not force:
        done, total = old.get("done"), _n_chunks(old)
        n = len(done) if isinstance(done, dict) else "?"
        raise GpusimError(f"{out} already holds a sweep ({n} of "
                          f"{'?' if total is None else total} chunks done); pass --resume to "
                          "finish it, --force to start over, or use a new output folder")
    if resume:
        reason = _refusal(out, old, s)
        if reason:
            raise GpusimError(reason)
    bad = foreign_entries(out)
    if bad:
        raise GpusimError(f"{out} holds files a sweep did not write ({_names(bad)}); move "
                          "them away or use a new output folder")
    if force:
        wipe(out, _n_chunks(old) if kind != "damaged" else None)
        return None
    return old


def _names(bad: list[str]) -> str:
    return ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")


def _reopen(s: _Setup, out: Path, old: dict) -> tuple[Manifest, list[dict]]:
    """The manifest of a resumed sweep, reconciled with its chunk files, every reused chunk
    verified; returns it and the damaged chunks (deleted, to be computed again).
    """
    man = Manifest(out / MANIFEST, old)
    damaged = recover(man, out, s.fp["job_hash"]) + verify_chunks(man, out, s.fp["job_hash"])
    damaged.sort(key=lambda x: x["chunk"])
    for x in damaged:
        warnings.warn(f"chunk {x['chunk']} ({out / x['file']}) is damaged ({x['problem']}); "
                      "computing it again", SweepWarning, stacklevel=4)
    if damaged:                  # its parts may be the damaged files (hard links)
        remove_results(out)
    if our_summary(out / SUMMARY):                       # stale from here on
        (out / SUMMARY).unlink()
    return man, damaged


def _new_manifest(s: _Setup, out: Path) -> Manifest:
    plan = _plan(s)
    return Manifest(out / MANIFEST, {
        "format": FORMAT, "task": s.job.task, "name": s.job.name,
        "job_file": None if s.job.source is None else str(s.job.source),
        "job_hash": s.fp["job_hash"], "data_hash": s.fp["data_hash"], "job": s.fp["job"],
        "data": {"describe": s.market.describe(), "n_bars": s.market.n_bars,
                 "n_assets": s.market.n_assets, "symbols": list(s.market.symbols)},
        "grid": {"levels": s.levels, "call_levels": [n for a in s.call_axes
                                                     for n in a.names],
                 "call_axes": [a.to_json() for a in s.call_axes],
                 "n_points": s.n_points, "unit": s.runner.unit,
                 "size": int(sum(c["size"] for c in plan))},
        "plan": {"chunk_size": s.job.chunk_size or getattr(s.ctx, "default_chunk", None),
                 "n_chunks": len(plan), "chunks": plan},
        "done": {}, "failed": {}, "runs": [], "status": "running", "created": now()})


def _open(s: _Setup, out: Path, resume: bool, force: bool) -> tuple[Manifest, list[dict]]:
    """Create or reopen the sweep folder ``out`` (which exists; the caller holds its lock).

    Returns
    -------
    (manifest, damaged): the manifest (saved), and one ``{"chunk", "file", "problem"}`` per
    reused chunk found damaged (deleted, to be computed again; a SweepWarning each).
    """
    old = _check_existing(s, out, resume, force)
    (out / CHUNKS).mkdir(exist_ok=True)
    remove_tmp(out)
    man, damaged = (_new_manifest(s, out), []) if old is None else _reopen(s, out, old)
    man.save(force=True)
    return man, damaged
