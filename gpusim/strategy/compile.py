"""The user's allocation function, made ready for Numba on the CPU and the GPU.

:func:`prepare` reads the function's source and rewrites every ``c.uniform(j, k)`` (``c`` its
first argument) into a call of a global helper (:func:`~gpusim.strategy.steps.state_uniform`,
bound per target), keeping the file name and line numbers; :func:`alloc_function` compiles it
for one target (``"cpu"``: ``numba.njit``; ``"gpu"``: ``numba.cuda.jit(device=True)``).
Compiled functions and kernels are cached in memory by the function's identity (module,
qualified name) and source, so a second call with the same function compiles nothing.

A function Numba cannot compile is one :class:`~gpusim.errors.GpusimError` naming the function,
the file and line of the offending statement, the statement and Numba's reason.
"""

from __future__ import annotations

import ast
import inspect
import linecache
import os
import re
import textwrap
import types
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpusim.errors import GpusimError
from gpusim.strategy.steps import UNIFORM_NAME, State


@dataclass(frozen=True)
class UserFunction:
    """A user's function, its rewritten code and where it came from."""

    func: types.FunctionType      # the original Python function
    code: types.CodeType          # the rewritten code object
    globals: dict                 # its globals (closure cells as globals, the helper unbound)
    key: tuple                    # (module, qualname, source): identity and source
    filename: str
    first_line: int
    last_line: int
    uses_targets: bool = True     # False: the source never names the targets argument

    @property
    def name(self) -> str:
        return self.func.__qualname__

    def bind(self, uniform_impl, n_assets: int) -> types.FunctionType:
        """The rewritten function with ``c.uniform`` bound to ``uniform_impl`` and
        ``c.n_assets`` to the constant ``n_assets``.
        """
        g = dict(self.globals)
        g[UNIFORM_NAME] = uniform_impl
        g[SUM_NAME] = np.sum
        g[N_ASSETS_NAME] = int(n_assets)
        return types.FunctionType(self.code, g, self.func.__name__, self.func.__defaults__)


class _Rewrite(ast.NodeTransformer):
    """``c.uniform(args)`` -> ``__gpusim_uniform__(c, args)`` for the state argument ``c``;
    ``x.sum()`` -> ``np.sum(x)``;
    and, unless ``c`` is re-assigned, every read of a state field ``c.f`` -> a local ``_c_f``
    bound once at the top of the function: an array read through the tuple in a loop would
    cost a reference count (an atomic operation) per access.
    """

    def __init__(self, cname: str, hoist: bool):
        self.cname = cname
        self.hoist = hoist
        self.used: list[str] = []

    def visit_Call(self, node: ast.Call) -> ast.AST:
        f = node.func
        if (isinstance(f, ast.Attribute) and f.attr == "uniform"
                and isinstance(f.value, ast.Name) and f.value.id == self.cname):
            node.args = [self.visit(a) for a in node.args]
            node.keywords = [self.visit(k) for k in node.keywords]
            return ast.copy_location(ast.Call(func=ast.Name(UNIFORM_NAME, ast.Load()),
                                              args=[f.value, *node.args],
                                              keywords=node.keywords), node)
        if isinstance(f, ast.Attribute) and f.attr == "sum" and not node.args \
                and not node.keywords:   # x.sum() -> np.sum(x): measured 3.6x faster in the
            # kernel (numba's array method does not optimise as well there)
            return ast.copy_location(ast.Call(func=ast.Name(SUM_NAME, ast.Load()),
                                              args=[self.visit(f.value)], keywords=[]), node)
        self.generic_visit(node)
        return node

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if (self.hoist and isinstance(node.value, ast.Name) and node.value.id == self.cname
                and isinstance(node.ctx, ast.Load) and node.attr in State._fields):
            if node.attr not in self.used:
                self.used.append(node.attr)
            return ast.copy_location(ast.Name(f"_c_{node.attr}", ast.Load()), node)
        self.generic_visit(node)
        return node


