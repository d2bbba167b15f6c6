"""Sweep jobs: the TOML job file, grids of parameters, the data spec, and their fingerprints.

A job names the data, the task, its fixed arguments, the grid of parameters it sweeps, the
backend and the output folder. :func:`load_job` reads one from TOML; :func:`make_job` builds one
from Python values. :func:`fingerprint` reduces a job and its loaded data to the JSON-ready
normalised form and the two hashes (job, data) recorded in a sweep's manifest, so that a resume
can refuse to mix results of different jobs.

Job file (relative paths are relative to the job file's folder)::

    task = "backtest"              # or "search" (more tasks register with gpusim.sweep.tasks)
    out = "runs/fees-x-bands"      # output folder
    backend = "cpu"                # auto | cpu | gpu
    chunk_size = 20000             # optional: combinations (backtest) / candidates (search)

    [data]                         # path = "prices.csv" (+ symbols, ann, align, fill, start,
    synthetic = { n_assets = 5, n_bars = 756, seed = 0 }   # end) or a synthetic spec

    [fixed]                        # arguments that do not vary
    weights = { random = 2000, seed = 7 }
    rebalance = "M"

    [grid]                         # one level per key: a list, or an inclusive range table
    fees = [0.0, 0.0005, 0.001]
    threshold = { start = 0.02, stop = 0.10, step = 0.02 }

    [[grid.zip]]                   # levels that vary together (same length), not crossed
    init_cash = [1.0, 100.0]
    rf = [0.0, 0.02]
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpusim.errors import GpusimError
from gpusim.strategy.alloc_sweep import fingerprint as alloc_fingerprint
from gpusim.strategy.alloc_sweep import job_spec
from gpusim.sweep.values import (  # Axis, job_paths, parse_grid, plain: also from here
    Axis,
    _check_name,
    job_paths,
    parse_grid,
    plain,
)

__all__ = [
    "Axis",
    "Job",
    "data_hash",
    "describe_changes",
    "fingerprint",
    "job_paths",
    "load_job",
    "load_market",
    "make_job",
    "parse_grid",
]

JOB_KEYS = ("task", "out", "backend", "chunk_size", "name", "data", "fixed", "grid")
DATA_KEYS = ("path", "synthetic", "ann", "symbols", "align", "fill", "date_col", "start", "end",
             "name", "column", "symbol_from", "sort", "dedupe", "date_format", "dayfirst")


@dataclass
class Job:
    """A sweep: task, data, fixed arguments, grid, backend, output folder.

    ``data`` is a spec dict (as in the job file's ``[data]``), a spec string (a price file or
    ``synthetic[:ASSETS[:BARS[:SEED]]]``), a :class:`gpusim.Market`, a price DataFrame or None
    (the built-in synthetic market).
    """

    task: str
    data: Any = None
    fixed: dict = field(default_factory=dict)
    grid: list[Axis] = field(default_factory=list)
    backend: str = "auto"
    out: Path | None = None
    chunk_size: int | None = None
    name: str = ""
    source: Path | None = None

    @property
    def base_dir(self) -> Path:
        return self.source.parent if self.source is not None else Path.cwd()

    @property
    def level_names(self) -> list[str]:
        return [n for a in self.grid for n in a.names]


# ----------------------------------------------------------------------------- jobs
def _check_job(job: Job) -> Job:
    if not isinstance(job.task, str) or not job.task:
        raise GpusimError("the job needs a task, e.g. task = \"backtest\"")
    if not isinstance(job.fixed, Mapping):
        raise GpusimError("fixed must be a table/dict of parameter -> value")
    for k in job.fixed:
        _check_name(k, "fixed")
    both = sorted(set(job.fixed) & set(job.level_names))
    if both:
        raise GpusimError(f"{', '.join(both)} is both fixed and in the grid; keep it in one "
                          "place")
    if job.chunk_size is not None and (isinstance(job.chunk_size, bool) or not isinstance(
            job.chunk_size, (int, np.integer)) or job.chunk_size < 1):
        raise GpusimError(f"chunk_size={job.chunk_size!r} must be an int >= 1")
    if not isinstance(job.backend, str):
        raise GpusimError(f"backend={job.backend!r} must be auto, cpu or gpu")
    return job


def make_job(task: str, grid=None, *, market=None, fixed: Mapping | None = None,
             backend: str = "auto", out=None, chunk_size=None, name: str = "") -> Job:
    """A :class:`Job` from Python values (see :func:`gpusim.sweep.api.sweep`)."""
    return _check_job(Job(task=task, data=market, fixed=dict(fixed or {}),
                          grid=parse_grid(grid), backend=backend or "auto",
                          out=None if out is None else Path(out), chunk_size=chunk_size,
                          name=name))


def load_job(path, *, out=None) -> Job:
    """Read a TOML job file (see the module docstring); ``out`` overrides its output folder."""
    import tomllib

    path = Path(path)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise GpusimError(f"job file {str(path)!r} not found") from None
    except OSError as exc:
        raise GpusimError(f"cannot read job file {str(path)!r}: {exc.strerror}") from None
    try:
        doc = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise GpusimError(f"{path.name} is not valid TOML: {exc}") from None
    unknown = sorted(set(doc) - set(JOB_KEYS))
    if unknown:
        raise GpusimError(f"{path.name}: unknown key(s) {', '.join(unknown)}; a job has "
                          f"{', '.join(JOB_KEYS)}")
    if "task" not in doc:
        raise GpusimError(f"{path.name} names no task; add e.g. task = \"backtest\"")
    base = path.resolve().parent
    data = doc.get("data")
    if data is not None and not isinstance(data, Mapping):
        raise GpusimError(f"{path.name}: [data] must be a table (path = ... or synthetic = ...)")
    if data is not None and "path" in data:
        data = {**data, "path": str(base / str(data["path"]))}
    fixed = {k: job_paths(v, base, k) for k, v in (doc.get("fixed") or {}).items()}
    w = fixed.get("weights")
    if isinstance(w, str) and w.strip().lower() != "equal" and not w.lower().startswith(
            "random:"):
        fixed["weights"] = {"file": w}    # a table of portfolios: fingerprinted by content
    grid = [Axis(a.names, [tuple(job_paths(x, base, n) for n, x in zip(a.names, v))
                           for v in a.values]) for a in parse_grid(doc.get("grid"))]
    if isinstance(fixed.get("alloc"), str):      # a user function's file (backtest)
        fixed["alloc"] = job_spec(fixed["alloc"], base)
    args = fixed.get("args")                     # a tune sweep's function (gpusim.tune.alloc)
    if isinstance(args, Mapping) and isinstance(args.get("alloc"), str):
        fixed["args"] = {**args, "alloc": job_spec(args["alloc"], base)}
    o = out if out is not None else doc.get("out")
    if o is not None:
        o = Path(o) if out is not None else (base / str(o)).resolve()
    job = Job(task=doc["task"], data=data, fixed=fixed, grid=grid,
              backend=doc.get("backend", "auto"), out=o, chunk_size=doc.get("chunk_size"),
              name=str(doc.get("name", path.stem)), source=path.resolve())
    return _check_job(job)


# ----------------------------------------------------------------------------- data
def load_market(spec, base_dir: Path | None = None):
    """A :class:`gpusim.Market` from a job's data spec (dict, string, Market, DataFrame, None)."""
    from gpusim.data.load import load_prices, market_from_spec
    from gpusim.data.market import Market, synthetic_market

    if isinstance(spec, Market):
        return spec
    if isinstance(spec, pd.DataFrame):
        return load_prices(spec)
    if spec is None or isinstance(spec, (str, Path)):
        if spec is not None and not str(spec).lower().startswith("synthetic"):
            spec = str(Path(base_dir or ".") / str(spec))   # an absolute path stays as it is
        return market_from_spec(None if spec is None else str(spec))
    if not isinstance(spec, Mapping):
        raise GpusimError(f"data must be a table with path = ... or synthetic = ..., got "
                          f"{type(spec).__name__}")
    unknown = sorted(set(spec) - set(DATA_KEYS))
    if unknown:
        raise GpusimError(f"[data]: unknown key(s) {', '.join(unknown)}; use "
                          f"{', '.join(DATA_KEYS)}")
    if ("path" in spec) == ("synthetic" in spec):
        raise GpusimError("[data] needs exactly one of path = \"prices.csv\" or synthetic = "
                          "{ n_assets = 5, n_bars = 756, seed = 0 }")
    ann = spec.get("ann")
    if "path" in spec:
        p = Path(str(spec["path"]))
        if base_dir is not None and not p.is_absolute():
            p = base_dir / p
        if not p.is_file():
            raise GpusimError(f"[data] path {str(p)!r} not found; give a CSV/Parquet file of "
                              "close prices")
        m = load_prices(p, align=spec.get("align", "common"), fill=spec.get("fill"), ann=ann,
                        date_col=spec.get("date_col"), symbols=spec.get("symbols"),
                        name=spec.get("name"), **{k: spec[k] for k in DATA_KEYS[10:] if k in spec})
    else:
        syn = spec["synthetic"]
        if syn is True:
            syn = {}
        if not isinstance(syn, Mapping):
            raise GpusimError("[data] synthetic must be true or a table of synthetic_market "
                              "arguments (n_assets, n_bars, freq, seed, start, mu, vol)")
        try:
            m = synthetic_market(**syn, ann=ann, name=spec.get("name"))
        except TypeError as exc:
            raise GpusimError(f"[data] synthetic: {exc}") from None
        if spec.get("symbols") is not None:
            m = m.subset(list(spec["symbols"]))
    if spec.get("start") is not None or spec.get("end") is not None:
        m = m.window(spec.get("start"), spec.get("end"))
    return m


