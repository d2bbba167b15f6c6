"""Writing results: flat tables (Parquet or CSV), JSON summaries, versions, atomic folders.

Every command writes its outputs through :func:`atomic_dir`: files go to a temporary folder
beside the destination and are moved in only when all of them were written, so a failure
never leaves half-written results.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from gpusim.errors import GpusimError

TABLE_FORMATS = (None, "parquet", "csv")  # None: Parquet, falling back to CSV


def versions() -> dict:
    """Versions of gpusim, Python and the main dependencies loaded (for summaries)."""
    import numba

    from gpusim import __version__

    v = {"gpusim": __version__, "python": platform.python_version(), "numpy": np.__version__,
         "pandas": pd.__version__, "numba": numba.__version__,
         "platform": platform.platform(), "cpu_count": os.cpu_count()}
    for mod in ("cvxpy", "cupy"):
        m = sys.modules.get(mod)
        if m is not None:
            v[mod] = getattr(m, "__version__", "?")
    return v


def jsonable(v):
    """A JSON-ready scalar: NumPy scalars unwrapped, NaN as null, anything else as text."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v if isinstance(v, (int, float, str, bool, type(None))) else str(v)


def flat_table(df: pd.DataFrame) -> pd.DataFrame:
    """Flat table (index levels as columns); mixed-type object columns become strings."""
    t = df.reset_index()
    for c in t.columns[: df.index.nlevels]:
        if t[c].dtype == object and len({type(x) for x in t[c] if x is not None}) > 1:
            t[c] = t[c].map(lambda x: None if x is None else str(x))
    return t


def write_table(df: pd.DataFrame, stem: Path, fmt: str | None = None) -> str:
    """Write ``stem.parquet`` (or ``stem.csv``: when asked, or when Parquet fails with
    ``fmt=None``); returns the format written."""
    t = flat_table(df)
    try:
        if fmt == "csv":
            raise ImportError
        t.to_parquet(stem.with_suffix(".parquet"), index=False)
        return "parquet"
    except Exception:  # pyarrow missing or a column it cannot store
        if fmt == "parquet":
            raise
        stem.with_suffix(".parquet").unlink(missing_ok=True)
        t.to_csv(stem.with_suffix(".csv"), index=False)
        return "csv"


@contextmanager
def atomic_dir(out_dir, stale=()):
    """Yield a temporary folder; on success move its files into ``out_dir``.

    A new (or empty) ``out_dir`` is the temporary folder renamed; an existing one gets the new
    files one by one (``os.replace``), and the names in ``stale`` that were not written this
    time are removed (e.g. the other format of a table). On failure nothing is moved.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise GpusimError(f"out_dir={str(out)!r} is a file; give a folder path")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()  # not mkdtemp: the folder renamed into place keeps the umask's mode
    try:
        yield tmp
        written = {f.name for f in tmp.iterdir()}
        if out.exists() and any(out.iterdir()):
            for f in sorted(tmp.iterdir()):
                os.replace(f, out / f.name)
            for name in stale:
                if name not in written:
                    (out / name).unlink(missing_ok=True)
        else:
            if out.exists():
                out.rmdir()
            os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_metrics(out_dir, metrics: pd.DataFrame, best: pd.DataFrame, summary: dict, *,
                 sort_by: str, best_k: int, fmt: str | None = None, extra=None) -> Path:
    """Write a grid result: ``metrics.parquet`` (or ``.csv``), ``best.csv``, ``summary.json``
    and any ``extra`` ``{file name: writer(path)}``, atomically into ``out_dir``."""
    if fmt not in TABLE_FORMATS:
        raise GpusimError(f"fmt={fmt!r} is unknown; use 'parquet' or 'csv'")
    with atomic_dir(out_dir, stale=("metrics.csv", "metrics.parquet")) as tmp:
        fmt = write_table(metrics, tmp / "metrics", fmt)
        flat_table(best).to_csv(tmp / "best.csv", index=False)
        for name, write in (extra or {}).items():
            write(tmp / name)
        s = {**summary, "metrics_file": f"metrics.{fmt}",
             "best": {"sort_by": sort_by, "k": int(best_k)}}
        (tmp / "summary.json").write_text(json.dumps(s, indent=2, default=jsonable))
    return Path(out_dir)
