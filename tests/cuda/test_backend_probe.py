"""``"auto"`` launches a probe kernel before it picks the GPU; one device; one allocator.

No GPU here: the probe kernel itself runs in the CUDA simulator, and the decisions around it
(fallback with a one-line reason, ``gpusim info``, device selection) are driven through the
backend's seams (``_run_probe``, ``_device_count``, ``use_device``) with the simulator switched
off for the backend module only.
"""

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from gpusim import backend
from gpusim.cli.main import main as cli_main
from gpusim.errors import BackendError

ROOT = Path(__file__).resolve().parents[2]
PTX_ERROR = ("CUDA_ERROR_UNSUPPORTED_PTX_VERSION: the provided PTX was compiled with an "
             "unsupported toolchain.\n  (a second line of driver detail)")


def test_probe_kernel_runs_and_checks_its_values_in_the_simulator():
    from gpusim._cuda import probe

    probe.run_probe(0)                                   # no CuPy: numba.cuda part only
    assert probe.expected()[:4].tolist() == [1.0, 4.0, 7.0, 10.0]


@pytest.fixture
def fake_gpu(monkeypatch):
    """A machine whose CuPy and numba.cuda reach two devices; the probe is what the test says."""
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    monkeypatch.delenv("GPUSIM_DEVICE", raising=False)
    monkeypatch.setattr(backend, "_probe_cupy", lambda: (True, "ok"))
    monkeypatch.setattr(backend, "_probe_numba_cuda", lambda: (True, "ok"))
    monkeypatch.setattr(backend, "_device_count", lambda: 2)
    monkeypatch.setattr(backend, "_install_allocator", lambda: True)
    monkeypatch.setattr(backend, "_fallback_said", False)
    used = []
    monkeypatch.setattr(backend, "use_device", used.append)
    probes = []
    monkeypatch.setattr(backend, "_run_probe", probes.append)
    backend._probe_device.cache_clear()
    yield used, probes
    backend._probe_device.cache_clear()


def test_failed_probe_falls_back_with_one_line(fake_gpu, monkeypatch):
    def broken(device):
        raise RuntimeError(PTX_ERROR)

    monkeypatch.setattr(backend, "_run_probe", broken)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert backend.resolve_backend("auto").name == "cpu"
    msgs = [str(x.message) for x in w if issubclass(x.category, backend.BackendFallbackWarning)]
    assert len(msgs) == 1 and "\n" not in msgs[0]
    assert ("the probe kernel failed on GPU 0: RuntimeError: CUDA_ERROR_UNSUPPORTED_PTX_VERSION"
            in msgs[0])
    with pytest.raises(BackendError, match="backend='gpu' is unavailable: the probe kernel") as ei:
        backend.resolve_backend("gpu")
    assert "\n" not in str(ei.value)