def data_hash(market) -> str:
    """sha256 of the prices (values, dates, symbols) and ``ann`` of a Market."""
    p = market.prices
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(p.to_numpy(dtype=np.float64)).tobytes())
    h.update(np.asarray(p.index.asi8, dtype=np.int64).tobytes())
    h.update(json.dumps([str(c) for c in p.columns] + [str(p.index.dtype),
                                                        repr(float(market.ann))]).encode())
    return h.hexdigest()


def _file_sha(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _folder_sha(path: str) -> str | None:
    """sha256 over the names and contents of every file below ``path`` (sorted), or None."""
    root = Path(path)
    if not root.is_dir():
        return _file_sha(path)
    h = hashlib.sha256()
    for f in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def norm_value(v: Any) -> Any:
    """JSON-ready, hashable description of a fixed argument value."""
    from gpusim.specs import RandomWeights

    if isinstance(v, RandomWeights):
        return {"random": int(v.n), "seed": int(v.seed), "sampler": v.sampler,
                "alpha": float(v.alpha)}
    if isinstance(v, (pd.DataFrame, pd.Series)):
        h = hashlib.sha256(pd.util.hash_pandas_object(v, index=True).to_numpy().tobytes())
        cols = [str(c) for c in v.columns] if isinstance(v, pd.DataFrame) else [str(v.name)]
        return {"frame": list(v.shape), "columns": cols, "sha256": h.hexdigest()}
    if isinstance(v, np.ndarray) and v.size > 64:
        return {"array": list(v.shape), "sha256": hashlib.sha256(
            np.ascontiguousarray(v).tobytes()).hexdigest()}
    if isinstance(v, Mapping) and ("file" in v or "schedule" in v):
        return {**plain(v), "sha256": _file_sha(str(v.get("file", v.get("schedule"))))}
    p = plain(v)
    try:
        json.dumps(p)
    except TypeError:
        return {"repr": repr(v)}
    return p


def _norm_fixed(key: str, v: Any) -> Any:
    """:func:`norm_value`, and for a ``futures`` folder (the dynopt task's data, not ``[data]``)
    the hash of its files, for a user function (``alloc``) the hash of its source, so that a
    resume notices changed files under the same path.
    """
    if key == "futures" and isinstance(v, (str, Path)) and not str(v).lower().startswith(
            "synthetic"):
        return {"folder": str(v), "sha256": _folder_sha(str(v))}
    if key == "alloc":          # a user function: its spec and the sha256 of its source
        return alloc_fingerprint(v)
    if key == "args" and isinstance(v, Mapping) and v.get("alloc") is not None:   # tune sweeps
        return {**norm_value({k: x for k, x in v.items() if k != "alloc"}),
                "alloc": alloc_fingerprint(v["alloc"])}
    return norm_value(v)


def _norm_axis(a: Axis) -> dict:
    """:meth:`Axis.to_json` with the content hash of every file a value names (a band or
    weights file, a schedule), so that a resume notices a file changed under the same path.
    """
    def norm(name, x):
        if name == "weights" and isinstance(x, str) and Path(x).is_file():
            return {"file": x, "sha256": _file_sha(x)}
        return norm_value(x) if isinstance(x, (Mapping, pd.Series, pd.DataFrame)) else x

    return {"names": list(a.names),
            "values": [[norm(n, x) for n, x in zip(a.names, v)] for v in a.values]}


def _norm_data(spec) -> Any:
    from gpusim.data.market import Market

    if spec is None:
        return {"kind": "synthetic", "spec": "default"}
    if isinstance(spec, (Market, pd.DataFrame)):
        return {"kind": "frame"}
    if isinstance(spec, (str, Path)):
        s = str(spec)
        return {"kind": "synthetic", "spec": s} if s.lower().startswith("synthetic") else {
            "kind": "file"}
    d = {k: plain(v) for k, v in spec.items() if k not in ("path", "name")}
    d["kind"] = "file" if "path" in spec else "synthetic"
    return d


def fingerprint(job: Job, market, backend_name: str) -> dict:
    """The normalised job and its hashes: ``{"job": ..., "job_hash": ..., "data_hash": ...}``.

    The normalised job holds what decides the results: task, data options (not the file's
    path: its content is in ``data_hash``), fixed arguments, grid, resolved backend and the
    chunk size. The engine, the output folder and the progress bar are not part of it.
    """
    norm = {"task": job.task, "data": _norm_data(job.data),
            "fixed": {k: _norm_fixed(k, v) for k, v in sorted(job.fixed.items())},
            "grid": [_norm_axis(a) for a in job.grid], "backend": backend_name,
            "chunk_size": None if job.chunk_size is None else int(job.chunk_size)}
    dh = data_hash(market)
    blob = json.dumps(norm, sort_keys=True, default=str) + dh
    return {"job": norm, "data_hash": dh,
            "job_hash": hashlib.sha256(blob.encode()).hexdigest()}


def _short(v: Any, n: int = 60) -> str:
    s = json.dumps(v, sort_keys=True, default=str)
    return s if len(s) <= n else s[: n - 3] + "..."


def describe_changes(old: dict, new: dict) -> list[str]:
    """Human-readable differences between two normalised jobs (``fingerprint()["job"]``)."""
    out = []
    for key in ("task", "backend", "chunk_size"):
        if old.get(key) != new.get(key):
            out.append(f"{key}: {_short(old.get(key))} -> {_short(new.get(key))}")
    for sec in ("data", "fixed"):
        a, b = old.get(sec) or {}, new.get(sec) or {}
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                out.append(f"{sec}.{k}: {_short(a.get(k, '(unset)'))} -> "
                           f"{_short(b.get(k, '(unset)'))}")
    ga = {"/".join(x["names"]): x["values"] for x in old.get("grid") or []}
    gb = {"/".join(x["names"]): x["values"] for x in new.get("grid") or []}
    for k in list(dict.fromkeys([*ga, *gb])):
        if ga.get(k) != gb.get(k):
            out.append(f"grid.{k}: {_short(ga.get(k, '(unset)'))} -> "
                       f"{_short(gb.get(k, '(unset)'))}")
    if not out and list(ga) != list(gb):
        out.append(f"grid order: {list(ga)} -> {list(gb)}")
    return out
