"""cpu_ref.walkforward, the oracle of the walk-forward fast paths: hand-computed cases, NumPy
closed forms, brute force, and the backtest reference it is built on."""

import math

import numpy as np
import pytest

from cpu_ref import rng
from cpu_ref import walkforward as ref
from cpu_ref.backtest import METRICS
from cpu_ref.backtest import simulate_1d_nb as bt_simulate_1d_nb

M = {n: i for i, n in enumerate(METRICS)}
INF = np.inf


def _prices(T=80, A=3, seed=0):
    r = np.random.default_rng(seed)
    return 100 * np.cumprod(1 + r.normal(3e-4, 0.01, (T, A)), axis=0)


def test_period_seed_is_splitmix_of_the_seed_key():
    # uint64 arithmetic by hand with Python ints
    def mix(z):
        z &= 2**64 - 1
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
        return z ^ (z >> 31)
    g = 0x9E3779B97F4A7C15
    for seed, t in ((0, 0), (7, 253), (2**63 + 5, 10**6)):
        key = mix(seed * g + g)
        assert int(ref.period_seed_nb(np.uint64(seed), t)) == mix(key + (t + 1) * g)
    s = ref.period_seeds(3, np.arange(500))
    assert len(set(s.tolist())) == 500 and s.dtype == np.uint64


def test_window_stats_and_betas_match_numpy():
    close = _prices(60, 4, 1)
    bench = _prices(60, 1, 2)
    a, t = 7, 40
    mu, cov = ref.window_stats_1d_nb(close, a, t)
    r = close[a:t] / close[a - 1:t - 1] - 1          # returns of bars a..t-1
    np.testing.assert_allclose(mu, r.mean(0), rtol=1e-13)
    np.testing.assert_allclose(cov, np.cov(r, rowvar=False), rtol=1e-12)
    b = ref.betas_1d_nb(close, bench, a, t)
    rb = (bench[a:t] / bench[a - 1:t - 1] - 1)[:, 0]
    slope = [np.polyfit(rb, r[:, j], 1)[0] for j in range(4)]   # OLS slope = cov / var
    np.testing.assert_allclose(b[0], slope, rtol=1e-10)


def test_excess_sharpe_is_design_sharpe_when_fully_invested():
    mu = np.array([1e-3, 2e-3])
    cov = np.array([[4e-4, 1e-4], [1e-4, 9e-4]])
    w = np.array([0.25, 0.75])
    var = 0.25**2 * 4e-4 + 2 * 0.25 * 0.75 * 1e-4 + 0.75**2 * 9e-4
    expect = (252 * (0.25e-3 + 1.5e-3) - 0.02) / math.sqrt(252 * var)
    assert ref.excess_sharpe_1d_nb(w, mu, cov, 252.0, 0.02) == pytest.approx(expect, rel=1e-14)
    # scale-free with cash (cash earns rf): half the weights, same Sharpe
    assert ref.excess_sharpe_1d_nb(w / 2, mu, cov, 252.0, 0.02) == pytest.approx(expect, 1e-14)
    assert ref.excess_sharpe_1d_nb(np.zeros(2), mu, cov, 252.0, 0.0) == -INF


def test_constrain_fully_invested_hand_cases():
    y = np.array([0.2, 0.3, 0.5])
    lo, hi = np.zeros(3), np.ones(3)
    G = np.array([[1.0, 1.0, 0.0],            # group {0, 1}: weight 0.5
                  [1.2, 0.8, 0.4]])           # beta: 0.24 + 0.24 + 0.2 = 0.68
    tol = np.array([1e-3, 1e-3])
    ok, s = ref.constrain_1d_nb(y, lo, hi, G, np.array([-INF, -INF]), np.array([0.5, 0.7]),
                                tol, False)
    assert ok and s == 1.0
    # group cap 0.49 breaks it, beta cap 0.67 breaks it, hi 0.45 breaks it
    assert not ref.constrain_1d_nb(y, lo, hi, G, np.full(2, -INF), np.array([0.49, 0.7]),
                                   tol, False)[0]
    assert not ref.constrain_1d_nb(y, lo, hi, G, np.full(2, -INF), np.array([0.5, 0.67]),
                                   tol, False)[0]
    assert not ref.constrain_1d_nb(y, lo, np.full(3, 0.45), G, np.full(2, -INF),
                                   np.full(2, INF), tol, False)[0]
    # equality beta = 0.6805 accepted within tol 1e-3, = 0.682 rejected
    for b, want in ((0.6805, True), (0.682, False)):
        ok, _ = ref.constrain_1d_nb(y, lo, hi, G[1:], np.array([b]), np.array([b]), tol[:1],
                                    False)
        assert ok is want


