"""dynopt's no-trade rule against a faithful transcription of pysystemtrade's own daily rule, and
the static comparison (Carver's classic position buffer) by hand and against AFTS's code.

The transcription below follows ``systems/provided/dynamic_small_system_optimise``
(``optimisation.py``: ``objectiveFunctionForGreedy.optimise_positions`` and its early exits;
``greedy_algo.py``: ``greedy_algo_across_integer_values``; ``buffering.py``:
``calculate_adjustment_factor``, ``adjust_weights_with_factor``) and the daily loop of
``optimised_positions_stage.get_optimised_position_df`` (previous positions start at zero), with
pysystemtrade's weight-space arithmetic kept as written: greedy steps add ``per_contract_value x
direction`` to the weights, positions are ``weights / per_contract_value`` rounded. Logging,
constraints (none here) and the per-key dictionaries are left out; instruments without data
(``notional <= 0``) are the missing keys (weight 0).
"""

from __future__ import annotations

from copy import copy

import numpy as np
import pandas as pd
import pytest
from conftest import shared_file

from cpu_ref.dynopt import dynopt_1d_nb
from cpu_ref.dynopt_static import STATIC_METRICS, buffered_position_1d_nb, static_1d_nb
from gpusim.dynopt.cpu import dynopt_cpu
from gpusim.dynopt.inputs import prepare


# ----------------------------------------------------------------------------- transcription
class PstObjective:
    """pysystemtrade's objectiveFunctionForGreedy on the valid keys, numpy arrays."""

    def __init__(self, contracts_optimal, cov, per_contract_value, costs, shadow_cost, buffer,
                 previous_positions):
        self.cov = cov
        self.per_contract_value = per_contract_value
        self.weights_optimal = contracts_optimal * per_contract_value
        self.weights_prior = previous_positions * per_contract_value
        self.costs = costs
        self.trade_shadow_cost = shadow_cost
        self.tracking_error_buffer = buffer
        self.direction = np.sign(self.weights_optimal)

    def optimise_positions(self):
        optimal_weights = self.optimise_np_for_valid_keys()
        return np.round(optimal_weights / self.per_contract_value)  # replace_weights_with_ints

    def optimise_np_for_valid_keys(self):
        if self.tracking_error_against_optimal(self.weights_prior) < self.tracking_error_buffer:
            return self.weights_prior
        optimised = self.greedy()
        if all(optimised == 0):
            optimised = self.weights_prior
        return self.adjust_weights_for_size_of_tracking_error(optimised)

    def adjust_weights_for_size_of_tracking_error(self, optimised):
        te_prior = self.tracking_error_against_passed_weights(self.weights_prior, optimised)
        if te_prior <= 0:
            adj_factor = 0.0
        else:
            adj_factor = max((te_prior - self.tracking_error_buffer) / te_prior, 0.0)
        if adj_factor <= 0:
            return self.weights_prior
        trades = adj_factor * (optimised - self.weights_prior)
        rounded = np.round(trades / self.per_contract_value) * self.per_contract_value
        return self.weights_prior + rounded

    def evaluate(self, weights):
        return self.tracking_error_against_optimal(weights) + self.calculate_costs(weights)

    def tracking_error_against_optimal(self, weights):
        return self.tracking_error_against_passed_weights(weights, self.weights_optimal)

    def tracking_error_against_passed_weights(self, weights, optimal_weights):
        gap = weights - optimal_weights
        return gap.dot(self.cov).dot(gap) ** 0.5

    def calculate_costs(self, weights):
        gap = weights - self.weights_prior
        return sum(abs(self.costs * gap * self.trade_shadow_cost))

    def greedy(self):
        best_solution = np.zeros(len(self.weights_optimal))
        best_value = self.evaluate(best_solution)
        while True:
            new_best_value, new_solution = best_value, best_solution
            for i in range(len(best_solution)):
                temp_step = copy(best_solution)
                temp_step[i] = temp_step[i] + self.per_contract_value[i] * self.direction[i]
                value = self.evaluate(temp_step)
                if value < new_best_value:
                    new_best_value, new_solution = value, temp_step
            if new_best_value < best_value:
                best_value, best_solution = new_best_value, new_solution
            else:
                return best_solution


