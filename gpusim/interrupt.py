"""Ctrl-C between chunks: long calls stop at a chunk boundary and return what they finished.

A ``KeyboardInterrupt`` raised while a parallel Numba kernel runs surfaces as
``SystemError: ... returned a result with an exception set`` and loses the work done. Long calls
(search, backtest, walk-forward, dynopt, sweeps) therefore run their chunk loop inside
:func:`deferred_interrupt`: SIGINT only sets a flag, the loop checks it between chunks and returns
the finished part marked ``partial``. A second Ctrl-C while the first is pending raises
``KeyboardInterrupt`` at once (the way out of a chunk that never ends).

Outside the main thread (where signal handlers cannot be installed) the context manager does
nothing and the loop sees no request. Nested loops (a tuning batch that runs a walk-forward
call): the outermost loop owns Ctrl-C, an inner one installed while it is active is inert and runs
to its end, so the first Ctrl-C finishes the batch in flight and a second one stops at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Interrupt", "deferred_interrupt"]


class Interrupt:
    """The pending-interrupt flag of a chunk loop.

    Use it as ``with deferred_interrupt() as stop:`` or, in a loop that already has a
    ``try/finally``, as ``stop = Interrupt().install()`` ... ``finally: stop.restore()``.

    Attributes
    ----------
    requested : bool
        True once SIGINT arrived (or :meth:`request` was called).
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None
        self._installed = False

    def request(self) -> None:
        """Ask the loop to stop at its next chunk boundary (what the SIGINT handler does)."""
        self.requested = True

    def __bool__(self) -> bool:
        return self.requested

    def _handler(self, signum, frame) -> None:
        if self.requested:                        # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.request()

    def install(self) -> Interrupt:
        """Route SIGINT to :meth:`request` (main thread only, and only when no outer
        :class:`Interrupt` owns SIGINT; otherwise a no-op). Returns self.
        """
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            if isinstance(getattr(self._previous, "__self__", None), Interrupt):
                return self                       # nested: the outer loop decides
            signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def restore(self) -> None:
        """Put back the SIGINT handler that :meth:`install` replaced."""
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False


@contextmanager
def deferred_interrupt() -> Iterator[Interrupt]:
    """Turn SIGINT into a flag for the duration of the block.

    Yields
    ------
    Interrupt
        Check ``flag.requested`` (or ``bool(flag)``) between chunks; on True, stop and return
        the finished work marked partial. The previous handler is restored on exit.
    """
    flag = Interrupt().install()
    try:
        yield flag
    finally:
        flag.restore()
