"""The one launch-geometry policy of the CUDA kernels (gpusim._cuda.launch)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpusim._cuda import launch

ROOT = Path(__file__).resolve().parents[2]


def test_ceil_div_and_grid_for():
    assert [launch.ceil_div(a, 32) for a in (0, 1, 32, 33, 64)] == [0, 1, 1, 2, 2]
    assert launch.grid_for(0, 128) == 1          # never an empty grid
    assert launch.grid_for(129, 128) == 2


def test_block_size_default_and_checks():
    assert launch.block_size() == launch.SIM_THREADS_PER_BLOCK   # the tests run the simulator
    assert launch.block_size(96) == 96
    with pytest.raises(ValueError, match="threads_per_block must be >= 1, got 0"):
        launch.block_size(0)


def test_resident_grid_in_the_simulator_is_small_and_fixed():
    assert launch.resident_blocks(32) == launch.SIM_BLOCKS
    assert launch.resident_threads(32) == launch.SIM_BLOCKS * 32


def test_launch_constants_import_without_numba_cuda():
    code = ("import sys, gpusim._cuda.launch as L; "
            "print(L.MAX_ASSETS, 'numba.cuda' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = str(ROOT)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["256", "False"]
