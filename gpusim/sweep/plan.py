"""Planning a sweep: the job's set-up (task, backend, market, call-level axes, levels) and
its chunk plan; :func:`plan_job` is ``gpusim sweep --dry-run``."""

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
    for where, names in (("fixed", list(job.fixed)), ("grid", job.level_names)):
        bad = [n for n in names if n not in runner.params]
        if bad:
            raise GpusimError(f"{where}: task {job.task!r} has no parameter "
                              f"{', '.join(map(repr, bad))}; use {', '.join(runner.params)}")
    be = resolve_backend(job.backend)
    market = load_market(job.data, job.base_dir)
    native = [a for a in job.grid if set(a.names) <= runner.native]
    call = [a for a in job.grid if not set(a.names) <= runner.native]
    ctx = runner.prepare(market, dict(job.fixed), native, be)
    call_names = [n for a in call for n in a.names]
    levels = call_names + list(runner.levels(ctx))
    if len(set(levels)) != len(levels):
        raise GpusimError(f"grid levels {levels} repeat a name the task uses for its own level")
    kinds = {n: level_kind([label(v) for v in a.column(n)]) for a in call for n in a.names}
    s = _Setup(job, runner, be, market, ctx, call, levels, kinds,
               fingerprint(job, market, be.name))
    for p in range(s.n_points):
        runner.check_point(ctx, s.point(p))
    return s


def _plan(s: _Setup) -> list[dict]:
    chunks = []
    for p in range(s.n_points):
        for part in s.runner.split(s.ctx, s.point(p), s.job.chunk_size):
            chunks.append({"id": len(chunks), "point": p, "size": int(part["size"]),
                           "part": part})
    return chunks


def plan_job(job: Job | str | Path) -> dict:
    """The chunk plan of a job without running it (``gpusim sweep --dry-run``)."""
    job = job if isinstance(job, Job) else load_job(job)
    s = _setup(job)
    plan = _plan(s)
    sizes = [c["size"] for c in plan]
    return {"task": job.task, "out": str(job.out), "backend": s.backend.label,
            "data": s.market.describe(), "levels": s.levels, "n_points": s.n_points,
            "n_chunks": len(plan), "unit": s.runner.unit, "size": int(sum(sizes)),
            "chunk_size": job.chunk_size or getattr(s.ctx, "default_chunk", None),
            "largest_chunk": max(sizes, default=0), "job_hash": s.fp["job_hash"],
            "data_hash": s.fp["data_hash"]}
