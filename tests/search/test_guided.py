"""Guided search (issue 13, DESIGN §11): streams, constraint map, scoring, objectives, holdout."""

import numpy as np
import pytest
from conftest import shared_file

import gpusim
from cpu_ref.search import sharpe_1d_nb
from gpusim.errors import GpusimError
from gpusim.search import guided
from gpusim.search import sampling as smp
from gpusim.search.guided_verify import constraints_ok
from gpusim.search.steps import upper_doubled


@pytest.fixture(scope="module")
def real20():
    return gpusim.load_prices(shared_file("pypfopt/stock_prices.csv"), align="common")


@pytest.fixture(scope="module")
def small():
    return gpusim.synthetic_market(n_assets=6, n_bars=300, seed=2)


def _constrain(s, K, m, lo, hi):
    W, ok = smp.constrain_nb(np.atleast_2d(np.asarray(s, float)), K, m, np.asarray(lo, float),
                             np.asarray(hi, float))
    return W[0], ok[0]


# ----------------------------------------------------------------------------- streams
def test_normal_draws_are_a_pure_function_of_generation_and_index():
    A = 7
    mean, scale = np.zeros(A), np.ones(A)
    k3 = smp.generation_key(5, 3)
    full = smp.draw_logits_nb(k3, 0, 20_000, mean, scale)
    np.testing.assert_array_equal(smp.draw_logits_nb(k3, 123, 50, mean, scale), full[123:173])
    assert abs(full.mean()) < 0.02 and abs(full.std() - 1.0) < 0.02
    # pairs (2p, 2p+1) share a radius but are uncorrelated
    assert abs(np.corrcoef(full[:, 0], full[:, 1])[0, 1]) < 0.03
    # generations, seeds and the plain random stream's key all differ
    assert len({int(smp.generation_key(5, g)) for g in range(100)}) == 100
    assert smp.generation_key(5, 0) != smp.generation_key(6, 0)
    shifted = smp.draw_logits_nb(k3, 0, 3, mean + 1.0, 2.0 * scale)
    np.testing.assert_array_equal(shifted, 1.0 + 2.0 * full[:3])


# ----------------------------------------------------------------------------- constraint map
def test_constraint_map_closed_forms():
    A = 4
    lo, hi = np.zeros(A), np.ones(A)
    # cardinality: the two largest shares, renormalised
    w, ok = _constrain([0.5, 0.3, 0.15, 0.05], 2, 0.0, lo, hi)
    assert ok
    np.testing.assert_allclose(w, [0.625, 0.375, 0, 0], rtol=1e-15)
    # min weight: shares below 0.2 leave; the rest get 0.2 + 0.6 * share
    w, ok = _constrain([0.5, 0.3, 0.15, 0.05], 4, 0.2, lo, hi)
    np.testing.assert_allclose(w, [0.2 + 0.6 * 0.625, 0.2 + 0.6 * 0.375, 0, 0], rtol=1e-15)
    # cap at 0.5: the excess is shared 2:1 by the others
    w, ok = _constrain([0.7, 0.2, 0.1, 0.0], 4, 0.0, lo, np.full(A, 0.5))
    np.testing.assert_allclose(w, [0.5, 1 / 3, 1 / 6, 0], rtol=1e-14)
    # a lower bound forces its asset in, even past the largest shares
    w, ok = _constrain([0.5, 0.3, 0.2, 0.0], 2, 0.0, [0, 0, 0, 0.1], hi)
    np.testing.assert_allclose(w, [0.9, 0, 0, 0.1], rtol=1e-15)
    # infeasible: caps that cannot hold the budget
    assert not _constrain([0.5, 0.5, 0, 0], 2, 0.0, lo, np.full(A, 0.4))[1]
    # no constraints: the identity
    s = np.array([0.4, 0.3, 0.2, 0.1])
    np.testing.assert_array_equal(_constrain(s, A, 0.0, lo, hi)[0], s)


def test_constraint_map_random_points_always_feasible():
    rng = np.random.default_rng(0)
    A = 12
    S = rng.dirichlet(np.full(A, 0.3), size=5000)
    lo = np.zeros(A)
    lo[3] = 0.05
    hi = np.full(A, 0.4)
    W, ok = smp.constrain_nb(S, 5, 0.03, lo, hi)
    assert ok.all()
    p = guided.Problem(None, None, [str(j) for j in range(A)], lo, hi, 5, 0.03, {})
    assert constraints_ok(W, p)
    assert ((W > 0).sum(axis=1) <= 5).all() and not ((W > 0) & (W < 0.03)).any()
    assert (W[:, 3] >= 0.05).all()


