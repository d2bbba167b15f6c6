"""What the sections of the GPU check share: the skip signal and one-line errors."""

from __future__ import annotations


class Skip(Exception):
    """Raised by a section that cannot run here; its message is the reason."""


def one_line(exc: BaseException) -> str:
    """``"Type: first line of the message"`` of an exception."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