def pysystemtrade_positions(inp, capital, shadow_cost, buffer):
    """Daily positions of get_optimised_position_df on gpusim's prepared inputs."""
    _, notional, _, k, w_star, covs, cov_id = inp.kernel_args()
    T, N = notional.shape
    previous = np.zeros(N)
    out = np.zeros((T, N))
    for t in range(T):
        valid = np.flatnonzero(notional[t] > 0)
        pos = np.zeros(N)
        if valid.size:
            pcv = notional[t, valid] / capital
            obj = PstObjective(w_star[t, valid] / pcv, covs[cov_id[t]][np.ix_(valid, valid)],
                               pcv, k[t, valid], shadow_cost, buffer, previous[valid])
            pos[valid] = obj.optimise_positions()
        out[t] = previous = pos
    return out


@pytest.fixture(scope="module")
def futures_inputs():
    shared_file("pysystemtrade/adjusted_prices_csv/SP500_micro.csv")
    from gpusim.data.futures import load_futures

    data = load_futures(instruments=["SP500_micro", "US10", "GOLD_micro", "EUROSTX", "CORN",
                                     "KOSPI", "EUR", "VIX"]).window("2021-01-01", "2021-12-31")
    return prepare(data, idm=2.0)


@pytest.mark.parametrize("capital,shadow_cost,buffer", [(5e6, 10.0, 0.03), (2e7, 10.0, 0.03),
                                                        (2e5, 50.0, 0.0125)])
def test_no_trade_rule_reproduces_pysystemtrade(futures_inputs, capital, shadow_cost, buffer):
    inp = futures_inputs
    args = inp.kernel_args()
    T = args[0].shape[0]
    want = pysystemtrade_positions(inp, capital, shadow_cost, buffer)
    assert np.abs(np.diff(want, axis=0)).sum() > 10  # it trades
    mask = np.ones(T, np.bool_)
    _, ref, *_ = dynopt_1d_nb(*args, mask, capital, shadow_cost, buffer, inp.ann, True)
    np.testing.assert_array_equal(ref, want)
    _, fast = dynopt_cpu(*args, mask.reshape(1, T), 0, capital, shadow_cost, buffer, inp.ann,
                         record=True, no_trade_rule=True)
    np.testing.assert_array_equal(fast[0], want)
    if capital == 5e6:  # here the plain steps (no early exit) trade differently: the test bites
        _, plain, *_ = dynopt_1d_nb(*args, mask, capital, shadow_cost, buffer, inp.ann, False)
        assert not np.array_equal(plain, want)


# ----------------------------------------------------------------------------- static buffer
def afts_apply_buffer(optimal_position, upper_buffer, lower_buffer):
    """AFTS (Carver's book code) apply_buffer / apply_buffer_single_period, with gpusim's start
    at 0 instead of the first unrounded optimal position."""
    upper_buffer = upper_buffer.ffill().round()
    lower_buffer = lower_buffer.ffill().round()
    current = 0.0
    out = []
    for idx in range(len(optimal_position.index)):
        top, bot = upper_buffer.iloc[idx], lower_buffer.iloc[idx]
        if current > top:
            current = top
        elif current < bot:
            current = bot
        out.append(current)
    return pd.Series(out, index=optimal_position.index)