# ----------------------------------------------------------------------------- scoring
def test_ex_ante_scorer_matches_reference_and_is_chunking_free(real20):
    mu, cov = (x.to_numpy() for x in real20.stats())
    rng = np.random.default_rng(1)
    W = rng.dirichlet(np.full(20, 0.5), size=301)
    W[::7, ::3] = 0.0
    W /= W.sum(axis=1, keepdims=True)
    ok = np.ones(len(W), dtype=bool)
    ok[5] = False
    U = upper_doubled(cov)
    st = smp.sharpe_rows_nb(W, ok, mu, U, 252.0, 0.01)
    # block (SIMD) scorer == one-row body, bit for bit; prefix == chunk
    np.testing.assert_array_equal(st, smp.sharpe_rows_scalar_nb(W, ok, mu, U, 252.0, 0.01))
    np.testing.assert_array_equal(st[100:137], smp.sharpe_rows_nb(W[100:137], ok[100:137], mu, U,
                                                                   252.0, 0.01))
    ref = np.array([sharpe_1d_nb(w, mu, cov, 252.0, 0.01) for w in W])
    np.testing.assert_allclose(st[ok], ref[ok], rtol=1e-12)
    assert st[5, 2] == -np.inf


# ----------------------------------------------------------------------------- ex-ante
def test_guided_reaches_exact_max_sharpe_on_real_prices(real20):
    res = gpusim.search(real20, method="guided", budget=10**6, seed=7, backend="cpu",
                        progress=False)
    exact = res.baselines["max_sharpe"]
    assert res.gap >= 0.9999, res.gap
    assert res.best["sharpe"] <= exact.sharpe * (1 + 1e-9)
    np.testing.assert_allclose(res.weights().iloc[0], exact.weights, atol=0.01)
    assert res.summary["stopped"] == "converged"
    assert res.summary["n_evaluated"] < 10**6
    check = gpusim.verify(res)
    assert check["ok"], check


def test_guided_100_assets_beats_random_by_far():
    m = gpusim.synthetic_market(n_assets=100, n_bars=1260, seed=3)
    g = gpusim.search(m, method="guided", budget=200_000, seed=1, backend="cpu",
                      progress=False)
    r = gpusim.search(m, n=200_000, seed=1, backend="cpu", progress=False, baselines=False)
    assert g.gap >= 0.999, g.gap
    assert r.best["sharpe"] / g.summary["exact_max_sharpe"] < 0.8
    assert g.verify()["ok"]


def test_same_seed_same_run_for_any_chunk_size(small):
    kw = dict(method="guided", budget=3000, population=100, seed=11, backend="cpu",
              progress=False, baselines=False)
    a = gpusim.search(small, **kw)
    b = gpusim.search(small, chunk_size=7, **kw)
    c = gpusim.search(small, **{**kw, "seed": 12})
    cols = ["candidate", "generation", "sharpe", *a.symbols]
    np.testing.assert_array_equal(a.top[cols].to_numpy(), b.top[cols].to_numpy())
    np.testing.assert_array_equal(a.trace["best"], b.trace["best"])
    assert not np.array_equal(a.top[cols].to_numpy(), c.top[cols].to_numpy())


def test_cuda_simulator_gives_the_cpu_run_bit_for_bit(small):
    try:
        gpusim.resolve_backend("gpu")
    except gpusim.BackendError as exc:
        pytest.skip(str(exc))
    kw = dict(method="guided", budget=480, population=60, seed=3, progress=False,
              baselines=False)
    for extra in ({}, {"rebalance": "M", "fees": 0.001, "budget": 180}):
        c = gpusim.search(small, backend="cpu", **{**kw, **extra})
        g = gpusim.search(small, backend="gpu", **{**kw, **extra})
        assert g.summary["backend"].startswith("gpu")
        np.testing.assert_array_equal(c.top.to_numpy(), g.top.to_numpy())


