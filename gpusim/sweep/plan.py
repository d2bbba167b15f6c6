"""Planning a sweep: the job's set-up (task, backend, market, call-level axes, levels) and
its chunk plan; :func:`plan_job` is ``gpusim sweep --dry-run``.

A sweep has at most :data:`MAX_CHUNKS` chunks (one million: the plan lives in the manifest,
which is rewritten as chunks finish). The size of the grid is checked before anything is
planned, from one probe of each point (its whole size: ``split`` with an unbounded chunk
size), so a grid far over the limit is refused at once, naming its size and the chunk size it
would need; the plan itself stops as soon as it passes the limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gpusim.errors import GpusimError
from gpusim.sweep.job import Axis, Job, fingerprint, load_job, load_market
from gpusim.sweep.results import label
from gpusim.sweep.tasks import TaskRunner, get_task, level_kind

MAX_CHUNKS = 1_000_000
"""Most chunks a sweep may have (points x chunks per point)."""
_WHOLE = 2 ** 62                            # a chunk size that never splits a point


# ----------------------------------------------------------------------------- set-up
@dataclass
class _Setup:
    job: Job
    runner: TaskRunner
    backend: Any
    market: Any
    ctx: Any
    call_axes: list[Axis]
    levels: list[str]
    call_kinds: dict[str, str]
    fp: dict

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(a.size for a in self.call_axes)

    @property
    def n_points(self) -> int:
        return int(math.prod(self.shape))

    def point(self, p: int) -> dict:
        pos = np.unravel_index(p, self.shape) if self.call_axes else ()
        return {n: v for a, i in zip(self.call_axes, pos) for n, v in zip(a.names,
                                                                          a.values[int(i)])}


def _setup(job: Job) -> _Setup:
    from gpusim.backend import resolve_backend

    runner = get_task(job.task)
    runner.check_names(job.fixed, job.level_names)
    inside = runner.native_names(job.fixed, job.level_names)
    native = [a for a in job.grid if set(a.names) <= inside]
    call = [a for a in job.grid if not set(a.names) <= inside]
    n_points = math.prod(a.size for a in call)
    if n_points > MAX_CHUNKS:
        sizes = " x ".join(f"{a.size:,} {'/'.join(a.names)}" for a in call)
        raise GpusimError(f"the grid crosses {n_points:,} points ({sizes}), and each point is "
                          f"at least one chunk: more than the limit of {MAX_CHUNKS:,} chunks; "
                          "use fewer levels or values")
    be = resolve_backend(job.backend)
    market = load_market(job.data, job.base_dir)
    ctx = runner.prepare(market, dict(job.fixed), native, be)
    call_names = [n for a in call for n in a.names]
    levels = call_names + list(runner.levels(ctx))
    if len(set(levels)) != len(levels):
        raise GpusimError(f"grid levels {levels} repeat a name the task uses for its own level")
    kinds = {n: level_kind([label(v) for v in a.column(n)]) for a in call for n in a.names}
    s = _Setup(job, runner, be, market, ctx, call, levels, kinds,
               fingerprint(job, market, be.name))
    _check_size(s)
    return s


def _chunk_size(s: _Setup) -> int | None:
    return s.job.chunk_size or getattr(s.ctx, "default_chunk", None)


def _check_size(s: _Setup) -> None:
    """Validate every point, and refuse (before planning) a grid that would make more than
    MAX_CHUNKS chunks: each point's size (its whole ``split``) over the chunk size is a lower
    bound of its chunks.
    """
    chunk, size, least = _chunk_size(s), 0, 0
    for p in range(s.n_points):
        point = s.point(p)
        s.runner.check_point(s.ctx, point)
        parts = s.runner.split(s.ctx, point, _WHOLE)
        n = sum(int(x["size"]) for x in parts)
        size += n
        least += max(len(parts), -(-n // int(chunk)) if chunk else 1)
    if least > MAX_CHUNKS:
        need = -(-size // max(1, MAX_CHUNKS - s.n_points))
        raise GpusimError(_too_big(s, size, f"at least {least:,}", chunk, need))


def _too_big(s: _Setup, size: int, n: str, chunk, need: int) -> str:
    return (f"the sweep is too big: {size:,} {s.runner.unit} in {s.n_points:,} point(s) make "
            f"{n} chunks of at most {chunk if chunk is None else format(chunk, ',')} (the "
            f"limit is {MAX_CHUNKS:,} chunks); use a larger chunk_size (at least {need:,}) "
            "or fewer levels")


def _plan(s: _Setup) -> list[dict]:
    """The chunk plan: one ``{"id", "point", "size", "part"}`` per chunk, in result order
    (GpusimError past MAX_CHUNKS chunks).
    """
    chunks = []
    for p in range(s.n_points):
        for part in s.runner.split(s.ctx, s.point(p), s.job.chunk_size):
            chunks.append({"id": len(chunks), "point": p, "size": int(part["size"]),
                           "part": part})
        if len(chunks) > MAX_CHUNKS:
            size = sum(c["size"] for c in chunks)
            raise GpusimError(_too_big(s, size, f"more than {len(chunks):,}", _chunk_size(s),
                                       -(-size // MAX_CHUNKS)))
    return chunks


def plan_job(job: Job | str | Path) -> dict:
    """The chunk plan of a job without running it (``gpusim sweep --dry-run``).

    Returns
    -------
    dict: task, out, backend, data, levels, n_points, n_chunks, unit, size (units in all),
    chunk_size, largest_chunk, job_hash, data_hash. A job over :data:`MAX_CHUNKS` chunks is
    refused (GpusimError naming its size and a chunk size that fits) without being planned.
    """
    job = job if isinstance(job, Job) else load_job(job)
    s = _setup(job)
    plan = _plan(s)
    sizes = [c["size"] for c in plan]
    return {"task": job.task, "out": str(job.out), "backend": s.backend.label,
            "data": s.market.describe(), "levels": s.levels, "n_points": s.n_points,
            "n_chunks": len(plan), "unit": s.runner.unit, "size": int(sum(sizes)),
            "chunk_size": _chunk_size(s),
            "largest_chunk": max(sizes, default=0), "job_hash": s.fp["job_hash"],
            "data_hash": s.fp["data_hash"]}