def test_static_buffer_by_hand():
    # optimal 10.4 -> band [rint 9.36, rint 11.44] = [9, 11]: buy 9 (from 0, below the band);
    # 10.9 -> [rint 9.81, rint 11.99] = [10, 12]: 9 < 10, buy 1; 12.0 -> [11, 13]: buy 1;
    # 10.5 -> [rint 9.45, rint 11.55] = [9, 12]: hold 11; 8.0 -> [rint 7.2, rint 8.8] = [7, 9]:
    # sell 2 to 9; -1.0 -> [rint -1.1, rint -0.9] = [-1, -1]: sell 10 to -1
    held, out = 0.0, []
    for x in (10.4, 10.9, 12.0, 10.5, 8.0, -1.0):
        held = buffered_position_1d_nb(held, x, 0.1)
        out.append(held)
    assert out == [9.0, 10.0, 11.0, 11.0, 9.0, -1.0]
    # half-to-even edges: 2.5 with band 0 -> [2, 2]
    assert buffered_position_1d_nb(0.0, 2.5, 0.0) == 2.0
    assert buffered_position_1d_nb(5.0, 3.5, 0.0) == 4.0


def test_static_positions_equal_afts_buffering_and_the_fast_path(futures_inputs):
    inp = futures_inputs
    args = inp.kernel_args()
    dprice, notional, cost, _, w_star, covs, cov_id = args
    T, N = notional.shape
    mask = np.ones(T, np.bool_)
    capital = 1e6
    m, pos, _, ret = static_1d_nb(dprice, notional, cost, w_star, covs, cov_id, mask, capital,
                                   0.1, inp.ann)
    x = pd.DataFrame(np.where(notional > 0, w_star * capital / np.where(notional > 0, notional,
                                                                        1.0), 0.0))
    for i in range(N):
        want = afts_apply_buffer(x[i], x[i] + 0.1 * x[i].abs(), x[i] - 0.1 * x[i].abs())
        np.testing.assert_array_equal(pos[:, i], want.to_numpy())
    assert np.abs(np.diff(pos, axis=0)).sum() > 20
    # metrics of the static positions by hand (pandas)
    held = pd.DataFrame(pos)
    traded = held.diff().abs().fillna(held.abs())
    r = ((held.shift(1).fillna(0.0) * dprice).sum(axis=1) - (traded * cost).sum(axis=1)) / capital
    np.testing.assert_allclose(ret, r.to_numpy(), rtol=1e-12, atol=1e-18)
    got = dict(zip(STATIC_METRICS, m))
    assert got["static_mean_return"] == pytest.approx(r.mean() * inp.ann, rel=1e-10)
    assert got["static_sharpe"] == pytest.approx(r.mean() / r.std() * np.sqrt(inp.ann), rel=1e-10)
    assert got["static_costs"] == pytest.approx((traded * cost).to_numpy().sum() / capital,
                                                rel=1e-12)
    assert got["static_contracts_per_year"] == pytest.approx(traded.to_numpy().sum() * inp.ann / T,
                                                             rel=1e-12)
    # the fast path's static columns equal the reference's
    out = dynopt_cpu(*args, mask.reshape(1, T), 0, capital, 10.0, 0.0125, inp.ann,
                     static_band=0.1)
    np.testing.assert_allclose(out[0, 8:], m, rtol=1e-10, atol=1e-14)


# ----------------------------------------------------------------------------- all paths, API
def test_cpu_cuda_simulator_and_reference_agree_with_both_options():
    from gpusim.data.futures import synthetic_futures
    from gpusim.dynopt.cuda import DynoptGpuRunner, dynopt_gpu

    inp = prepare(synthetic_futures(n_instruments=4, n_days=120, seed=4), idm=2.0,
                  min_periods=10, cov_every=5)
    args = inp.kernel_args()
    T = args[0].shape[0]
    masks = np.ones((2, T), np.bool_)
    masks[1, 1::3] = False
    caps, shs = np.array([2e5, 5e6, 1e6]), np.array([10.0, 10.0, 50.0])
    bus, mid = np.array([0.0125, 0.03, 0.0]), np.array([0, 1, 0])
    ref = np.stack([np.concatenate([
        dynopt_1d_nb(*args, masks[mid[j]], caps[j], shs[j], bus[j], inp.ann, True)[0],
        static_1d_nb(args[0], args[1], args[2], args[4], args[5], args[6], masks[mid[j]],
                     caps[j], 0.1, inp.ann)[0]]) for j in range(3)])
    ref_pos = np.stack([dynopt_1d_nb(*args, masks[mid[j]], caps[j], shs[j], bus[j], inp.ann,
                                     True)[1] for j in range(3)])
    assert np.abs(ref_pos).sum() > 100
    for kern in (dynopt_cpu, dynopt_gpu):
        m, pos = kern(*args, masks, mid, caps, shs, bus, inp.ann, record=True,
                      no_trade_rule=True, static_band=0.1)
        np.testing.assert_array_equal(pos, ref_pos)
        np.testing.assert_allclose(m, ref, rtol=1e-10, atol=1e-14)
    runner = DynoptGpuRunner(*args, masks, inp.ann, 3, no_trade_rule=True, static_band=0.1)
    np.testing.assert_allclose(runner(mid, caps, shs, bus), ref, rtol=1e-10, atol=1e-14)


