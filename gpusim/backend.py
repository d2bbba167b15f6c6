"""Backend choice: the ONLY module that probes or imports CuPy and numba.cuda (lazily).

``backend=`` on every public call (and ``GPUSIM_BACKEND`` in the environment) takes
``"auto"`` (GPU when CuPy and numba.cuda reach a device, else CPU, saying once that it fell back),
``"gpu"`` (required; a clear error naming what to install when absent) or ``"cpu"``.

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
    """

    name: str
    simulator: bool = False

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


def _reach(name: str, is_available, no_device: str) -> tuple[bool, str]:
    """(ok, why) of ``is_available()`` for the library ``name``; never raises."""
    try:
        if not is_available():
            return False, no_device
    except Exception as exc:
        return False, f"{name} cannot reach a CUDA device: {exc}"
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
        return False, f"numba.cuda cannot be imported ({exc}); {_INSTALL_HINT}"
    if simulator_requested():
        return True, "CUDA simulator (NUMBA_ENABLE_CUDASIM=1)"
    return _reach("numba.cuda", cuda.is_available, "numba.cuda finds no CUDA device or driver")


def gpu_status() -> tuple[bool, str]:
    """Whether a real GPU is usable, and why not when it is not. Never raises."""
    if simulator_requested():
        return False, "NUMBA_ENABLE_CUDASIM=1 is set: only the CUDA simulator is available"
    ok, why = _probe_cupy()
    if not ok:
        return False, why
    ok, why = _probe_numba_cuda()
    if not ok:
        return False, why
    return True, "ok"


_fallback_said = False


def resolve_backend(backend: str | Backend | None = "auto") -> Backend:
    """Turn a backend name into a :class:`Backend`.

    ``None`` means ``GPUSIM_BACKEND`` from the environment, else ``"auto"``. An explicit
    ``"auto"`` also defers to ``GPUSIM_BACKEND`` when that is set.
    """
    global _fallback_said
    if isinstance(backend, Backend):
        return backend
    env = os.environ.get("GPUSIM_BACKEND", "").strip().lower()
    name = backend if backend not in (None, "auto") else (env or "auto")
    if not isinstance(name, str) or name.lower() not in VALID_BACKENDS:
        src = "GPUSIM_BACKEND" if backend in (None, "auto") and env else "backend"
        raise BackendError(
            f"{src}={name!r} is not a backend; use one of {', '.join(map(repr, VALID_BACKENDS))}"
        )
    name = name.lower()
    if name == "cpu":
        return Backend("cpu")
    if name == "gpu":
        if simulator_requested():
            ok, why = _probe_numba_cuda()
            if not ok:
                raise BackendError(f"backend='gpu' (CUDA simulator) is unavailable: {why}")
            return Backend("gpu", simulator=True)
        ok, why = gpu_status()
        if not ok:
            raise BackendError(f"backend='gpu' is unavailable: {why}")
        return Backend("gpu")
    ok, why = gpu_status()
    if ok:
        return Backend("gpu")
    if not _fallback_said:
        _fallback_said = True
        warnings.warn(f"gpusim: no usable GPU ({why}); running on the CPU",
                      BackendFallbackWarning, stacklevel=2)
    return Backend("cpu")


def info() -> dict:
    """Backends on this machine and, for a missing one, why it is missing."""
    import numba
    import numpy

    out = {
        "cpu": {"available": True, "detail": f"numba {numba.__version__}, numpy "
                f"{numpy.__version__}, {numba.config.NUMBA_NUM_THREADS} threads"},
    }
    ok, why = gpu_status()
    gpu = {"available": ok, "detail": why}
    if ok:
        try:
            import cupy

            props = cupy.cuda.runtime.getDeviceProperties(0)
            n_dev = cupy.cuda.runtime.getDeviceCount()
            gpu["detail"] = f"{props['name'].decode()} (device 0 of {n_dev})"
        except Exception as exc:  # pragma: no cover - needs hardware
            gpu["detail"] = f"device found, properties unreadable: {exc}"
    out["gpu"] = gpu
    sim_ok, sim_why = (_probe_numba_cuda() if simulator_requested()
                       else (False, "set NUMBA_ENABLE_CUDASIM=1 before starting Python"))
    out["gpu-simulator"] = {"available": sim_ok, "detail": sim_why}
    return out
