"""``gpusim sweep``: run a TOML job file in checkpointed chunks, locally or on Dask.

    gpusim sweep job.toml                        # runs with a progress bar, writing as it goes
    gpusim sweep job.toml --resume               # after an interruption: only what is missing
    gpusim sweep job.toml --engine dask          # a local cluster of 2 worker processes
    gpusim sweep job.toml --engine dask --scheduler tcp://host:8786

Runs on its own as ``python -m gpusim.cli.sweep job.toml``; wiring:
:class:`gpusim.cli.common.Command`. Exit codes: 0 complete, 1 some chunks failed (listed), 2 bad
input or a refused resume (one line ``error: ...`` on stderr, never a traceback), 130
interrupted (finished chunks are kept: run again with --resume). What a sweep repairs on its own
(a damaged chunk computed again, a stale lock taken over) is one ``warning: ...`` line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys

from gpusim.cli.common import Command, print_json, require
from gpusim.errors import GpusimError

__all__ = ["add_parser", "build_parser", "main", "run"]

def _task_lines() -> str:
    # names only: no task module is imported
    from gpusim.sweep.tasks import PROVIDERS

    return "; ".join(f"{name} ({what})" for name, (_, what) in PROVIDERS.items())


DESCRIPTION = (
    "Run a sweep job file: a task over a grid of parameters, split into "
    "chunks that are written atomically (Parquet) to the output folder with a manifest, so an "
    "interrupted sweep resumes where it stopped (--resume) and gives the same table, bit for "
    "bit, as an uninterrupted run. --engine dask runs the chunks on a Dask cluster. Tasks: "
    + _task_lines() + ".")

EPILOG = """job file (TOML; relative paths are relative to the job file):
  task = "backtest"                  # or search, walkforward, dynopt, tune
  out = "runs/bands"                 # output folder
  backend = "cpu"                    # auto | cpu | gpu
  chunk_size = 20000                 # optional: combinations / candidates per chunk
  [data]
  path = "prices.csv"                # or: synthetic = { n_assets = 5, n_bars = 756, seed = 0 }
  [fixed]
  weights = { random = 2000, seed = 7 }
  rebalance = "M"
  [grid]
  fees = [0.0, 0.0005, 0.001]
  threshold = { start = 0.02, stop = 0.10, step = 0.02 }   # inclusive range
  # or bands of any form, mixed: [0.05, "none", { SPY = 0.03, TLT = 0.08 },
  #                               { file = "bands.csv" }]   (dates, then a column or one per symbol)
  [[grid.zip]]                       # levels that vary together
  init_cash = [1.0, 100.0]
  rf = [0.0, 0.02]

outputs: OUT/results.parquet/ (the final table, one row per result, parameter levels as
columns: a folder of Parquet parts; pandas.read_parquet reads it as one table),
OUT/summary.json, OUT/manifest.json, OUT/chunks/*.parquet; OUT/sweep.lock while it runs
(one run per folder).
--resume checks every finished chunk against its checksum and computes damaged ones again.
--force deletes only the files of the gpusim sweep in OUT (not with --resume).
limits: at most 1,000,000 chunks per sweep (checked before planning).
exit codes: 0 complete, 1 some chunks failed, 2 bad input or refused resume, 130 interrupted."""


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("job", metavar="JOB.toml", help="the job file")
    p.add_argument("--resume", action="store_true",
                   help="finish an interrupted sweep: keep its finished chunks, run the rest "
                        "(refuses when the job or the data changed)")
    p.add_argument("--force", action="store_true",
                   help="start over in an output folder that holds another sweep (deletes "
                        "its sweep files, and only those)")
    p.add_argument("--engine", default="local", choices=("local", "dask"),
                   help="local (in-process, default) or dask")
    p.add_argument("--scheduler", default=None, metavar="ADDR",
                   help="Dask scheduler address, e.g. tcp://host:8786 (default: a local "
                        "cluster)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes of the local Dask cluster (default: 2)")
    p.add_argument("--out", default=None, metavar="DIR", help="override the job's out folder")
    p.add_argument("--backend", default=None, help="override the job's backend (auto|cpu|gpu)")
    p.add_argument("--retries", type=int, default=1,
                   help="extra attempts for a chunk that raises (default: 1)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the chunk plan and exit (nothing is written)")
    p.add_argument("--json", action="store_true", help="print the JSON summary")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run(args: argparse.Namespace) -> int:
    import warnings

    from gpusim.backend import BackendFallbackWarning
    from gpusim.sweep.store import SweepWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BackendFallbackWarning)  # the summary names the backend
        warnings.simplefilter("always", SweepWarning)
        shown = warnings.showwarning

        def show(message, category, *rest, **kw):
            if issubclass(category, SweepWarning):
                print(f"warning: {message}", file=sys.stderr)
            else:
                shown(message, category, *rest, **kw)

        warnings.showwarning = show
        return _sweep(args)


def _sweep(args) -> int:
    from gpusim.sweep.api import load_job, plan_job, run_job

    if args.resume and args.force:
        raise GpusimError("--resume and --force contradict each other: --resume keeps the "
                          "finished chunks, --force deletes them; give one")
    if args.engine == "dask":
        require("distributed", "--engine dask")     # before the job is read or a folder made
    job = load_job(args.job, out=args.out)
    if args.backend:
        job.backend = args.backend
    if args.engine == "local" and (args.scheduler or args.workers):
        raise GpusimError("--scheduler and --workers need --engine dask")
    if args.dry_run:
        plan = plan_job(job)
        if args.json:
            print(json.dumps(plan, indent=2))
        else:
            print(f"{plan['task']}: {plan['size']:,} {plan['unit']} in {plan['n_points']} "
                  f"point(s) -> {plan['n_chunks']} chunk(s) of up to {plan['largest_chunk']:,}"
                  f" on {plan['backend']}; levels {plan['levels']}; out {plan['out']}\n"
                  f"{plan['data']}")
        return 0
    res = run_job(job, resume=args.resume, force=args.force, engine=args.engine,
                  scheduler=args.scheduler, workers=args.workers,
                  progress=False if args.no_progress else None, retries=args.retries)
    s = res.summary
    if args.json:
        print_json(s)
    else:
        print(res.to_text())
        if s["status"] != "interrupted":
            print(f"wrote {s['out']}/results.parquet ({s['n_rows']:,} rows; a Parquet folder), "
                  "summary.json, manifest.json")
    if s["status"] == "interrupted":
        print(f"error: interrupted: {s['n_done']} of {s['n_chunks']} chunks done in {s['out']};"
              " run again with --resume to finish", file=sys.stderr)
        return 130
    if s["n_failed"]:
        print(f"error: {s['n_failed']} of {s['n_chunks']} chunks failed (listed above; "
              "details in manifest.json); run again with --resume to retry them",
              file=sys.stderr)
        return 1
    return 0


COMMAND = Command("sweep", "run a job file in resumable chunks (local or Dask)", DESCRIPTION,
                  EPILOG, _add_arguments, _run,
                  interrupted="error: interrupted; run again with --resume to finish")
add_parser, build_parser, run, main = COMMAND.functions()

if __name__ == "__main__":
    sys.exit(main())