def test_constrain_cash_scales_to_the_binding_limit():
    y = np.array([0.5, 0.5])
    G = np.array([[1.0, 0.6],                  # beta of y = 0.8
                  [1.0, 1.0]])                 # budget
    lo, hi = np.zeros(2), np.ones(2)
    ok, s = ref.constrain_1d_nb(y, lo, hi, G, np.array([-INF, 0.0]), np.array([0.1, 1.0]),
                                np.full(2, 1e-3), True)
    assert ok and s == pytest.approx(0.125, rel=1e-15)          # 0.1 / 0.8
    # an asset cap binds first: hi_0 = 0.04 -> s = 0.08
    ok, s = ref.constrain_1d_nb(y, lo, np.array([0.04, 1.0]), G, np.array([-INF, 0.0]),
                                np.array([0.1, 1.0]), np.full(2, 1e-3), True)
    assert ok and s == pytest.approx(0.08, rel=1e-15)
    # a minimum investment of 20% cannot hold at s = 0.125: rejected
    ok, _ = ref.constrain_1d_nb(y, lo, hi, G, np.array([-INF, 0.2]), np.array([0.1, 1.0]),
                                np.full(2, 1e-3), True)
    assert not ok
    # beta >= 0.1 with a negative-beta direction: no positive scale works
    ok, _ = ref.constrain_1d_nb(y, lo, hi, np.array([[-1.0, -0.2]]), np.array([0.1]),
                                np.array([INF]), np.full(1, 1e-3), True)
    assert not ok


def _numpy_search(pseed, n, lo, hi, G, gl, gu, tol, cash, mu, cov, ann, rf):
    """Brute force with NumPy: population, scores and the acceptance rule vectorised."""
    A = mu.size
    Y, _ = rng.population_nb(np.uint64(pseed), 0, n, A, 1, 1.0, lo, np.full(A, np.inf))
    ex = ann * mu - rf
    sh = (Y @ ex) / np.sqrt(ann * np.einsum("ij,jk,ik->i", Y, cov, Y))
    V = Y @ G.T
    s = np.ones(n)
    if cash:
        with np.errstate(divide="ignore", invalid="ignore"):
            lim = np.where(Y > 0, hi / Y, INF).min(1)
            up = np.where((V > 0) & np.isfinite(gu), gu / V, INF).min(1)
            dn = np.where((V < 0) & np.isfinite(gl), gl / V, INF).min(1)
        s = np.minimum.reduce([np.ones(n), lim, up, dn])
    Wt, Vs = Y * s[:, None], V * s[:, None]
    e = 1e-12
    ok = (s > 0) & (Wt >= lo - e * (1 + lo)).all(1) & (Wt <= hi + e * (1 + hi)).all(1)
    eq = gl == gu
    ok &= np.where(eq, np.abs(Vs - gu) <= tol + e * (1 + np.abs(gu)),
                   (Vs >= gl - e * (1 + np.abs(gl))) & (Vs <= gu + e * (1 + np.abs(gu)))).all(1)
    best = int(np.argmax(np.where(ok, sh, -INF))) if ok.any() else -1
    return best, int(ok.sum()), int(np.argmax(sh))


