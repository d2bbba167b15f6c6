"""``gpusim tune`` job files: the task, its data, the space, the budget, fixed arguments.

Job file (TOML; relative paths are relative to the job file's folder)::

    task = "walkforward"            # or "backtest", "dynopt"
    out = "../results/tune_wf"      # output folder: trials.parquet, summary.json (grid.parquet)
    backend = "auto"                # auto | cpu | gpu
    n_trials = 200
    batch = 32                      # trials per grid call
    objective = "sharpe"            # a metric of the task
    # direction = "maximize"        # default: by the metric (volatility, turnover: minimize)
    seed = 0                        # the sampler's seed
    # sampler = "tpe"               # or "random"
    compare_grid = false            # true: also run the full grid of an enumerable space

    [data]                          # as in sweep jobs: path = "prices.csv" (+ symbols, ann,
    synthetic = { n_assets = 5, n_bars = 756, seed = 0 }   # align, fill, start, end)
    # dynopt: futures = "../shared/data/pysystemtrade" or synthetic_futures = { ... }

    [space]                         # a list: choices; a table: a range
    every = ["W", "M", 21]
    lookback = [63, 126, 252]
    num_tests = { low = 100, high = 10000, log = true }
    fees = { low = 0.0, high = 0.01 }    # { ..., step = 0.001 } makes it enumerable

    [fixed]                         # arguments every call gets
    seed = 0                        # (walk-forward's own candidate seed)
    weight_bounds = [0.0, 0.4]      # walk-forward constraints: weight_bounds, beta, cash

    [grid_values]                   # optional: values of continuous dimensions for the grid
    fees = [0.0, 0.005, 0.01]

A backtest job tunes a user allocation function's parameters with ``alloc = "FILE.py:NAME"``
(relative to the job file's folder) under ``[fixed]``: the function's tuned parameters are
``[space]`` keys, its fixed ones ``[fixed]`` keys, and ``params = ["tau", "k"]`` their row order
(:mod:`gpusim.tune.alloc`; ``examples/tune_alloc.toml``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpusim.errors import GpusimError
from gpusim.validate import listing

__all__ = ["TuneJob", "fixed_args", "load_data", "load_tune_job", "run_tune_job"]

JOB_KEYS = ("task", "name", "out", "backend", "n_trials", "batch", "objective", "direction",
            "seed", "sampler", "compare_grid", "data", "space", "fixed", "grid_values")


@dataclass
class TuneJob:
    """A tuning job (see the module docstring); ``data`` is the ``[data]`` table."""

    task: str
    space: dict
    data: Any = None
    fixed: dict = field(default_factory=dict)
    n_trials: int = 100
    batch: int = 32
    objective: str = "sharpe"
    direction: str | None = None
    seed: int = 0
    sampler: str = "tpe"
    backend: str = "auto"
    out: Path | None = None
    compare_grid: bool = False
    grid_values: dict = field(default_factory=dict)
    name: str = ""
    source: Path | None = None

    @property
    def base_dir(self) -> Path:
        return self.source.parent if self.source is not None else Path.cwd()

    def to_json(self) -> dict:
        """The job as recorded in ``summary.json`` (paths as text)."""
        from gpusim.sweep.job import plain

        return {"task": self.task, "name": self.name, "data": plain(self.data),
                "n_trials": self.n_trials, "batch": self.batch, "objective": self.objective,
                "direction": self.direction, "seed": self.seed, "sampler": self.sampler,
                "backend": self.backend, "compare_grid": self.compare_grid,
                "source": None if self.source is None else str(self.source)}


def load_tune_job(path, *, out=None) -> TuneJob:
    """Read a TOML tuning job; ``out`` overrides its output folder."""
    import tomllib

    path = Path(path)
    try:
        doc = tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise GpusimError(f"job file {str(path)!r} not found") from None
    except OSError as exc:
        raise GpusimError(f"cannot read job file {str(path)!r}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise GpusimError(f"{path.name} is not valid TOML: {exc}") from None
    unknown = sorted(set(doc) - set(JOB_KEYS))
    if unknown:
        raise GpusimError(f"{path.name}: unknown key(s) {listing(unknown)}; a tuning job has "
                          f"{listing(JOB_KEYS)}")
    for key in ("task", "space"):
        if key not in doc:
            raise GpusimError(f"{path.name} has no {key}; see `gpusim tune --help`")
    for key in ("data", "space", "fixed", "grid_values"):
        if key in doc and not isinstance(doc[key], Mapping):
            raise GpusimError(f"{path.name}: [{key}] must be a table")
    base = path.resolve().parent
    o = out if out is not None else doc.get("out")
    if o is not None:
        o = Path(o) if out is not None else (base / str(o)).resolve()
    kw = {k: doc[k] for k in ("n_trials", "batch", "objective", "direction", "seed",
                              "sampler", "backend", "compare_grid") if k in doc}
    if not isinstance(kw.get("compare_grid", False), bool):
        raise GpusimError(f"{path.name}: compare_grid must be true or false")
    from gpusim.sweep.job import job_paths

    fixed = {k: job_paths(v, base, k) for k, v in (doc.get("fixed") or {}).items()}
    if isinstance(fixed.get("alloc"), str):      # a user function's file (backtest)
        from gpusim.strategy.alloc_sweep import job_spec

        fixed["alloc"] = job_spec(fixed["alloc"], base)
    return TuneJob(task=doc["task"], space=dict(doc["space"]), data=doc.get("data"),
                   fixed=fixed, out=o,
                   grid_values=dict(doc.get("grid_values") or {}),
                   name=str(doc.get("name", path.stem)), source=path.resolve(), **kw)


def load_data(job: TuneJob):
    """The data of a job: a Market (backtest, walkforward) or FuturesData (dynopt)."""
    spec = job.data
    if job.task != "dynopt":
        from gpusim.sweep.job import load_market

        return load_market(spec, job.base_dir)
    from gpusim.data.futures import load_futures, synthetic_futures

    spec = dict(spec or {"synthetic_futures": {}})
    bad = sorted(set(spec) - {"futures", "synthetic_futures", "instruments", "start", "end"})
    if bad or ("futures" in spec) == ("synthetic_futures" in spec):
        raise GpusimError("[data] of a dynopt job needs futures = \"DIR\" (pysystemtrade "
                          "data) or synthetic_futures = { n_instruments = 8, n_days = 1260, "
                          "seed = 0 } (optional instruments, start, end)")
    if "futures" in spec:
        d = Path(str(spec["futures"]))
        d = d if d.is_absolute() else job.base_dir / d
        return load_futures(d, spec.get("instruments"), spec.get("start"), spec.get("end"))
    syn = spec["synthetic_futures"]
    try:
        return synthetic_futures(**(syn if isinstance(syn, Mapping) else {}))
    except TypeError as exc:
        raise GpusimError(f"[data] synthetic_futures: {exc}") from None


def fixed_args(task: str, fixed: Mapping[str, Any], base_dir: Path, symbols: list[str]
               ) -> dict:
    """Job-file fixed values as API arguments: walk-forward ``weight_bounds``, ``beta``,
    ``cash`` become ``constraints``; backtest ``weights`` specs (``"equal"``, ``{random = N,
    seed = S}``, a file, vectors) and bands (``threshold = "none"``, a table by symbol,
    ``{file = "bands.csv"}``: :func:`gpusim.schedule.band_arg`) are converted. Relative
    paths are relative to ``base_dir``.
    """
    kw = dict(fixed)
    if task == "walkforward":
        from gpusim.walkforward.task import pop_job_constraints

        cons = list(kw.pop("constraints", []) or []) + pop_job_constraints(kw)
        if cons:
            kw["constraints"] = cons
    elif task == "backtest":
        from gpusim.schedule import band_arg, read_schedule
        from gpusim.sweep.job import job_paths

        kw = {k: job_paths(v, base_dir, k) for k, v in kw.items()}
        for k in ("threshold", "threshold_abs"):
            if k in kw:       # none, a number, a table by symbol or {file = "bands.csv"}
                kw[k] = band_arg(kw[k], f"fixed.{k}")
        w = kw.get("weights")
        if isinstance(w, Mapping) and "random" in w:
            from gpusim.specs import RandomWeights

            kw["weights"] = RandomWeights(int(w["random"]), seed=int(w.get("seed", 0)),
                                          sampler=w.get("sampler", "dirichlet"),
                                          alpha=float(w.get("alpha", 1.0)))
        elif isinstance(w, Mapping) and "schedule" in w:
            kw["weights"] = read_schedule(w["schedule"], "fixed.weights.schedule")
        elif (isinstance(w, Mapping) and "file" in w) or (isinstance(w, str) and w != "equal"):
            from gpusim.parse import parse_weights

            kw["weights"] = parse_weights(str(w["file"]) if isinstance(w, Mapping) else w,
                                          symbols)
    return kw


def run_tune_job(job: TuneJob, *, progress: bool = True):
    """Load the data, tune, and compare with the grid when the job asks (and the run was not
    interrupted); returns the :class:`~gpusim.tune.result.TuneResult`, whose
    ``summary["job"]`` records the job. Saving is the caller's (``res.save(job.out)``).
    """
    from gpusim.tune.api import tune

    data = load_data(job)
    symbols = list(getattr(data, "symbols", []) or [])
    kw = fixed_args(job.task, job.fixed, job.base_dir, symbols)
    res = tune(job.task, data, job.space, n_trials=job.n_trials, batch=job.batch,
               objective=job.objective, direction=job.direction, seed=job.seed,
               sampler=job.sampler, fixed=kw, backend=job.backend, progress=progress)
    res.summary["job"] = job.to_json()
    for k, v in job.fixed.items():     # files as the job names them, not their tables' text
        if isinstance(v, Mapping) and {"file", "schedule"} & set(v):
            res.summary["fixed"][k] = dict(v)
    if job.compare_grid and not res.partial:
        res.compare_grid(job.grid_values or None)
    return res
