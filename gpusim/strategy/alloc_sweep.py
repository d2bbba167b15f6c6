"""The ``alloc`` path of the ``backtest`` sweep task: a user allocation function over a grid.

A backtest job with ``alloc`` under ``[fixed]`` runs :func:`gpusim.backtest` with that function
(:func:`gpusim.strategy.api.backtest_alloc`) instead of the built-in rules::

    task = "backtest"
    [fixed]
    alloc = "strategies.py:band"   # relative to the job file's folder, or "package.module:name"
    params = ["tau", "k"]          # the order of the function's params row (needed for 2 or more)
    k = 3
    seed = 7
    share_draws = ["tau"]          # optional: every tau sees the same random draws
    [grid]
    tau = [0.01, 0.02, 0.05]
    fees = [0.0, 0.001]

The function's parameters are the job's other keys: with ``params = [...]`` exactly those, else
the one key that is not an argument of the alloc path. They, ``weights``, ``rebalance`` and
``fees`` are swept inside each call (the kernel's grid, in that order, as in
``gpusim.backtest(alloc=fn, params={...})``); ``init_cash``, ``rf`` and ``seed`` are call-level
(one point each). ``threshold``, ``threshold_abs``, ``band`` and ``relative`` do not apply.

Chunks are ranges of the flat combinations of that grid, computed from one context built for
the whole grid, so every combination gets the random stream it gets in one direct call: the
rows equal ``gpusim.backtest(alloc=...)`` on the same grid bit for bit. The context ships to
Dask workers without the compiled function; the function is loaded again from its spec there
(and in every process that resumes a sweep).
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpusim.errors import GpusimError
from gpusim.validate import listing, py_scalar

__all__ = ["AllocCtx", "alloc_names", "check_alloc_names", "prepare_alloc"]

NATIVE = ("weights", "rebalance", "fees")
CALL = ("init_cash", "rf", "seed")
KEYS = ("alloc", "params", "share_draws")
NOT_WITH_ALLOC = ("threshold", "threshold_abs", "band", "relative")


def alloc_names(fixed: Mapping[str, Any], level_names: list[str]) -> list[str]:
    """The function's parameter names, in the order of its params row (checked)."""
    order = fixed.get("params")
    others = [n for n in [*fixed, *level_names]
              if n not in (*NATIVE, *CALL, *KEYS, *NOT_WITH_ALLOC)]
    if order is None:
        if len(others) > 1:
            raise GpusimError(f"alloc: {listing(others)} are parameters of the function; give "
                              f"their order in its params row under [fixed], e.g. params = "
                              f"[{', '.join(repr(n) for n in others)}]".replace("'", '"'))
        return others
    if not isinstance(order, list) or not all(isinstance(n, str) for n in order):
        raise GpusimError(f"params={order!r} must be a list of the function's parameter names, "
                          "e.g. params = [\"tau\", \"k\"]")
    bad = [n for n in order if n in (*NATIVE, *CALL, *KEYS, *NOT_WITH_ALLOC)
           or not n.isidentifier()]
    if bad or len(set(order)) != len(order):
        raise GpusimError(f"params={order!r}: names must be distinct and not "
                          f"{listing([*NATIVE, *CALL, *KEYS])}")
    unknown = [n for n in others if n not in order]
    if unknown:
        raise GpusimError(f"{listing(unknown)} is not an argument of a backtest with alloc nor "
                          f"a name of params = {order}; use {listing([*NATIVE, *CALL])}, "
                          "share_draws, or add it to params")
    missing = [n for n in order if n not in others]
    if missing:
        raise GpusimError(f"params names {listing(missing)} but the job gives no value for it; "
                          "give it under [fixed] or [grid]")
    return list(order)


