"""The GPU check: one command that proves gpusim's GPU path on a real device.

    PYTHONPATH=. python scripts/gpu_check.py [--out gpu_check.json]     # on a GPU machine
    python scripts/gpu_check.py --simulate                              # anywhere (CI)

Records the device and versions, runs the ``gpu``-marked tests, checks bit-identical
populations for every sampler, search / backtest / walk-forward / dynopt parity with the CPU
paths, throughput as a fraction of measured ceilings and device memory over repeated calls, and
writes one JSON (README "Checking a GPU"). ``--simulate`` runs it in Numba's CUDA simulator at
tiny sizes. Exit status 0 when no section failed, 1 otherwise.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if "--simulate" in sys.argv[1:]:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"    # before numba is imported
else:
    os.environ.pop("NUMBA_ENABLE_CUDASIM", None)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpusim.selftest import main

if __name__ == "__main__":
    sys.exit(main())
