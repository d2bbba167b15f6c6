"""The chunk loop shared by the grid calls (backtest, dynopt): a progress bar, Ctrl-C at a
chunk boundary (:mod:`gpusim.interrupt`), and the count of what finished.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gpusim.interrupt import Interrupt

__all__ = ["ChunkRun", "run_chunks"]


@dataclass
class ChunkRun:
    """What a :func:`run_chunks` loop did.

    Attributes
    ----------
    done : rows finished (``out[:done]`` is filled), a multiple of the chunk size or C.
    partial : True when Ctrl-C stopped the loop before the last chunk.
    n_chunks : chunks run.
    elapsed_s : wall time of the loop (compilation excluded: the caller compiles first).
    """

    done: int
    partial: bool
    n_chunks: int
    elapsed_s: float


def run_chunks(out: np.ndarray, chunk_size: int, chunk: Callable[[int, int], np.ndarray], *,
               desc: str, progress: bool, unit_scale: bool = False) -> ChunkRun:
    """Fill ``out[start:stop] = chunk(start, stop)`` for consecutive chunks of rows.

    Parameters
    ----------
    out : (C, M) host array of results, one row per combination.
    chunk_size : rows per call of ``chunk``.
    chunk : runs the kernel on rows ``[start, stop)`` and returns their (stop - start, M) rows.
    desc, progress, unit_scale : the progress bar's label, whether it shows (on a terminal
        only) and whether its counts are scaled (k, M).
    """
    from tqdm.auto import tqdm

    C = out.shape[0]
    done = n_chunks = 0
    partial = False
    t0 = time.perf_counter()
    bar = tqdm(total=C, unit="comb", unit_scale=unit_scale, desc=desc,
               disable=not progress or not sys.stderr.isatty(), leave=False)
    stop_req = Interrupt().install()    # Ctrl-C ends the loop at a chunk boundary
    try:
        for start in range(0, C, chunk_size):
            if stop_req:
                break
            stop = min(C, start + chunk_size)
            out[start:stop] = chunk(start, stop)
            done, n_chunks = stop, n_chunks + 1
            bar.update(stop - start)
    except KeyboardInterrupt:
        partial = True
    finally:
        stop_req.restore()
        bar.close()
    return ChunkRun(done, partial or stop_req.requested, n_chunks, time.perf_counter() - t0)