def check_alloc_names(fixed: Mapping[str, Any], level_names: list[str]) -> None:
    """The job-level checks of a backtest job with ``alloc`` (one line each)."""
    from gpusim.strategy.api import not_with_alloc

    given = [n for n in NOT_WITH_ALLOC if n in fixed or n in level_names]
    if given:
        raise not_with_alloc(given[0], NOT_WITH_ALLOC)
    swept = [n for n in KEYS if n in level_names]
    if swept:
        raise GpusimError(f"grid: {swept[0]} cannot be swept; give one under [fixed] (one sweep "
                          "per function)")
    alloc_names(fixed, level_names)


def _fn_spec(v):
    """The job's ``alloc``: a spec (text) or a function (Python sweeps); a function loaded from
    a file by :func:`~gpusim.strategy.loader.load_function` becomes that file's spec again (its
    module cannot be imported by name on a Dask worker).
    """
    from gpusim.strategy.loader import MODULE_PREFIX

    if isinstance(v, str):
        return v
    if callable(v):
        fn = getattr(v, "py_func", v)
        mod = sys.modules.get(getattr(fn, "__module__", None) or "")
        if mod is not None and mod.__name__.startswith(MODULE_PREFIX) and getattr(
                mod, "__file__", None) and getattr(mod, fn.__name__, None) is fn:
            return f"{mod.__file__}:{fn.__name__}"
        return v
    raise GpusimError(f"alloc={v!r} must be \"FILE.py:NAME\" or \"package.module:NAME\"")


def _function(spec):
    """The function of a spec (loaded from its file or module) or the function itself."""
    from gpusim.strategy.loader import load_function

    return load_function(spec) if isinstance(spec, str) else spec


def _load(spec):
    from gpusim.strategy.compile import prepare

    return prepare(_function(spec))


@dataclass
class AllocCtx:
    """The sweep context of the alloc path (picklable: the compiled function is dropped and
    loaded again from :attr:`spec` on first use).
    """

    spec: Any                      # the function's spec, or the function itself
    base: Any                      # gpusim.strategy.api._Context of the whole native grid
    backend: str                   # the resolved backend's name ("cpu" or "gpu")
    levels: list[str]
    kinds: dict[str, str]
    default_chunk: int
    symbols: list[str]

    def __getstate__(self):
        d = dict(self.__dict__)
        d["base"] = dataclasses.replace(self.base, alloc=None)
        return d

    def context(self, point: Mapping[str, Any]):
        """The grid context with a point's call-level values (init_cash, rf, seed)."""
        from gpusim.strategy.api import check_seed
        from gpusim.validate import cash_and_rate

        if self.base.alloc is None:
            self.base = dataclasses.replace(self.base, alloc=_load(self.spec))
        b = self.base
        kw = {k: point[k] for k in CALL if k in point}
        if not kw:
            return b
        init_cash, rf = cash_and_rate(kw.get("init_cash", b.init_cash), kw.get("rf", b.rf))
        return dataclasses.replace(b, init_cash=init_cash, rf=rf,
                                   seed=check_seed(kw.get("seed", b.seed)))


