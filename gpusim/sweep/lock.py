"""One run at a time per sweep folder: the lock file ``OUT/sweep.lock``.

The lock is created atomically (``O_CREAT | O_EXCL``) and holds its owner: pid, host, start
time (and the process's start tick on Linux, so a reused pid is not taken for the owner). A
second run on the folder refuses with one line naming the owner. A lock left by a run that
died without releasing it (SIGKILL, power loss) is *stale* when its host is this machine and
its process is gone: it is taken over with a :class:`SweepWarning`. A lock held on another
host is never taken over (its pid cannot be checked from here): the message says which file
to delete once that run is known to be gone. The lock is released on exit, also on an
exception or a Ctrl-C (:class:`FolderLock` is a context manager).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
import warnings
from pathlib import Path

from gpusim.errors import GpusimError
from gpusim.sweep.store import LOCK, SweepWarning, now

__all__ = ["FolderLock"]


def _start_tick(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _alive(owner: dict) -> bool:
    """True while the process that wrote ``owner`` runs (on this host)."""
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass                                             # someone else's process: alive
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):                           # a zombie: dead, not yet reaped
            return False
    except (OSError, IndexError):
        pass
    tick = _start_tick(pid)
    return owner.get("start_tick") is None or tick is None or tick == owner["start_tick"]


def _describe(owner: dict) -> str:
    return (f"pid {owner.get('pid')} on {owner.get('host')}, started "
            f"{owner.get('started')}")


class FolderLock:
    """``with FolderLock(out): ...``: hold ``out/sweep.lock`` for the duration.

    Attributes
    ----------
    path : the lock file.
    owner : what this run wrote into it (pid, host, started, start_tick, token).
    took_over : the stale owner this run replaced, or None.
    """

    def __init__(self, out: Path):
        self.path = Path(out) / LOCK
        self.owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": now(),
                      "start_tick": _start_tick(os.getpid()), "token": uuid.uuid4().hex}
        self.took_over: dict | None = None

    def _read(self, path: Path | None = None) -> dict | None:
        """The owner recorded in the lock (None when missing); waits briefly for a lock being
        written, then raises on one that stays unreadable.
        """
        path = path or self.path
        for _ in range(20):
            try:
                owner = json.loads(path.read_text())
                if isinstance(owner, dict):
                    return owner
            except FileNotFoundError:
                return None
            except (OSError, ValueError):
                pass
            time.sleep(0.025)
        raise GpusimError(f"the lock file {path} is unreadable; if no sweep runs on "
                          f"{path.parent}, delete it and run again")

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(self.owner) + "\n")
        return True

    def _take_over(self, owner: dict) -> None:
        """Move the stale lock of ``owner`` aside (atomically), unless another run replaced it
        meanwhile (then it is put back).
        """
        aside = self.path.with_name(f".{LOCK}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        if self._read(aside) != owner:      # a new lock of a live run: put it back
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
        os.unlink(aside)

    def acquire(self) -> FolderLock:
        for _ in range(5):
            if self._create():
                return self
            owner = self._read()
            if owner is None:
                continue                                 # released meanwhile: try again
            if owner.get("host") != self.owner["host"] or _alive(owner):
                raise GpusimError(
                    f"{self.path.parent} is in use by another sweep run ({_describe(owner)}); "
                    f"wait for it to finish, or if that run is gone, delete {self.path}")
            warnings.warn(f"taking over the lock of {self.path.parent}: the run that held it "
                          f"({_describe(owner)}) is no longer running", SweepWarning,
                          stacklevel=3)
            self._take_over(owner)
            self.took_over = owner
        raise GpusimError(f"cannot lock {self.path.parent}: other runs keep taking it; try "
                          "again")

    def release(self) -> None:
        """Delete the lock file if it is still this run's."""
        try:
            if self._read() == self.owner:
                self.path.unlink()
        except (OSError, GpusimError):
            pass

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