def test_api_side_by_side_and_cli(tmp_path, capsys):
    import gpusim
    from gpusim.cli.dynopt import main
    from gpusim.data.futures import synthetic_futures
    from gpusim.errors import GpusimError
    from gpusim.grid import Param

    data = synthetic_futures(n_instruments=4, n_days=150, seed=2)
    kw = dict(idm=2.0, min_periods=10, capital=Param([2e5, 5e6]), shadow_cost=10.0,
              buffer=0.03, backend="cpu", progress=False)
    res = gpusim.dynopt(data, no_trade_rule=True, compare_static=True, **kw)
    assert list(res.metrics.columns[8:]) == list(STATIC_METRICS)
    assert res.summary["no_trade_rule"] is True and res.summary["static_buffer"] == 0.1
    for cap in (2e5, 5e6):  # the metrics rows are the reference's
        pos = res.positions(capital=cap)
        args = res._ctx.inputs.kernel_args()
        ref = dynopt_1d_nb(*args, np.ones(len(pos), np.bool_), cap, 10.0, 0.03,
                           res._ctx.inputs.ann, True)
        np.testing.assert_array_equal(pos.to_numpy(), ref[1])
        spos = res.static_positions(capital=cap).to_numpy()
        sm = static_1d_nb(args[0], args[1], args[2], args[4], args[5], args[6],
                          np.ones(len(pos), np.bool_), cap, 0.1, res._ctx.inputs.ann)
        np.testing.assert_array_equal(spos, sm[1])
        np.testing.assert_allclose(res.metrics.xs(cap, level="capital")[list(STATIC_METRICS)]
                                   .to_numpy()[0], sm[0], rtol=1e-10)
    assert res.best("static_sharpe", 1).index[0] in res.metrics.index
    plain = gpusim.dynopt(data, **kw)
    assert list(plain.metrics.columns) == list(res.metrics.columns[:8])
    with pytest.raises(GpusimError, match="compare_static=True"):
        plain.best("static_sharpe")
    with pytest.raises(GpusimError, match="compare_static=True"):
        plain.static_positions(capital=2e5)
    with pytest.raises(GpusimError, match="static_buffer"):
        gpusim.dynopt(data, compare_static=True, static_buffer=-0.1, **kw)
    with pytest.raises(GpusimError, match="no_trade_rule"):
        gpusim.dynopt(data, no_trade_rule="yes", **kw)

    out = tmp_path / "dyn"
    rc = main(["--synthetic", "4:120:3", "--capital", "1e6", "--shadow-cost", "10",
               "--buffer", "0.03", "--min-periods", "10", "--backend", "cpu", "--no-trade-rule",
               "--static", "--sort-by", "static_sharpe", "--out", str(out), "--format", "csv",
               "--no-progress"])
    assert rc == 0
    assert "static_sharpe" in capsys.readouterr().out
    saved = pd.read_csv(out / "metrics.csv")
    assert "static_costs" in saved.columns and "costs" in saved.columns
    assert main(["--synthetic", "3:60", "--sort-by", "static_sharpe", "--no-progress"]) == 2