def test_info_one_line_for_a_broken_cuda_install(fake_gpu, monkeypatch, capsys):
    def broken(device):
        raise RuntimeError(PTX_ERROR)

    monkeypatch.setattr(backend, "_run_probe", broken)
    assert cli_main(["info"]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert [ln.split()[0] for ln in lines] == ["cpu", "gpu", "gpu-simulator"]
    gpu = lines[1].split(None, 2)
    assert gpu[1] == "no" and gpu[2].startswith("the probe kernel failed on GPU 0: RuntimeError")
    assert "Traceback" not in out.out + out.err and out.err == ""


@pytest.mark.slow
def test_info_one_line_without_a_gpu():
    """A real process, simulator off, on this machine (no GPU, no CuPy): one line, exit 0."""
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_ENABLE_CUDASIM",
                                                           "GPUSIM_BACKEND", "GPUSIM_DEVICE")}
    env["PYTHONPATH"] = str(ROOT)
    r = subprocess.run([sys.executable, "-m", "gpusim", "info"], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [ln.split()[0] for ln in lines] == ["cpu", "gpu", "gpu-simulator"]
    assert lines[1].split()[1] == "no"
    assert "Traceback" not in r.stdout + r.stderr


def test_probe_runs_once_per_device_and_device_is_selected(fake_gpu, monkeypatch):
    used, probes = fake_gpu
    be = backend.resolve_backend("auto")
    assert (be.name, be.device, be.simulator) == ("gpu", 0, False)
    backend.resolve_backend("gpu")
    assert probes == [0] and used == [0, 0]
    assert backend.resolve_backend("gpu:1").device == 1
    assert backend.resolve_backend("auto", device=1).device == 1
    assert probes == [0, 1] and used[-2:] == [1, 1]
    monkeypatch.setenv("GPUSIM_DEVICE", "1")
    assert backend.resolve_backend(None).device == 1
    assert backend.resolve_backend("gpu", device=0).device == 0     # device= wins over the env
    assert backend.resolve_backend("cpu").device == 0


@pytest.mark.parametrize("kw,match", [
    (dict(backend="gpu:2"), "GPU 2 does not exist \\(this machine has 2: 0..1\\)"),
    (dict(backend="gpu:x"), "backend='gpu:x' is not a device"),
    (dict(backend="cpu:1"), "backend='cpu:1' is not a backend; use one of .* or 'gpu:N'"),
    (dict(backend="gpu:1", device=0), "device=0 and backend='gpu:1' disagree"),
    (dict(backend="gpu", device=-1), "device=-1 is not a device"),
])
def test_device_errors_are_one_line(fake_gpu, kw, match):
    with pytest.raises(BackendError, match=match) as ei:
        backend.resolve_backend(**kw)
    assert "\n" not in str(ei.value)


def test_bad_device_env_is_named(fake_gpu, monkeypatch):
    monkeypatch.setenv("GPUSIM_DEVICE", "first")
    with pytest.raises(BackendError, match="GPUSIM_DEVICE='first' is not a device"):
        backend.resolve_backend("auto")


def test_simulator_has_one_device():
    assert backend.resolve_backend("gpu").simulator
    with pytest.raises(BackendError, match="the CUDA simulator has one device, 0"):
        backend.resolve_backend("gpu:1")


_EMM = textwrap.dedent("""
    import gc
    from numba import cuda
    from gpusim._cuda import emm

    class Block:                         # a CuPy MemoryPointer stand-in
        def __init__(self, ptr):
            self.ptr = ptr
    class Pool:
        def __init__(self):
            self.sizes, self.next = [], 4096
        def malloc(self, size):
            self.sizes.append(size)
            self.next += 4096
            return Block(self.next)
    emm.CupyPoolMemoryManager.pool = pool = Pool()
    cuda.set_memory_manager(emm.CupyPoolMemoryManager)   # checks the interface version
    mm = emm.CupyPoolMemoryManager(context=None)
    p = mm.memalloc(100)
    q = mm.memalloc(0)
    print(pool.sizes, int(p.device_pointer), p.size, len(mm._live))
    del p, q
    gc.collect()
    print(len(mm._live))
""")


@pytest.mark.slow
def test_emm_plugin_allocates_from_the_pool_and_releases():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = str(ROOT)
    r = subprocess.run([sys.executable, "-c", _EMM], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    first, second = r.stdout.splitlines()[-2:]
    assert first == "[100, 1] 8192 100 2"
    assert second == "0"


def _calls():
    import gpusim
    from gpusim import Param

    m = gpusim.synthetic_market(n_assets=3, n_bars=60, seed=1)
    fut = gpusim.synthetic_futures(n_instruments=2, n_days=40, seed=1)
    return {
        "search": lambda **kw: gpusim.search(m, n=64, progress=False, baselines=False, **kw),
        "backtest": lambda **kw: gpusim.backtest(m, progress=False, **kw),
        "walkforward": lambda **kw: gpusim.walkforward(m, every=20, lookback=20, num_tests=8,
                                                       start=25, gap=False, progress=False,
                                                       **kw),
        "dynopt": lambda **kw: gpusim.dynopt(fut, capital=Param([1e6]), min_periods=5,
                                             progress=False, **kw),
    }


@pytest.mark.parametrize("name", ["search", "backtest", "walkforward", "dynopt"])
def test_public_calls_take_device(name):
    call = _calls()[name]
    with pytest.raises(BackendError, match="device=1: the CUDA simulator has one device, 0"):
        call(backend="gpu", device=1)
    with pytest.raises(BackendError, match="device=0 and backend='gpu:1' disagree"):
        call(backend="gpu:1", device=0)
    assert call(backend="gpu", device=0).summary["backend"] == "gpu-simulator"
