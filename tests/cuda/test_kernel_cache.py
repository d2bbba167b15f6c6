"""Every numba.cuda kernel of the package is declared with ``cache=True`` (DESIGN §3: a second
process does not recompile), read from the source with ``ast``.

A kernel is a ``cuda.jit`` decorator or call without ``device=True``; device functions are
compiled into their kernels and are not cached on their own.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PENDING: set[str] = set()
"""Files whose kernels another change declares cached (none left)."""
NOT_ON_DISK = {"gpusim/strategy/cuda.py"}
"""Kernels that must not be cached on disk: the user-function kernel binds the user's function
as a global of one kernel body, and numba's cache key (code bytes, closure, signature) does not
see globals, so a disk cache would serve one function's kernel for another's. It is cached in
memory per function (identity and source) instead."""


def _is_cuda_jit(node: ast.expr) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "jit"
            and isinstance(node.value, ast.Name) and node.value.id == "cuda")


def _flag(call: ast.Call, name: str) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is True
               for k in call.keywords)


def kernels(path: Path) -> list[tuple[int, bool]]:
    """(line, declared with cache=True) of each kernel ``cuda.jit`` in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _is_cuda_jit(node.func):     # cuda.jit(...)
            if not _flag(node, "device"):
                found.append((node.lineno, _flag(node, "cache")))
        elif _is_cuda_jit(node) and id(node) not in called:            # bare @cuda.jit
            found.append((node.lineno, False))
    return sorted(found)


def _package_files():
    return [p for p in sorted((ROOT / "gpusim").rglob("*.py"))
            if "cuda.jit" in p.read_text()]


def test_every_cuda_kernel_is_cached():
    missing, seen = [], 0
    for p in _package_files():
        rel = p.relative_to(ROOT).as_posix()
        for line, cached in kernels(p):
            seen += 1
            if not cached and rel not in PENDING | NOT_ON_DISK:
                missing.append(f"{rel}:{line}")
    assert seen >= 6, "the scan found too few kernels: is it still reading the right files?"
    assert not missing, f"cuda.jit kernels without cache=True: {missing}"


def test_the_scan_tells_cached_from_uncached(tmp_path):
    src = tmp_path / "k.py"
    src.write_text("from numba import cuda\n"
                   "@cuda.jit\ndef a(x): pass\n"
                   "@cuda.jit(cache=True)\ndef b(x): pass\n"
                   "@cuda.jit(device=True)\ndef c(x): pass\n"
                   "d = cuda.jit(e)\n"
                   "f = cuda.jit(cache=True)(e)\n")
    assert kernels(src) == [(2, False), (4, True), (8, False), (9, True)]
