"""``gpusim info``: the backends available on this machine, and why not."""

from __future__ import annotations

from typing import Any

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Add ``gpusim info`` to an ``argparse`` subparsers object."""
    p = sub.add_parser("info", help="backends available on this machine, and why not",
                       description="List the backends of this machine (cpu, gpu, gpu-simulator): "
                       "which are usable, and for each that is not, "
                       "why (what to install, or the reason the GPU probe failed).")
    p.set_defaults(func=_cmd_info)


def _cmd_info(args) -> int:
    from gpusim.backend import info

    for name, d in info().items():
        print(f"{name:14s} {'yes' if d['available'] else 'no ':3s}  {d['detail']}")
    return 0
