"""Backend choice: the ONLY module that probes or imports CuPy and numba.cuda (lazily).

``backend=`` on every public call (and ``GPUSIM_BACKEND`` in the environment) takes
``"auto"`` (GPU when CuPy and numba.cuda reach a device and a probe kernel runs there, else CPU,
saying once why it fell back), ``"gpu"`` (required; a clear error naming what to install when
absent, or why the probe failed), ``"gpu:N"`` (device N) or ``"cpu"``.

One device: ``"gpu:N"``, else ``GPUSIM_DEVICE``, else 0, is selected for numba.cuda and CuPy in
the calling thread each time a backend is resolved. One allocator: before its first context,
numba.cuda is put on CuPy's memory pool (:mod:`gpusim._cuda.emm`).

With ``NUMBA_ENABLE_CUDASIM=1`` set before numba is imported, ``"gpu"`` runs the numba.cuda
kernels in Numba's CUDA simulator on NumPy arrays (``Backend.simulator`` is True). ``"auto"``
never picks the simulator.
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass
from types import ModuleType

from gpusim.errors import BackendError

VALID_BACKENDS = ("auto", "gpu", "cpu")
"""Backend names; ``"gpu:N"`` also selects device N."""
DEVICE_ENV = "GPUSIM_DEVICE"
"""Environment variable with the default CUDA device ordinal."""
_INSTALL_HINT = "install the GPU extra: pip install 'gpusim[cuda12]' (or [cuda13])"


class BackendFallbackWarning(UserWarning):
    """Emitted once when ``backend="auto"`` falls back to the CPU."""


@dataclass(frozen=True)
class Backend:
    """A resolved backend.

    Attributes
    ----------
    name : ``"cpu"`` or ``"gpu"``.
    simulator : True when ``name == "gpu"`` runs in Numba's CUDA simulator (host NumPy arrays).
    device : CUDA device ordinal used by numba.cuda and CuPy (0 on the CPU).
    """

    name: str
    simulator: bool = False
    device: int = 0

    @property
    def xp(self) -> ModuleType:
        """Array namespace: CuPy on a real GPU, else NumPy."""
        if self.name == "gpu" and not self.simulator:
            import cupy

            return cupy
        import numpy

        return numpy

    @property
    def label(self) -> str:
        return "gpu-simulator" if self.simulator else self.name


def simulator_requested() -> bool:
    """True when NUMBA_ENABLE_CUDASIM is set to a true value in the environment."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0").strip() not in ("", "0")


def _one_line(exc: BaseException, limit: int = 200) -> str:
    """``"Type: first line of the message"`` of an exception, at most ``limit`` characters."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _reach(name: str, is_available, no_device: str) -> tuple[bool, str]:
    """(ok, why) of ``is_available()`` for the library ``name``; never raises."""
    try:
        if not is_available():
            return False, no_device
    except Exception as exc:
        return False, f"{name} cannot reach a CUDA device: {_one_line(exc)}"
    return True, "ok"


@functools.lru_cache(maxsize=1)
def _probe_cupy() -> tuple[bool, str]:
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA install
        return False, f"CuPy is not installed ({type(exc).__name__}); {_INSTALL_HINT}"
    return _reach("CuPy", cupy.is_available, "CuPy is installed but finds no CUDA device or driver")


@functools.lru_cache(maxsize=1)
def _probe_numba_cuda() -> tuple[bool, str]:
    try:
        from numba import cuda
    except Exception as exc:
        return False, f"numba.cuda cannot be imported ({_one_line(exc)}); {_INSTALL_HINT}"
    if simulator_requested():
        return True, "CUDA simulator (NUMBA_ENABLE_CUDASIM=1)"
    return _reach("numba.cuda", cuda.is_available, "numba.cuda finds no CUDA device or driver")


def gpu_status() -> tuple[bool, str]:
    """Whether CuPy and numba.cuda reach a real GPU, and why not when they do not. Never raises.

    This does not launch anything; :func:`gpu_ready` also runs the probe kernel.
    """
    if simulator_requested():
        return False, "NUMBA_ENABLE_CUDASIM=1 is set: only the CUDA simulator is available"
    ok, why = _probe_cupy()
    if not ok:
        return False, why
    ok, why = _probe_numba_cuda()
    if not ok:
        return False, why
    return True, "ok"


def _device_count() -> int:
    """CUDA devices numba.cuda sees."""
    from numba import cuda

    return len(cuda.gpus)


def _attached_device() -> int | None:
    """Device of the numba.cuda context attached to this thread, or None."""
    from numba.cuda.cudadrv import devices

    ctx = devices._runtime._get_attached_context()
    return None if ctx is None else int(ctx.device.id)


def _install_allocator() -> bool:
    """Put numba.cuda on CuPy's memory pool (before its first context); True when done."""
    from gpusim._cuda import emm

    return emm.install()


