"""Test set-up: GPU kernels run in Numba's CUDA simulator unless a real device is requested.

NUMBA_ENABLE_CUDASIM must be set before numba is imported, so it is set here, at collection.
Set GPUSIM_TEST_HARDWARE=1 to run the suite against a real GPU instead (tests marked ``gpu``).
"""

import os
from pathlib import Path

import pytest

if os.environ.get("GPUSIM_TEST_HARDWARE", "0") in ("", "0"):
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
os.environ.pop("GPUSIM_BACKEND", None)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_file(rel: str) -> Path:
    """Path of a file under ../shared/data, or skip the test when it is absent."""
    p = SHARED_DATA / rel
    if not p.exists():
        pytest.skip(f"shared data not present: {p}")
    return p


def _cupy_available() -> bool:
    try:
        import cupy

        return bool(cupy.is_available())
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0") or not _cupy_available():
        skip = pytest.mark.skip(reason="needs a real CUDA device (cupy.is_available() is false)")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