@pytest.mark.parametrize("cash", [False, True])
def test_search_period_matches_numpy_brute_force(cash):
    close = _prices(120, 4, 3)
    bench = _prices(120, 1, 4)
    mu, cov = ref.window_stats_1d_nb(close, 20, 110)
    beta = ref.betas_1d_nb(close, bench, 20, 110)[0]
    lo = np.array([0.05, 0.0, 0.0, 0.0])
    hi = np.array([1.0, 0.6, 1.0, 1.0])
    G = np.vstack([beta, [1, 1, 0, 0], np.ones(4)])
    gl = np.array([-INF, 0.1, 0.0])
    gu = np.array([0.8 * beta.mean(), 0.7, 1.0])
    tol = np.full(3, 1e-3)
    pseed = ref.period_seed_nb(np.uint64(9), 110)
    best, _bsh, bsc, nacc, bany, _ = ref.search_period_1d_nb(
        np.uint64(pseed), 3000, 1, 1.0, lo, hi, G, gl, gu, tol, cash, mu, cov, 252.0, 0.01)
    nb, nacc_np, bany_np = _numpy_search(pseed, 3000, lo, hi, G, gl, gu, tol, cash, mu, cov,
                                         252.0, 0.01)
    assert (best, nacc, bany) == (nb, nacc_np, bany_np)
    assert 0 < nacc < 3000 and best >= 0
    assert (bsc < 1.0) if cash else (bsc == 1.0)


def test_simulate_with_constant_targets_equals_backtest_reference():
    close = _prices(90, 3, 5)
    mask = np.zeros(90, bool)
    mask[::10] = True
    w = np.array([0.5, 0.3, 0.2])
    K = int(mask.sum())
    got = ref.simulate_1d_nb(close, np.tile(w, (K, 1)), mask, 0.004, 100.0, 252.0, 0.01)
    want = bt_simulate_1d_nb(close, w, mask, np.nan, False, 0.004, 100.0, 252.0, 0.01)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[2], want[2])


def test_simulate_hand_case_targets_change():
    # 2 assets, 3 bars, fee 1%: bar 0 buy 50/50, bar 1 hold, bar 2 switch to 100% asset 1
    close = np.array([[10.0, 20.0], [11.0, 20.0], [12.0, 25.0]])
    targets = np.array([[0.5, 0.5], [0.0, 1.0]])
    mask = np.array([True, False, True])
    f = 0.01
    # bar 0: V = 1; buys in order of order value (equal: asset 0 first), each 0.5 of V
    h0 = 0.5 / 10
    cash = 1 - 0.5 * (1 + f)                          # 0.495 left
    h1 = cash / (20 * (1 + f))                        # partial fill: cash runs out
    v0 = h0 * 10 + h1 * 20
    v1 = h0 * 11 + h1 * 20
    V2 = h0 * 12 + h1 * 25                            # bar 2 pre-trade value
    cash2 = h0 * 12 * (1 - f)                         # sell asset 0 first
    buy = min(V2 / 25 - h1, cash2 / (25 * (1 + f)))
    v2 = (h1 + buy) * 25 + cash2 - buy * 25 * (1 + f)
    m, value, bars, real = ref.simulate_1d_nb(close, targets, mask, f, 1.0, 252.0, 0.0)
    np.testing.assert_allclose(value, [v0, v1, v2], rtol=1e-14)
    assert bars.tolist() == [0, 2] and m[M["n_rebalances"]] == 2
    np.testing.assert_allclose(m[M["fees_paid"]], f * (0.5 + h1 * 20 + h0 * 12 + buy * 25),
                               rtol=1e-13)
    assert real[1, 0] == 0.0 and real[1, 1] == pytest.approx(1.0, abs=1e-12)


def test_simulate_nb_matches_one_by_one():
    close = _prices(70, 3, 6)
    masks = np.zeros((2, 70), bool)
    masks[0, ::7] = True
    masks[1, ::20] = True
    K = [int(masks[0].sum()), int(masks[1].sum())]
    r = np.random.default_rng(0)
    W = r.dirichlet(np.ones(3), sum(K))
    woff = np.array([0, K[0]])
    out = ref.simulate_nb(close, W, woff, np.array([0, 1, 1]), masks, np.array([0, 1, 1]),
                          np.array([0.0, 0.0, 0.01]), 1.0, 252.0, 0.0)
    for c, (ws, f) in enumerate(((0, 0.0), (1, 0.0), (1, 0.01))):
        one = ref.simulate_1d_nb(close, W[woff[ws]:woff[ws] + K[ws]], masks[ws], f, 1.0,
                                 252.0, 0.0)[0]
        np.testing.assert_array_equal(out[c], one)
    assert out[2, M["fees_paid"]] > 0 and out[1, M["fees_paid"]] == 0
