"""User allocation functions on a real GPU (marked ``gpu``; run with GPUSIM_TEST_HARDWARE=1 on a
machine with a CUDA device, see tests/cuda/test_gpu_hardware.py)."""

import numpy as np
import pytest

import gpusim
from cpu_ref.backtest import METRICS
from tests.strategy.test_alloc import band_rebalance, threshold_rule

pytestmark = pytest.mark.gpu

EXACT = [m for m in METRICS if m not in ("cagr", "calmar")]   # those two go through pow()


def test_threshold_function_on_gpu_equals_the_builtin_rule_and_the_cpu():
    m = gpusim.synthetic_market(n_assets=6, n_bars=500, seed=3)
    kw = {"weights": gpusim.RandomWeights(2000, seed=2), "fees": gpusim.Param([0.0, 0.005]),
          "progress": False}
    taus = gpusim.Param([0.02, 0.05, 0.1])
    gpu = gpusim.backtest(m, alloc=threshold_rule, params={"threshold": taus}, backend="gpu",
                          **kw).metrics
    builtin = gpusim.backtest(m, threshold=taus, backend="gpu", **kw).metrics
    cpu = gpusim.backtest(m, alloc=threshold_rule, params={"threshold": taus}, backend="cpu",
                          **kw).metrics
    np.testing.assert_array_equal(gpu[EXACT].to_numpy(), builtin[EXACT].to_numpy())
    np.testing.assert_array_equal(gpu[EXACT].to_numpy(), cpu[EXACT].to_numpy())
    np.testing.assert_allclose(gpu.to_numpy(), cpu.to_numpy(), rtol=1e-14)


def test_random_target_function_on_gpu_close_to_the_cpu():
    """-log(u) goes through libdevice's log on the GPU and libm's on the CPU (last-ulp
    differences), so this compares to a tolerance rather than bit for bit."""
    m = gpusim.synthetic_market(n_assets=5, n_bars=400, seed=4)
    kw = {"params": {"tau": gpusim.Param(np.arange(1, 16) / 100)},
          "fees": gpusim.Param([0.0, 0.005]), "seed": 7, "progress": False,
          "weights": gpusim.RandomWeights(200, seed=1)}
    gpu = gpusim.backtest(m, alloc=band_rebalance, backend="gpu", **kw).metrics
    cpu = gpusim.backtest(m, alloc=band_rebalance, backend="cpu", **kw).metrics
    assert (gpu["n_rebalances"] == cpu["n_rebalances"]).mean() > 0.999
    same = gpu["n_rebalances"] == cpu["n_rebalances"]
    np.testing.assert_allclose(gpu[same].to_numpy(), cpu[same].to_numpy(), rtol=1e-10)
