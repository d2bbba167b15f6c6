"""Compile every numba.cuda kernel to PTX for a real GPU target, on a machine without a GPU.

The CUDA simulator (used by the tests) runs kernels as Python, so it cannot show that a kernel
types and lowers for the real CUDA target. This script does that part: it compiles each kernel
with NVVM for a compute capability (default 8.0) and asserts every bit-identity claim of the
docs (``CLAIMS``): no fused multiply-add (and no approximate f64 division or square root) in
the sampler's -log u, in the whole uniform/Dirichlet sample body, and in the guided search's
scoring kernel. It prints the size of each kernel's PTX (characters, instructions, virtual
registers, fma) and how many of its multiply-adds the compiler contracted from separate * and +
(``fma_contracted``: compiled again with ``-fma=0``; the rest are explicit, e.g. in libdevice).

    python scripts/check_ptx.py [--cc 8.0] [--json]

Needs libNVVM and NVRTC (a CUDA toolkit, or the nvidia-cuda-nvrtc wheel beside a toolkit's
libnvvm) and must run WITHOUT NUMBA_ENABLE_CUDASIM. Exit status 0 when every check passes,
1 when one fails, 3 when the compiler is not available here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import re
import sys
import time
import types as pytypes
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


_RECORD = r"""
import json, pickle, numba, numpy as np
import gpusim
from gpusim.walkforward import cuda as wc

seen = {}
class Rec:
    def __init__(self, name, k):
        self.name, self.k = name, k
    def __getitem__(self, cfg):
        def launch(*args):
            # numba types of the arguments (arrays, scalars and tuples/records of them), with
            # C-contiguous arrays as on the device
            seen.setdefault(self.name, pickle.dumps(tuple(numba.typeof(a) for a in args)).hex())
            return self.k[cfg](*args)
        return launch
for name in ("search_cuda", "execute_cuda"):
    setattr(wc, name, Rec(name, getattr(wc, name)))
m = gpusim.synthetic_market(n_assets=3, n_bars=60, seed=1)
gpusim.walkforward(m, every=20, lookback=25, num_tests=8, start=30, backend="gpu",
                   constraints=[gpusim.WeightBounds(hi=0.8)], progress=False)
print(json.dumps(seen))
"""


def walkforward_signatures() -> dict:
    """Argument types of the walk-forward kernels, recorded from a tiny run in the simulator."""
    import subprocess

    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    r = subprocess.run([sys.executable, "-c", _RECORD], env=env, capture_output=True, text=True,
                       timeout=600)
    if r.returncode:
        raise RuntimeError("recording the walk-forward kernel signatures failed: "
                           f"{r.stderr[-500:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def ptx_counts(ptx: str) -> dict:
    """Size of a PTX module: ``instructions`` (statements, not directives) and ``registers``
    (virtual registers declared by ``.reg .t %x<N>``; ptxas allocates the real ones from them)."""
    regs = sum(int(m) for m in re.findall(r"^\s*\.reg\s+\.\w+\s+%\w+<(\d+)>;", ptx, re.M))
    instr = 0
    for line in ptx.splitlines():
        t = line.strip()
        if t.endswith(";") and not t.startswith((".", "//")):
            instr += 1
    return {"instructions": instr, "registers": regs}


_LABEL = re.compile(r"^\s*(\$?[\w$]+):\s*$")
_BRANCH = re.compile(r"\bbra(?:\.uni)?\s+(\$?[\w$]+);")


def inner_loop_cost(ptx: str, fma: str = "fma.rn.f64") -> dict | None:
    """Instructions per multiply-add of the innermost loop that contains ``fma``.

    A loop is a label and the backward branch to it; the innermost loop with at least one
    ``fma`` (smallest body) is measured: ``instructions`` in its body, ``fma`` among them and
    ``per_fma`` = instructions / fma (an unrolled loop has several). None when none is found.
    """
    lines = ptx.splitlines()
    where = {}
    for n, line in enumerate(lines):
        m = _LABEL.match(line)
        if m:
            where[m.group(1)] = n
    best = None
    for n, line in enumerate(lines):
        m = _BRANCH.search(line)
        if not m or m.group(1) not in where or where[m.group(1)] >= n:
            continue
        body = [x.strip() for x in lines[where[m.group(1)] + 1:n + 1]]
        instr = [x for x in body if x.endswith(";") and not x.startswith((".", "//"))]
        nf = sum(x.startswith(fma) for x in instr)
        if nf and (best is None or len(instr) < best["instructions"]):
            best = {"instructions": len(instr), "fma": nf, "per_fma": round(len(instr) / nf, 2)}
    return best


NO_FMA = "no-fma"
"""Check: no ``fma`` instruction at all in the kernel's PTX."""
NO_CONTRACTION = "no-contraction"
"""Check: the compiler fused none of the kernel's own multiply-adds (``fma_contracted`` = fma
with NVVM's default ``-fma=1`` minus fma with ``-fma=0``; fma that remains under ``-fma=0`` is
written explicitly, e.g. inside libdevice's log/pow)."""
CLAIMS = {
    "rng -log(u) probe": (NO_FMA, "docs/search.md Randomness: the Dirichlet sampler's -log u is "
                                  "FMA-free"),
    "rng sample probe (uniform, dirichlet)": (
        NO_FMA, "docs/search.md Randomness: uniform and dirichlet populations round identically on "
                "GPUs (the whole sample body without the alpha != 1 branch)"),
    "guided.sharpe_rows_cuda": (NO_FMA, "docs/guided.md: scores from the same body with "
                                        "never-fused arithmetic (bit-identical to the CPU)"),
}
"""The bit-identity claims of the docs, asserted on the named kernels."""
_APPROX = re.compile(r"\b(?:div|sqrt|rcp|rsqrt)\.approx\.(?:ftz\.)?f64")