def test_batched_random_reads_the_fused_search_stream(small):
    fused = gpusim.search(small, n=5000, seed=4, top_k=5, backend="cpu", progress=False,
                          baselines=False)
    batched = gpusim.search(small, method="random", max_assets=6, budget=5000, seed=4,
                            top_k=5, backend="cpu", progress=False, baselines=False)
    np.testing.assert_array_equal(fused.top["candidate"], batched.top["candidate"])
    np.testing.assert_allclose(fused.top["sharpe"], batched.top["sharpe"], rtol=1e-13)
    np.testing.assert_array_equal(fused.weights().to_numpy(), batched.weights().to_numpy())
    assert batched.verify()["ok"]


@pytest.mark.parametrize("method", ["guided", "random"])
def test_cardinality_min_weight_and_bounds_hold_for_every_reported_candidate(real20, method):
    res = gpusim.search(real20, method=method, budget=20_000, seed=2, top_k=50, max_assets=5,
                        min_weight=0.05, bounds=(0.0, 0.4), backend="cpu", progress=False)
    W = res.weights().to_numpy()
    assert len(W) == 50
    assert ((W > 0).sum(axis=1) <= 5).all()
    assert not ((W > 0) & (W < 0.05)).any()
    assert (W <= 0.4).all() and np.allclose(W.sum(axis=1), 1.0, atol=1e-12)
    assert res.summary["relaxed"] and res.gap <= 1.0
    assert res.verify()["ok"]


# ----------------------------------------------------------------------------- ex-post
def test_ex_post_guided_beats_random_with_a_tenth_of_the_evaluations(real20):
    kw = dict(rebalance="M", fees=0.001, backend="cpu", progress=False)
    r = gpusim.search(real20, method="random", budget=20_000, seed=5, **kw)
    g = gpusim.search(real20, method="guided", budget=2_000, seed=5, **kw)
    assert g.summary["kind"] == "ex-post" and g.summary["n_evaluated"] <= 2_000
    assert g.best["sharpe"] > r.best["sharpe"], (g.best["sharpe"], r.best["sharpe"])
    for res in (g, r):
        check = res.verify()  # every reported candidate re-scored by cpu_ref's backtest
        assert check["ok"] and check["max_rel_diff"] <= 1e-10, check
    # the ex-post Sharpe is the backtest's
    bt = gpusim.backtest(real20, weights=g.weights().to_numpy()[:3], rebalance="M", fees=0.001,
                         backend="cpu", progress=False)
    np.testing.assert_allclose(bt.metrics["sharpe"].to_numpy(), g.top["sharpe"][:3], rtol=1e-12)


@pytest.mark.parametrize("objective", ["sortino", "calmar", "max_drawdown", "cagr"])
def test_other_ex_post_objectives_are_maximised(small, objective):
    res = gpusim.search(small, objective=objective, method="guided", budget=600, seed=1,
                        rebalance=21, threshold=0.05, fees=0.0005, backend="cpu",
                        progress=False)
    col = objective
    assert res.top[col].is_monotonic_decreasing
    assert res.verify()["ok"]
    one = gpusim.backtest(small, weights="equal", rebalance=21, threshold=0.05, fees=0.0005,
                          backend="cpu", progress=False).metrics[col].iloc[0]
    assert res.best[col] >= one


@pytest.mark.parametrize("holdout", [0.3, "2017-06-01"])
def test_holdout_reports_the_backtest_of_the_held_out_bars(real20, holdout):
    res = gpusim.search(real20, method="guided", budget=1_000, seed=3, holdout=holdout,
                        rebalance="M", fees=0.001, backend="cpu", progress=False)
    h = res.summary["holdout"]
    prices = real20.prices
    test = prices.loc[h["start"]:]
    if holdout == 0.3:
        assert len(test) == round(0.3 * len(prices))
    else:
        assert test.index[0] >= np.datetime64("2017-06-01") > prices.index[len(prices) - len(test)
                                                                            - 1]
    assert h["n_train_bars"] + h["n_test_bars"] == len(prices)
    W = res.weights().to_numpy()
    bt = gpusim.backtest(test, weights=W, rebalance="M", fees=0.001, backend="cpu",
                         progress=False).metrics
    for c in bt.columns:
        np.testing.assert_allclose(res.top["oos_" + c].to_numpy(), bt[c].to_numpy(), rtol=1e-12)
    train = gpusim.backtest(prices.iloc[:h["n_train_bars"]], weights=W[:2], rebalance="M",
                            fees=0.001, backend="cpu", progress=False).metrics
    np.testing.assert_allclose(res.top["sharpe"][:2], train["sharpe"], rtol=1e-12)
    assert h["fell_by"] == pytest.approx(res.best["sharpe"] - res.best["oos_sharpe"])
    assert "fell by" in res.to_text()
    assert res.verify()["ok"]


