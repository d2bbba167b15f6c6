"""Constrained candidate generation and deterministic scoring for the batched search methods.

Used by :mod:`gpusim.search.guided` (the cross-entropy method and the batched random sampler);
the fused random search (:mod:`gpusim.search.cpu`) is untouched.

Streams (DESIGN §4, §11). Generation ``g`` of a guided run draws from the counter-based
stream of :mod:`cpu_ref.rng` under the key :func:`generation_key` ``(seed, g)``; candidate
``i`` of that generation, asset ``j`` reads the uniforms ``(key, i, j, t)``. Standard normals
come in Box-Muller pairs (:func:`draw_logits_nb`; ``-log u`` by
:func:`cpu_ref.rng.neg_log_uniform_nb`, libm-free, ``cos``/``sin`` from libm). Populations are
always generated on the host, whatever backend scores them, so a run is reproducible on any
backend and any chunking. The batched random sampler reads the flat Dirichlet candidates of the
plain search (:func:`cpu_ref.rng.population_nb`, key ``seed_key(seed)``, index ``i``): the same
weights as ``search(method="random")`` before the constraints are applied.

Constraints (one map for both samplers, :func:`constrain_row`): a point ``s`` of the simplex
(softmax of the logits, or a Dirichlet draw) becomes the weights

1. support ``S``: assets that may be held (``hi_j >= floor_j``), the forced ones (``lo_j > 0``)
   first, then the largest ``s_j`` (ties to the lower index) up to ``max_assets``;
2. non-forced assets whose share of ``sum_S s`` is below ``min_weight`` leave ``S``, smallest
   first, except the largest share and only while the caps of ``S`` still sum to >= 1;
3. ``w_j = floor_j + (1 - sum_S floor) s_j`` on ``S`` with ``floor_j = max(lo_j, min_weight)``;
4. upper bounds by water-filling: assets over ``hi_j`` are set to ``hi_j`` and the rest of the
   budget is shared among the others in proportion to ``s`` (repeated until none is over).

So every held weight is in ``[max(lo_j, min_weight), hi_j]``, at most ``max_assets`` are held and
the weights sum to 1; a support whose floors exceed 1 or whose caps sum below 1 is invalid
(score -inf). Without constraints the map is the identity on the simplex (bit for bit).

Ex-ante scoring (:func:`sharpe_row`, :func:`sharpe_rows_nb`): every candidate's sums run in one
fixed order with every product and sum rounded once, so its score is the same bits whatever the
chunking, on the CPU (blocks of ``LANES`` candidates in lockstep, vectorised across candidates)
and on the GPU (:mod:`gpusim.search.guided_cuda`, one thread per candidate).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from cpu_ref.jitting import compile_bodies as _compile_bodies
from cpu_ref.rng import bits_nb, fadd, fmul, mix64_nb, neg_log_uniform_nb, seed_key_nb, uniform_nb

GEN_TAG = np.uint64(0x6A09E667F3BCC909)  # separates guided generation keys from the plain stream
DRAW_RADIUS = 0  # Box-Muller draw t = 0: the radius, -log u
DRAW_ANGLE = 1   # draw t = 1: the angle
_TWO_PI = 6.283185307179586
_NO_CAP = 1.0  # a weight can never exceed 1
LANES = 64     # candidates scored in lockstep by the CPU block scorer


@njit(cache=True)
def _generation_key_nb(seed, g):
    return mix64_nb(seed_key_nb(np.uint64(seed)) ^ mix64_nb(np.uint64(g) + GEN_TAG))


def generation_key(seed: int, g: int) -> np.uint64:
    """Stream key of generation ``g`` of a guided run with ``seed`` (uint64):
    ``mix64(seed_key(seed) ^ mix64(g + GEN_TAG))``.
    """
    return np.uint64(_generation_key_nb(np.uint64(seed), np.uint64(g)))


@njit(parallel=True, cache=True)
def draw_logits_nb(key, start, n, mean, scale):
    """Logits ``X[r] = mean + scale * z(key, start + r)`` of candidates ``start .. start+n-1``.

    The normals come in Box-Muller pairs: assets ``2p`` and ``2p + 1`` of candidate ``i`` share
    the radius ``sqrt(2 (-log u))``, ``u`` = draw ``(i, 2p, DRAW_RADIUS)``, and the angle
    ``2 pi u'``, ``u'`` = draw ``(i, 2p, DRAW_ANGLE)``: ``z_2p = r cos``, ``z_2p+1 = r sin``.

    Parameters
    ----------
    key : uint64 generation key; start, n : int; mean, scale : (A,) float64.

    Returns
    -------
    (n, A) float64 host array.
    """
    A = mean.shape[0]
    X = np.empty((n, A))
    for r in prange(n):
        i = start + r
        for j in range(0, A, 2):
            rad = math.sqrt(2.0 * neg_log_uniform_nb(bits_nb(key, i, j, DRAW_RADIUS)))
            ang = _TWO_PI * uniform_nb(key, i, j, DRAW_ANGLE)
            X[r, j] = mean[j] + scale[j] * (rad * math.cos(ang))
            if j + 1 < A:
                X[r, j + 1] = mean[j + 1] + scale[j + 1] * (rad * math.sin(ang))
    return X


@njit(cache=True)
def softmax_row(x, out):
    """Out = exp(x - max x) / sum (a point of the simplex; shape (A,))."""
    A = x.shape[0]
    mx = x[0]
    for j in range(1, A):
        if x[j] > mx:
            mx = x[j]
    s = 0.0
    for j in range(A):
        out[j] = math.exp(x[j] - mx)
        s += out[j]
    for j in range(A):
        out[j] /= s


@njit(cache=True)
def _select_support(s, max_assets, lo, hi, floor, held):
    """Mark in ``held`` (A,) bool the support of step 1 (forced, then largest shares)."""
    A = s.shape[0]
    n = 0
    eligible = 0
    for j in range(A):
        held[j] = lo[j] > 0.0
        n += held[j]
        eligible += hi[j] >= floor[j]
    if max_assets >= eligible:
        for j in range(A):
            held[j] = held[j] or hi[j] >= floor[j]
        return
    for j in np.argsort(-s, kind="mergesort"):  # stable: ties to the lower index
        if n >= max_assets:
            break
        if not held[j] and hi[j] >= floor[j]:
            held[j] = True
            n += 1


@njit(cache=True)
def _drop_small(s, min_weight, lo, hi, held):
    """Step 2: non-forced held assets whose share of the support is below ``min_weight`` leave
    it, smallest first, except the largest share and while the caps still hold the budget.
    """
    A = s.shape[0]
    tot = 0.0
    caps = 0.0
    keep = -1
    for j in range(A):
        if held[j]:
            tot += s[j]
            caps += hi[j]
            if keep < 0 or s[j] > s[keep]:
                keep = j
    for j in np.argsort(s, kind="mergesort"):
        if held[j] and j != keep and lo[j] <= 0.0 and s[j] < min_weight * tot \
                and caps - hi[j] >= 1.0:
            held[j] = False
            caps -= hi[j]


@njit(cache=True)
def constrain_row(s, max_assets, min_weight, lo, hi, floor, held, capped, w):
    """Map the simplex point ``s`` (A,) to constrained weights ``w`` (A,); True if feasible.

    ``floor`` (A,) is ``max(lo, min_weight)``; ``held``/``capped`` (A,) bool are scratch
    (``held`` is left holding the support). See the module docstring. A point that needs no
    change (every asset with a share held, no floor, no cap exceeded) is copied unchanged.
    """
    A = s.shape[0]
    _select_support(s, max_assets, lo, hi, floor, held)
    if min_weight > 0.0:
        _drop_small(s, min_weight, lo, hi, held)
    fsum = 0.0
    same = True
    for j in range(A):
        w[j] = 0.0
        capped[j] = False
        if held[j]:
            fsum += floor[j]
            same = same and s[j] <= hi[j]
        else:
            same = same and s[j] == 0.0
    if same and fsum == 0.0:
        for j in range(A):
            w[j] = s[j]
        return True
    if fsum > 1.0:
        return False
    return _water_fill(s, hi, floor, held, capped, fsum, w)


@njit(cache=True)
def _water_fill(s, hi, floor, held, capped, fsum, w):
    """Steps 3-4: floors plus shares of the free budget, capped at ``hi`` by water-filling."""
    A = s.shape[0]
    for _ in range(A + 1):
        free = 1.0 - fsum
        tot = 0.0
        for j in range(A):
            if held[j] and not capped[j]:
                tot += s[j]
        if not tot > 0.0:
            return abs(free) <= 1e-12
        new_cap = False
        for j in range(A):
            if held[j] and not capped[j]:
                w[j] = floor[j] + free * (s[j] / tot)
                if w[j] > hi[j]:
                    capped[j] = True
                    w[j] = hi[j]
                    fsum += hi[j] - floor[j]
                    new_cap = True
        if not new_cap:
            return True
    return False


@njit(parallel=True, cache=True)
def _map_rows(S, logits, max_assets, min_weight, lo, hi):
    n, A = S.shape
    W = np.zeros((n, A))
    ok = np.empty(n, dtype=np.bool_)
    floor = np.maximum(lo, min_weight)
    for r in prange(n):
        held = np.empty(A, dtype=np.bool_)
        capped = np.empty(A, dtype=np.bool_)
        s = np.empty(A)
        if logits:
            softmax_row(S[r], s)
        else:
            s[:] = S[r]
        ok[r] = constrain_row(s, max_assets, min_weight, lo, hi, floor, held, capped, W[r])
    return W, ok


def logits_to_weights_nb(X, max_assets, min_weight, lo, hi):
    """Constrained weights of logits ``X`` (n, A): softmax, then :func:`constrain_row`.

    Returns ``W`` (n, A) float64 and ``ok`` (n,) bool (False: infeasible support).
    """
    return _map_rows(X, True, max_assets, min_weight, lo, hi)


def constrain_nb(S, max_assets, min_weight, lo, hi):
    """Constrained weights of simplex points ``S`` (n, A) (e.g. Dirichlet draws).

    Returns ``W`` (n, A) float64 and ``ok`` (n,) bool.
    """
    return _map_rows(S, False, max_assets, min_weight, lo, hi)


def sharpe_row(W, r, valid, mu, U, ann, rf, out):
    """Ex-ante (return, volatility, Sharpe) of row ``r`` of ``W`` into ``out[r, :3]``.

    ``U`` (A, A) is the upper triangle of the per-bar covariance with doubled off-diagonal
    entries (:func:`gpusim.search.cpu.upper_doubled`): ``ret = sum_j mu_j w_j``,
    ``w'Σw = sum_j w_j (sum_{k>=j} U_jk w_k)``, j and k ascending, every product and sum rounded
    once (``fmul``/``fadd``: never fused on the GPU), then both times ``ann``. Not ``valid``,
    or a non-positive variance: Sharpe -inf.
    """
    A = W.shape[1]
    ret = 0.0
    var = 0.0
    for j in range(A):
        ret = fadd(ret, fmul(mu[j], W[r, j]))
        acc = 0.0
        for k in range(j, A):
            acc = fadd(acc, fmul(U[j, k], W[r, k]))
        var = fadd(var, fmul(W[r, j], acc))
    _finish(r, valid, fmul(ret, ann), fmul(var, ann), rf, out)


def _finish(r, valid, ret, var, rf, out):
    out[r, 0] = ret
    vol = math.sqrt(max(var, 0.0))
    out[r, 1] = vol
    if var > 0.0 and valid:
        out[r, 2] = (ret - rf) / vol
    else:
        out[r, 2] = -math.inf


BODIES = ("fmul", "fadd", "_finish", "sharpe_row")


def compile_bodies(jit, overrides=None):
    """Compile the scoring bodies with ``jit`` (``njit`` here; ``cuda.jit(device=True)`` with
    exact arithmetic in :mod:`gpusim.search.guided_cuda`).
    """
    return _compile_bodies(jit, globals(), BODIES, overrides)


_nb = compile_bodies(njit(cache=True, inline="always", error_model="numpy"))
sharpe_row_nb = _nb["sharpe_row"]
_finish_nb = _nb["_finish"]


@njit(cache=True, error_model="numpy")
def _sharpe_block(W, r0, nb, ok, mu, U, ann, rf, Wt, ret, var, acc, out):
    """Rows r0 .. r0+nb-1 of ``W`` in lockstep: :func:`sharpe_row`'s sums in its order, with
    the candidates innermost (SIMD across candidates, no reassociation).
    """
    A = W.shape[1]
    for j in range(A):
        for b in range(nb):
            Wt[j, b] = W[r0 + b, j]
    for b in range(nb):
        ret[b] = 0.0
        var[b] = 0.0
    for j in range(A):
        for b in range(nb):
            ret[b] = ret[b] + mu[j] * Wt[j, b]
            acc[b] = 0.0
        for k in range(j, A):
            u = U[j, k]
            for b in range(nb):
                acc[b] = acc[b] + u * Wt[k, b]
        for b in range(nb):
            var[b] = var[b] + Wt[j, b] * acc[b]
    for b in range(nb):
        _finish_nb(r0 + b, ok[r0 + b], ret[b] * ann, var[b] * ann, rf, out)


@njit(parallel=True, cache=True, error_model="numpy")
def sharpe_rows_nb(W, ok, mu, U, ann, rf):
    """Ex-ante scores of every row of ``W`` (n, A) with ``ok`` (n,) bool.

    Blocks of ``LANES`` candidates in parallel; each candidate's result is bit-identical to
    :func:`sharpe_row` (tested), so it does not depend on the chunking. Returns an (n, 3)
    float64 host array: annual return, annual volatility, Sharpe.
    """
    n, A = W.shape
    out = np.empty((n, 3))
    nblocks = (n + LANES - 1) // LANES
    for blk in prange(nblocks):
        Wt = np.empty((A, LANES))
        ret = np.empty(LANES)
        var = np.empty(LANES)
        acc = np.empty(LANES)
        r0 = blk * LANES
        _sharpe_block(W, r0, min(LANES, n - r0), ok, mu, U, ann, rf, Wt, ret, var, acc, out)
    return out


@njit(parallel=True, cache=True, error_model="numpy")
def sharpe_rows_scalar_nb(W, ok, mu, U, ann, rf):
    """Same as :func:`sharpe_rows_nb`, one row at a time with :func:`sharpe_row` (the GPU
    thread's code path; for tests).
    """
    n = W.shape[0]
    out = np.empty((n, 3))
    for r in prange(n):
        sharpe_row_nb(W, r, ok[r], mu, U, ann, rf, out)
    return out


def no_caps(A: int) -> np.ndarray:
    """Upper bounds that never bind (A,)."""
    return np.full(A, _NO_CAP)
