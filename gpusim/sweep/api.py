"""Sweeps that outgrow one run: chunked, checkpointed, resumable, local or on Dask (issue 4).

``sweep(task, grid, market=..., out=..., **fixed)`` (or ``gpusim sweep job.toml``) crosses the
grid's call-level levels into points, splits every point into chunks (blocks of backtest
combinations, or candidate-index ranges of a search), runs the chunks on an engine and writes
each chunk's table atomically as Parquet into ``out/chunks/``, recording progress in
``out/manifest.json``: the normalised job, its hash and the data's hash, the grid, the chunk
plan, the chunks done (run, attempts, timing, worker, SHA-256 of the file) and the failures.
When every chunk is done the final table is published as ``out/results.parquet`` (one row per
result, parameter levels as columns): a folder of Parquet parts read as one table in plan
order, whose parts are the chunk files themselves (hard links) for pass-through tasks like
``backtest``, so every row is written once; and ``out/summary.json``.

``resume=True`` (``--resume``) checks that the job and the data hash as before (else it refuses
and says what changed), keeps the finished chunks and runs only the missing ones: the final
table equals an uninterrupted run's bit for bit, because every chunk is a pure function of the
job (the counter-based RNG of DESIGN §4 makes random populations so) and the merge follows the
stored plan. Every chunk it reuses is checked against its checksum first, and a damaged one is
computed again (a warning names it). A chunk that raises is retried once, then reported with
its parameters while the rest of the sweep finishes. A Ctrl-C saves what is finished and marks
the sweep interrupted (the CLI exits with 130); ``--resume`` finishes it.

One run at a time per folder (``out/sweep.lock``, see :mod:`gpusim.sweep.lock`). ``force=True``
(``--force``) starts over, deleting only the files the folder's gpusim manifest lists; a
folder that is not a gpusim sweep is refused (:mod:`gpusim.sweep.folder`). A sweep has at
most a million chunks, checked before planning (:mod:`gpusim.sweep.plan`).

Layout of ``out``::

    manifest.json      job, hashes, grid, plan, done/failed chunks (with checksums), runs,
                       results parts' checksums
    sweep.lock         while a run holds the folder: its pid, host and start time
    chunks/c000000.parquet ...   one table per chunk (its record in the Parquet metadata)
    results.parquet/   the final table (levels as columns): part-000000.parquet ...;
                       read it with pandas.read_parquet(path) or SweepResult.load(out).table
    summary.json       the JSON summary (as printed by ``gpusim sweep --json``): status,
                       counts, timing, best rows, fixed parameters, seeds, versions
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from gpusim.errors import GpusimError
from gpusim.sweep.engine import ENGINES, BackgroundWriter, check_engine, open_engine
from gpusim.sweep.folder import _open
from gpusim.sweep.job import Axis, Job, load_job, make_job
from gpusim.sweep.lock import FolderLock
from gpusim.sweep.plan import _Setup, _setup, plan_job
from gpusim.sweep.results import (
    Best,
    SweepResult,
    assemble,
    label,
    passthrough,
    with_levels,
)
from gpusim.sweep.store import (
    CHUNKS,
    RESULTS,
    SUMMARY,
    Manifest,
    chunk_name,
    now,
    to_arrow,
    write_chunk,
    write_json_atomic,
)
from gpusim.sweep.tasks import TaskRunner, available_tasks, register_task

__all__ = [
    "ENGINES",
    "Axis",
    "Job",
    "SweepResult",
    "TaskRunner",
    "available_tasks",
    "load_job",
    "make_job",
    "plan_job",
    "register_task",
    "run_job",
    "sweep",
]


# ----------------------------------------------------------------------------- run
def run_job(job: Job | str | Path, *, resume: bool = False, force: bool = False,
            engine: str = "local", scheduler=None, workers: int | None = None,
            progress: bool | None = None, retries: int = 1, out=None) -> SweepResult:
    """Run (or resume) a sweep job: a :class:`Job` or the path of a TOML job file.

    Parameters
    ----------
    resume : keep the chunks an earlier run of the same job finished in ``out`` and run the
        rest; refuses (GpusimError naming what changed) when the job or the data differ. Every
        reused chunk is checked against the checksum recorded when it was written; a damaged
        one is computed again (a SweepWarning names it; the run's record lists it).
    force : start over in an ``out`` that holds another sweep (its files, and only those, are
        deleted; a folder that is not a gpusim sweep is refused). Not with ``resume``.
    engine : ``"local"`` (in-process, default) or ``"dask"``.
    scheduler : with ``engine="dask"``: a scheduler address (``"tcp://host:8786"``) or a
        ``distributed.Client``; default: a new LocalCluster of ``workers`` (2) processes.
    progress : tqdm bar over chunks (default: when stderr is a terminal).
    retries : extra attempts for a chunk that raises (default 1).
    out : overrides the job's output folder.

    Returns
    -------
    SweepResult. A Ctrl-C stops after saving what is finished (``status="interrupted"``;
    ``resume=True`` finishes it later). One run at a time per folder: a second one refuses
    (GpusimError naming the first) while ``out/sweep.lock`` is held.
    """
    job = job if isinstance(job, Job) else load_job(job)
    if out is not None:
        job.out = Path(out)
    if job.out is None:
        raise GpusimError("the job has no output folder: set out = \"...\" in the job file, "
                          "pass --out DIR, or out=... in Python")
    if resume and force:
        raise GpusimError("resume=True and force=True contradict each other: resume keeps the "
                          "finished chunks, force deletes them; give one")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise GpusimError(f"retries={retries!r} must be an int >= 0")
    if engine not in ENGINES:
        raise GpusimError(f"engine={engine!r} is unknown; use one of {', '.join(ENGINES)}")
    check_engine(engine)         # a missing Dask fails before any folder is made
    s = _setup(job)
    out = Path(job.out)
    if out.exists() and not out.is_dir():
        raise GpusimError(f"out={str(out)!r} is a file; give a folder path")
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    with FolderLock(out) as lock:
        man, damaged = _open(s, out, resume, force)
        run = {"run": len(man.data["runs"]), "started": now(),
               "resumed": bool(man.data["runs"]) and resume, "engine": engine,
               "computed": 0, "failed": 0, "retried": 0, "errors": [], "damaged": damaged,
               "lock_taken_over": lock.took_over}
        return _execute(s, out, man, run, scheduler, workers, progress, retries, t0)


def _execute(s: _Setup, out: Path, man: Manifest, run: dict, scheduler, workers, progress,
             retries: int, t0: float) -> SweepResult:
    """Run the chunks not done yet, publish the results, write the summary (``run``: this
    run's record, appended to the manifest's runs).
    """
    d = man.data
    plan = d["plan"]["chunks"]
    d["runs"].append(run)
    d["status"] = "running"
    todo = [{**c, "point_values": s.point(c["point"])} for c in plan
            if str(c["id"]) not in d["done"]]
    recovered = sum(1 for r in d["done"].values() if r.get("recovered"))
    run["skipped"] = len(plan) - len(todo)
    from tqdm.auto import tqdm

    show = progress if progress is not None else sys.stderr.isatty()
    bar = tqdm(total=len(plan), initial=len(plan) - len(todo), unit="chunk",
               desc=f"sweep {s.job.task} [{run['engine']}]", disable=not show, smoothing=0.1)
    rec = _Recorder(s, out, man, run, bar)
    extra: dict = {}
    assemble_s = 0.0
    try:
        _run_chunks(rec, todo, run, scheduler, workers, retries, bar)
        ta = time.perf_counter()
        extra = assemble(s, out, d, rec.best, frozenset(rec.best_ids))
        d["results"] = {"parts": extra.pop("parts")}
        assemble_s = time.perf_counter() - ta
        interrupted = False
    except KeyboardInterrupt:                # what finished is on disk and in the manifest
        interrupted = True
    elapsed = time.perf_counter() - t0
    complete = len(d["done"]) == len(plan)
    status = "interrupted" if interrupted else ("complete" if complete else "incomplete")
    d["status"] = status
    run.update(ended=now(), status=status, elapsed_s=round(elapsed, 6))
    man.save(force=True)
    summary = _summary(s, out, d, run, status, elapsed, rec.compute_s, rec.write_s,
                       assemble_s, recovered, extra)
    if not interrupted:
        write_json_atomic(out / SUMMARY, summary, indent=2)
    return SweepResult(out, summary)


def _run_chunks(rec: _Recorder, todo: list[dict], run: dict, scheduler, workers,
                retries: int, bar) -> None:
    """Compute the chunks ``todo`` on the run's engine; the recorder writes each finished one
    (on a background thread, while the next computes). On a Ctrl-C, the chunks already
    finished are still written before KeyboardInterrupt propagates.
    """
    s = rec.s
    bg = BackgroundWriter()
    try:
        with open_engine(run["engine"], scheduler, workers) as eng:
            run.update(eng.describe())
            rec.man.save(force=True)
            for ev in eng.events(s.runner, s.ctx, todo, retries):
                if ev[0] == "done":
                    bg.submit(lambda ev=ev: rec.done(ev[1], ev[2], *ev[3]))
                else:
                    bg.submit(lambda ev=ev: rec.error(ev[1], ev[2], *ev[3], ev[4]))
    finally:
        try:
            _drain(bg)                   # what finished is recorded, even when interrupted
        finally:
            bar.close()


def _drain(bg: BackgroundWriter) -> None:
    """Wait for the background writer to finish what it holds, through repeated Ctrl-Cs
    (its queue is short: at most a few chunks to write).
    """
    while True:
        try:
            bg.close()
            return
        except KeyboardInterrupt:
            continue


class _Recorder:
    """Bookkeeping of finished and failed chunks (run on the background writer thread, in
    completion order): chunk file, best rows, manifest, progress bar.
    """

    def __init__(self, s: _Setup, out: Path, man: Manifest, run: dict, bar):
        self.s, self.out, self.man, self.run, self.bar = s, out, man, run, bar
        self.passthrough = passthrough(s.runner)
        self.best, self.best_ids = Best(s.runner.rank_by), set()   # of pass-through chunks
        self.compute_s = self.write_s = 0.0

    def done(self, c: dict, attempt: int, table, info: dict) -> None:
        tw = time.perf_counter()
        d, cid = self.man.data, str(c["id"])
        table = to_arrow(table)
        if self.passthrough:       # the chunk file holds the final rows: levels in front
            table = with_levels(self.s, c["point_values"], table)
        rec = {"run": self.run["run"], "attempts": attempt, "rows": table.num_rows,
               "elapsed_s": round(info.get("elapsed_s", 0.0), 6),
               "worker": info.get("worker"), "finished": now(),
               "info": {k: v for k, v in info.items() if k not in ("elapsed_s", "worker")}}
        path = self.out / CHUNKS / chunk_name(c["id"])
        digest = write_chunk(path, table, {"id": c["id"], "job_hash": self.s.fp["job_hash"],
                                           "record": rec}, self.s.levels)
        # in the manifest only (a file cannot hold its own hash): checked by a resume
        rec["sha256"], rec["bytes"] = digest, path.stat().st_size
        if self.passthrough:
            self.best.add(table)
            self.best_ids.add(cid)
        d["done"][cid] = rec
        d["failed"].pop(cid, None)
        self.run["computed"] += 1
        self.compute_s += info.get("elapsed_s", 0.0)
        self.man.save()
        self.write_s += time.perf_counter() - tw
        self.bar.update(1)

    def error(self, c: dict, attempt: int, msg: str, tb: str, final: bool) -> None:
        d, run = self.man.data, self.run
        if len(run["errors"]) < 100:
            run["errors"].append({"chunk": c["id"], "attempt": attempt, "error": msg})
        if not final:
            run["retried"] += 1
            return
        params = {**{k: label(v) for k, v in c["point_values"].items()},
                  **self.s.runner.describe(self.s.ctx, c["point_values"], c["part"])}
        d["failed"][str(c["id"])] = {"run": run["run"], "attempts": attempt, "error": msg,
                                     "params": params, "traceback": tb}
        run["failed"] += 1
        self.bar.set_postfix(failed=len(d["failed"]))
        self.man.save(force=True)


def _seeds(job: dict) -> dict:
    """Every seed of a normalised job (``fingerprint()["job"]``): ``{where: value}``, e.g.
    ``{"fixed.weights.seed": 1, "grid.seed": [0, 7], "data.synthetic.seed": 9}``.
    """
    found: dict = {}

    def walk(v, where: str) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                key = f"{where}.{k}" if where else str(k)
                if k == "seed":
                    found[key] = x
                else:
                    walk(x, key)

    walk({"data": job.get("data"), "fixed": job.get("fixed")}, "")
    for axis in job.get("grid") or []:
        for i, name in enumerate(axis["names"]):
            if name == "seed":
                found["grid.seed"] = [v[i] for v in axis["values"]]
    return found


def _summary(s, out, d, run, status, elapsed, compute_s, write_s, assemble_s,
             recovered, extra) -> dict:
    from gpusim.results import versions

    failures = [{"chunk": int(k), **{x: v for x, v in f.items() if x != "traceback"}}
                for k, f in sorted(d["failed"].items(), key=lambda kv: int(kv[0]))]
    job = d["job"]
    return {
        "command": "sweep", "task": s.job.task, "name": s.job.name,
        "job_file": d.get("job_file"), "out": str(out), "status": status,
        "engine": run["engine"], "workers": run.get("workers"),
        "scheduler": run.get("scheduler"), "backend": s.backend.label,
        "n_points": s.n_points, "unit": s.runner.unit,
        "size": d["grid"]["size"], "n_chunks": d["plan"]["n_chunks"],
        "chunk_size": d["plan"]["chunk_size"], "n_done": len(d["done"]),
        "n_failed": len(d["failed"]), "computed_this_run": run["computed"],
        "retried_this_run": run["retried"], "recovered": recovered,
        "damaged_this_run": run["damaged"], "runs": len(d["runs"]),
        "failures": failures, "levels": s.levels, "data": s.market.describe(),
        "data_spec": job.get("data"), "fixed": job.get("fixed"), "seeds": _seeds(job),
        "job_hash": d["job_hash"], "data_hash": d["data_hash"],
        "elapsed_s": round(elapsed, 6), "compute_s": round(compute_s, 6),
        "write_s": round(write_s, 6), "assemble_s": round(assemble_s, 6),
        "results_file": RESULTS if status != "interrupted" else None, **extra,
        "versions": versions(),
    }


# ----------------------------------------------------------------------------- public API
def sweep(task: str, grid=None, *, market=None, out=None, engine: str = "local",
          scheduler=None, workers: int | None = None, backend: str = "auto",
          chunk_size: int | None = None, resume: bool = False, force: bool = False,
          progress: bool | None = None, retries: int = 1, **fixed) -> SweepResult:
    """Run ``task`` over ``grid`` in checkpointed chunks, locally or on Dask.

    Parameters
    ----------
    task : ``"backtest"`` or ``"search"`` (or a task added with :func:`register_task`).
    grid : ``{parameter: values}`` — a list, range, array or ``{start, stop, step|num}`` range
        (inclusive); a tuple key ``("a", "b")`` with a list of pairs, or ``"zip": [{a: [...],
        b: [...]}]``, gives zipped levels that vary together. Each parameter is a level of the
        result's index.
    market : a Market, a price DataFrame, a file path, ``"synthetic[:A[:T[:SEED]]]"``, a data
        spec dict as in a job file's ``[data]``, or None (the built-in synthetic market).
    out : the sweep folder (checkpoints, results). None: a temporary folder, removed after the
        table is loaded (no resume).
    engine, scheduler, workers : ``"local"`` (default) or ``"dask"`` (a LocalCluster of
        ``workers`` processes, default 2, or the scheduler at ``scheduler``).
    backend : ``"auto"`` | ``"cpu"`` | ``"gpu"`` for every chunk.
    chunk_size : combinations (backtest) or candidates (search) per chunk (default: planned
        from the device's speed and memory).
    resume, force, progress, retries : see :func:`run_job`.
    **fixed : the task's fixed arguments (e.g. ``weights=RandomWeights(1000)``, ``n=10**8``).

    Returns
    -------
    SweepResult: ``.table`` (levels as a MultiIndex), ``.summary``, ``.failures``.

    Examples
    --------
    >>> res = gpusim.sweep("backtest", {"fees": [0, 0.001], "threshold": [0.02, 0.05]},
    ...                    weights=gpusim.RandomWeights(1000), out="runs/bands")
    >>> res = gpusim.sweep("search", {"seed": range(4)}, n=10**8, out="runs/seeds")
    """
    job = make_job(task, grid, market=market, fixed=fixed, backend=backend, out=out,
                   chunk_size=chunk_size)
    if out is not None:
        return run_job(job, resume=resume, force=force, engine=engine, scheduler=scheduler,
                       workers=workers, progress=progress, retries=retries)
    tmp = Path(tempfile.mkdtemp(prefix="gpusim-sweep-"))
    try:
        res = run_job(job, engine=engine, scheduler=scheduler, workers=workers,
                      progress=progress, retries=retries, out=tmp / "sweep")
        res.table  # noqa: B018 - load before the folder goes
        res.out = None
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
