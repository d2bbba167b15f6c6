"""Riskless candidates in the weight search (task H5, part 1): a candidate whose ex-ante annual
variance is at or below ``gpusim.mvo.var_floor`` (= vol_floor**2) never enters the top-k, on
every path (cpu_ref, fused CPU kernel with both scorers, CUDA kernel in the simulator, GEMM on
the CPU and in the simulator), and is counted in ``summary["n_riskless"]``.

Before: the kernels ranked such candidates by their raw score (~1e60 with a zero-variance asset),
so the top-k was filled with rows whose Sharpe was then reported NaN.
"""

import math
import warnings

import numpy as np
import pytest

import gpusim
from cpu_ref import rng
from cpu_ref.search import score_nb, search_ref
from gpusim.mvo import VOL_FLOOR_RTOL, var_floor, vol_floor

ANN = 252.0


def _universe(v_riskless):
    """Two risky assets (20% and 14% vol) and a riskless one with per-bar variance v."""
    mu = np.array([0.10, 0.06, 0.03]) / ANN
    cov = np.array([[0.04, 0.006, 0.0], [0.006, 0.02, 0.0], [0.0, 0.0, 0.0]]) / ANN
    cov[2, 2] = v_riskless
    return mu, cov


def _brute(seed, n, alpha, lo, hi, mu, cov, k):
    """The expected top-k by scoring every candidate in NumPy (weights from cpu_ref.rng)."""
    code = rng.sampler_code("dirichlet", alpha)
    W, ok = rng.population_nb(seed, 0, n, mu.size, code, alpha, lo, hi)
    var = ANN * np.einsum("ij,jk,ik->i", W, cov, W)
    risky = ok & (var > var_floor(cov, ANN))
    s = np.where(risky, ANN * (W @ mu) / np.sqrt(np.where(risky, var, 1.0)), -np.inf)
    idx = np.arange(n)[risky]
    order = np.lexsort((idx, -s[risky]))[:k]
    return idx[order], int((ok & ~risky).sum()), W


def test_var_floor_is_the_vol_floor_squared():
    _, cov = _universe(0.0)
    assert vol_floor(cov, ANN) == pytest.approx(VOL_FLOOR_RTOL * 0.2, rel=1e-14)
    assert var_floor(cov, ANN) == vol_floor(cov, ANN) ** 2
    assert var_floor(cov, ANN) == pytest.approx(4e-14, rel=1e-12)


@pytest.mark.parametrize("v_riskless", [0.0, 1e-20])
def test_one_risky_one_riskless_asset_closed_form(v_riskless):
    """A = 2: w = (a, 1 - a), vol = a 0.2 (+ the riskless asset's 1e-20), Sharpe decreasing in
    a: the top-k are the k smallest risky weights whose volatility is above the floor
    (a > ~1e-6); before the fix the top was filled with a < 1e-6 (Sharpe ~1e10 and more)."""
    mu = np.array([0.10, 0.03]) / ANN
    cov = np.diag([0.04 / ANN, v_riskless])
    n, k, seed, alpha = 3000, 12, 5, 0.03
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = gpusim.search((mu, cov), n=n, seed=seed, alpha=alpha, top_k=k, ann=ANN,
                            backend="cpu", progress=False, baselines=False)
    W, _ = rng.population_nb(seed, 0, n, 2, rng.sampler_code("dirichlet", alpha), alpha,
                             np.zeros(2), np.ones(2))
    a = W[:, 0]
    var = ANN * (a * a * cov[0, 0] + (1 - a) * (1 - a) * cov[1, 1])
    above = var > var_floor(cov, ANN)
    n_low = int((~above).sum())
    assert n_low > 50                               # the case is real: many riskless rows
    want = np.arange(n)[above][np.argsort(a[above], kind="stable")][:k]
    assert res.top["candidate"].tolist() == want.tolist()
    assert (res.top["A00"] > 0.99e-6).all()        # a > 1e-6: volatility above the floor
    sh = res.top["sharpe"].to_numpy()
    assert np.isfinite(sh).all() and np.all(np.diff(sh) <= 0)
    s = res.summary
    assert s["n_riskless"] == n_low and s["n_valid"] == n
    assert math.isfinite(s["best_sharpe"])
    note = [w for w in s["warnings"] if "not ranked" in w]
    assert len(note) == 1 and f"{n_low:,} of {n:,} candidates" in note[0]
    assert not any("(NaN)" in w for w in s["warnings"])   # no undefined row left in the table


