"""A test-only sweep task for the fault-injection tests: each chunk sleeps a little (so a run
can be interrupted between chunks) and returns seeded random rows, a pure function of the
chunk. Run as a script it is ``gpusim sweep`` with this task registered::

    python tests/sweep/_slow_task.py job.toml [--resume] [--no-progress]
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

from gpusim.sweep.tasks import TaskRunner, register_task


class SlowTask(TaskRunner):
    """``x`` (call level) -> ``rows`` rows, split into chunks of ``chunk_size`` rows."""

    name = "slow_test"
    params = {"x": "a seed", "rows": "rows per point", "delay": "seconds per chunk"}
    unit = "rows"
    rank_by = ("sharpe", False)

    def prepare(self, market, fixed, native_axes, backend):
        return {"rows": int(fixed.get("rows", 40)), "delay": float(fixed.get("delay", 0.02))}

    def levels(self, ctx):
        return ["row"]

    def split(self, ctx, point, chunk_size):
        m, n = int(chunk_size or 10), ctx["rows"]
        return [{"lo": lo, "hi": min(n, lo + m), "size": min(n, lo + m) - lo}
                for lo in range(0, n, m)]

    def run(self, ctx, point, part):
        time.sleep(ctx["delay"])
        lo, hi = part["lo"], part["hi"]
        v = np.random.default_rng([int(point["x"]), lo]).standard_normal((hi - lo, 2))
        return pd.DataFrame({"row": np.arange(lo, hi, dtype=np.int64), "ret": v[:, 0],
                             "sharpe": v[:, 1]}), {}


register_task(SlowTask(), replace=True)

if __name__ == "__main__":
    import signal

    from gpusim.cli.sweep import main

    # Ctrl-C raises KeyboardInterrupt even when started where SIGINT is ignored (a background
    # job of a non-interactive shell, which the child would inherit)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main(sys.argv[1:]))
