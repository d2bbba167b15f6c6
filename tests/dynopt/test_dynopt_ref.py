"""Reference dynamic optimisation (cpu_ref.dynopt, DESIGN §8): hand-computed cases.

Every expected number below is written out as the arithmetic that produces it. The fast paths
are checked against these same cases (and against this reference) in tests/test_dynopt.py.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from cpu_ref.dynopt import (
    METRICS,
    buffer_1d_nb,
    dynopt_1d_nb,
    estimate_covariances_nb,
    greedy_1d_nb,
    objective_1d_nb,
    tracking_error_1d_nb,
)

M = {name: i for i, name in enumerate(METRICS)}


# --------------------------------------------------------------------------------------------
# The 4-instrument local optimum (acceptance 1)
# --------------------------------------------------------------------------------------------

def four_instruments():
    """Two independent pairs (block-diagonal Σ), so TE^2 = TE_A^2 + TE_B^2 by hand.

    Pair A (0, 1): vols 10%, correlation 0.9, one contract = 0.2 of capital, w* = (0.15, -0.15)
    — a long/short spread. Pair B (2, 3): vols 20%, uncorrelated, one contract = 0.1,
    w* = (0.12, 0.27).
    """
    c = np.array([0.2, 0.2, 0.1, 0.1])
    cov = np.zeros((4, 4))
    cov[:2, :2] = 0.01 * np.array([[1.0, 0.9], [0.9, 1.0]])
    cov[2, 2] = cov[3, 3] = 0.04
    w_star = np.array([0.15, -0.15, 0.12, 0.27])
    return c, w_star, cov


def te2_by_hand(n):
    """TE^2 of contracts n for four_instruments(), written out per pair."""
    a0, a1 = 0.2 * n[0] - 0.15, 0.2 * n[1] + 0.15
    b0, b1 = 0.1 * n[2] - 0.12, 0.1 * n[3] - 0.27
    return 0.01 * (a0 * a0 + a1 * a1 + 2 * 0.9 * a0 * a1) + 0.04 * (b0 * b0 + b1 * b1)


def test_tracking_error_matches_the_hand_formula():
    c, w_star, cov = four_instruments()
    for n in ([0, 0, 0, 0], [1, -1, 1, 3], [2, 0, -1, 4]):
        n = np.array(n, dtype=float)
        assert tracking_error_1d_nb(n * c, w_star, cov) == pytest.approx(
            math.sqrt(te2_by_hand(n)), rel=1e-12)


def test_greedy_stops_at_a_local_optimum_not_the_integer_optimum():
    c, w_star, cov = four_instruments()
    zero = np.zeros(4)
    greedy = greedy_1d_nb(c, w_star, zero, zero, cov, 0.0)
    # By hand. At 0: TE_A^2 = 0.01 (0.0225 + 0.0225 - 2 0.9 0.0225) = 4.5e-5 and
    # TE_B^2 = 0.04 (0.0144 + 0.0729) = 3.492e-3. One contract in pair A (either leg, in the
    # direction of w*) raises TE_A^2 to 0.01 (0.0025 + 0.0225 + 2 0.9 0.0075) = 3.85e-4, so
    # pair A is never touched. Pair B steps: 3 (1.732e-3), 3 (7.72e-4), 2 (2.12e-4),
    # 3 (5.2e-5); then +1 on 2 gives 2.92e-4 and +1 on 3 gives 0.04 (0.0004 + 0.0169) — stop.
    assert greedy.tolist() == [0.0, 0.0, 1.0, 3.0]
    assert te2_by_hand(greedy) == pytest.approx(4.5e-5 + 5.2e-5, rel=1e-12)
    # local optimum: no single step in the direction of w* improves
    for i in range(4):
        trial = greedy.copy()
        trial[i] += np.sign(w_star[i])
        assert te2_by_hand(trial) > te2_by_hand(greedy)

    # exhaustive integer optimum over a box that holds every sensible position
    best = min(itertools.product(range(-4, 5), repeat=4),
               key=lambda n: tracking_error_1d_nb(np.array(n, float) * c, w_star, cov))
    assert best == (1, -1, 1, 3)
    # the spread (1, -1): gaps (0.05, -0.05), TE_A^2 = 0.01 (2 0.0025 - 2 0.9 0.0025) = 5e-6
    assert te2_by_hand(np.array(best, float)) == pytest.approx(5e-6 + 5.2e-5, rel=1e-12)
    assert te2_by_hand(np.array(best, float)) < te2_by_hand(greedy)


def test_shadow_cost_keeps_the_previous_position():
    # one instrument: vol 20%, one contract = 0.1, w* = 0.26, previously 2 contracts (w0 = 0.2);
    # k = 0.01 per unit of weight. Objective at n contracts:
    #   0.2 |0.1 n - 0.26| + s 0.01 |0.1 n - 0.2|
    #   n=2: 0.012 + 0;  n=3: 0.008 + s 0.001.  s = 10 -> 0.018 > 0.012: stop at 2;
    #   s = 1 -> 0.009 < 0.012: go on to 3 (n=4: 0.028 + 0.002, worse).
    c, w_star, w0, k, cov = (np.array([0.1]), np.array([0.26]), np.array([0.2]),
                             np.array([0.01]), np.array([[0.04]]))
    assert greedy_1d_nb(c, w_star, w0, k, cov, 10.0).tolist() == [2.0]
    assert greedy_1d_nb(c, w_star, w0, k, cov, 1.0).tolist() == [3.0]
    assert objective_1d_nb(np.array([3.0]), c, w_star, w0, k, cov, 10.0) == pytest.approx(
        0.018, rel=1e-12)
    # no cost: plain rounding towards w*
    assert greedy_1d_nb(c, w_star, w0, k, cov, 0.0).tolist() == [3.0]


def test_greedy_moves_only_in_the_direction_of_the_optimum():
    # short optimum -0.26 with one contract = 0.1: greedy goes 0, -1, -2, -3 and stops
    c, cov = np.array([0.1, 0.1]), np.diag([0.04, 0.04])
    out = greedy_1d_nb(c, np.array([-0.26, 0.0]), np.zeros(2), np.zeros(2), cov, 0.0)
    assert out.tolist() == [-3.0, 0.0]
    # an instrument with c = 0 (outside the optimisation) is never traded
    out = greedy_1d_nb(np.array([0.1, 0.0]), np.array([0.26, 0.3]), np.zeros(2), np.zeros(2),
                       cov, 0.0)
    assert out.tolist() == [3.0, 0.0]


# --------------------------------------------------------------------------------------------
# Buffering (acceptance 2)
# --------------------------------------------------------------------------------------------

ONE = (np.array([0.125]), np.array([[0.0625]]))   # one contract = 1/8, vol 25%: exact binary


def test_buffer_half_of_the_trade_rounds_half_to_even():
    c, cov = ONE
    greedy = greedy_1d_nb(c, np.array([0.6]), np.zeros(1), np.zeros(1), cov, 0.0)
    assert greedy.tolist() == [5.0]                 # 5/8 = 0.625 is nearest to 0.6
    # TE_prior = 0.25 * 0.625 = 0.15625; B = 0.078125 -> alpha = 0.5 exactly; 0.5 * 5 = 2.5 -> 2
    new, alpha, te_prior = buffer_1d_nb(np.zeros(1), greedy, c, cov, 0.078125)
    assert te_prior == 0.15625 and alpha == 0.5
    assert new.tolist() == [2.0]


def test_buffer_rounds_trades_down():
    c, cov = ONE
    g = np.array([5.0])
    # B = 0.05: alpha = (0.15625 - 0.05) / 0.15625 = 0.68; 0.68 * 5 = 3.4 -> trade 3, not 5
    new, alpha, _ = buffer_1d_nb(np.zeros(1), g, c, cov, 0.05)
    assert alpha == pytest.approx(0.68, rel=1e-12) and new.tolist() == [3.0]
    # held 4, greedy 5: TE_prior = 0.25 * 0.125 = 0.03125; B = 0.02 -> alpha = 0.36;
    # round(0.36 * 1) = 0: the one-contract trade is buffered away
    new, alpha, te_prior = buffer_1d_nb(np.array([4.0]), g, c, cov, 0.02)
    assert te_prior == 0.03125 and alpha == pytest.approx(0.36, rel=1e-12)
    assert new.tolist() == [4.0]
    # held 3: TE_prior = 0.0625, B = 0.03125 -> alpha = 0.5, 0.5 * 2 = 1 -> trade 1
    new, alpha, _ = buffer_1d_nb(np.array([3.0]), g, c, cov, 0.03125)
    assert alpha == 0.5 and new.tolist() == [4.0]
    # B >= TE_prior: alpha = 0, no trade at all
    new, alpha, _ = buffer_1d_nb(np.array([4.0]), g, c, cov, 0.04)
    assert alpha == 0.0 and new.tolist() == [4.0]
    # B = 0: alpha = 1, trade all the way to the greedy solution
    new, alpha, _ = buffer_1d_nb(np.array([1.0]), g, c, cov, 0.0)
    assert alpha == 1.0 and new.tolist() == [5.0]
    # nothing to do: TE_prior = 0 -> alpha = 0
    new, alpha, te_prior = buffer_1d_nb(g.copy(), g, c, cov, 0.01)
    assert te_prior == 0.0 and alpha == 0.0 and new.tolist() == [5.0]


def test_buffer_two_instruments_3_4_5():
    # one contract = 1/8 each, vols 25%, uncorrelated; w* = (0.52, -0.36) -> greedy (4, -3):
    # weights (0.5, -0.375), TE_prior from flat = 0.25 sqrt(0.5^2 + 0.375^2) = 0.25 * 0.625.
    c, cov = np.array([0.125, 0.125]), np.diag([0.0625, 0.0625])
    g = greedy_1d_nb(c, np.array([0.52, -0.36]), np.zeros(2), np.zeros(2), cov, 0.0)
    assert g.tolist() == [4.0, -3.0]
    new, alpha, te_prior = buffer_1d_nb(np.zeros(2), g, c, cov, 0.078125)
    assert te_prior == 0.15625 and alpha == 0.5
    # 0.5 * (4, -3) = (2, -1.5) -> (2, -2): half to even on the short side too
    assert new.tolist() == [2.0, -2.0]


# --------------------------------------------------------------------------------------------
# The daily loop
# --------------------------------------------------------------------------------------------

def test_daily_loop_by_hand():
    # one instrument, 3 days: price 100, 102, 101; multiplier 10; capital 10 000 -> one
    # contract = 0.1, 0.102, 0.101 of capital; vol 20%; w* = 0.33, 0.33, 0.45; cost 5 per
    # contract; buffer 0.012; no shadow cost.
    cap, B = 10_000.0, 0.012
    price = np.array([100.0, 102.0, 101.0])
    notional = (price * 10).reshape(3, 1)
    dprice = np.array([[0.0], [20.0], [-10.0]])
    cost = np.full((3, 1), 5.0)
    k = cost / notional
    w_star = np.array([[0.33], [0.33], [0.45]])
    covs = np.array([[[0.04]]])
    cov_id = np.zeros(3, dtype=np.int64)
    mask = np.ones(3, dtype=np.bool_)
    m, pos, te, alpha, ret = dynopt_1d_nb(dprice, notional, cost, k, w_star, covs, cov_id, mask,
                                          cap, 0.0, B, 252.0)
    # day 0: greedy 3 (0.3 vs 0.33); TE_prior = 0.2 * 0.3 = 0.06; alpha = 0.048 / 0.06 = 0.8;
    #        0.8 * 3 = 2.4 -> 2 contracts
    # day 1: greedy 3 (3.24 contracts optimal); TE_prior = 0.2 * 0.102; alpha = 0.0084/0.0204;
    #        0.41 * 1 -> 0: hold 2
    # day 2: greedy 4 (4.46 optimal: 0.404 vs 0.505); TE_prior = 0.2 * 2 * 0.101 = 0.0404;
    #        alpha = 0.0284 / 0.0404 = 0.703; 0.703 * 2 = 1.41 -> 1: hold 3
    assert pos[:, 0].tolist() == [2.0, 2.0, 3.0]
    a = [0.048 / 0.06, (0.0204 - B) / 0.0204, (0.0404 - B) / 0.0404]
    np.testing.assert_allclose(alpha, a, rtol=1e-12)
    # TE of the held positions: 0.2 |0.2 - 0.33|, 0.2 |0.204 - 0.33|, 0.2 |0.303 - 0.45|
    np.testing.assert_allclose(te, [0.026, 0.0252, 0.0294], rtol=1e-12)
    # returns: day 0 pays 2 x 5; day 1 earns 2 x 20; day 2 earns 2 x -10 and pays 5
    r = np.array([-10.0, 40.0, -25.0]) / cap
    np.testing.assert_allclose(ret, r, rtol=1e-12)
    mean, std = r.mean(), r.std(ddof=1)
    np.testing.assert_allclose(m[M["mean_return"]], mean * 252, rtol=1e-12)
    np.testing.assert_allclose(m[M["volatility"]], std * math.sqrt(252), rtol=1e-12)
    np.testing.assert_allclose(m[M["sharpe"]], mean / std * math.sqrt(252), rtol=1e-12)
    assert m[M["contracts_per_year"]] == pytest.approx(3 * 252 / 3, rel=1e-12)
    assert m[M["avg_tracking_error"]] == pytest.approx((0.026 + 0.0252 + 0.0294) / 3, rel=1e-12)
    assert m[M["avg_adjustment_factor"]] == pytest.approx(sum(a) / 3, rel=1e-12)
    assert m[M["costs"]] == pytest.approx(15.0 / cap, rel=1e-12)  # a fraction of capital
    assert m[M["annual_cost"]] == pytest.approx(15.0 / cap * 252 / 3, rel=1e-12)

    # rebalancing only on day 0 (e.g. a weekly rule): hold the 2 contracts
    mask2 = np.array([True, False, False])
    m2, pos2, _, alpha2, _ = dynopt_1d_nb(dprice, notional, cost, k, w_star, covs, cov_id, mask2,
                                          cap, 0.0, B, 252.0)
    assert pos2[:, 0].tolist() == [2.0, 2.0, 2.0]
    assert np.isnan(alpha2[1:]).all() and m2[M["costs"]] == 10.0 / cap


def test_instrument_leaving_the_optimisation_is_closed():
    # two instruments; instrument 1 loses its notional on day 2 (e.g. no risk estimate): its
    # contracts are sold on that rebalance day even with a buffer that blocks every other trade
    T = 3
    notional = np.array([[1000.0, 2000.0], [1000.0, 2000.0], [1000.0, 0.0]])
    cost = np.full((T, 2), 3.0)
    k = np.where(notional > 0, cost / np.where(notional > 0, notional, 1), 0.0)
    w_star = np.array([[0.3, 0.4], [0.3, 0.4], [0.3, 0.0]])
    covs = np.array([np.diag([0.04, 0.04])])
    cov_id = np.zeros(T, dtype=np.int64)
    dprice = np.zeros((T, 2))
    _, pos, te, alpha, _ = dynopt_1d_nb(dprice, notional, cost, k, w_star, covs, cov_id,
                                        np.array([True, False, True]), 10_000.0, 0.0, 0.01,
                                        252.0)
    # capital 10 000: one contract = 0.1 and 0.2 -> greedy 3 and 2 contracts. Day 0: TE_prior
    # = 0.2 sqrt(0.3^2 + 0.4^2) = 0.1, alpha = 0.9 -> round(2.7, 1.8) = (3, 2).
    # Day 2: instrument 0 is already at its greedy 3 (TE_prior = 0, alpha = 0: no buffered
    # trade), yet instrument 1 is closed: it is outside the optimisation.
    assert alpha[0] == pytest.approx(0.9, rel=1e-12) and np.isnan(alpha[2])
    assert pos.tolist() == [[3.0, 2.0], [3.0, 2.0], [3.0, 0.0]]
    # day 2 TE counts instrument 0 only: 0.2 * |0.3 - 0.3| = 0
    assert te[2] == pytest.approx(0.0, abs=1e-15)


# --------------------------------------------------------------------------------------------
# Covariances on a schedule
# --------------------------------------------------------------------------------------------

def test_covariances_vols_correlation_shrinkage_and_schedule():
    rng = np.random.default_rng(3)
    T, ann = 12, 252.0
    r = rng.standard_normal((T, 3)) * 0.01
    r[0] = np.nan
    r[1:5, 2] = np.nan                     # instrument 2 lists late
    update = np.zeros(T, dtype=np.bool_)
    update[6] = update[10] = True
    vols, covs, cov_id = estimate_covariances_nb(r, update, 5, 3, 0.25, ann)
    assert cov_id.tolist() == [0] * 6 + [1] * 4 + [2] * 2
    assert np.isnan(vols[0]).all()          # day 0: no returns yet
    # update on day 6: window = returns of days 2..6; instrument 2 has days 5, 6 only (< 3)
    win = r[2:7]
    np.testing.assert_allclose(vols[1, :2], win[:, :2].std(axis=0, ddof=1) * math.sqrt(ann),
                               rtol=1e-12)
    assert np.isnan(vols[1, 2]) and np.all(covs[1][2] == 0) and np.all(covs[1][:, 2] == 0)
    rho = np.corrcoef(win[:, 0], win[:, 1])[0, 1]
    assert covs[1][0, 1] == pytest.approx(vols[1, 0] * vols[1, 1] * 0.75 * rho, rel=1e-12)
    assert covs[1][0, 0] == pytest.approx(vols[1, 0] ** 2, rel=1e-12)
    # update on day 10: window 6..10, all three have 5 returns
    win = r[6:11]
    np.testing.assert_allclose(vols[2], win.std(axis=0, ddof=1) * math.sqrt(ann), rtol=1e-12)
    R = np.corrcoef(win.T) * 0.75
    np.fill_diagonal(R, 1.0)
    np.testing.assert_allclose(covs[2], R * np.outer(vols[2], vols[2]), rtol=1e-12)


def test_pairwise_correlations_that_are_not_psd_are_repaired():
    # rows A: x0 = x1; rows B: x1 = x2; rows C: x0 = -x2 — pairwise correlations +1, +1, -1
    a, b, cc = np.array([1.0, -2, 0.5, 3]), np.array([2.0, -1, 1, -3]), np.array([1.0, 2, -1, 0.3])
    nan = np.full(4, np.nan)
    r = np.vstack([np.full((1, 3), np.nan),
                   np.column_stack([a, a, nan]), np.column_stack([nan, b, b]),
                   np.column_stack([cc, nan, -cc])]) * 0.01
    update = np.zeros(13, np.bool_)
    update[-1] = True
    vols, covs, _ = estimate_covariances_nb(r, update, 100, 3, 0.1, 252.0)
    vols, covs = vols[1:], covs[1:]       # the estimate of the last day (all 12 returns)
    raw = 0.9 * np.array([[1.0, 1, -1], [1, 1.0, 1], [-1, 1, 1.0]])
    np.fill_diagonal(raw, 1.0)
    lam, V = np.linalg.eigh(raw)
    assert lam[0] < 0                                  # not a correlation matrix
    fixed = (V * np.maximum(lam, 0)) @ V.T
    d = np.sqrt(np.diag(fixed))
    fixed = fixed / np.outer(d, d)
    R = covs[0] / np.outer(vols[0], vols[0])
    np.testing.assert_allclose(R, fixed, atol=1e-12)
    assert np.linalg.eigvalsh(covs[0]).min() > -1e-15