def test_ex_ante_holdout_uses_the_held_out_statistics(real20):
    res = gpusim.search(real20, method="guided", budget=5_000, seed=3, holdout=0.3,
                        backend="cpu", progress=False)
    n = res.summary["holdout"]["n_train_bars"]
    mu, cov = (x.to_numpy() for x in gpusim.Market(real20.prices.iloc[n:], 252.0).stats())
    w = res.weights().to_numpy()[0]
    _ret, _vol, sh = sharpe_1d_nb(w, mu, cov, 252.0, 0.0)
    assert res.best["oos_sharpe"] == pytest.approx(sh, rel=1e-12)
    mu_t, cov_t = gpusim.Market(real20.prices.iloc[:n], 252.0).stats()
    assert res.summary["exact_max_sharpe"] == pytest.approx(
        gpusim.max_sharpe(mu_t, cov_t, ann=252.0).sharpe)


# ----------------------------------------------------------------------------- interface
def test_ctrl_c_keeps_the_best_so_far(small, monkeypatch):
    calls = {"n": 0}
    real = guided._evaluate

    def interrupted(*a, **k):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(guided, "_evaluate", interrupted)
    res = gpusim.search(small, method="guided", budget=10_000, population=100, seed=0,
                        backend="cpu", progress=False)
    assert res.partial and res.summary["stopped"] == "interrupted"
    assert res.summary["n_evaluated"] == 500 and res.summary["generations"] == 5
    assert len(res.top) == 10 and res.verify()["ok"]


def test_bad_arguments_are_one_line_errors(small):
    mu, cov = small.stats()
    with pytest.raises(GpusimError, match="method="):
        gpusim.search(small, method="genetic", backend="cpu", progress=False)
    with pytest.raises(GpusimError, match="objective="):
        gpusim.search(small, method="guided", objective="omega", backend="cpu", progress=False)
    with pytest.raises(GpusimError, match="need prices"):
        gpusim.search((mu, cov), method="guided", fees=0.001, backend="cpu", progress=False)
    with pytest.raises(GpusimError, match="unknown option"):
        gpusim.search(small, method="guided", max_asset=3, backend="cpu", progress=False)
    with pytest.raises(GpusimError, match="min_weight"):
        gpusim.search(small, method="guided", min_weight=1.5, backend="cpu", progress=False)
    with pytest.raises(GpusimError, match="upper bounds of any 3 assets"):
        gpusim.search(small, method="guided", max_assets=3, bounds=(0, 0.3), backend="cpu",
                      progress=False)
    with pytest.raises(GpusimError, match="holdout"):
        gpusim.search(small, method="guided", holdout=1.2, backend="cpu", progress=False)


def test_result_saves_and_reports(small, tmp_path):
    res = gpusim.search(small, method="guided", budget=2_000, seed=0, backend="cpu",
                        progress=False)
    res.save(tmp_path / "g")
    import json

    s = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert s["method"] == "guided" and s["gap"] == pytest.approx(res.gap)
    text = res.to_text()
    assert "Gap" in text and "guided search" in text


def test_cli_search_method_guided(tmp_path, capsys):
    from gpusim.cli.main import main

    out = tmp_path / "g"
    rc = main(["search", "--method", "guided", "--prices", "synthetic:8:400:1", "--n", "2e4",
               "--objective", "sortino", "--rebalance", "M", "--fees", "0.001",
               "--max-assets", "4", "--min-weight", "0.05", "--holdout", "0.25",
               "--backend", "cpu", "--no-progress", "--out", str(out), "--format", "csv"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "guided search, objective sortino (ex-post)" in text and "fell by" in text
    import pandas as pd

    top = pd.read_csv(out / "top_k.csv", index_col="rank")
    W = top[[f"A{j:02d}" for j in range(8)]].to_numpy()
    assert ((W > 0).sum(axis=1) <= 4).all() and not ((W > 0) & (W < 0.05)).any()
    assert "oos_sortino" in top.columns
    # a plain `gpusim search` still runs the fused random kernel
    assert main(["search", "--prices", "synthetic:3:200:1", "--n", "1e4", "--no-progress",
                 "--no-baselines", "--backend", "cpu"]) == 0
    assert "Top 10 by ex-ante Sharpe" in capsys.readouterr().out
