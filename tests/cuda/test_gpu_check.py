"""scripts/gpu_check.py: the one-command GPU check, run here in the CUDA simulator.

On a GPU machine the same script runs at full size (README "Checking a GPU"); here it must
pass at tiny sizes and write the JSON that the README describes.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpusim import selftest
from gpusim.selftest import parity

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.py"
NOT_ON_GPU_IMAGE = ("cvxpy", "clarabel", "vectorbt", "pypfopt", "sklearn", "optuna", "dask")
"""Packages a GPU machine may lack: the check must not import them."""


@pytest.mark.slow
def test_gpu_check_simulate_writes_the_json(tmp_path):
    """The script at tiny sizes in the simulator, with the solver and parity-tool packages
    made unimportable."""
    out = tmp_path / "check.json"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    # as on the GPU machine's image: no cvxpy, Clarabel, vectorbt, PyPortfolioOpt, ...
    run = ("import runpy, sys\n"
           f"for m in {NOT_ON_GPU_IMAGE!r}:\n    sys.modules[m] = None\n"
           f"sys.argv = [{str(SCRIPT)!r}, '--simulate', '--out', {str(out)!r}]\n"
           f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n")
    r = subprocess.run([sys.executable, "-c", run], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith("ok: ")
    doc = json.loads(out.read_text())
    assert doc["mode"] == "simulator" and doc["ok"] is True
    assert doc["check_version"] == selftest.CHECK_VERSION
    s = doc["sections"]
    assert list(s) == list(selftest.SECTIONS)
    status = {k: v["status"] for k, v in s.items()}
    assert status == {**dict.fromkeys(selftest.SECTIONS, "ok"), "hardware_tests": "skipped",
                      "memory": "skipped"}
    assert s["env"]["numba"] and s["env"]["device"]["name"] == "CUDA simulator"
    # every sampler, bit for bit (alpha = 1) at both ends of the stream
    cases = s["samplers"]["cases"]
    assert {(c["sampler"], c["alpha"]) for c in cases} == {
        ("uniform", 1.0), ("dirichlet", 1.0), ("dirichlet", 0.5), ("dirichlet", 3.0)}
    assert {c["start"] for c in cases} == {0, 2 ** 40 - cases[0]["n"]}
    assert all(c["identical"] for c in cases if c["alpha"] == 1.0)
    assert all(c["ok"] for c in cases)
    ks = {c["k"] for c in s["search"]["cases"]}
    assert ks == set(parity.SIZES["simulate"]["search_ks"])
    assert all(c["same_candidates"] for c in s["search"]["cases"])
    assert s["limits"]["cases"][0]["A"] == 256 and all(c["ok"] for c in s["limits"]["cases"])
    for name in ("backtest", "walkforward", "dynopt"):
        assert s[name]["max_rel_vs_cpu"] <= parity.METRIC_RTOL
    assert s["backtest"]["max_rel_vs_cpu_ref"] <= parity.METRIC_RTOL
    assert s["strategy"]["combinations"] == 6
    assert s["strategy"]["max_rel_vs_cpu"] <= parity.METRIC_RTOL
    kinds = {k["kernel"] for k in s["throughput"]["kernels"]}
    assert kinds == {"search", "guided", "backtest", "strategy_builtin", "strategy_alloc",
                     "walkforward", "dynopt"}
    assert {c["path"] for c in s["limits"]["cases"]} == {"fused", "gemm"}
    assert max(c["A"] for c in s["limits"]["cases"]) == parity.LIMIT_BEYOND
    assert all(k["seconds"] > 0 and (k.get("fraction_of_gemm") or k.get("fraction_of_dgemm")) > 0
               for k in s["throughput"]["kernels"])
    assert s["throughput"]["ceilings"]["dgemm_flops"] > 0
    cross = s["crossover"]
    assert [c["A"] for c in cross["cases"]] == [4, 12]
    assert all(c["same_top_k"] and c["fused_seconds"] > 0 and c["gemm_seconds"] > 0
               and c["faster"] in ("fused", "gemm") for c in cross["cases"])
    assert cross["auto_gemm_from_A"] == 128 and all(c["auto"] == "fused" for c in cross["cases"])


def test_a_failing_section_fails_the_check_and_the_rest_still_runs(monkeypatch):
    def broken(size):
        raise ValueError("populations differ\nsecond line")

    monkeypatch.setattr(parity, "samplers", broken)
    doc = selftest.run_check(True, ("samplers", "dynopt", "memory"), say=lambda s: None)
    assert doc["ok"] is False
    assert doc["sections"]["samplers"] == {"status": "fail",
                                           "error": "ValueError: populations differ",
                                           "seconds": doc["sections"]["samplers"]["seconds"]}
    assert doc["sections"]["dynopt"]["status"] == "ok"
    assert doc["sections"]["memory"]["status"] == "skipped"


def test_samplers_section_detects_a_wrong_population(monkeypatch):
    from gpusim._cuda import population

    real = population.population_gpu

    def off_by_one_ulp(*a, **kw):
        W, ok = real(*a, **kw)
        W[0, 0] = float(W[0, 0]) * (1 + 2 ** -52)
        return W, ok

    monkeypatch.setattr(population, "population_gpu", off_by_one_ulp)
    out = parity.samplers("simulate")
    assert "uniform alpha=1.0 start=0" in out["failures"]
    assert not any("alpha=0.5" in f for f in out["failures"])   # within the tolerance


def test_mode_must_match_the_process():
    with pytest.raises(RuntimeError, match="fresh process"):
        selftest.run_check(False, ("env",))


def test_unknown_section_is_a_usage_error(capsys):
    assert selftest.main(["--simulate", "--sections", "env,speed"]) == 2
    assert "--sections speed unknown" in capsys.readouterr().err


def test_selftest_without_gpu_flag_says_what_to_run(capsys):
    from gpusim.cli.main import main

    assert main(["selftest"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: selftest checks the GPU path: run gpusim selftest --gpu (add --simulate on a "
        "machine without a GPU)")


@pytest.mark.slow
def test_cli_selftest_gpu_simulate(tmp_path):
    out = tmp_path / "c.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "gpusim", "selftest", "--gpu", "--simulate",
                        "--sections", "env,samplers", "--out", str(out)], capture_output=True,
                       text=True, env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert list(doc["sections"]) == ["env", "samplers"] and doc["ok"]


def test_without_cupy_the_kernels_are_checked_with_numba_alone(monkeypatch):
    """A GPU machine without CuPy: the public gpu backend is unavailable, so the backtest and
    dynopt sections drive their kernels directly (numba-cuda only) and still compare with the
    CPU; the searches are skipped with the reason."""
    from gpusim.selftest import speed
    from gpusim.selftest.common import Skip

    def no_cupy():
        raise Skip("backend='gpu' is unavailable: CuPy is not installed")

    monkeypatch.setattr(parity, "_gpu_backend", no_cupy)
    monkeypatch.setattr(speed, "_gpu_backend", no_cupy)
    doc = selftest.run_check(True, ("samplers", "search", "backtest", "dynopt", "throughput"),
                             say=lambda s: None)
    s = doc["sections"]
    assert doc["ok"], s
    assert s["samplers"]["status"] == "ok"
    assert s["search"] == {"status": "skipped", "seconds": s["search"]["seconds"],
                           "reason": "backend='gpu' is unavailable: CuPy is not installed"}
    for name in ("backtest", "dynopt"):
        assert s[name]["status"] == "ok" and s[name]["level"] == "kernel"
        assert s[name]["max_rel_vs_cpu"] <= parity.METRIC_RTOL
        assert "CuPy is not installed" in s[name]["note"]
    assert [k["kernel"] for k in s["throughput"]["kernels"]] == ["backtest", "dynopt"]
    assert s["throughput"]["ceilings"]["bandwidth_bytes"] > 0


@pytest.mark.slow
def test_hardware_tests_section_runs_only_the_gpu_files(monkeypatch):
    """On this machine (no CuPy) pytest skips every gpu-marked test: the section says so."""
    from gpusim.selftest.common import Skip

    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    with pytest.raises(Skip, match="pytest ran none of them: .*skipped"):
        parity.hardware_tests("device")


def test_ceilings_without_cupy_measure_a_numba_copy():
    from gpusim.selftest import speed

    c = speed.ceilings("simulate", numba_only=True)
    assert c["source"].startswith("numba copy kernel")
    assert c["bandwidth_bytes"] > 0 and c["dgemm_flops"] is None and c["sgemm_flops"] is None