def prepare_alloc(market, fixed: Mapping[str, Any], native_axes: list, backend) -> AllocCtx:
    """The context of a backtest sweep with ``alloc`` (see the module docstring)."""
    from gpusim.backtest.api import _available_bytes
    from gpusim.grid import Param
    from gpusim.parse import job_weights
    from gpusim.strategy.api import alloc_context
    from gpusim.sweep.engine import cores
    from gpusim.sweep.tasks import level_kind

    names = alloc_names(fixed, [n for a in native_axes for n in a.names])
    spec = _fn_spec(fixed["alloc"])
    symbols = [str(s) for s in market.symbols]
    args: dict[str, Any] = {k: fixed[k] for k in (*NATIVE, *names, *CALL) if k in fixed}
    for gi, a in enumerate(native_axes):
        level = f"zip{gi}" if len(a.names) > 1 else None
        for m in a.names:
            col = a.column(m)
            if m == "weights":
                col = [job_weights(x, symbols) for x in col]
            elif m == "rebalance" and any(isinstance(r, list) for r in col):
                raise GpusimError("rebalance masks cannot be swept; give rules (never, D, W, "
                                  "M, Q, Y, k)")
            args[m] = Param(col, name=m, level=level)
    if "weights" in args and not isinstance(args["weights"], Param):
        args["weights"] = job_weights(args["weights"], symbols)
    shared = fixed.get("share_draws", ())
    base = alloc_context(market, _function(spec), {k: args[k] for k in names},
                         args.get("weights", "equal"), args.get("rebalance"),
                         args.get("fees", 0.0),
                         args.get("seed", 0), shared, args.get("init_cash", 1.0),
                         args.get("rf", 0.0))
    grid = base.grid
    kinds = {ax.name: level_kind(ax.labels) for ax in grid.axes}
    T = base.close.shape[0]
    per_row = 8 * (11 + len(grid.names) + len(symbols)) * 4
    work = 2 ** 30 if backend.name == "gpu" and not backend.simulator else (
        2 ** 12 if backend.name == "gpu" else 2 ** 24 * cores())
    default = int(max(1, min(work // T, _available_bytes() // 8 // per_row, 2 ** 22)))
    return AllocCtx(spec, base, backend.name, list(grid.names), kinds, default, symbols)


def split(ctx: AllocCtx, chunk_size: int | None) -> list[dict]:
    """Ranges ``[lo, hi)`` of the grid's flat combinations, of near-equal sizes."""
    C = ctx.base.grid.size
    target = int(chunk_size or ctx.default_chunk)
    k = -(-C // max(1, target))
    cuts = [(i * C) // k for i in range(k + 1)]
    return [{"lo": lo, "hi": hi, "size": hi - lo} for lo, hi in itertools.pairwise(cuts)
            if hi > lo]


def describe(ctx: AllocCtx, part: dict) -> dict:
    """A chunk for failure reports: its flat combinations and the level values of its first
    and last.
    """
    g = ctx.base.grid

    def text(flat):
        return "(" + ", ".join(f"{k}={py_scalar(v)}" for k, v in g.labels_of(flat).items()) + ")"

    return {"combinations": f"{part['lo']}..{part['hi'] - 1} of {g.size}",
            "first": text(part["lo"]), "last": text(part["hi"] - 1)}


def run(ctx: AllocCtx, point: dict, part: dict):
    """One chunk: the rows of combinations lo..hi-1 (Arrow table) and its info."""
    import time

    from gpusim.backtest.result import rows_table
    from gpusim.strategy.api import kernel

    b = ctx.context(point)
    t0 = time.perf_counter()
    out = b.compute(kernel(ctx.backend), part["lo"], part["hi"])
    dt = time.perf_counter() - t0
    return rows_table(b.grid, np.asarray(out), ctx.kinds, start=part["lo"]), {
        "compute_s": round(dt, 6)}


def job_spec(spec: str, base_dir) -> str:
    """A job file's ``alloc = "file.py:fn"`` with the file relative to the job's folder (a
    spec of another form is left as it is, for :func:`prepare_alloc` to report).
    """
    from gpusim.strategy.loader import resolve_spec

    try:
        return resolve_spec(spec, base_dir)
    except GpusimError:
        return spec


def fingerprint(v) -> Any:
    """JSON-ready identity of a job's ``alloc`` for the sweep's fingerprint: the spec and the
    sha256 of its file (a function: its module, name and the sha256 of its source).
    """
    import hashlib

    from gpusim.strategy.loader import file_digest

    if isinstance(v, str):
        try:
            return {"alloc": v, "sha256": file_digest(v)}
        except GpusimError:
            return {"alloc": v}
    fn = getattr(v, "py_func", v)
    try:
        src = inspect.getsource(fn)
    except (OSError, TypeError):
        src = repr(getattr(fn, "__code__", fn))
    return {"function": f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', '?')}",
            "sha256": hashlib.sha256(src.encode()).hexdigest()}