def _paths(mu, cov, n, k, seed, alpha, bounds=None):
    """The top-k and n_riskless of every search path on the same inputs."""
    out = {}
    kw = dict(n=n, seed=seed, alpha=alpha, top_k=k, ann=ANN, progress=False, baselines=False,
              bounds=bounds, chunk_size=n // 3 + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for backend in ("cpu", "gpu"):
            for path in ("fused", "gemm"):
                r = gpusim.search((mu, cov), backend=backend, path=path, **kw)
                assert r.summary["backend"].startswith(backend) and r.summary["path"] == path
                out[f"{backend}-{path}"] = (r.top["candidate"].tolist(),
                                            r.top["sharpe"].to_numpy(), r.summary["n_riskless"])
    return out


@pytest.mark.parametrize("v_riskless", [0.0, 1e-20])
def test_every_path_drops_riskless_and_agrees(v_riskless):
    """k larger than the number of risky candidates: every path returns exactly the risky ones
    within the bounds, in the same order, with the same riskless count, as cpu_ref and a
    NumPy brute force."""
    from gpusim.search.cpu import CpuSearch
    from gpusim.search.steps import Stream

    mu, cov = _universe(v_riskless)
    n, seed, alpha = 240, 3, 0.02
    lo, hi = np.zeros(3), np.array([1.0, 0.9, 1.0])
    code = rng.sampler_code("dirichlet", alpha)
    want_i, want_low, _ = _brute(seed, n, alpha, lo, hi, mu, cov, n)
    n_ok = int(rng.population_nb(seed, 0, n, 3, code, alpha, lo, hi)[1].sum())
    k = len(want_i) + 15                        # more than the risky candidates
    assert want_low > 20 and n_ok < n           # riskless rows and rows over hi both occur
    vfl = var_floor(cov, ANN)
    ref_i, ref_s = search_ref(seed, 0, n, code, alpha, lo, hi, mu, cov, ANN, 0.0, k, vfl)
    # the same set (near a vertex, Sharpe ratios tie to ~1e-16 and rounding orders them)
    assert sorted(ref_i.tolist()) == sorted(want_i.tolist()) and np.isfinite(ref_s).all()
    _, st, ok = score_nb(seed, np.arange(n), code, alpha, lo, hi, mu, cov, ANN, 0.0, vfl)
    assert int((ok & (st[:, 1] ** 2 <= vfl * (1 + 1e-12))).sum()) == want_low
    for name, (cand, sh, low) in _paths(mu, cov, n, k, seed, alpha, (lo, hi)).items():
        assert sorted(cand) == sorted(want_i.tolist()), name
        np.testing.assert_allclose(sh, ref_s, rtol=1e-12, atol=0, err_msg=name)
        assert low == want_low, name
    for sym in (True, False):                   # both fused CPU scorers
        cs = CpuSearch(Stream(np.uint64(rng.seed_key_nb(seed)), code, alpha, lo, hi), mu, cov,
                       ANN, 0.0, k, vfl, n_tasks=2)
        cs.sym = sym
        try:
            assert cs.run(0, n) == n_ok
        finally:
            cs.close()
        assert sorted(cs.best()[1].tolist()) == sorted(want_i.tolist())
        assert cs.n_riskless == want_low


def test_all_candidates_riskless_gives_an_empty_top():
    """lo forces 1 - 1e-9 into the riskless asset: no candidate has a defined Sharpe; the
    top-k is empty (was: k rows of NaN) and every candidate is counted."""
    mu, cov = _universe(0.0)
    lo = np.array([0.0, 0.0, 1.0 - 1e-9])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = gpusim.search((mu, cov), n=500, seed=1, top_k=5, ann=ANN, bounds=(lo, 1.0),
                            backend="cpu", progress=False, baselines=False)
    assert res.top.empty and res.summary["best_sharpe"] is None
    assert res.summary["n_riskless"] == res.summary["n_valid"] == 500
    assert any("500 of 500 candidates" in w for w in res.summary["warnings"])
    assert "not ranked" in res.to_text()


def test_verify_applies_the_floor():
    mu, cov = _universe(1e-20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = gpusim.search((mu, cov), n=2000, seed=4, alpha=0.02, top_k=20, ann=ANN,
                            backend="cpu", progress=False, baselines=False)
        v = gpusim.verify(res, sample=2000)
    assert res.summary["n_riskless"] > 0 and v["ok"] and v["same_topk"]