def _rewrite(fdef: ast.FunctionDef) -> None:
    """Apply :class:`_Rewrite` to the function definition ``fdef`` in place."""
    cname = fdef.args.args[0].arg
    reassigned = any(isinstance(n, ast.Name) and n.id == cname and not isinstance(n.ctx, ast.Load)
                     for n in ast.walk(fdef))
    rw = _Rewrite(cname, not reassigned)
    fdef.body = [rw.visit(st) for st in fdef.body]
    first = fdef.body[0]
    binds = []
    for a in rw.used:
        value = ast.Attribute(ast.Name(cname, ast.Load()), a, ast.Load())
        if a == "n_assets":   # a compile-time constant (a global, frozen by Numba): loops
            # ``for j in range(c.n_assets)`` unroll (the user threshold rule: 76.7 -> 53.5 ms)
            value = ast.Name(N_ASSETS_NAME, ast.Load())
        binds.append(ast.copy_location(ast.Assign(
            targets=[ast.Name(f"_c_{a}", ast.Store())], value=value), first))
    fdef.body = binds + fdef.body


def prepare(fn: Any, what: str = "alloc") -> UserFunction:
    """Check ``fn`` and rewrite its ``c.uniform`` calls (see the module docstring). The result
    is kept per function object, code and closure values (reading and rewriting the source
    cost ~2.7 ms a call).
    """
    fn = getattr(fn, "py_func", fn)   # a numba dispatcher: its Python function
    if not isinstance(fn, types.FunctionType):
        raise GpusimError(f"{what}={fn!r} must be a Python function "
                          "def f(c, params, targets) -> bool")
    nargs = fn.__code__.co_argcount
    if nargs != 3:
        raise GpusimError(f"{what} function {fn.__qualname__!r} takes {nargs} argument(s); it "
                          "must take three: (c, params, targets)")
    closure = {n: cell.cell_contents for n, cell in
               zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True)}
    k = (id(fn), fn.__code__, _closure_key(closure))
    hit = _PREPARED.get(k)
    if hit is not None and hit.func is fn:
        return hit
    uf = _prepare(fn, closure)
    _PREPARED[k] = uf
    return uf


_PREPARED: dict[tuple, UserFunction] = {}


def _prepare(fn: types.FunctionType, closure: dict) -> UserFunction:
    """:func:`prepare` without its checks and its memory."""
    g = {**fn.__globals__, **closure}
    filename = fn.__code__.co_filename
    try:
        lines, first = inspect.getsourcelines(fn)
    except (OSError, TypeError):
        lines, first = None, fn.__code__.co_firstlineno
    fdef = None
    if lines:
        src = textwrap.dedent("".join(lines))
        try:
            tree = ast.parse(src)
            fdef = tree.body[0] if tree.body and isinstance(tree.body[0], ast.FunctionDef) else None
        except SyntaxError:
            fdef = None
    if fdef is None:   # no source (e.g. a lambda or exec'd code): c.uniform is not available
        return UserFunction(fn, fn.__code__, g, (fn.__module__, fn.__qualname__, fn.__code__),
                            filename, first, first)
    fdef.decorator_list = []
    _rewrite(fdef)
    tree = ast.fix_missing_locations(tree)
    ast.increment_lineno(tree, first - 1)
    ns: dict = {}
    exec(compile(tree, filename, "exec"), g, ns)
    code = ns[fdef.name].__code__
    tname = fdef.args.args[2].arg
    uses = any(isinstance(n, ast.Name) and n.id == tname for n in ast.walk(fdef))
    return UserFunction(fn, code, g, (fn.__module__, fn.__qualname__, src, _closure_key(closure)),
                        filename, first, first + len(lines) - 1, uses)


def _closure_key(closure: dict) -> tuple:
    out = []
    for k, v in sorted(closure.items()):
        try:
            hash(v)
            out.append((k, v))
        except TypeError:
            out.append((k, id(v)))
    return tuple(out)


SUM_NAME = "__gpusim_sum__"
N_ASSETS_NAME = "__gpusim_n_assets__"
_CACHE: dict[tuple, Any] = {}


