"""``gpusim selftest --gpu``: the GPU check (:mod:`gpusim.selftest`) in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Add ``gpusim selftest`` to an ``argparse`` subparsers object."""
    p = sub.add_parser("selftest", help="prove the GPU path on this machine (writes one JSON)",
                       description="Run the GPU check (--gpu): environment, bit-identical "
                       "populations, parity of every kernel with the CPU, limits and "
                       "throughput; one JSON file. --simulate runs it in the CUDA simulator.")
    p.add_argument("--gpu", action="store_true", help="run the GPU check (the one self-test)")
    p.add_argument("--simulate", action="store_true",
                   help="in Numba's CUDA simulator at tiny sizes (no GPU needed)")
    p.add_argument("--out", default="gpu_check.json", help="JSON file (default gpu_check.json)")
    p.add_argument("--sections", default=None, help="comma-separated subset of the sections")
    p.set_defaults(func=_cmd_selftest)


def _cmd_selftest(args) -> int:
    from gpusim.errors import GpusimError

    if not args.gpu:
        raise GpusimError("selftest checks the GPU path: run gpusim selftest --gpu "
                          "(add --simulate on a machine without a GPU)")
    env = dict(os.environ)
    if args.simulate:       # must be set before numba is imported: a fresh process
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    else:
        env.pop("NUMBA_ENABLE_CUDASIM", None)
    cmd = [sys.executable, "-m", "gpusim.selftest", "--out", args.out]
    cmd += ["--simulate"] if args.simulate else []
    cmd += ["--sections", args.sections] if args.sections else []
    return subprocess.run(cmd, env=env).returncode
