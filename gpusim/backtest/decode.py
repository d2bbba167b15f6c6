"""Per-combination parameters decoded from the flat combination index (DESIGN §3, §6).

A backtest grid is a mixed-radix product (:class:`gpusim.grid.Grid`, C order, the ``weights``
level outermost), so everything a combination needs besides its weight rows — the rebalance
mask, the band rows and the fee — is a pure function of its flat index ``c``. The GPU runner
therefore sends no per-combination arrays: a small resident table (:func:`level_table`) gives,
for each kernel argument of :data:`ARGS`, the stride and size of its zip group and where its
repeat remap starts (zipped Params may repeat a value: :attr:`Grid.codes` maps every repeat to
the position of its first occurrence), and each thread decodes its own positions with
:func:`decode_all` from ``start + thread index``. All the arithmetic is on int64 (grids may
exceed 2**31 combinations).

:func:`decode_all` is a plain body compiled for the CPU here (``decode_all_nb``, which the tests
compare with :meth:`Grid.codes` at indices beyond 2**31) and for the GPU with
``cuda.jit(device=True)`` in :mod:`gpusim.backtest.cuda`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from cpu_ref.jitting import compile_bodies as _compile_bodies

ARGS = ("weights", "rebalance", "threshold", "threshold_abs", "fees")
"""The kernel arguments decoded per combination, in the row order of :func:`level_table`."""
W_ARG, REB_ARG, THR_ARG, ABS_ARG, FEE_ARG = range(len(ARGS))
STRIDE, SIZE, REMAP = 0, 1, 2
"""Columns of the level table: combinations per step of the zip group, its number of values,
and the first entry of the argument's repeat remap (:data:`NO_REMAP`: none)."""
NO_REMAP = -1