def compiled(target: str, uf: UserFunction, n_assets: int) -> bool:
    """Whether the kernel ``cached(target, uf, ..., n_assets)`` exists and has compiled code
    (then a call needs no warm-up launch).
    """
    k = _CACHE.get((target, uf.key, int(n_assets)))
    return bool(getattr(k, "signatures", None))


def cached(target: str, uf: UserFunction, build, n_assets: int):
    """``build()`` once per (target, function identity and source, number of assets); then the
    cached object.
    """
    k = (target, uf.key, int(n_assets))
    if k not in _CACHE:
        _CACHE[k] = build()
    return _CACHE[k]


_LOC = re.compile(r'File "([^"]+)", line (\d+)|at (/[^\n]*?) \((\d+)\)')


def compile_error(uf: UserFunction, exc: Exception, what: str = "alloc") -> GpusimError:
    """One error naming the function, the offending line and Numba's reason."""
    msg = str(exc)
    mine = os.path.realpath(uf.filename)
    where = [(uf.filename, int(n or n2)) for f, n, f2, n2 in _LOC.findall(msg)
             if os.path.realpath(f or f2) == mine
             and uf.first_line <= int(n or n2) <= uf.last_line]
    reason = next((ln.strip() for ln in msg.splitlines()
                   if ln.strip() and not ln.startswith(("Failed in", "- Resolution", "No im"))
                   and not _LOC.search(ln)), msg.strip().splitlines()[0] if msg.strip() else "")
    reason = re.sub(r"\x1b\[[0-9;]*m", "", reason)
    if "of type State(" in reason:
        reason = (reason[:reason.index("of type State(")]
                  + f"of the state c (its fields: {', '.join(State._fields)}, uniform(j, k))")
    if where:
        f, n = where[-1]
        line = linecache.getline(f, n).strip() or "?"
        loc = f"{f}, line {n}: {line!r}"
    else:
        loc = f"{uf.filename}, line {uf.first_line}"
    return GpusimError(f"{what} function {uf.name!r} cannot be compiled by Numba at {loc}: "
                       f"{reason} (use the NumPy subset Numba supports: arrays, floats, loops)")


def state_type(n_assets: int | None = None):
    """The numba type of the state (:class:`~gpusim.strategy.steps.State`) in the kernels."""
    from numba import types as nt

    from gpusim.strategy.steps import State

    f8, i8 = nt.float64, nt.int64
    return nt.NamedTuple((i8, i8, i8, f8[:, ::1], f8[:], f8[::1], f8[:], f8, f8, i8,
                          nt.uint64, i8), State)


def compile_cpu(uf: UserFunction, n_assets: int, what: str = "alloc"):
    """The user's function compiled with ``numba.njit`` (its ``c.uniform`` bound to the CPU
    RNG, ``c.n_assets`` to the constant ``n_assets``), typed once for the kernel's argument
    types so that errors point at the user's line.
    """
    def build():
        from numba import njit
        from numba import types as nt
        from numba.core.errors import NumbaError, NumbaPerformanceWarning

        from cpu_ref.rng import uniform_nb
        from gpusim.strategy.steps import state_uniform

        helper = njit(error_model="numpy", inline="always")(types.FunctionType(
            state_uniform.__code__, {**state_uniform.__globals__, "uniform": uniform_nb},
            "state_uniform", state_uniform.__defaults__))
        f = njit(error_model="numpy", inline="always")(uf.bind(helper, n_assets))
        sig = (state_type(), nt.float64[::1], nt.float64[::1])
        try:
            with warnings.catch_warnings():   # c.weights is strided by design (cpu.py)
                warnings.simplefilter("ignore", NumbaPerformanceWarning)
                f.compile(sig)
        except NumbaError as exc:
            raise compile_error(uf, exc, what) from None
        rt = f.overloads[sig].signature.return_type
        if not isinstance(rt, (nt.Boolean, nt.Integer)):
            raise GpusimError(f"{what} function {uf.name!r} ({uf.filename}, line "
                              f"{uf.first_line}) returns {rt}: it must return True or False on "
                              "every path (a path that ends without return gives None)")
        return f

    return cached("cpu-fn", uf, build, n_assets)
