"""A user's function named by text: ``"path/to/file.py:name"`` or ``"package.module:name"``.

The command line (``gpusim backtest --alloc FILE.py:fn``, ``gpusim simulate --optimize
FILE.py:fn``) and sweep job files (``alloc = "strategies.py:fn"``) name functions this way.
:func:`load_function` imports the file (or module) and returns the function; every failure is
one :class:`~gpusim.errors.GpusimError` line that names the argument (``what``): a spec without
``:NAME``, a file that does not exist, an import that raised (its reason, file and line), a
name the module does not define (listing the functions it does).

A file is imported under a module name made from its absolute path
(``gpusim_user_<hash>_<stem>``), registered in ``sys.modules``: two files with the same base
name never collide, the same file always gets the same name (so the compiled-function cache of
:mod:`gpusim.strategy.compile`, keyed by module, name and source, is hit again), and
``inspect`` finds the function's source (which :func:`gpusim.strategy.compile.prepare`
rewrites). Each load executes the file again, so an edited file is seen. The file's folder is
on ``sys.path`` while it is imported (as for ``python file.py``): it may import its neighbours.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any

from gpusim.errors import GpusimError

__all__ = ["file_digest", "load_function", "parse_spec", "resolve_spec"]

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_FORM = "give FILE.py:NAME (e.g. strategies.py:band) or package.module:NAME"
MODULE_PREFIX = "gpusim_user_"


def parse_spec(spec: Any, what: str = "alloc") -> tuple[str, str, str]:
    """Split a spec into ``(kind, target, name)``: kind ``"file"`` (target a path: it ends in
    ``.py`` or holds a path separator) or ``"module"`` (target a dotted module name).

    The name is after the last ``:`` (so ``C:/x.py:f`` keeps its drive). Raises GpusimError
    for anything else.
    """
    if not isinstance(spec, str):
        raise GpusimError(f"{what}={spec!r} must be text: {_FORM}")
    target, sep, name = spec.strip().rpartition(":")
    target, name = target.strip(), name.strip()
    if not sep or not target:
        raise GpusimError(f"{what} {spec!r} has no ':NAME' part naming the function; {_FORM}")
    if not name.isidentifier():
        raise GpusimError(f"{what} {spec!r}: {name!r} after the last ':' is not a function "
                          f"name; {_FORM}")
    if target.endswith(".py") or "/" in target or os.sep in target or (
            os.altsep and os.altsep in target):
        return "file", target, name
    if not _DOTTED.match(target):
        raise GpusimError(f"{what} {spec!r}: {target!r} is neither a .py file nor a module "
                          f"name; {_FORM}")
    return "module", target, name


def _base(base_dir) -> Path:
    return Path(base_dir) if base_dir is not None else Path.cwd()


def resolve_spec(spec: str, base_dir=None, what: str = "alloc") -> str:
    """The spec with a relative file made absolute against ``base_dir`` (default: the current
    folder); a module spec is returned as it is. Checks the form, not the file.
    """
    kind, target, name = parse_spec(spec, what)
    if kind == "module":
        return f"{target}:{name}"
    p = Path(target).expanduser()
    return f"{(p if p.is_absolute() else _base(base_dir) / p).resolve()}:{name}"


def file_digest(spec: str, base_dir=None, what: str = "alloc") -> str | None:
    """sha256 of the source file a spec names (a module's file for a module spec, found without
    importing it), or None when there is none: what a sweep's fingerprint records, so that a
    resume notices an edited strategy file.
    """
    kind, target, _ = parse_spec(spec, what)
    if kind == "file":
        path = resolve_spec(spec, base_dir, what).rpartition(":")[0]
    else:
        try:
            found = importlib.util.find_spec(target)
        except (ImportError, ValueError):
            found = None
        path = getattr(found, "origin", None)
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None
    except (OSError, ValueError):
        return None


def _module_name(path: Path) -> str:
    stem = re.sub(r"\W", "_", path.stem) or "file"
    return f"{MODULE_PREFIX}{hashlib.sha1(str(path).encode()).hexdigest()[:16]}_{stem}"


def _reason(exc: BaseException, path: str | None) -> str:
    """``Type: first line (line N)`` of an exception raised while importing ``path``."""
    text = str(exc).strip().splitlines()
    line = None
    if isinstance(exc, SyntaxError) and exc.filename == path:
        line = exc.lineno
        text = [exc.msg] if exc.msg else text
    elif path is not None:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == path]
        line = frames[-1].lineno if frames else None
    where = f" (line {line})" if line else ""
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ") + where


def _import_file(path: Path, spec: str, what: str):
    name = _module_name(path)
    try:
        mspec = importlib.util.spec_from_file_location(
            name, path, loader=importlib.machinery.SourceFileLoader(name, str(path)))
        module = importlib.util.module_from_spec(mspec)
    except (ImportError, OSError, ValueError) as exc:
        raise GpusimError(f"{what} {spec!r}: cannot import {path}: {_reason(exc, None)}"
                          ) from None
    folder = str(path.parent)
    sys.modules[name] = module
    sys.path.insert(0, folder)
    try:
        mspec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(name, None)
        raise GpusimError(f"{what} {spec!r}: importing {path} failed: "
                          f"{_reason(exc, str(path))}") from None
    finally:
        try:
            sys.path.remove(folder)
        except ValueError:
            pass
    return module


def _import_module(target: str, spec: str, what: str):
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name and (target == exc.name or target.startswith(exc.name + ".")):
            raise GpusimError(f"{what} {spec!r}: no module {target!r} (a file needs a .py "
                              "suffix or a path, e.g. ./strategies.py:band)") from None
        raise GpusimError(f"{what} {spec!r}: importing {target} failed: "
                          f"{_reason(exc, None)}") from None
    except (Exception, SystemExit) as exc:
        origin = getattr(sys.modules.get(target), "__file__", None)
        raise GpusimError(f"{what} {spec!r}: importing {target} failed: "
                          f"{_reason(exc, origin)}") from None


def load_function(spec: str, base_dir=None, what: str = "alloc"):
    """The function a spec names.

    Parameters
    ----------
    spec : ``"path/to/file.py:name"`` (relative to ``base_dir``, default the current folder)
        or ``"package.module:name"``.
    base_dir : folder of relative file paths (a job file's folder).
    what : the argument named in error messages (``"--alloc"``, ``"alloc"``, ...).

    Returns
    -------
    The function (any callable attribute of the module).

    Raises
    ------
    GpusimError
        One line naming ``what``: a spec without ``:NAME``, a missing file or module, an import
        that raised (its reason and line), a missing name (the module's functions listed), an
        attribute that is not callable.
    """
    kind, target, name = parse_spec(spec, what)
    if kind == "file":
        path = Path(resolve_spec(spec, base_dir, what).rpartition(":")[0])
        try:
            found = path.is_file()
        except (OSError, ValueError):
            found = False
        if not found:
            rel = "" if Path(target).expanduser().is_absolute() else f" (relative to " \
                f"{_base(base_dir).resolve()})"
            raise GpusimError(f"{what} {spec!r}: file {str(path)!r} not found{rel}")
        module, where = _import_file(path, spec, what), str(path)
    else:
        module, where = _import_module(target, spec, what), target
    if not hasattr(module, name):
        funcs = sorted(k for k, v in vars(module).items() if inspect.isfunction(v)
                       and v.__module__ == module.__name__ and not k.startswith("_"))
        has = f"its functions: {', '.join(funcs)}" if funcs else "it defines no function"
        raise GpusimError(f"{what} {spec!r}: {where} has no {name!r}; {has}")
    fn = getattr(module, name)
    if not callable(fn):
        raise GpusimError(f"{what} {spec!r}: {name!r} in {where} is a {type(fn).__name__}, "
                          "not a function")
    return fn