def _run_probe(device: int) -> None:
    """Compile and launch the probe kernel on ``device`` (and a CuPy reduction); raises."""
    import cupy

    from gpusim._cuda import probe

    probe.run_probe(device, cupy)


@functools.cache
def _probe_device(device: int) -> tuple[bool, str]:
    """(ok, why) of the probe on ``device``, once per process and device. Never raises."""
    try:
        n = _device_count()
        if device >= n:
            return False, (f"GPU {device} does not exist (this machine has {n}: 0..{n - 1}); "
                           f"pick another with device= / backend='gpu:N' / {DEVICE_ENV}")
        _install_allocator()
        _run_probe(device)
    except Exception as exc:   # no driver, PTX newer than the driver, failed launch, ...
        return False, f"the probe kernel failed on GPU {device}: {_one_line(exc)}"
    return True, "ok"


def gpu_ready(device: int = 0) -> tuple[bool, str]:
    """Whether a real GPU ``device`` is usable: reached by CuPy and numba.cuda, and the probe
    kernel compiled, launched and returned the right values there. Never raises.
    """
    ok, why = gpu_status()
    if not ok:
        return False, why
    return _probe_device(int(device))


def _parse_device(value, src: str) -> int:
    text = str(value).strip()
    if not text.isdigit():
        raise BackendError(f"{src}={value!r} is not a device; use a CUDA device number such as 0")
    return int(text)


def _requested_device(device, suffix: str, src: str) -> int:
    """The device of a call: ``device=``, else ``gpu:N``, else ``GPUSIM_DEVICE``, else 0."""
    from_name = _parse_device(suffix, src) if suffix else None
    if device is not None:
        dev = _parse_device(device, "device")
        if from_name is not None and from_name != dev:
            raise BackendError(f"device={dev} and {src}='gpu:{from_name}' disagree; pass one")
        return dev
    if from_name is not None:
        return from_name
    env = os.environ.get(DEVICE_ENV, "").strip()
    return _parse_device(env, DEVICE_ENV) if env else 0


def use_device(device: int) -> None:
    """Make ``device`` current for numba.cuda and CuPy in this thread.

    Raises
    ------
    BackendError
        When this thread's numba.cuda context is already on another device (numba.cuda cannot
        switch: use one process, or one Dask worker, per GPU).
    """
    from numba import cuda

    current = _attached_device()
    if current is None:     # first use in this thread (e.g. a worker handed a Backend)
        _install_allocator()
    if current is not None and current != device:
        raise BackendError(f"device={device} was asked for, but this thread already runs on GPU "
                           f"{current}; use one process (or one Dask worker) per GPU")
    cuda.select_device(device)
    try:
        import cupy
    except ImportError:  # pragma: no cover - gpu_status requires CuPy
        return
    cupy.cuda.Device(device).use()


_fallback_said = False


