"""Counter-based random numbers and weight samplers (DESIGN §4).

The uniform for (seed, candidate i, asset j, draw t) is a pure function of those integers:
SplitMix64's output function applied to ``key(seed) + (counter + 1) * GOLDEN`` with
``counter = (i << 24) | (j << 8) | t``, turned into u = (2 (x >> 12) + 1) 2**-53. That is
exactly SplitMix64's stream read at position ``counter``, so any candidate
can be regenerated alone, in any order, on any backend.

The function bodies here are plain Python over ``np.uint64`` so that the same source is
compiled by ``numba.njit`` (CPU) and ``numba.cuda.jit(device=True)`` (GPU): the plain
names are the uncompiled bodies, the ``*_nb`` names their CPU compilations. This is the one
piece of code the GPU kernels share with ``cpu_ref`` (identical streams are the goal).

Limits: i < 2**40 candidates per seed, j < 2**16 assets, t < 2**8 draws per (i, j).

Samplers (codes, named in :data:`Sampler`): 0 ``"uniform"`` (w = u / sum u, as the vectorbt
notebook does; not uniform on the simplex), 1 ``"dirichlet"`` (w ∝ -log u: flat Dirichlet,
uniform on the simplex), 2 ``"dirichlet"`` with concentration alpha != 1 (Gamma(alpha) variates
by Marsaglia-Tsang).
Box bounds: lower bounds by the affine map ``w = lo + (1 - sum lo) * s`` (exact, no rejection),
upper bounds by rejection (a candidate over any ``hi`` is invalid and never selected).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from .jitting import compile_bodies as _compile_bodies

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
_TWO_M53 = 2.0 ** -53
_LN2 = 0.6931471805599453
_SQRT2 = 1.4142135623730951



class SamplerT(NamedTuple):
    """Sampler codes of the kernels (``code`` arguments): named constants that Numba folds in
    jitted code, on the CPU and in CUDA device functions (vectorbt's ``enums.py`` idiom).
    """

    uniform: int = 0
    """u_j ~ U(0, 1), w = u / sum u."""
    dirichlet: int = 1
    """w ∝ -log u_j: the flat Dirichlet."""
    gamma: int = 2
    """w ∝ Gamma(alpha) variates: the Dirichlet with concentration alpha != 1."""


Sampler = SamplerT()
"""Sampler codes, by name."""

SAMPLERS = {"uniform": Sampler.uniform, "dirichlet": Sampler.dirichlet}
"""Sampler names accepted by the API and their codes (``"dirichlet"`` with ``alpha != 1`` becomes
``Sampler.gamma``, see :func:`sampler_code`)."""
MAX_CANDIDATES = 2 ** 40
MAX_ASSETS = 2 ** 16


def fmul(a, b):
    """A * b, rounded once. On the GPU this is bound to ``__dmul_rn``, which the compiler never
    fuses into a multiply-add, so the float steps of the samplers round the same everywhere.
    """
    return a * b


def fadd(a, b):
    """A + b, rounded once (``__dadd_rn`` on the GPU; see :func:`fmul`)."""
    return a + b


def mix64(z):
    """SplitMix64 output function (a bijection of uint64)."""
    z = np.uint64(z)
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def seed_key(seed):
    """Stream key for a seed (uint64)."""
    return mix64(np.uint64(seed) * GOLDEN + GOLDEN)


def bits(key, i, j, t):
    """64 random bits for candidate i, asset j, draw t."""
    c = (np.uint64(i) << _S24) | (np.uint64(j) << _S8) | np.uint64(t)
    return mix64(np.uint64(key) + (c + _ONE) * GOLDEN)


def odd53(x):
    """The odd integer m = 2 (x >> 12) + 1 in [1, 2**53): u = m 2**-53 is exact in float64."""
    return ((np.uint64(x) >> _S12) << _ONE) | _ONE


def uniform(key, i, j, t):
    """U(0,1) for candidate i, asset j, draw t: the midpoints of a 2**-52 grid, never 0 or 1."""
    return float(np.int64(odd53(bits(key, i, j, t)))) * _TWO_M53


def neg_log_reduced(f, e):
    """-log(u) for u = f 2**(e - 53), f in [sqrt(1/2), sqrt(2)] (the tail of
    :func:`neg_log_uniform`, shared with the CPU fast path that reduces u by bit operations).
    """
    s = (f - 1.0) / (f + 1.0)
    z = fmul(s, s)
    p = 1.0 / 21.0
    p = fadd(fmul(p, z), 1.0 / 19.0)
    p = fadd(fmul(p, z), 1.0 / 17.0)
    p = fadd(fmul(p, z), 1.0 / 15.0)
    p = fadd(fmul(p, z), 1.0 / 13.0)
    p = fadd(fmul(p, z), 1.0 / 11.0)
    p = fadd(fmul(p, z), 1.0 / 9.0)
    p = fadd(fmul(p, z), 1.0 / 7.0)
    p = fadd(fmul(p, z), 1.0 / 5.0)
    p = fadd(fmul(p, z), 1.0 / 3.0)
    p = fadd(fmul(p, z), 1.0)
    return fadd(fmul(53.0 - e, _LN2), -fmul(fmul(2.0, s), p))


def neg_log_uniform(x):
    """-log(u) for the uniform u = odd53(x) 2**-53 of the bits x: an Exp(1) variate.

    Computed with integer steps, +, *, / only (no libm), so the result is the same on every
    platform that rounds IEEE-754 operations the same way, and the loop vectorises on the CPU:
    u = f 2**(e - 53) with f in [sqrt(1/2), sqrt(2)), log f = 2 atanh(s), s = (f - 1)/(f + 1),
    |s| < 0.1716, by its series to s**21 (truncation below 2e-17 relative).
    """
    f = float(np.int64(odd53(x)))  # exact: < 2**53
    e = 0.0
    if f >= 4294967296.0:
        f = f * 2.3283064365386963e-10
        e += 32.0
    if f >= 65536.0:
        f = f * 1.52587890625e-05
        e += 16.0
    if f >= 256.0:
        f = f * 0.00390625
        e += 8.0
    if f >= 16.0:
        f = f * 0.0625
        e += 4.0
    if f >= 4.0:
        f = f * 0.25
        e += 2.0
    if f >= 2.0:
        f = f * 0.5
        e += 1.0
    if f > _SQRT2:
        f = f * 0.5
        e += 1.0
    return neg_log_reduced(f, e)


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
        if code == Sampler.uniform:
            e = uniform(key, i, j, 0)
        elif code == Sampler.dirichlet:
            e = neg_log_uniform(bits(key, i, j, 0))
        else:
            e = std_gamma(key, i, j, alpha)
        out[j] = e
        s += e
    scale = (1.0 - lo_sum) / s
    ok = True
    for j in range(A):
        w = fadd(lo[j], fmul(out[j], scale))
        out[j] = w
        if w > hi[j]:
            ok = False
    return ok


BODIES = ("fmul", "fadd", "mix64", "seed_key", "bits", "odd53", "uniform", "neg_log_reduced",
          "neg_log_uniform", "std_gamma", "sample")


def compile_bodies(jit, overrides=None):
    """Compile the bodies above with ``jit`` (``njit`` here, ``cuda.jit(device=True)`` in
    ``gpusim._cuda.rng``); see :func:`cpu_ref.jitting.compile_bodies`.
    """
    return _compile_bodies(jit, globals(), BODIES, overrides)


_nb = compile_bodies(njit(cache=True, inline="always", error_model="numpy"))
mix64_nb = _nb["mix64"]
seed_key_nb = _nb["seed_key"]
bits_nb = _nb["bits"]
uniform_nb = _nb["uniform"]
neg_log_uniform_nb = _nb["neg_log_uniform"]
neg_log_reduced_nb = _nb["neg_log_reduced"]
odd53_nb = _nb["odd53"]
std_gamma_nb = _nb["std_gamma"]
sample_nb = _nb["sample"]


def sampler_code(sampler: str, alpha: float = 1.0) -> int:
    """Integer code of a sampler name (raises ValueError listing the valid names)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler={sampler!r} is unknown; use one of {sorted(SAMPLERS)}")
    code = SAMPLERS[sampler]
    if code == Sampler.dirichlet and alpha != 1.0:
        code = Sampler.gamma
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
