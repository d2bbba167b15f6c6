"""The GPU check: one command that proves the GPU path on a real device (or, with
``simulate=True``, exercises the same code in Numba's CUDA simulator at tiny sizes).

``python scripts/gpu_check.py [--simulate] [--out gpu_check.json]`` or
``gpusim selftest --gpu [--simulate]`` run :func:`main`; it records the device and versions,
runs the ``gpu``-marked tests, checks bit-identical populations for every sampler, search /
backtest / walk-forward / dynopt parity with the CPU paths, throughput as a fraction of measured
ceilings and device memory over repeated calls, and writes one JSON (README "Checking a GPU"
says what each field means). No network and no cvxpy are needed; without CuPy its parts are
reported as skipped.

NUMBA_ENABLE_CUDASIM must be set before numba is imported: run the check in a fresh process
(the script and the CLI do).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from gpusim.selftest.common import Skip, one_line

__all__ = ["SECTIONS", "main", "run_check"]

SECTIONS = ("env", "hardware_tests", "samplers", "search", "limits", "backtest", "strategy",
            "walkforward", "dynopt", "throughput", "crossover", "memory")
"""Sections of the check, in the order they run (and keys of ``sections`` in the JSON)."""
CHECK_VERSION = 1
"""Version of the JSON layout (``check_version``)."""


def run_check(simulate: bool, sections=SECTIONS, say=print) -> dict:
    """Run the check's ``sections``; return the JSON document (see README "Checking a GPU").

    Each section is ``{"status": "ok" | "fail" | "skipped", "seconds": s, ...}``; a failing
    section records ``error`` (one line) and the others still run. ``ok`` is True when no
    section failed.
    """
    sim_env = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
    if simulate != sim_env:
        raise RuntimeError("run the check in a fresh process with NUMBA_ENABLE_CUDASIM="
                           f"{'1' if simulate else '0'} (scripts/gpu_check.py does)")
    from gpusim.selftest import parity, speed

    funcs = {"env": parity.env, "hardware_tests": parity.hardware_tests,
             "samplers": parity.samplers, "search": parity.search, "limits": parity.limits,
             "backtest": parity.backtest, "strategy": parity.strategy,
             "walkforward": parity.walkforward,
             "dynopt": parity.dynopt, "throughput": speed.throughput,
             "crossover": speed.crossover, "memory": speed.memory}
    size = "simulate" if simulate else "device"
    doc = {"check_version": CHECK_VERSION, "mode": "simulator" if simulate else "device",
           "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "sections": {}}
    t_all = time.perf_counter()
    for name in sections:
        say(f"gpu check: {name} ...")
        t0 = time.perf_counter()
        try:
            out = {"status": "ok", **funcs[name](size)}
        except Skip as exc:
            out = {"status": "skipped", "reason": str(exc)}
        except Exception as exc:
            out = {"status": "fail", "error": one_line(exc)}
        if out.get("status") == "ok" and out.get("failures"):
            out["status"] = "fail"
        out["seconds"] = round(time.perf_counter() - t0, 3)
        doc["sections"][name] = out
        say(f"gpu check: {name} {out['status']} ({out['seconds']:.1f} s)"
            + (f": {out.get('error') or out.get('reason') or '; '.join(out['failures'])}"
               if out["status"] != "ok" else ""))
    doc["seconds"] = round(time.perf_counter() - t_all, 3)
    doc["ok"] = all(s["status"] != "fail" for s in doc["sections"].values())
    return doc


def main(argv=None) -> int:
    """Command line of the check; exit 0 when no section failed, 1 otherwise, 2 on bad usage."""
    p = argparse.ArgumentParser(prog="gpu_check", description=__doc__.splitlines()[0])
    p.add_argument("--simulate", action="store_true",
                   help="run in Numba's CUDA simulator at tiny sizes (no GPU needed)")
    p.add_argument("--out", default="gpu_check.json", help="JSON file to write")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated subset of: {','.join(SECTIONS)}")
    a = p.parse_args(argv)
    secs = [s.strip() for s in a.sections.split(",") if s.strip()]
    bad = [s for s in secs if s not in SECTIONS]
    if bad:
        print(f"error: --sections {','.join(bad)} unknown; use some of {','.join(SECTIONS)}",
              file=sys.stderr)
        return 2
    if a.simulate:
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
        if "numba" in sys.modules and not _numba_is_simulated():
            print("error: --simulate needs a fresh process (numba is already imported)",
                  file=sys.stderr)
            return 2
    doc = run_check(a.simulate, secs, say=lambda s: print(s, file=sys.stderr, flush=True))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"{'ok' if doc['ok'] else 'FAILED'}: {out} ({doc['seconds']:.0f} s)")
    return 0 if doc["ok"] else 1


def _numba_is_simulated() -> bool:
    from numba import config

    return bool(config.ENABLE_CUDASIM)
