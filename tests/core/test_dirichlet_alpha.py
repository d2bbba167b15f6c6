"""The Dirichlet concentration's valid range (issue 16, item 7: ``--alpha 1e-300`` used to give
an empty top-k, exit 0, and a "widen --hi" hint although no --hi was given).

Below ``alpha`` the Gamma(alpha) draws ``g * u**(1/alpha)`` of all A assets of a candidate
underflow to 0 with probability ``exp(-LN_TINY * alpha * A)``; the floor keeps that share under
``UNDEFINED_SHARE``. The closed form is checked against the shared generator itself.
"""

import math

import numpy as np
import pytest
from numba import njit

import gpusim
from cpu_ref.rng import seed_key_nb, std_gamma_nb
from gpusim.cli.main import main
from gpusim.errors import GpusimError
from gpusim.validate import LN_TINY, UNDEFINED_SHARE, dirichlet_alpha


@njit(cache=True)
def _share_all_zero(key, n, A, alpha):
    bad = 0
    for i in range(n):
        s = 0.0
        for j in range(A):
            s += std_gamma_nb(key, i, j, alpha)
        if s == 0.0:
            bad += 1
    return bad / n


@pytest.mark.parametrize("A", [2, 5, 20])
def test_share_of_empty_candidates_follows_the_closed_form(A):
    key = seed_key_nb(np.uint64(3))
    n = 200_000
    for p in (0.1, 0.01):
        alpha = math.log(1 / p) / (LN_TINY * A)
        got = _share_all_zero(key, n, A, alpha)
        assert abs(got - p) < 4 * math.sqrt(p * (1 - p) / n) + 1e-4, (A, p, got)
    floor = math.log(1 / UNDEFINED_SHARE) / (LN_TINY * A)
    assert _share_all_zero(key, n, A, floor) == 0.0


def test_floor_depends_on_the_number_of_assets():
    assert dirichlet_alpha(1.0, 5) == 1.0
    f5 = math.log(1 / UNDEFINED_SHARE) / (LN_TINY * 5)
    assert dirichlet_alpha(f5 * 1.0001, 5) == pytest.approx(f5 * 1.0001)
    assert dirichlet_alpha(f5 / 3, 20) == pytest.approx(f5 / 3)      # fine with more assets
    for bad in (f5 / 2, 1e-300, 0.0, -1.0, math.inf, math.nan):
        with pytest.raises(GpusimError, match=r"--alpha.*>= 0.00928 for 5 assets"):
            dirichlet_alpha(bad, 5)
    with pytest.raises(GpusimError, match="alpha='x' must be a positive concentration"):
        dirichlet_alpha("x", 5)


def test_every_caller_refuses_a_vanishing_alpha():
    m = gpusim.synthetic_market(n_assets=5, n_bars=120, seed=1)
    calls = [lambda: gpusim.search(m, n=100, alpha=1e-300, backend="cpu", baselines=False,
                                   progress=False),
             lambda: gpusim.search(m, n=100, alpha=1e-300, method="random", budget=100,
                                   max_assets=3, backend="cpu", baselines=False,
                                   progress=False),
             lambda: gpusim.walkforward(m, alpha=1e-300, lookback=20, num_tests=10,
                                        backend="cpu", progress=False),
             lambda: gpusim.RandomWeights(10, alpha=1e-300).rows(0, 10, 5)]
    for call in calls:
        with pytest.raises(GpusimError, match="--alpha"):
            call()
    res = gpusim.search(m, n=1000, alpha=0.01, backend="cpu", baselines=False, progress=False)
    assert len(res.top) == 10 and np.isfinite(res.top["sharpe"]).all()


def test_cli_alpha_is_one_line_without_the_hi_hint(capsys):
    rc = main(["search", "--prices", "synthetic:5:300:1", "--n", "1e4", "--alpha", "1e-300",
               "--no-progress", "--no-baselines"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: alpha=1e-300 (--alpha)") and err.count("\n") == 1
    assert "--hi" not in err
