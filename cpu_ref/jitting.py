"""Compile a family of plain-Python function bodies with one ``jit`` (numba CPU or CUDA).

A body calls its siblings by their global names; :func:`compile_bodies` rebinds those names to
the compiled siblings, so the same source compiles for ``numba.njit`` and for
``numba.cuda.jit(device=True)``. ``overrides`` binds names to ready-made functions instead
(the GPU binds ``fmul``/``fadd`` to libdevice's never-fused ``dmul_rn``/``dadd_rn``).
"""

from __future__ import annotations

import types


def compile_bodies(jit, namespace: dict, names, overrides=None) -> dict:
    """``{name: compiled}`` for ``names`` (in dependency order) found in ``namespace``."""
    g = dict(namespace)
    g.update(overrides or {})
    out = dict(overrides or {})
    for name in names:
        if name in out:
            continue
        f = g[name]
        out[name] = jit(types.FunctionType(f.__code__, g, name, f.__defaults__))
        g[name] = out[name]
    return out
