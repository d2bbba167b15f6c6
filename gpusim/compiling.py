"""Say when Numba compiles: a one-line notice before a long first-run compilation, and its time.

Numba compiles a kernel the first time it meets a new signature and caches the machine code on
disk (``cache=True``), so only the first run after an install (or a change of the code) waits.
:func:`compile_notice` wraps the warm-up call that a command makes before its progress bar starts:
when Numba starts compiling inside the block (a ``numba:compile`` event, which a load from the
on-disk cache never fires) it prints ``compiling <what> (first run only, ~N s)`` once, so no bar
sits still with a false ETA; afterwards ``watch.seconds`` is the block's time and
``watch.compiled`` says whether it compiled.

    with compile_notice("the search kernel", 8, enabled=progress is not False) as watch:
        runner.run(start, 1)
    summary["compile_s"] = watch.seconds
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["CompileWatch", "compile_notice", "compile_text"]


@dataclass
class CompileWatch:
    """What happened inside a :func:`compile_notice` block.

    Attributes
    ----------
    compiled : True when Numba compiled something (a cache miss) inside the block.
    seconds : wall time of the block (compilation or cache loading, plus the warm-up call).
    """

    compiled: bool = False
    seconds: float = 0.0


def _say(line: str) -> None:
    """A line on stderr, above any progress bar that is showing (``tqdm.write``)."""
    try:
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr)
    except ImportError:                      # pragma: no cover - tqdm is a dependency
        print(line, file=sys.stderr, flush=True)


@contextmanager
def compile_notice(what: str, estimate_s: float | None, *, enabled: bool = True,
                   say: Callable[[str], None] | None = None):
    """Print ``compiling <what> (first run only, ~<estimate_s> s)`` once when Numba starts
    compiling inside the block; yields a :class:`CompileWatch`, filled when the block ends.

    Parameters
    ----------
    what : what is compiled, in words ("the search kernel").
    estimate_s : typical first-run compilation time on a 2-core machine, in seconds (None:
        the notice gives no figure).
    enabled : print the notice (the watch is filled either way).
    say : where the notice goes (default: a line on stderr).
    """
    from numba.core import event

    watch = CompileWatch()
    say = say or _say

    class _Listener(event.Listener):
        def on_start(self, ev):
            if not watch.compiled:
                watch.compiled = True
                if enabled:
                    about = "" if estimate_s is None else f", ~{estimate_s:.0f} s"
                    say(f"compiling {what} (first run only{about}; cached on disk afterwards)")

        def on_end(self, ev):
            pass

    t0 = time.perf_counter()
    try:
        with event.install_listener("numba:compile", _Listener()):
            yield watch
    finally:
        watch.seconds = time.perf_counter() - t0


def compile_text(seconds: float | None, compiled: bool | None) -> str:
    """The clause of a run line about compilation, e.g. ``" (+ 7.9 s compiling, first run
    only)"``; empty when nothing was compiled.
    """
    if not compiled or not seconds:
        return ""
    return f" (+ {seconds:.1f} s compiling, first run only)"