def resolve_backend(backend: str | Backend | None = "auto", device: int | None = None) -> Backend:
    """Turn a backend name into a :class:`Backend`.

    ``None`` means ``GPUSIM_BACKEND`` from the environment, else ``"auto"``. An explicit
    ``"auto"`` also defers to ``GPUSIM_BACKEND`` when that is set. ``device`` (or
    ``"gpu:N"``, or ``GPUSIM_DEVICE``) picks the CUDA device; it is made current for numba.cuda
    and CuPy in the calling thread.
    """
    global _fallback_said
    if isinstance(backend, Backend):
        if backend.name == "gpu" and not backend.simulator:
            use_device(backend.device)
        return backend
    env = os.environ.get("GPUSIM_BACKEND", "").strip().lower()
    raw = backend if backend not in (None, "auto") else (env or "auto")
    src = "GPUSIM_BACKEND" if backend in (None, "auto") and env else "backend"
    name, sep, suffix = raw.strip().lower().partition(":") if isinstance(raw, str) else ("", "", "")
    if name not in VALID_BACKENDS or (sep and name != "gpu"):
        raise BackendError(f"{src}={raw!r} is not a backend; use one of "
                           f"{', '.join(map(repr, VALID_BACKENDS))} or 'gpu:N' (device N)")
    if sep and not suffix.strip().isdigit():
        raise BackendError(f"{src}={raw!r} is not a device; use 'gpu:N' with a CUDA device "
                           "number N such as 'gpu:0'")
    if name == "cpu":
        return Backend("cpu")
    dev = _requested_device(device, suffix, src)
    if name == "gpu":
        if simulator_requested():
            ok, why = _probe_numba_cuda()
            if not ok:
                raise BackendError(f"backend='gpu' (CUDA simulator) is unavailable: {why}")
            if dev != 0:
                raise BackendError(f"device={dev}: the CUDA simulator has one device, 0")
            return Backend("gpu", simulator=True)
        ok, why = gpu_ready(dev)
        if not ok:
            raise BackendError(f"backend='gpu' is unavailable: {why}")
        use_device(dev)
        return Backend("gpu", device=dev)
    ok, why = gpu_ready(dev)
    if ok:
        use_device(dev)
        return Backend("gpu", device=dev)
    if not _fallback_said:
        _fallback_said = True
        warnings.warn(f"gpusim: no usable GPU ({why}); running on the CPU",
                      BackendFallbackWarning, stacklevel=2)
    return Backend("cpu")


def allocator() -> str:
    """``"cupy-pool"`` when numba.cuda allocates from CuPy's pool, else ``"numba"``."""
    import sys

    emm = sys.modules.get("gpusim._cuda.emm")
    return "cupy-pool" if emm is not None and emm.installed() else "numba"


def info() -> dict:
    """Backends on this machine and, for a missing one, why it is missing (one line each)."""
    import numba
    import numpy

    out = {
        "cpu": {"available": True, "detail": f"numba {numba.__version__}, numpy "
                f"{numpy.__version__}, {numba.config.NUMBA_NUM_THREADS} threads"},
    }
    try:
        dev = _requested_device(None, "", "backend")
    except BackendError as exc:
        out["gpu"] = {"available": False, "detail": str(exc)}
        dev = None
    if dev is not None:
        ok, why = gpu_ready(dev)
        gpu = {"available": ok, "detail": why}
        if ok:
            try:
                import cupy

                props = cupy.cuda.runtime.getDeviceProperties(dev)
                n_dev = cupy.cuda.runtime.getDeviceCount()
                gpu["detail"] = (f"{props['name'].decode()} (device {dev} of {n_dev}; probe kernel "
                                 f"ran; allocator {allocator()})")
            except Exception as exc:  # pragma: no cover - needs hardware
                gpu["detail"] = f"device found, properties unreadable: {_one_line(exc)}"
        out["gpu"] = gpu
    sim_ok, sim_why = (_probe_numba_cuda() if simulator_requested()
                       else (False, "set NUMBA_ENABLE_CUDASIM=1 before starting Python"))
    out["gpu-simulator"] = {"available": sim_ok, "detail": sim_why}
    return out
