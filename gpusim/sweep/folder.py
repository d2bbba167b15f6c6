"""Opening a sweep folder: a new sweep, a resumed one (refused when the job or the data
changed), or a restart (``force``)."""

from __future__ import annotations

import json
from pathlib import Path

from gpusim.errors import GpusimError
from gpusim.sweep.job import describe_changes
from gpusim.sweep.plan import _plan, _Setup
from gpusim.sweep.store import (
    CHUNKS,
    MANIFEST,
    Manifest,
    now,
    ours,
    recover,
    remove_tmp,
    wipe,
)

FORMAT = "gpusim-sweep/2"


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


def _open(s: _Setup, out: Path, resume: bool, force: bool) -> Manifest:
    """Create or reopen the sweep folder; returns the manifest (saved)."""
    if out.exists() and not out.is_dir():
        raise GpusimError(f"out={str(out)!r} is a file; give a folder path")
    mpath = out / MANIFEST
    old = None
    if mpath.exists():
        try:
            old = json.loads(mpath.read_text())
        except (OSError, ValueError) as exc:
            raise GpusimError(f"{mpath} cannot be read ({exc}); use a new output folder or "
                              "--force") from None
        if not resume and not force:
            n, total = len(old.get("done") or {}), old.get("plan", {}).get("n_chunks", "?")
            raise GpusimError(f"{out} already holds a sweep ({n} of {total} chunks done); pass "
                              "--resume to finish it, --force to start over, or use a new "
                              "output folder")
        reason = _refusal(out, old, s) if resume else "restart"
        if reason and not force:
            raise GpusimError(reason)
        if reason:
            wipe(out)
            old = None
    elif out.exists() and any(out.iterdir()) and not ours(out):
        raise GpusimError(f"{out} is not empty and holds no sweep; give a new or empty output "
                          "folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / CHUNKS).mkdir(exist_ok=True)
    remove_tmp(out)
    if old is not None:
        man = Manifest(mpath, old)
        recover(man, out, s.fp["job_hash"])
    else:
        plan = _plan(s)
        man = Manifest(mpath, {
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
    man.save(force=True)
    return man
