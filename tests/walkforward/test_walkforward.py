"""gpusim.walkforward.api (DESIGN §7): CPU fast path and CUDA kernels (simulator) against
cpu_ref.walkforward, regeneration and re-scoring of the chosen weights, random search vs the
exact solver, constraints (SPY beta, groups, time series, callables), fallbacks, CLI."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from conftest import shared_file

import gpusim
from cpu_ref import rng
from cpu_ref import walkforward as ref
from cpu_ref.backtest import METRICS
from gpusim.errors import GpusimError
from gpusim.grid import Param
from gpusim.walkforward import search as wsearch
from gpusim.walkforward import search_cpu as wk
from gpusim.walkforward import segments, stats
from gpusim.walkforward.api import walkforward
from gpusim.walkforward.constraints import Beta, Budget, GroupBounds, WeightBounds

RTOL = 1e-10
KW = {"progress": False, "gap": False, "backend": "cpu"}


@pytest.fixture(scope="module")
def mkt():
    return gpusim.synthetic_market(n_assets=4, n_bars=260, seed=11)


@pytest.fixture(scope="module")
def spy_market():
    st = pd.read_csv(shared_file("pypfopt/stock_prices.csv"), parse_dates=["date"],
                     index_col="date")
    spy = pd.read_csv(shared_file("pypfopt/spy_prices.csv"), parse_dates=["date"],
                      index_col="date")["SPY"]
    common = st.index.intersection(spy.index)
    p = st.loc[common, ["AAPL", "WMT", "XOM", "PFE", "JPM", "T"]].loc["2016":"2017"]
    return gpusim.load_prices(p), spy.loc[common]


def _ref_metrics_close(res):
    """Every metric of every combination equals the reference re-run (records())."""
    for key in res.metrics.index:
        want = res.records(key)["metrics"].to_numpy()
        got = res.metrics.loc[key].to_numpy()
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-13, equal_nan=True)


def _c(x):
    """A writable C-ordered float64 copy (pandas hands out read-only Fortran views; one layout
    keeps one compiled signature of each kernel)."""
    return np.array(x, dtype=np.float64, order="C")


def _beta(close, bench, t, lookback):
    a = 1 if lookback is None else max(1, t - lookback)
    return ref.betas_1d_nb(close, bench[:, None], a, t)[0]


# --------------------------------------------------------------------------------------------
# Fast-path pieces
# --------------------------------------------------------------------------------------------

def test_fast_exponentials_bit_identical_to_shared_rng():
    key = np.uint64(rng.seed_key_nb(np.uint64(5)))
    E = np.empty((3, wk.BLOCK))
    wk._exp_block(key, 12345, 3, E, np.empty(wk.BLOCK), np.empty(wk.BLOCK))
    want = [[rng.neg_log_uniform_nb(np.uint64(rng.bits_nb(key, 12345 + b, j, 0)))
             for b in range(wk.BLOCK)] for j in range(3)]
    assert np.array_equal(E, np.array(want))
    # edge bit patterns: u = 2^-53 (smallest), u just below 1, around powers of two and sqrt(2)
    xs = [0, 2**64 - 1, 1 << 12, (1 << 63), (1 << 52) * 3, int(2**0.5 * 2**63) & ~4095,
          (int(2**0.5 * 2**63) & ~4095) + 8192]
    for x in xs:
        m = ((x >> 12) << 1) | 1
        f = np.array([float(m)])
        fi = f.view(np.int64)
        e = float((fi[0] >> 52) - 1023)
        assert m == 1 or 2 ** e <= m < 2 ** (e + 1)
    pop, _ = rng.population_nb(np.uint64(5), 0, 300, 6, 1, 1.0, np.zeros(6), np.ones(6))
    W = np.empty((6, wk.BLOCK))
    for i0 in (0, wk.BLOCK, 2 * wk.BLOCK):
        wk._exp_block(np.uint64(rng.seed_key_nb(np.uint64(5))), i0, 6, W, np.empty(wk.BLOCK),
                      np.empty(wk.BLOCK))
        n = min(wk.BLOCK, 300 - i0)
        s = W.sum(axis=0)
        assert np.array_equal((W * ((1.0 - 0.0) / s))[:, :n].T, pop[i0:i0 + n])


def test_window_stats_xp_match_reference_two_pass():
    close = _c(gpusim.synthetic_market(n_assets=5, n_bars=300, seed=2).prices.to_numpy())
    a = np.array([1, 1, 40, 200, 297])
    t = np.array([3, 300, 103, 300, 300])
    mu, cov = stats.window_stats(np, close, a, t)
    for s in range(len(a)):
        m, c = ref.window_stats_1d_nb(close, a[s], t[s])
        np.testing.assert_allclose(mu[s], m, rtol=1e-12, atol=1e-17)
        np.testing.assert_allclose(cov[s], c, rtol=1e-10, atol=1e-17)
    F, tri = stats.factorize(np, cov)
    assert tri.tolist() == [False, True, True, True, False]     # 2 and 3 returns: singular
    np.testing.assert_allclose(np.einsum("sji,sjk->sik", F, F), cov, rtol=1e-9, atol=1e-18)


def test_period_keys_match_reference_seeds():
    bars = np.array([0, 5, 253, 10**7])
    seeds, keys = wsearch.period_keys_nb(np.uint64(42), bars)
    assert np.array_equal(seeds, ref.period_seeds(42, bars))
    assert [int(k) for k in keys] == [int(rng.seed_key_nb(np.uint64(s))) for s in seeds]


def test_cpu_search_invariant_to_work_splitting(mkt):
    """Items split the candidates of a date differently; the reduced result is identical."""
    close = _c(mkt.prices.to_numpy())
    a, t = np.array([1, 100]), np.array([150, 250])
    mu, cov = stats.window_stats(np, close, a, t)
    F, tri = stats.factorize(np, cov)
    gb = stats.bound_vectors(np, cov)
    mex = 252 * mu
    G = np.zeros((2, 0, 4))
    lo, hi = np.zeros((2, 4)), np.full((2, 4), 0.45)
    gl, gu = np.zeros((2, 0)), np.zeros((2, 0))
    chk = np.array([70, 3000, 5000], np.int64)
    tn = np.array([5000, 3000], np.int64)
    _, keys = wsearch.period_keys_nb(np.uint64(1), t)
    res = []
    for threads in (0, 64):         # one split per date, then many
        ig, isp, c0, c1, ns = wsearch.plan_items(tn, threads)
        outs = segments.new_outputs(2, ns, 3)
        wk.search_cpu_nb((ig, isp, c0, c1), (keys, np.array([0, 1]), np.array([1, 2])),
                         segments.Tasks(np.array([0, 1]), np.array([0, 1]), tn,
                                        np.zeros(2, np.int64), np.zeros(2)), 1, 1.0,
                         segments.Windows(F, tri, mex, gb, G, np.zeros((2, 0, 4)),
                                          np.zeros((2, 0)), stats.var_floors(np, cov, 252.0)),
                         segments.Limits(lo, hi, gl, gu, np.zeros((2, 0)), np.zeros(0), False),
                         252.0, chk, outs)
        res.append((ns, segments.reduce_segments(*outs)))
    assert res[0][0] == 1 and res[1][0] > 1
    for k in res[0][1]:
        assert np.array_equal(res[0][1][k], res[1][1][k]), k
    r = res[0][1]
    # each checkpoint's best equals the reference's best of the first n candidates
    for task in range(2):
        pseed = ref.period_seed_nb(np.uint64(1), t[task])
        for c, n in enumerate(chk):
            if n > tn[task]:
                continue
            best, bs, _, nacc, bany, _ = ref.search_period_1d_nb(
                np.uint64(pseed), n, 1, 1.0, lo[task], hi[task], np.zeros((0, 4)), np.zeros(0),
                np.zeros(0), np.zeros(0), False, mu[task], cov[task], 252.0, 0.0)
            assert (r["best"][task, c], r["n_accepted"][task, c], r["best_any"][task, c]) == (
                best, nacc, bany)
            assert r["sharpe"][task, c] == pytest.approx(bs, rel=1e-12)


# --------------------------------------------------------------------------------------------
# The API against the reference
# --------------------------------------------------------------------------------------------

def test_cpu_matches_reference_on_every_metric_and_choice(mkt):
    res = walkforward(mkt, every=Param(["W", "M", 15]), lookback=Param([None, 40]),
                      num_tests=Param([50, 400]), fees=Param([0.0, 0.004]), seed=3, rf=0.01,
                      init_cash=100.0, **KW)
    assert len(res.metrics) == 24 and list(res.metrics.columns) == list(METRICS)
    assert res.metrics.index.names == ["every", "lookback", "num_tests", "fees"]
    assert res.summary["start_bar"] == 41 and res.summary["n_weight_sets"] == 12
    _ref_metrics_close(res)
    v = res.verify(n_combinations=24, n_dates=3)
    assert v["ok"] and v["same_choices"] and v["n_checked"] > 24 and v["max_rel_diff"] < 1e-9
    # fees change the metrics, not the weights
    a0 = res.allocations(every="M", lookback=40, num_tests=400, fees=0.0)
    a1 = res.allocations(every="M", lookback=40, num_tests=400, fees=0.004)
    assert a0.equals(a1)
    m0 = res.metrics.loc[("M", 40, 400, 0.0)]
    m1 = res.metrics.loc[("M", 40, 400, 0.004)]
    assert m0["fees_paid"] == 0 and m1["fees_paid"] > 0 and m1["final_value"] < m0["final_value"]
    # W dates are a subset of the daily... and M dates a subset of W? no: same (date, lookback)
    # windows share one search: a date in both rules gets the same candidate
    dw = res.decisions(every="W", lookback=40, num_tests=400, fees=0.0)
    dm = res.decisions(every="M", lookback=40, num_tests=400, fees=0.0)
    both = dw.index.intersection(dm.index)
    assert len(both) >= 3
    assert dw.loc[both, "candidate"].equals(dm.loc[both, "candidate"])


def test_chosen_weights_regenerate_and_rescore(mkt):
    res = walkforward(mkt, every="M", lookback=60, num_tests=Param([30, 2000]), seed=9,
                      constraints=[WeightBounds(lo=0.05, hi=0.6)], **KW)
    close = _c(mkt.prices.to_numpy())
    for n in (30, 2000):
        alloc = res.allocations(num_tests=n)
        dec = res.decisions(num_tests=n)
        assert (dec["status"] == "ok").all() and (dec["scale"] == 1.0).all()
        lo, hi = np.full(4, 0.05), np.full(4, 0.6)
        for (_date, row), (_, d) in zip(alloc.iterrows(), dec.iterrows()):
            t = int(d["bar"])
            assert d["seed"] == ref.period_seed_nb(np.uint64(9), t)
            y, ok = rng.population_nb(np.uint64(d["seed"]), int(d["candidate"]), 1, 4, 1, 1.0,
                                      lo, hi)
            assert ok[0] and np.array_equal(y[0], row.to_numpy())          # bit-identical
            mu, cov = ref.window_stats_1d_nb(close, t - 60, t)
            sh = ref.excess_sharpe_1d_nb(y[0], mu, cov, mkt.ann, 0.0)
            assert sh == pytest.approx(d["sharpe"], rel=1e-12)
            best = ref.search_period_1d_nb(np.uint64(d["seed"]), n, 1, 1.0, lo, hi,
                                           np.zeros((0, 4)), np.zeros(0), np.zeros(0),
                                           np.zeros(0), False, mu, cov, mkt.ann, 0.0)
            assert best[0] == d["candidate"] and best[3] == d["n_accepted"]
    # more candidates never do worse in-sample (num_tests are nested prefixes of one stream)
    s30 = res.decisions(num_tests=30)["sharpe"].to_numpy()
    s2k = res.decisions(num_tests=2000)["sharpe"].to_numpy()
    assert (s2k >= s30).all() and (s2k > s30).any()


def test_gpu_simulator_matches_cpu_and_reference():
    m = gpusim.synthetic_market(n_assets=3, n_bars=90, seed=4)
    bench = m.prices["A00"].rename("B") * np.linspace(1, 1.1, 90)
    cons = [Beta(bench, "<=", 0.5), Budget(0.6, 1.0), WeightBounds(hi=0.7),
            GroupBounds({"A00": "g", "A01": "g"}, hi=0.8)]
    kw = dict(every=Param(["W", 20]), lookback=Param([None, 25]), num_tests=Param([16, 48]),
              fees=Param([0.0, 0.01]), start=30, constraints=cons, seed=2, progress=False)
    cpu = walkforward(m, backend="cpu", **kw)
    gpu = walkforward(m, backend="gpu", **kw)
    assert gpu.summary["backend"] == "gpu-simulator"
    np.testing.assert_allclose(gpu.metrics.to_numpy(), cpu.metrics.to_numpy(), rtol=RTOL,
                               atol=1e-13, equal_nan=True)
    for key in cpu.metrics.index[::2]:
        a, b = cpu.decisions(key), gpu.decisions(key)
        assert a["candidate"].equals(b["candidate"]) and a["n_accepted"].equals(b["n_accepted"])
        np.testing.assert_allclose(b["scale"], a["scale"], rtol=1e-12)
        np.testing.assert_allclose(gpu.allocations(key), cpu.allocations(key), rtol=1e-12,
                                   atol=1e-15)
    _ref_metrics_close(gpu)
    assert gpu.verify(n_combinations=4, n_dates=2)["ok"]
    # unconstrained (no rows) and the exact method's execution on the GPU path too
    kw2 = dict(every=20, lookback=25, num_tests=40, start=30, progress=False)
    a = walkforward(m, backend="cpu", **kw2)
    b = walkforward(m, backend="gpu", **kw2)
    assert a.decisions()["candidate"].equals(b.decisions()["candidate"])
    np.testing.assert_allclose(b.metrics.to_numpy(), a.metrics.to_numpy(), rtol=RTOL)
    rep = cpu.report
    assert ((rep["acceptance"] > 0.05) & (rep["acceptance"] < 0.95)).all()
    np.testing.assert_allclose(gpu.report.to_numpy(float), rep.to_numpy(float), rtol=1e-12)
    for key in cpu.metrics.index[::4]:
        ok = ~cpu.decisions(key)["fallback"].to_numpy()
        assert ok.sum() >= 3
        assert cpu.allocations(key)["cash"][ok].between(-1e-12, 0.4 + 1e-12).all()


# --------------------------------------------------------------------------------------------
# Random search vs the exact solver
# --------------------------------------------------------------------------------------------

def _direct_max_sharpe(mu, cov, ann, lo=None, hi=None, groups=()):
    """A fresh cvxpy problem per window (the textbook homogeneous max-Sharpe program)."""
    import cvxpy as cp

    A = mu.size
    y, k = cp.Variable(A), cp.Variable()
    cons = [(ann * mu) @ y == 1, cp.sum(y) == k, y >= 0, k >= 0]
    if lo is not None:
        cons += [y >= lo * k]
    if hi is not None:
        cons += [y <= hi * k]
    for idx, cap in groups:
        cons += [cp.sum(y[idx]) <= cap * k]
    cp.Problem(cp.Minimize(cp.quad_form(y, cp.psd_wrap(ann * cov))), cons).solve(
        solver="CLARABEL")
    return y.value / k.value


def test_random_converges_to_exact_on_three_assets():
    m = gpusim.synthetic_market(n_assets=3, n_bars=400, seed=21, mu=[0.08, 0.12, 0.1],
                                vol=[0.15, 0.25, 0.2])
    common = dict(every="M", lookback=120, backend="cpu", progress=False)
    rnd = walkforward(m, num_tests=Param([100, 300_000]), gap=True, **common)
    ex = walkforward(m, method="exact", num_tests=100, **common)
    we = ex.allocations().to_numpy()
    ok = ~ex.decisions()["fallback"].to_numpy()
    assert ok.sum() >= 8
    err = {n: np.abs(rnd.allocations(num_tests=n).to_numpy() - we)[ok].max() for n in
           (100, 300_000)}
    assert err[300_000] < 0.01 < err[100]
    gap = rnd.decisions(num_tests=300_000)["gap"].to_numpy()[ok]
    # an optimum on an edge of the simplex is approached linearly, inside it quadratically
    assert np.all(gap <= 1 + 1e-9) and gap.min() > 1 - 5e-3 and np.median(gap) > 1 - 1e-4
    g100, g300k = rnd.report["gap_mean"].to_numpy()
    assert g300k > 1 - 1e-3 > g100


def test_gap_is_computed_only_when_asked(mkt):
    """gap=None (default) and gap=False run no exact solve; gap=True reports best/exact <= 1."""
    common = dict(every="M", lookback=80, num_tests=50, progress=False, backend="cpu")
    for kw in ({}, {"gap": False}):
        res = walkforward(mkt, **common, **kw)
        assert res.summary["gap"] is False
        assert "gap_mean" not in res.report.columns and "exact_sharpe" not in res.report.columns
        assert np.isnan(res.decisions()["gap"].to_numpy()).all()
    res = walkforward(mkt, gap=True, **common)
    assert res.summary["gap"] is True
    g = res.decisions()["gap"].to_numpy()
    assert np.isfinite(g).all() and np.all(g <= 1 + 1e-9) and g.min() < 1 - 1e-3
    assert res.report["gap_min"].iloc[0] == pytest.approx(g.min(), rel=1e-12)
    with pytest.raises(GpusimError, match="gap="):
        walkforward(mkt, gap="auto", **common)


def test_exact_weights_equal_a_direct_cvxpy_solve(mkt):
    close = _c(mkt.prices.to_numpy())
    cons = [WeightBounds(lo=0.02, hi=0.5), GroupBounds({"A00": "x", "A01": "x"}, hi=0.4)]
    res = walkforward(mkt, every="M", lookback=Param([None, 80]), method="exact",
                      constraints=cons, **KW)
    plain = walkforward(mkt, every="M", lookback=80, method="exact", **KW)
    n_checked = 0
    for lb in (None, 80):
        alloc, dec = res.allocations(lookback=lb), res.decisions(lookback=lb)
        for date, row in alloc.iloc[::3].iterrows():
            if dec.loc[date, "fallback"]:
                continue
            t = mkt.prices.index.get_loc(date)
            mu, cov = ref.window_stats_1d_nb(close, 1 if lb is None else t - lb, t)
            w = _direct_max_sharpe(mu, cov, mkt.ann, lo=0.02, hi=0.5, groups=[([0, 1], 0.4)])
            np.testing.assert_allclose(row.to_numpy(), w, atol=2e-6)
            n_checked += 1
    assert n_checked >= 3
    assert res.report["bound_groups"].iloc[0] > 0 or res.report["bound_weights"].iloc[0] > 0
    # unconstrained: the same as gpusim.mvo.max_sharpe on the window
    for date, row in plain.allocations().iloc[::4].iterrows():
        t = mkt.prices.index.get_loc(date)
        mu, cov = ref.window_stats_1d_nb(close, t - 80, t)
        try:
            b = gpusim.max_sharpe(mu, cov, ann=mkt.ann)
        except GpusimError:
            continue
        np.testing.assert_allclose(row.to_numpy(), b.weights, atol=2e-6)


# --------------------------------------------------------------------------------------------
# Constraints
# --------------------------------------------------------------------------------------------

def test_beta_to_spy_holds_at_every_rebalance(spy_market):
    m, spy = spy_market
    close = _c(m.prices.to_numpy())
    bench = _c(spy.reindex(m.prices.index).to_numpy())
    cons = [Beta(spy, "<=", 0.1), Budget()]
    kw = dict(every="M", lookback=126, constraints=cons, **KW)
    ex = walkforward(m, method="exact", **kw)
    rnd = walkforward(m, method="random", num_tests=4000, seed=1, **kw)
    for res, tol in ((ex, 1e-7), (rnd, 1e-12)):
        dec, alloc = res.decisions(), res.allocations()
        assert (~dec["fallback"]).sum() >= 15
        for date, row in alloc[~dec["fallback"].to_numpy()].iterrows():
            b = _beta(close, bench, m.prices.index.get_loc(date), 126)
            w = row[m.symbols].to_numpy()
            assert b @ w <= 0.1 + tol
            assert b.min() > 0.1                        # fully invested could not meet it
            assert row["cash"] > 0.5
        # the beta bound is what stopped full investment on every such date
        assert res.report["bound_beta_SPY"].iloc[0] == 1.0
    # accepted random candidates, re-generated one by one, all meet the bound
    dec = rnd.decisions()
    plan_rows = np.ones((2, 6))
    for _date, d in dec.iloc[::6].iterrows():
        t = int(d["bar"])
        b = _beta(close, bench, t, 126)
        plan_rows[0] = b
        Y, _ = rng.population_nb(np.uint64(d["seed"]), 0, 4000, 6, 1, 1.0, np.zeros(6),
                                 np.full(6, np.inf))
        n_ok = 0
        for y in Y:
            ok, s = ref.constrain_1d_nb(y, np.zeros(6), np.ones(6), plan_rows,
                                        np.array([-np.inf, 0.0]), np.array([0.1, 1.0]),
                                        np.full(2, 1e-3), True)
            if ok:
                n_ok += 1
                assert b @ (s * y) <= 0.1 + 1e-12
        assert n_ok == d["n_accepted"] > 0
    # fully invested, beta <= 0.1 is infeasible here: every date falls back, nothing crashes
    for method in ("exact", "random"):
        r = walkforward(m, method=method, every="M", lookback=126, constraints=[Beta(spy, "<=",
                        0.1)], num_tests=500, **KW)
        d = r.decisions()
        assert d["fallback"].all()
        assert set(d["status"]) == ({"infeasible"} if method == "exact" else {"no_candidate"})
        assert (r.allocations().to_numpy() == 0).all()
        assert r.metrics["total_return"].iloc[0] == 0.0 and r.report["n_fallback"].iloc[0] == \
            len(d)


def test_time_series_bounds_and_partial_fallback(mkt):
    idx = mkt.prices.index
    cut = idx[150]
    hi = pd.Series([0.5, 0.35], index=[idx[0], cut])
    # beta to A00 (an asset of the market) >= 5 is impossible in a window: fallback dates
    beta_min = pd.Series([np.nan, 5.0, np.nan], index=[idx[0], idx[170], idx[200]])
    cons = [WeightBounds(hi=hi), Beta(mkt.prices["A00"], ">=", beta_min, name="b")]
    for method in ("random", "exact"):
        res = walkforward(mkt, every="M", lookback=60, num_tests=3000, method=method,
                          constraints=cons, **KW)
        alloc, dec = res.allocations(), res.decisions()
        before = alloc.index < cut
        assert alloc[before].to_numpy().max() <= 0.5 + 1e-7
        assert alloc[~before].to_numpy().max() <= 0.35 + 1e-7
        failed = dec["fallback"].to_numpy()
        expect = (alloc.index >= idx[170]) & (alloc.index < idx[200])
        assert failed.tolist() == expect.tolist() and failed.any()
        k = np.flatnonzero(failed)
        for j in k:                                       # the last good weights are kept
            np.testing.assert_array_equal(alloc.to_numpy()[j], alloc.to_numpy()[k[0] - 1])
        assert res.report["n_fallback"].iloc[0] == failed.sum()


def test_callable_constraint_sees_state_and_limits_turnover(mkt):
    close = _c(mkt.prices.to_numpy())
    seen = []

    def cap(state, t):
        a = 1 if state.params["lookback"] is None else state.bar - state.params["lookback"]
        mu, _ = ref.window_stats_1d_nb(close, a, state.bar)
        seen.append((t == state.date, np.allclose(state.mu, mu, rtol=1e-10),
                     state.prev_weights is None))
        if state.prev_weights is None:
            return 0.6
        return np.minimum(state.prev_weights + 0.1, 1.0)

    for method in ("random", "exact"):
        seen.clear()
        res = walkforward(mkt, every=Param(["W", "M"]), lookback=70, num_tests=2000,
                          method=method, constraints=[WeightBounds(hi=cap)], **KW)
        for ev in ("W", "M"):
            W = res.allocations(every=ev).to_numpy()
            dec = res.decisions(every=ev)
            assert W[0].max() <= 0.6 + 1e-7
            ok = ~dec["fallback"].to_numpy()
            assert (W[1:][ok[1:]] <= W[:-1][ok[1:]] + 0.1 + 1e-7).all()
        n_dates = sum(len(res.decisions(every=e)) for e in ("W", "M"))
        assert len(seen) == n_dates and all(a and b for a, b, _ in seen)
        assert sum(c for _, _, c in seen) == 2            # one first date per weight set
        _ref_metrics_close(res)
        if method == "random":
            assert res.verify(n_combinations=2, n_dates=3)["ok"]


def test_group_bounds_and_equality_beta(mkt):
    groups = {"A00": "x", "A01": "x", "A02": "y"}
    bench = mkt.prices["A03"]
    for method in ("random", "exact"):
        res = walkforward(mkt, every="M", lookback=60, num_tests=20_000, method=method,
                          constraints=[GroupBounds(groups, lo={"y": 0.1}, hi={"x": 0.3}),
                                       Beta(bench, "=", 0.5, tol=0.01), Budget()], **KW)
        alloc, dec = res.allocations(), res.decisions()
        ok = ~dec["fallback"].to_numpy()
        assert ok.sum() >= 5
        W = alloc[["A00", "A01", "A02", "A03"]].to_numpy()[ok]
        assert (W[:, :2].sum(1) <= 0.3 + 1e-7).all() and (W[:, 2] >= 0.1 - 1e-7).all()
        close = _c(mkt.prices.to_numpy())
        for date, w in zip(alloc.index[ok], W):
            t = mkt.prices.index.get_loc(date)
            b = _beta(close, _c(close[:, 3]), t, 60)
            assert abs(b @ w - 0.5) <= (1e-6 if method == "exact" else 0.01 + 1e-12)


def test_errors_are_one_line(mkt):
    bad = [
        (dict(method="greedy"), "method='greedy'"),
        (dict(lookback=1), "lookback=1"),
        (dict(num_tests=0), "num_tests=0"),
        (dict(lookback=60, start=2), "start=2"),
        (dict(every="fortnight"), "every='fortnight'"),
        (dict(constraints=[WeightBounds(lo=0.3)]), "lower bounds sum"),
        (dict(constraints=[WeightBounds(lo=0.3, hi=0.2)]), "exceeds"),
        (dict(constraints=["beta<=1"]), "not a constraint"),
        (dict(constraints=[Beta(mkt.prices["A00"].iloc[10:], "<=", 1)]), "no value on"),
        (dict(constraints=[WeightBounds(hi=pd.Series([0.5], index=[mkt.prices.index[100]]))]),
         "no value in force"),
        (dict(constraints=[WeightBounds(hi=lambda s, t: 1 / 0)]), "ZeroDivisionError"),
        (dict(backend="tpu"), "backend='tpu'"),
    ]
    for kw, needle in bad:
        with pytest.raises(GpusimError) as e:
            walkforward(mkt, **{**KW, **kw})
        msg = str(e.value)
        assert needle in msg and "\n" not in msg, (kw, msg)
    with pytest.raises(GpusimError, match="op="):
        Beta(mkt.prices["A00"], "<<", 1)


# --------------------------------------------------------------------------------------------
# Outputs and the command line
# --------------------------------------------------------------------------------------------

def test_save_and_cli(tmp_path, mkt, capsys):
    from gpusim.cli.walkforward import main

    res = walkforward(mkt, every=Param(["W", "M"]), lookback=60, num_tests=200, **KW)
    out = res.save(tmp_path / "wf", fmt="csv")
    m = pd.read_csv(out / "metrics.csv")
    assert len(m) == 2 and list(m.columns[:1]) == ["every"]
    al = pd.read_csv(out / "allocations.csv")
    assert set(al["every"]) == {"W", "M"} and len(al) == res.report["n_rebalances"].sum()
    assert json.loads((out / "summary.json").read_text())["n_combinations"] == 2

    rc = main(["--prices", "synthetic:4:260:11", "--every", "W,M", "--lookback", "none,60",
               "--num-tests", "30,300", "--fees", "0.001", "--out", str(tmp_path / "cli"),
               "--format", "csv", "--no-progress", "--weight-bounds", "0,0.6", "--backend", "cpu"])
    text = capsys.readouterr().out
    assert rc == 0 and "best" in text and "combinations" in text
    cm = pd.read_csv(tmp_path / "cli" / "metrics.csv")
    assert len(cm) == 8
    again = walkforward(mkt, every=Param(["W", "M"]), lookback=Param([None, 60]),
                        num_tests=Param([30, 300]), fees=0.001,
                        constraints=[WeightBounds(0, 0.6)], **KW)
    np.testing.assert_allclose(cm["sharpe"].to_numpy(), again.metrics["sharpe"].to_numpy(),
                               rtol=1e-12)
    rc = main(["--prices", "synthetic:4:260:11", "--lookback", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: lookback=1") and err.count("\n") == 1
    rc = main(["--prices", "synthetic:4:260:11", "--method", "exact", "--lookback", "60",
               "--json", "--no-progress", "--backend", "cpu"])
    payload = json.loads(capsys.readouterr().out)
    assert rc == 0 and payload["method"] == "exact" and math.isfinite(payload["best"][0]["sharpe"])


def test_sweep_task_equals_single_calls(mkt, tmp_path):
    from gpusim.sweep.api import sweep

    res = sweep("walkforward", {"every": ["W", "M"], "lookback": [None, 60], "seed": [0, 5]},
                market=mkt, num_tests=300, fees=0.002, weight_bounds=[0.0, 0.6], cash=True,
                out=tmp_path / "sw", backend="cpu", progress=False)
    t = res.table
    assert t.index.names == ["seed", "every", "lookback"] and len(t) == 8
    assert res.summary["n_chunks"] == 2                      # one chunk per seed (point)
    for seed in (0, 5):
        one = walkforward(mkt, every=Param(["W", "M"]), lookback=Param([None, 60]),
                          num_tests=300, fees=0.002, seed=seed, **KW,
                          constraints=[WeightBounds(0.0, 0.6), Budget()])
        got = t.xs(seed, level="seed")
        np.testing.assert_array_equal(got[list(METRICS)].to_numpy(), one.metrics.to_numpy())
        np.testing.assert_array_equal(got["acceptance"].to_numpy(),
                                      one.report["acceptance"].to_numpy())