def level_table(grid, axis_of: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """``(levels (5, 3) int64, remap (n,) int64)`` of a grid, the rows in the order of
    :data:`ARGS`.

    ``axis_of`` maps the arguments that are Params to their level names; the others are fixed
    (stride 1, size 1: position 0). ``remap`` concatenates the repeat maps (position -> first
    position of its label) of the levels that have one (at least one entry, so that the device
    array is never empty).
    """
    shape = tuple(int(s) for s in grid.shape)
    strides = [int(np.prod(shape[g + 1:], dtype=np.int64)) for g in range(len(shape))]
    levels = np.tile(np.array([1, 1, NO_REMAP], dtype=np.int64), (len(ARGS), 1))
    parts, n = [], 0
    for k, arg in enumerate(ARGS):
        if arg not in axis_of:
            continue
        ax = grid.axis(axis_of[arg])
        levels[k, STRIDE], levels[k, SIZE] = strides[ax.group], shape[ax.group]
        if ax.first is not None:
            levels[k, REMAP] = n
            parts.append(np.asarray(ax.first, dtype=np.int64))
            n += len(ax.first)
    remap = np.concatenate(parts) if parts else np.zeros(1, dtype=np.int64)
    return np.ascontiguousarray(levels), np.ascontiguousarray(remap, dtype=np.int64)


def _max_position(levels, remap, k) -> int:
    size, off = int(levels[k, SIZE]), int(levels[k, REMAP])
    return size - 1 if off == NO_REMAP else int(remap[off:off + size].max())


def check_tables(tables, n_masks: int, n_band_rows: int) -> tuple:
    """Coerce and check the decode tables ``(levels, remap, wfirst, bfirst, fees)`` of
    :func:`combination` (C-contiguous int64, and float64 fees); raises ``ValueError`` when a
    decoded position could fall outside the table it indexes: mask rows (``n_masks``), band
    row pairs ``bfirst`` and their rows (``n_band_rows``), fee values (each in [0, 1)) or the
    schedule offsets ``wfirst``.
    """
    levels, remap, wfirst, bfirst, fees = tables
    levels = np.ascontiguousarray(levels, dtype=np.int64)
    remap = np.ascontiguousarray(remap, dtype=np.int64).reshape(-1)
    wfirst = np.ascontiguousarray(wfirst, dtype=np.int64).reshape(-1)
    bfirst = np.ascontiguousarray(bfirst, dtype=np.int64)
    fees = np.ascontiguousarray(fees, dtype=np.float64).reshape(-1)
    if levels.shape != (len(ARGS), 3) or np.any(levels[:, :2] < 1):
        raise ValueError(f"levels must be ({len(ARGS)}, 3) with strides and sizes >= 1")
    if remap.size < 1:
        raise ValueError("remap must hold at least one entry")
    for k, arg in enumerate(ARGS):
        off, size = int(levels[k, REMAP]), int(levels[k, SIZE])
        if off != NO_REMAP and not (0 <= off and off + size <= remap.size and
                                    remap[off:off + size].min() >= 0 and
                                    remap[off:off + size].max() < size):
            raise ValueError(f"the remap of {arg} must map its {size} positions into 0..{size - 1}")
    top = [_max_position(levels, remap, k) for k in range(len(ARGS))]
    if top[REB_ARG] >= n_masks:
        raise ValueError(f"rebalance positions must index rows of masks (0..{n_masks - 1})")
    if bfirst.ndim != 2 or bfirst.shape[0] <= top[THR_ARG] or bfirst.shape[1] <= top[ABS_ARG]:
        raise ValueError(f"bfirst must have a row per threshold ({top[THR_ARG] + 1}) and a column "
                         f"per threshold_abs value ({top[ABS_ARG] + 1}), got shape {bfirst.shape}")
    if bfirst.min() < 0 or bfirst.max() >= n_band_rows:
        raise ValueError(f"bfirst must index rows of B (0..{n_band_rows - 1})")
    if fees.size <= top[FEE_ARG] or not (np.all(fees >= 0) and np.all(fees < 1)):
        raise ValueError(f"fees must hold {top[FEE_ARG] + 1} values in [0, 1)")
    if wfirst.size and (wfirst.size < top[W_ARG] + 2 or wfirst[0] < 0 or
                        np.any(np.diff(wfirst) < 1)):
        raise ValueError(f"wfirst must hold the increasing first rows of {top[W_ARG] + 1} "
                         "schedules and the end")
    return levels, remap, wfirst, bfirst, fees


def weight_positions(levels, remap, start: int, stop: int) -> tuple[int, int]:
    """``[lo, hi)``: the weight values that combinations ``start .. stop-1`` (stop > start) use.

    ``weights`` is the outermost level of a backtest grid, so its group position increases
    with the flat index; a repeat remap may reorder the values within the positions spanned.
    """
    stride, size, off = (int(x) for x in levels[W_ARG])
    p0, p1 = (start // stride) % size, ((stop - 1) // stride) % size
    if p1 < p0:
        raise ValueError("weights must be the outermost level of the grid")
    if off == NO_REMAP:
        return p0, p1 + 1
    r = remap[off + p0:off + p1 + 1]
    return int(r.min()), int(r.max()) + 1


def weight_span(tables, start: int, stop: int) -> tuple[int, int]:
    """``[r0, r1)``: the stacked weight rows that combinations ``start .. stop-1`` trade to
    (every row of their schedules, or their constant vectors).
    """
    levels, remap, wfirst = tables[:3]
    lo, hi = weight_positions(levels, remap, start, stop)
    return (int(wfirst[lo]), int(wfirst[hi])) if wfirst.size else (lo, hi)


# --------------------------------------------------------------------------------------------
# Bodies (plain Python; compiled for the CPU below and for the GPU in backtest/cuda.py)
# --------------------------------------------------------------------------------------------

def decode(flat, levels, remap, k):
    """Position of combination ``flat``'s value in the values of argument ``k`` (int64)."""
    p = (flat // levels[k, STRIDE]) % levels[k, SIZE]
    off = levels[k, REMAP]
    if off != NO_REMAP:
        p = remap[off + p]
    return p


def decode_all(flat, levels, remap):
    """``(weights, rebalance, threshold, threshold_abs, fees)`` positions of combination
    ``flat`` (the per-combination codes of :meth:`gpusim.grid.Grid.codes`).
    """
    return (decode(flat, levels, remap, W_ARG), decode(flat, levels, remap, REB_ARG),
            decode(flat, levels, remap, THR_ARG), decode(flat, levels, remap, ABS_ARG),
            decode(flat, levels, remap, FEE_ARG))


def combination(flat, tables, w0):
    """Kernel parameters ``(wid, mid, bid, fee)`` of combination ``flat``.

    ``tables = (levels, remap, wfirst, bfirst, fees)``: :func:`level_table`; ``wfirst``
    (K + 1,) int64 first row of each target schedule in the stacked rows (empty for constant
    targets: weight vector ``wi`` is row ``wi``); ``bfirst`` (n threshold values, n
    threshold_abs values) int64 first band row of each pair; ``fees`` (n fee values,) float64.
    ``w0`` is the stacked row of the chunk's first weight row, so that ``wid`` indexes the
    chunk's weight block.
    """
    levels, remap, wfirst, bfirst, fees = tables
    wi, mi, ti, ai, fi = decode_all(flat, levels, remap)
    row = wfirst[wi] if wfirst.shape[0] > 0 else wi
    return row - w0, mi, bfirst[ti, ai], fees[fi]


BODIES = ("decode", "decode_all", "combination")


def compile_bodies(jit, overrides=None):
    """Compile the decode bodies with ``jit`` (see :func:`cpu_ref.jitting.compile_bodies`)."""
    return _compile_bodies(jit, globals(), BODIES, overrides)


_nb = compile_bodies(njit(cache=True))
decode_all_nb = _nb["decode_all"]
combination_nb = _nb["combination"]