class _NoContraction:
    """Within the block, NVVM compiles with ``-fma=0`` (no contraction of a*b+c)."""

    def __enter__(self):
        from numba.cuda.cudadrv import nvvm

        self.nvvm, self.real = nvvm, nvvm.compile_ir

        def compile_ir(llvmir, **options):
            return self.real(llvmir, **{**options, "fma": False})

        nvvm.compile_ir = compile_ir
        return self

    def __exit__(self, *exc):
        self.nvvm.compile_ir = self.real


def _band_rebalance(c, params, targets):
    """A user allocation function (issue 11's example) for the strategy kernel."""
    drift = 0.0
    for j in range(c.n_assets):
        drift = max(drift, abs(c.weights[j] - c.targets[j]))
    if c.t == 0 or drift >= params[0]:
        for j in range(c.n_assets):
            targets[j] = -math.log(c.uniform(j, 0))
        s = targets.sum()
        for j in range(c.n_assets):
            targets[j] /= s
        return True
    return False


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cc", default="8.0", help="compute capability, e.g. 7.0, 8.0, 9.0")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        print("error: unset NUMBA_ENABLE_CUDASIM (the simulator has no compiler)", file=sys.stderr)
        return 3
    cc = tuple(int(x) for x in a.cc.split("."))

    import numba.cuda.dispatcher as disp

    # Device functions are compiled for "the current device": pretend one with this CC.
    disp.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=cc)
    from numba import cuda
    from numba import types as t

    f8, i8, u8, b1 = t.float64, t.int64, t.uint64, t.boolean
    v, m = f8[::1], f8[:, ::1]

    def kernels():
        from gpusim._cuda import rng as rng_dev
        from gpusim.backtest import cuda as backtest_cuda
        from gpusim.dynopt import cuda as dynopt_cuda
        from gpusim.dynopt import steps as dynopt_steps
        from gpusim.search import cuda as search_cuda
        from gpusim.search import steps as search_steps

        def neglog_probe(key, out):
            i = cuda.grid(1)
            if i < out.shape[0]:
                out[i] = rng_dev.neg_log_uniform_dev(rng_dev.bits_dev(key, i, 0, 0))

        stream = t.NamedTuple((u8, i8, f8, v, v), search_steps.Stream)
        th, cand, f4 = t.Tuple((f8, i8)), t.Tuple((v, i8[::1], i8[::1])), t.float32[::1]
        yield "search_cuda", search_cuda.search_cuda.py_func, (
            stream, f8, i8, i8, v, v, f8, f8, f8, th, v, cand, i8[:, ::1]), "loop:fma.rn.f64"
        yield "search_cuda_f32", search_cuda.search_cuda_f32.py_func, (
            stream, f8, i8, i8, f4, f4, f8, f8, f8, th, v, cand, i8[:, ::1]), "loop:fma.rn.f32"
        from gpusim.search import gemm_cuda

        yield "search_gemm_tile", gemm_cuda.generate_tile_cuda.py_func, (
            stream, f8, i8, m, b1[::1]), None
        acct, scratch3 = t.UniTuple(f8, 3), t.Tuple((m, m, i8[:, ::1]))
        yield "backtest_cuda", backtest_cuda.backtest_cuda.py_func, (
            m, m, i8[::1], i8[::1], b1[:, ::1], i8[::1], m, i8[::1], i8[::1], v, acct, scratch3,
            m), None
        tables = t.Tuple((i8[:, ::1], i8[::1], i8[::1], i8[:, ::1], v))
        yield "backtest_grid_cuda", backtest_cuda.backtest_grid_cuda.py_func, (
            m, m, i8[::1], b1[:, ::1], m, i8[::1], tables, i8, i8, acct, scratch3, m), None
        inputs = t.NamedTuple((m, m, m, m, m, f8[:, :, ::1], i8[::1]), dynopt_steps.Inputs)
        scratch = t.NamedUniTuple(m, 7, dynopt_steps.Scratch)
        yield "dynopt_cuda", dynopt_cuda.dynopt_cuda.py_func, (
            inputs, b1[:, ::1], i8[::1], v, v, v, f8, i8, scratch, m, f8[:, :, ::1], b1, b1,
            f8), None
        from gpusim.walkforward import cuda as walkforward_cuda

        for name, blob in walkforward_signatures().items():
            sig = pickle.loads(bytes.fromhex(blob))
            yield f"walkforward.{name}", getattr(walkforward_cuda, name).py_func, sig, None
        yield "rng -log(u) probe", neglog_probe, (u8, v), None

        def _no_gamma(key, i, j, alpha):   # the alpha != 1 branch (libm) stubbed out
            return 1.0

        from cpu_ref import rng as ref_rng

        nog = ref_rng.compile_bodies(cuda.jit(device=True),
                                     {**rng_dev.exact_arith(), "std_gamma":
                                      cuda.jit(device=True)(_no_gamma)})["sample"]

        def sample_probe(key, code, lo, hi, lo_sum, W, ok):
            r = cuda.grid(1)
            if r < W.shape[0]:
                ok[r] = nog(key, r, code, 1.0, lo, hi, lo_sum, W[r])

        yield "rng sample probe (uniform, dirichlet)", sample_probe, (
            u8, i8, v, v, f8, m, b1[::1]), None
        from gpusim._cuda import population
        from gpusim.search import guided_cuda

        yield "population_cuda", population.population_cuda.py_func, (
            u8, i8, i8, f8, v, v, f8, m, b1[::1]), None
        yield "guided.sharpe_rows_cuda", guided_cuda.sharpe_rows_cuda.py_func, (
            m, b1[::1], v, m, f8, f8, m), None
        from gpusim.strategy import cuda as strategy_cuda
        from gpusim.strategy.compile import prepare

        yield "strategy_cuda (random-target band function)", strategy_cuda.cuda_kernel(
            prepare(_band_rebalance), 5).py_func, (
            m, m, i8[::1], b1[:, ::1], i8[::1], m, v, acct, u8, i8[::1],
            t.Tuple((m, m, i8[:, ::1], m, m, m)), m), None

    results, ok = [], True
    try:
        for name, fn, sig, check in kernels():
            t0 = time.perf_counter()
            ptx, _ = cuda.compile_ptx(fn, sig, cc=cc)
            with _NoContraction():
                ptx0, _ = cuda.compile_ptx(fn, sig, cc=cc)
            nf = len(re.findall(r"\bfma\.rn\.f(?:64|32)", ptx))
            r = {"kernel": name, "ptx_chars": len(ptx), "fma": nf,
                 "fma_contracted": nf - len(re.findall(r"\bfma\.rn\.f(?:64|32)", ptx0)),
                 "approx_f64": len(_APPROX.findall(ptx)), **ptx_counts(ptx),
                 "seconds": round(time.perf_counter() - t0, 2), "ok": True}
            claim, _why = CLAIMS.get(name, (None, None))
            if claim:
                r["claim"] = claim
                bad = r["fma"] if claim == NO_FMA else r["fma_contracted"]
                if bad or r["approx_f64"]:
                    r["ok"] = ok = False
            if check and check.startswith("loop:"):
                r["inner_loop"] = inner_loop_cost(ptx, check[5:])
            results.append(r)
    except Exception as exc:  # compiler missing: say so, distinctly from a failed check
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "nvvm" in msg.lower() or "nvrtc" in msg.lower() or "libNVVM" in msg:
            print(f"unavailable: {msg}", file=sys.stderr)
            return 3
        raise
    if a.json:
        print(json.dumps({"cc": a.cc, "ok": ok, "kernels": results}, indent=2))
    else:
        for r in results:
            print(f"{r['kernel']:25s} {'ok  ' if r['ok'] else 'FAIL'} {r['ptx_chars']:7d} chars "
                  f"{r['instructions']:6d} instr {r['registers']:5d} vregs {r['fma']:4d} fma "
                  f"({r['fma_contracted']} contracted)"
                  f"{' [' + r['claim'] + ']' if r.get('claim') else ''}"
                  f"  {r['seconds']:.2f} s")
            if r.get("inner_loop"):
                c = r["inner_loop"]
                print(f"{'':25s} inner loop: {c['instructions']} instructions, {c['fma']} "
                      f"multiply-adds: {c['per_fma']} per multiply-add")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
