"""Riskless candidates in the walk-forward search (task H5, part 2): max_sharpe never chooses a
candidate whose annual variance on the window is at or below the window's floor
(``cpu_ref.walkforward.var_floor_1d_nb`` = ``gpusim.mvo.var_floor``), on the CPU kernel, the
CUDA kernel (simulator) and cpu_ref alike; other objectives are unchanged.

Before: with a riskless asset and a concentrated sampler the choice was a near-100% riskless
candidate with an ex-ante Sharpe of ~1e10 or more.
"""

import warnings

import numpy as np
import pytest

import gpusim
from cpu_ref import rng
from cpu_ref import walkforward as ref
from gpusim.mvo import VOL_FLOOR_RTOL, var_floor
from gpusim.walkforward.api import walkforward


@pytest.fixture(scope="module")
def market():
    p = gpusim.synthetic_market(n_assets=2, n_bars=120, seed=3).prices.copy()
    p["BOND"] = 100 * 1.0002 ** np.arange(120)       # riskless (variance ~1e-36), 5% a year
    return gpusim.load_prices(p)


KW = dict(every=30, lookback=40, start=40, num_tests=400, alpha=0.05, seed=1, progress=False)


def test_floor_constants_agree():
    cov = np.diag([0.04, 0.01, 0.0]) / 252
    assert ref.VOL_FLOOR_RTOL == VOL_FLOOR_RTOL
    assert ref.var_floor_1d_nb(cov, 252.0) == var_floor(cov, 252.0)
    w = np.array([1e-7, 0.0, 1.0 - 1e-7])             # vol 2e-8 < floor 2e-7: undefined
    mu = np.array([0.1, 0.05, 0.03]) / 252
    assert ref.excess_sharpe_1d_nb(w, mu, cov, 252.0, 0.0, var_floor(cov, 252.0)) == -np.inf
    assert ref.excess_sharpe_1d_nb(w, mu, cov, 252.0, 0.0) > 1e5   # without the floor


def _brute_choice(close, t, n):
    """The best candidate of the period at bar t by max_sharpe with and without the floor,
    scored in NumPy from the reference's window statistics."""
    mu, cov = ref.window_stats_1d_nb(np.ascontiguousarray(close), max(1, t - 40), t)
    pseed = np.uint64(ref.period_seed_nb(np.uint64(1), t))
    A = mu.size
    Y, _ = rng.population_nb(pseed, 0, n, A, rng.sampler_code("dirichlet", 0.05), 0.05,
                             np.zeros(A), np.full(A, np.inf))
    var = 252 * np.einsum("ij,jk,ik->i", Y, cov, Y)
    ret = 252 * (Y @ mu)
    vfl = var_floor(cov, 252.0)
    raw = np.where(var > 0, ret / np.sqrt(np.where(var > 0, var, 1.0)), -np.inf)
    floored = np.where(var > vfl, raw, -np.inf)
    return int(np.argmax(floored)), int(np.argmax(raw)), var, vfl


def test_max_sharpe_never_chooses_a_riskless_candidate(market):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = walkforward(market, backend="cpu", **KW)
    d = res.decisions()
    close = market.prices.to_numpy()
    n_riskless_best = 0
    for t, cand in zip(d["bar"], d["candidate"], strict=True):
        want, raw_best, var, vfl = _brute_choice(close, int(t), 400)
        assert cand == want and var[cand] > vfl
        n_riskless_best += var[raw_best] <= vfl
    assert n_riskless_best >= 1                      # the unfloored rule picked a riskless one
    assert np.isfinite(d["sharpe"]).all()
    v = res.verify(n_combinations=1, n_dates=len(d))
    assert v["ok"] and v["same_choices"], v


def test_cuda_simulator_and_other_objectives(market):
    """The CUDA kernel chooses what the CPU kernel chooses; min_variance still picks the
    (near) riskless candidate (the floor is max_sharpe's rule only)."""
    from gpusim.grid import Param

    kw = {**KW, "objective": Param(["max_sharpe", "min_variance"])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpu = walkforward(market, backend="cpu", **kw)
        gpu = walkforward(market, backend="gpu", **kw)
    for obj in ("max_sharpe", "min_variance"):
        a, b = cpu.decisions(objective=obj), gpu.decisions(objective=obj)
        assert a["candidate"].tolist() == b["candidate"].tolist(), obj
    mv = cpu.decisions(objective="min_variance")
    close = market.prices.to_numpy()
    for t, cand in zip(mv["bar"], mv["candidate"], strict=True):
        _, _, var, vfl = _brute_choice(close, int(t), 400)
        assert cand == int(np.argmin(var))           # unchanged: the smallest variance
    assert (var.min() <= vfl)                        # ... which is below the floor here
