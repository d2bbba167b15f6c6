"""Sweep execution: the ``local`` and ``dask`` engines that run chunks.

Engines yield the same events in completion order: ``("done", chunk, attempt, (table, info))``
or ``("error", chunk, attempt, (message, traceback), final)``. A chunk that raises is retried
``retries`` times (default once) before its error is final. Dask is imported only here, and
only when ``engine="dask"`` is used.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice

from gpusim.errors import GpusimError

ENGINES = ("local", "dask")
DASK_MISSING = ("engine 'dask' needs Dask: pip install 'gpusim[dask]' (or pip install "
                "'dask[distributed]')")


def check_engine(engine: str) -> None:
    """Raise the one-line error of a missing optional engine (Dask) without importing it, so
    that a run fails before it makes its output folder.
    """
    import importlib.util

    if engine == "dask" and importlib.util.find_spec("distributed") is None:
        raise GpusimError(DASK_MISSING)


# ----------------------------------------------------------------------------- chunk call
def execute_chunk(runner, ctx, point: dict, part: dict):
    """Run one chunk (in-process or on a Dask worker); adds timing and worker to its info."""
    t0 = time.perf_counter()
    table, info = runner.run(ctx, point, part)
    info = {**info, "elapsed_s": time.perf_counter() - t0,
            "worker": f"{socket.gethostname()}:{os.getpid()}"}
    return table, info


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _error(exc: BaseException) -> tuple[str, str]:
    msg = f"{type(exc).__name__}: {exc}".strip().splitlines()
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return (msg[0] if msg else type(exc).__name__)[:500], tb[-4000:]


class BackgroundWriter:
    """One thread that runs the bookkeeping of finished chunks (files, manifest) in order,
    while the next chunk computes. The queue is bounded (at most ``depth`` finished chunks
    wait in memory); an error in the thread is raised in the caller at the next call.
    """

    def __init__(self, depth: int = 2):
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.exc: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="gpusim-sweep-writer",
                                       daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            fn = self.q.get()
            if fn is None:
                return
            if self.exc is None:
                try:
                    fn()
                except BaseException as exc:
                    self.exc = exc

    def _check(self) -> None:
        if self.exc is not None:
            exc, self.exc = self.exc, None
            raise exc

    def submit(self, fn) -> None:
        self._check()
        self.q.put(fn)

    def close(self) -> None:
        """Wait for everything submitted, then stop; raises the thread's error if any."""
        if self.thread.is_alive():
            self.q.put(None)
            self.thread.join()
        self._check()


# ----------------------------------------------------------------------------- engines
class LocalEngine:
    """Chunks one after the other in this process (each chunk uses every core)."""

    name = "local"

    def describe(self) -> dict:
        return {"engine": "local", "workers": 1}

    def events(self, runner, ctx, chunks, retries: int) -> Iterator[tuple]:
        for c in chunks:
            for attempt in range(1, retries + 2):
                try:
                    res = execute_chunk(runner, ctx, c["point_values"], c["part"])
                except Exception as exc:
                    final = attempt > retries
                    yield ("error", c, attempt, _error(exc), final)
                    if final:
                        break
                else:
                    yield ("done", c, attempt, res)
                    break

    def close(self) -> None:
        pass


class DaskEngine:
    """Chunks as Dask tasks on a cluster: a new ``LocalCluster`` (``workers`` processes, one
    thread each) or the scheduler at ``scheduler`` (an address or a ``distributed.Client``).

    A worker that dies loses only its in-flight chunk: Dask reschedules it on another worker.
    """

    name = "dask"

    def __init__(self, scheduler=None, workers: int | None = None):
        try:
            import distributed
        except ImportError:
            raise GpusimError(DASK_MISSING) from None
        self.cluster = None
        self.own_client = True
        if scheduler is None:
            n = 2 if workers is None else int(workers)
            if n < 1:
                raise GpusimError(f"workers={workers!r} must be >= 1")
            # one chunk at a time per worker; Numba's threads share the cores between workers
            # (results do not depend on the thread count)
            env = {} if "NUMBA_NUM_THREADS" in os.environ else {
                "NUMBA_NUM_THREADS": str(max(1, cores() // n))}
            self.cluster = distributed.LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                silence_logs=logging.ERROR, env=env)
            self.client = distributed.Client(self.cluster)
        elif isinstance(scheduler, str):
            try:
                self.client = distributed.Client(scheduler, timeout="20s")
            except (OSError, TimeoutError) as exc:
                raise GpusimError(f"cannot reach the Dask scheduler at {scheduler}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else exc!r}") from None
        else:
            self.client, self.own_client = scheduler, False
        self.address = self.client.scheduler.address

    def describe(self) -> dict:
        nthreads = self.client.nthreads()
        return {"engine": "dask", "scheduler": self.address, "workers": len(nthreads),
                "local_cluster": self.cluster is not None}

    def events(self, runner, ctx, chunks, retries: int) -> Iterator[tuple]:
        from distributed import as_completed

        client = self.client
        [ctx_f] = client.scatter([ctx], broadcast=True, hash=False)
        window = max(4, 2 * sum(client.nthreads().values()) + 2)
        todo = iter(chunks)
        meta: dict = {}
        ac = as_completed()
        token = uuid.uuid4().hex[:8]

        def submit(c, attempt):
            f = client.submit(execute_chunk, runner, ctx_f, c["point_values"], c["part"],
                              pure=False, key=f"gpusim-sweep-{token}-{c['id']}-{attempt}")
            meta[f.key] = (c, attempt, f)
            ac.add(f)

        try:
            for c in islice(todo, window):
                submit(c, 1)
            for f in ac:
                c, attempt, _ = meta.pop(f.key)
                try:
                    res = f.result()
                except Exception as exc:
                    final = attempt > retries
                    yield ("error", c, attempt, _error(exc), final)
                    if not final:
                        submit(c, attempt + 1)
                else:
                    yield ("done", c, attempt, res)
                finally:
                    f.release()
                nxt = next(todo, None)
                if nxt is not None:
                    submit(nxt, 1)
        finally:
            if meta:
                client.cancel([f for _, _, f in meta.values()])
            client.cancel([ctx_f])

    def close(self) -> None:
        if self.own_client:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


@contextmanager
def open_engine(engine: str = "local", scheduler=None, workers: int | None = None):
    """The engine named ``engine`` (``local`` or ``dask``), closed on exit."""
    if engine not in ENGINES:
        raise GpusimError(f"engine={engine!r} is unknown; use one of {', '.join(ENGINES)}")
    if engine == "local" and scheduler is not None:
        raise GpusimError("a scheduler address needs engine 'dask' (--engine dask)")
    eng = LocalEngine() if engine == "local" else DaskEngine(scheduler, workers)
    try:
        yield eng
    finally:
        eng.close()
