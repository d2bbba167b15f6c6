"""Text values of the command line and of sweep job files, parsed into API arguments.

Shared by :mod:`gpusim.cli` (option values such as ``--fees 0,0.001`` or ``--weights
random:100:7``) and the sweep tasks (job-file values such as ``weights = "w.csv"`` or
``beta = "spy.csv:SPY<=0.1"``), so that the library never imports the CLI. Every parser raises
:class:`gpusim.errors.GpusimError` with a one-line message that names the option.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gpusim.errors import GpusimError

__all__ = [
    "as_axis",
    "job_weights",
    "parse_beta",
    "parse_lookbacks",
    "parse_params",
    "parse_rebalance",
    "parse_values",
    "parse_weights",
]


def _num(tok: str, opt: str) -> float:
    try:
        v = float(tok)
    except ValueError:
        raise GpusimError(f"{opt}: {tok!r} is not a number") from None
    if not math.isfinite(v):
        raise GpusimError(f"{opt}: {tok!r} is not a finite number")
    return v


def parse_values(spec: str, opt: str, allow_none: bool = False) -> list[float | None]:
    """Numbers from a value list.

    Parameters
    ----------
    spec : ``"0.005"`` -> [0.005]; ``"0,0.001"`` -> [0.0, 0.001]; ``"0.01:0.15:0.01"`` -> the
        inclusive range (rounded to 12 decimals so labels are clean).
    opt : the option named in error messages (e.g. ``"--fees"``).
    allow_none : ``"none"`` / ``"off"`` in a comma list give None.

    Returns
    -------
    list of float (or None)
    """
    spec = str(spec).strip()
    if not spec:
        raise GpusimError(f"{opt}: empty value; give a number, a comma list or start:stop:step")
    if ":" in spec:
        parts = spec.split(":")
        if len(parts) != 3:
            raise GpusimError(f"{opt}: {spec!r} is not start:stop:step (e.g. 0.01:0.15:0.01)")
        start, stop, step = (_num(x, opt) for x in parts)
        if step <= 0 or stop < start:
            raise GpusimError(f"{opt}: {spec!r} needs step > 0 and stop >= start")
        n = math.floor((stop - start) / step + 1e-9) + 1
        if n > 10_000_000:
            raise GpusimError(f"{opt}: {spec!r} gives {n} values; use a coarser step")
        return [round(start + i * step, 12) for i in range(n)]
    out = []
    for tok in spec.split(","):
        tok = tok.strip()
        if allow_none and tok.lower() in ("none", "off"):
            out.append(None)
        else:
            out.append(_num(tok, opt))
    return out


def parse_params(items, opt: str = "--param") -> dict:
    """The ``params`` dict of a user function from ``NAME=VALUES`` texts, in their order.

    Parameters
    ----------
    items : texts such as ``"tau=0.01,0.02,0.05"``, ``"k=3"`` or ``"tau=0.01:0.1:0.01"``
        (values as :func:`parse_values`: one value is fixed, several are a sweep axis).
    opt : the option named in error messages.

    Returns
    -------
    dict ``{name: float or Param}`` (a :class:`gpusim.grid.Param` named ``name`` for several
    values).
    """
    out: dict = {}
    for item in items or ():
        name, sep, values = str(item).partition("=")
        name = name.strip()
        if not sep or not name:
            raise GpusimError(f"{opt} {item!r} is not NAME=VALUES (e.g. {opt} tau=0.01,0.02 "
                              f"or {opt} tau=0.01:0.1:0.01)")
        if not name.isidentifier():
            raise GpusimError(f"{opt} {item!r}: {name!r} is not a parameter name (use letters, "
                              "digits, _)")
        if name in out:
            raise GpusimError(f"{opt} {name} is given twice; give each parameter once (a "
                              f"comma list sweeps it: {opt} {name}=0.01,0.02)")
        out[name] = as_axis(parse_values(values, f"{opt} {name}"), name)
    return out


def parse_rebalance(spec: str, opt: str = "--rebalance") -> list[str | int]:
    """Rebalance rules from a comma list: ``"never,M,21"`` -> ["never", "M", 21] (the rules
    themselves are checked by the API that uses them); ``opt`` is the option named in errors.
    """
    out = []
    for tok in str(spec).split(","):
        tok = tok.strip()
        if not tok:
            raise GpusimError(f"{opt}: empty rule in {spec!r}; use never, D, W, M, Q, Y or k")
        out.append(int(tok) if tok.lstrip("-").isdigit() else tok)
    return out


def parse_lookbacks(spec: str) -> list[float | None]:
    """Lookback windows from a comma list: numbers (returns per window), ranges
    ``start:stop:step``, or ``none`` / ``all`` (None: every past return), e.g.
    ``"none,63,252"`` -> [None, 63.0, 252.0], ``"21:63:21,none"`` -> [21.0, 42.0, 63.0, None].
    """
    out: list[float | None] = []
    for t in (t.strip() for t in str(spec).split(",")):
        if t.lower() in ("none", "all"):
            out.append(None)
        else:                  # a range gives all of its values (it used to give its first)
            out.extend(parse_values(t, "--lookback"))
    return out


def parse_weights(spec: str, symbols: list[str]) -> Any:
    """A ``weights=`` argument of :func:`gpusim.backtest` from text.

    Parameters
    ----------
    spec : ``equal`` | ``random:N[:seed]`` | the path of a CSV/Parquet file, one column per
        symbol and one row per weight vector (an optional first column of labels).
    symbols : the market's symbols (tell a label column from a weight column).

    Returns
    -------
    ``"equal"``, a :class:`gpusim.grid.RandomWeights`, or a DataFrame (vectors x symbols).
    """
    import pandas as pd

    from gpusim.specs import RandomWeights

    spec = str(spec).strip()
    if spec.lower() == "equal":
        return "equal"
    if spec.lower().startswith("random:"):
        parts = spec.split(":")[1:]
        if not 1 <= len(parts) <= 2 or not all(p.strip().isdigit() for p in parts):
            raise GpusimError(f"--weights: {spec!r} is not random:N[:seed] with integers "
                              "(e.g. random:100000:7)")
        return RandomWeights(int(parts[0]), seed=int(parts[1]) if len(parts) == 2 else 0)
    path = Path(spec)
    if not path.is_file():
        raise GpusimError(f"--weights: {spec!r} is not a file; use equal, random:N[:seed] or a "
                          "CSV/Parquet file of weights (one column per symbol)")
    try:
        df = (pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq")
              else pd.read_csv(path))
    except Exception as exc:
        raise GpusimError(f"--weights: cannot read {spec!r}: {exc}".splitlines()[0]) from None
    if len(df.columns) and str(df.columns[0]) not in symbols:
        df = df.set_index(df.columns[0])
    df.columns = [str(c) for c in df.columns]
    if len(df) == 0:
        raise GpusimError(f"--weights: {spec!r} has no rows; give one weight vector per row")
    return df


def job_weights(v, symbols: list[str]):
    """A backtest ``weights=`` value from a job-file value: ``{schedule = FILE}``, ``{random =
    N, seed = S, ...}``, ``{file = FILE}`` or a file name (constant portfolios), a list of
    vectors, or the value as it is.
    """
    import numpy as np
    import pandas as pd

    from gpusim.schedule import Portfolios, read_schedule
    from gpusim.specs import RandomWeights

    if isinstance(v, Mapping) and "schedule" in v:
        extra = sorted(set(v) - {"schedule"})
        if extra:
            raise GpusimError(f"weights: unknown key(s) {extra} next to schedule; give "
                              "{schedule = FILE}")
        return read_schedule(str(v["schedule"]), "weights.schedule")
    if isinstance(v, Mapping) and "random" in v:
        extra = sorted(set(v) - {"random", "seed", "sampler", "alpha"})
        if extra:
            raise GpusimError(f"weights: unknown key(s) {extra} in a random spec; use random "
                              "(count), seed, sampler, alpha")
        n = v["random"]
        if isinstance(n, float) and n == int(n):
            n = int(n)
        return RandomWeights(n, seed=v.get("seed", 0), sampler=v.get("sampler", "dirichlet"),
                             alpha=float(v.get("alpha", 1.0)))
    if isinstance(v, Mapping) and "file" in v:
        v = str(v["file"])
    if isinstance(v, str):
        w = parse_weights(v, symbols)
        return Portfolios(w) if isinstance(w, pd.DataFrame) else w
    if isinstance(v, list) and v and all(isinstance(r, list) for r in v):
        return np.asarray(v, dtype=float)
    return v


def as_axis(values: list, name: str) -> Any:
    """The one value of ``values``, or a :class:`gpusim.grid.Param` sweep axis ``name``."""
    from gpusim.grid import Param

    return values[0] if len(values) == 1 else Param(values, name=name)


def parse_beta(spec: str) -> Any:
    """A :class:`gpusim.walkforward.constraints.Beta` bound from ``FILE[:COLUMN]OP VALUE``
    (e.g. ``spy.csv:SPY<=0.1``: the portfolio's beta to that price series).
    """
    from gpusim.walkforward.constraints import Beta

    m = re.fullmatch(r"\s*(.+?)\s*(<=|>=|==|=)\s*([-+0-9.eE]+)\s*", str(spec))
    if not m:
        raise GpusimError(f"--beta {spec!r} is not FILE[:COLUMN]OPVALUE (e.g. spy.csv:SPY<=0.1)")
    src, op, val = m.groups()
    return Beta(_series(src, "--beta"), op, float(val))


def parse_te(spec: str) -> Any:
    """A :class:`gpusim.walkforward.constraints.TrackingError` cap from ``FILE[:COLUMN]<=VALUE``
    (e.g. ``spy.csv:SPY<=0.05``: at most 5% annualised tracking error to that price series).
    """
    from gpusim.walkforward.constraints import TrackingError

    m = re.fullmatch(r"\s*(.+?)\s*(<=|=)\s*([-+0-9.eE]+)\s*", str(spec))
    if not m:
        raise GpusimError(f"--max-te {spec!r} is not FILE[:COLUMN]<=VALUE (e.g. "
                          "spy.csv:SPY<=0.05)")
    src, _, val = m.groups()
    return TrackingError(_series(src, "--max-te"), max=float(val))


def _series(src: str, flag: str):
    """The price series ``FILE[:COLUMN]`` (a one-column file needs no column)."""
    import pandas as pd

    path, _, col = src.partition(":") if not Path(src).is_file() else (src, "", "")
    if not Path(path).is_file():
        raise GpusimError(f"{flag}: file {path!r} not found")
    try:
        df = pd.read_csv(path, index_col=0, parse_dates=[0])
    except Exception as exc:
        raise GpusimError(f"{flag}: cannot read {path!r}: {exc}".splitlines()[0]) from None
    if col and col not in df.columns:
        raise GpusimError(f"{flag}: column {col!r} not in {path!r} (columns: "
                          f"{', '.join(map(str, df.columns[:8]))})")
    if not col and df.shape[1] != 1:
        raise GpusimError(f"{flag}: {path!r} has {df.shape[1]} columns; name one with "
                          "FILE:COLUMN")
    s = df[col] if col else df.iloc[:, 0]
    return s.rename(col or s.name)
