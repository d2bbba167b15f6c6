"""Counter-based random numbers and weight samplers (DESIGN §4).

The uniform for (seed, candidate i, asset j, draw t) is a pure function of those integers:
SplitMix64's output function applied to ``key(seed) + (counter + 1) * GOLDEN`` with
``counter = (i << 24) | (j << 8) | t``. That is exactly SplitMix64's stream read at position
``counter``, so any candidate can be regenerated alone, in any order, on any backend.

The function bodies here are plain Python over ``np.uint64`` so that the same source is
compiled by ``numba.njit`` (CPU) and ``numba.cuda.jit(device=True)`` (GPU): the plain
names are the uncompiled bodies, the ``*_nb`` names their CPU compilations. This is the one
piece of code the GPU kernels share with ``cpu_ref`` (identical streams are the goal).

Limits: i < 2**40 candidates per seed, j < 2**16 assets, t < 2**8 draws per (i, j).

Samplers (codes): 0 ``"uniform"`` (w = u / sum u, as the vectorbt notebook does; not uniform on
the simplex), 1 ``"dirichlet"`` (w ∝ -log u: flat Dirichlet, uniform on the simplex),
2 ``"dirichlet"`` with concentration alpha != 1 (Gamma(alpha) variates by Marsaglia-Tsang).
Box bounds: lower bounds by the affine map ``w = lo + (1 - sum lo) * s`` (exact, no rejection),
upper bounds by rejection (a candidate over any ``hi`` is invalid and never selected).
"""

from __future__ import annotations

import math
import types

import numpy as np
from numba import njit

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S12 = np.uint64(12)
_S24 = np.uint64(24)
_S8 = np.uint64(8)
_ONE = np.uint64(1)
_TWO_M52 = 2.0 ** -52

SAMPLERS = {"uniform": 0, "dirichlet": 1}
MAX_CANDIDATES = 2 ** 40
MAX_ASSETS = 2 ** 16


def mix64(z):
    """SplitMix64 output function (a bijection of uint64)."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def seed_key(seed):
    """Stream key for a seed (uint64)."""
    return mix64(np.uint64(seed) * GOLDEN + GOLDEN)


def uniform(key, i, j, t):
    """U(0,1) for candidate i, asset j, draw t: a 52-bit midpoint grid, never 0 or 1."""
    c = (np.uint64(i) << _S24) | (np.uint64(j) << _S8) | np.uint64(t)
    x = mix64(key + (c + _ONE) * GOLDEN)
    return (float(x >> _S12) + 0.5) * _TWO_M52


def std_gamma(key, i, j, alpha):
    """Gamma(alpha, 1) variate for (i, j) by Marsaglia-Tsang, draws t = 0, 1, ... ."""
    boost = alpha < 1.0
    a = alpha + 1.0 if boost else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    t = 0
    g = d  # fallback after 84 rejected attempts (probability < 1e-100)
    while t < 252:
        u1 = uniform(key, i, j, t)
        u2 = uniform(key, i, j, t + 1)
        u3 = uniform(key, i, j, t + 2)
        t += 3
        x = math.sqrt(-2.0 * math.log(u1)) * math.cos(6.283185307179586 * u2)
        v = 1.0 + c * x
        if v <= 0.0:
            continue
        v = v * v * v
        if math.log(u3) < 0.5 * x * x + d - d * v + d * math.log(v):
            g = d * v
            break
    if boost:
        g = g * uniform(key, i, j, 255) ** (1.0 / alpha)
    return g


def sample(key, i, code, alpha, lo, hi, lo_sum, out):
    """Write candidate i's weights into ``out`` (shape (A,)); return True if within ``hi``.

    ``lo``/``hi`` are (A,) bounds with ``lo_sum = sum(lo)``; pass zeros / ones for none.
    """
    A = out.shape[0]
    s = 0.0
    for j in range(A):
        u = uniform(key, i, j, 0)
        if code == 0:
            e = u
        elif code == 1:
            e = -math.log(u)
        else:
            e = std_gamma(key, i, j, alpha)
        out[j] = e
        s += e
    scale = (1.0 - lo_sum) / s
    ok = True
    for j in range(A):
        w = lo[j] + out[j] * scale
        out[j] = w
        if w > hi[j]:
            ok = False
    return ok


BODIES = ("mix64", "seed_key", "uniform", "std_gamma", "sample")


def compile_bodies(jit):
    """Compile the bodies above with ``jit`` so that their calls to each other resolve to the
    compiled versions; returns ``{name: compiled}``. Used with ``njit`` here and with
    ``cuda.jit(device=True)`` in ``gpusim.kernels``."""
    g = dict(globals())
    out = {}
    for name in BODIES:
        f = g[name]
        out[name] = jit(types.FunctionType(f.__code__, g, name, f.__defaults__))
        g[name] = out[name]
    return out


_nb = compile_bodies(njit(cache=True))
mix64_nb = _nb["mix64"]
seed_key_nb = _nb["seed_key"]
uniform_nb = _nb["uniform"]
std_gamma_nb = _nb["std_gamma"]
sample_nb = _nb["sample"]


def sampler_code(sampler: str, alpha: float = 1.0) -> int:
    """Integer code of a sampler name (raises ValueError listing the valid names)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler={sampler!r} is unknown; use one of {sorted(SAMPLERS)}")
    code = SAMPLERS[sampler]
    if code == 1 and alpha != 1.0:
        code = 2
    return code


@njit(cache=True)
def population_nb(seed, start, n, A, code, alpha, lo, hi):
    """Candidates ``start .. start+n-1`` as an (n, A) array, plus an (n,) validity mask."""
    key = seed_key_nb(seed)
    W = np.empty((n, A))
    ok = np.empty(n, dtype=np.bool_)
    lo_sum = 0.0
    for j in range(A):
        lo_sum += lo[j]
    for r in range(n):
        ok[r] = sample_nb(key, start + r, code, alpha, lo, hi, lo_sum, W[r])
    return W, ok
