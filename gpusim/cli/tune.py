"""``gpusim tune``: tune a task's parameters from a TOML job file (Optuna TPE, one grid call per
batch of trials).

    gpusim tune examples/tune_walkforward.toml
    gpusim tune job.toml --n-trials 60 --batch 16 --compare-grid --out runs/tune --json

Runs on its own as ``python -m gpusim.cli.tune``; wiring and exit codes:
:class:`gpusim.cli.common.Command` (130 after Ctrl-C, with the finished trials printed and
saved).
"""

from __future__ import annotations

import argparse
import sys

from gpusim.cli.common import (
    Command,
    print_json,
    print_table,
    records,
    require,
    table_format,
)

__all__ = ["add_parser", "build_parser", "main", "run"]

DESCRIPTION = (
    "Tune the parameters of a task (walkforward, backtest, dynopt) with Optuna's TPE instead "
    "of a full grid: batches of trials, each batch evaluated as one grid call of the task "
    "(a backtest with alloc = \"FILE.py:NAME\" under [fixed] tunes the function's "
    "parameters). "
    "Prints the best trials; the output folder gets trials.parquet (one row per trial: "
    "parameters, objective, metrics, batch) and summary.json (seed, versions, space, fixed "
    "arguments, best), and grid.parquet with --compare-grid. Needs the tune extra "
    "(pip install \"gpusim[tune]\").")

EPILOG = """job file (TOML; relative paths are relative to the job file):
  task = "walkforward"               # or "backtest", "dynopt"
  out = "runs/tune"                  # output folder
  n_trials = 200
  batch = 32                         # trials per grid call
  objective = "sharpe"               # a metric of the task; direction = "minimize" overrides
  seed = 0                           # the sampler's seed
  compare_grid = false               # true: run the full grid of an enumerable space too
  [data]
  synthetic = { n_assets = 5, n_bars = 756, seed = 0 }   # or path = "prices.csv"
  [space]                            # a list: choices; a table: a range
  every = ["W", "M", 21]
  num_tests = { low = 100, high = 10000, log = true }
  fees = { low = 0.0, high = 0.01 }  # add step = 0.001 to make it enumerable
  [fixed]                            # arguments every call gets
  lookback = 126
a user allocation function's parameters (task = "backtest"):
  [fixed]
  alloc = "strategies.py:band"       # FILE.py:NAME, relative to the job file
  params = ["tau", "k"]              # the params row's order (two or more parameters)
  k = 3                              # a fixed parameter of the function
  seed = 7                           # seed of c.uniform; every trial equals a direct call
  [space]
  tau = { low = 0.005, high = 0.2 }  # tuned parameters of the function
exit codes: 0 done, 2 bad input, 130 interrupted (the finished batches are kept and saved)."""


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("job", metavar="JOB.toml", help="the job file")
    p.add_argument("--out", default=None, metavar="DIR", help="override the job's out folder")
    p.add_argument("--n-trials", type=int, default=None, help="override n_trials")
    p.add_argument("--batch", type=int, default=None, help="override batch")
    p.add_argument("--seed", type=int, default=None, help="override the sampler's seed")
    p.add_argument("--backend", default=None, help="override the backend (auto|cpu|gpu)")
    p.add_argument("--compare-grid", action="store_true",
                   help="also run the full grid (enumerable spaces) and rank the tuned best")
    p.add_argument("--format", default="parquet", choices=("parquet", "csv"),
                   help="table format under the output folder (default parquet)")
    p.add_argument("--top-k", type=int, default=10, help="best distinct trials to print")
    p.add_argument("--json", action="store_true", help="print the JSON summary with the best")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run(args: argparse.Namespace) -> int:
    from gpusim.tune.job import load_tune_job, run_tune_job

    require("optuna", "gpusim tune")      # before the job's data is loaded
    job = load_tune_job(args.job, out=args.out)
    for name in ("n_trials", "batch", "seed", "backend"):
        if getattr(args, name) is not None:
            setattr(job, name, getattr(args, name))
    job.compare_grid = job.compare_grid or args.compare_grid
    res = run_tune_job(job, progress=not args.no_progress)
    out = str(res.save(job.out, fmt=table_format(args.format))) if job.out else None
    s = res.summary
    t = res.trials
    best = t[(t["state"] == "complete") & (t["repeat_of"] < 0)].sort_values(
        "value", ascending=s["direction"] == "minimize", kind="stable").head(args.top_k)
    if args.json:
        print_json(s, out=out, best_trials=records(best.reset_index()))
    else:
        print(f"tune {s['task']}: {s['n_done']} of {s['n_trials']} trials in {s['n_batches']} "
              f"batches ({s['n_calls']} calls, {s['n_evaluated']} points evaluated) on "
              f"{s['backend']} in {s['timings_s']['total']:.3f} s (evaluation "
              f"{s['timings_s']['evaluate']:.3f} s, sampler {s['timings_s']['sampler']:.3f} s)")
        print(f"best {s['objective']} ({s['direction']}): {res.best_value:.6g} at "
              f"{res.best_params} (trial {res.best_trial})")
        cg = s.get("compare_grid")
        if cg:
            print(f"full grid ({cg['n_grid']} points, {cg['grid_s']:.3f} s): best "
                  f"{cg['grid_best_value']:.6g} at {cg['grid_best_params']}; the tuned best "
                  f"ranks {cg['rank']} of {cg['n_grid']} ({cg['n_distinct_tried']} grid "
                  "points tried)")
        print(f"best {len(best)} distinct trials:")
        names = list(s["space"])
        cols = [*names, "value", *[c for c in ("sharpe", "cagr", "max_drawdown",
                                                "turnover") if c in t.columns and
                                   c != s["objective"]], "batch"]
        print_table(best[cols])
        if out:
            print(f"wrote {out}")
    if res.partial:
        print(f"warning: interrupted; {s['n_done']} of {s['n_trials']} trials done (partial "
              "results)", file=sys.stderr)
        return 130
    return 0


COMMAND = Command("tune", "tune a task's parameters (Optuna TPE, a grid call per batch)",
                  DESCRIPTION, EPILOG, _add_arguments, _run)
add_parser, build_parser, run, main = COMMAND.functions()

if __name__ == "__main__":
    sys.exit(main())
