"""User allocation functions (issue 11): the reference cpu_ref.strategy, the compiled CPU kernel
and the CUDA kernel (Numba's simulator) against each other and against the built-in rule."""

import numpy as np
import pandas as pd
import pytest

import gpusim
from cpu_ref.backtest import METRICS, simulate_1d_nb
from cpu_ref.strategy import simulate_alloc, simulate_alloc_1d
from gpusim.backtest.api import backtest
from gpusim.data.market import synthetic_market
from gpusim.errors import GpusimError
from gpusim.grid import Param
from gpusim.specs import RandomWeights

TAUS = [0.01, 0.03, 0.08]
FEES = [0.0, 0.005]


def threshold_rule(c, params, targets):
    """The built-in absolute threshold rule, as a user function."""
    drift = 0.0
    for j in range(c.n_assets):
        drift = max(drift, abs(c.weights[j] - c.targets[j]))
    return drift >= params[0]


def band_rebalance(c, params, targets):
    """The issue's example: new random targets at each trigger."""
    tau = params[0]
    drift = 0.0
    for j in range(c.n_assets):
        drift = max(drift, abs(c.weights[j] - c.targets[j]))
    if c.t == 0 or drift >= tau:
        for j in range(c.n_assets):
            targets[j] = -np.log(c.uniform(j, 0))
        s = targets.sum()
        for j in range(c.n_assets):
            targets[j] /= s
        return True
    return False


@pytest.fixture(scope="module")
def mkt():
    return synthetic_market(n_assets=4, n_bars=120, seed=3)


@pytest.fixture(scope="module")
def close(mkt):
    return np.ascontiguousarray(mkt.prices.to_numpy())


def test_cpu_ref_threshold_function_is_the_reference_rule_bit_for_bit(close):
    T = close.shape[0]
    w = np.array([0.1, 0.2, 0.3, 0.4])
    nreb = 0
    for tau in TAUS:
        for fee in FEES:
            got = simulate_alloc_1d(threshold_rule, close, w, [tau], np.ones(T, bool), fee,
                                    1.0, 252.0, 0.0, 7, 0)
            ref = simulate_1d_nb(close, w, np.zeros(T, bool), tau, False, fee, 1.0, 252.0, 0.0)
            np.testing.assert_array_equal(got[0], ref[0])      # metrics, NaN == NaN
            np.testing.assert_array_equal(got[1], ref[1])      # value path
            np.testing.assert_array_equal(got[2], ref[2])      # rebalance bars
            nreb = max(nreb, ref[0][METRICS.index("n_rebalances")])
    assert nreb > 2                                            # the band did trade


def test_cpu_ref_orders_hand_checked():
    """Two assets, rebalances at bars 0 and 1 computed by hand: sells first, fees f |units| p,
    the last buy of a bar partially filled with the cash left."""
    close = np.array([[1.0, 1.0], [2.0, 1.0]])
    f = 0.01

    def at_bar_one(c, params, targets):
        return c.t == 1

    m, value, bars, _tgt, _real, orders = simulate_alloc_1d(
        at_bar_one, close, np.array([0.5, 0.5]), [], np.ones(2, bool), f, 1.0, 252.0, 0.0, 0, 0)
    # bar 0: A fully bought (cost 0.505), B gets the 0.495 left: 0.495 / 1.01 units
    hb = 0.495 / 1.01
    np.testing.assert_allclose(orders[0], [0, 0, 0.5, 1.0, 0.005], rtol=1e-15)
    np.testing.assert_allclose(orders[1], [0, 1, hb, 1.0, f * hb], rtol=1e-15)
    # bar 1: V = 0.5 * 2 + hb; sell A down to V / 4 units, buy B with the proceeds
    v1 = 1.0 + hb
    sold = 0.5 - v1 / 4
    cash = sold * 2.0 * (1 - f)
    np.testing.assert_allclose(orders[2], [1, 0, -sold, 2.0, f * sold * 2.0], rtol=1e-12)
    np.testing.assert_allclose(orders[3], [1, 1, cash / 1.01, 1.0, f * cash / 1.01], rtol=1e-12)
    assert cash / 1.01 < v1 / 2 - hb                        # partial fill: short of the target
    assert bars.tolist() == [0, 1] and orders.shape == (4, 5)
    np.testing.assert_allclose(value, [1.0 - 0.005 - f * hb, 2 * v1 / 4 + hb + cash / 1.01],
                               rtol=1e-12)
    np.testing.assert_allclose(m[METRICS.index("fees_paid")], orders[:, 4].sum(), rtol=1e-12)


def test_compiled_threshold_function_equals_builtin_engine_bit_for_bit(mkt):
    kw = {"weights": RandomWeights(5, seed=2), "fees": Param(FEES), "progress": False}
    ours = backtest(mkt, alloc=threshold_rule, params={"threshold": Param(TAUS)},
                    backend="cpu", **kw)
    builtin = backtest(mkt, threshold=Param(TAUS), backend="cpu", **kw)
    assert list(ours.metrics.index.names) == ["weights", "threshold", "fees"]
    np.testing.assert_array_equal(ours.metrics.to_numpy(), builtin.metrics.to_numpy())
    assert (ours.metrics["n_rebalances"] > 1).any()


def test_random_targets_cpu_equals_reference_and_simulator(mkt, close):
    T = close.shape[0]
    res = backtest(mkt, alloc=band_rebalance, params={"tau": Param(TAUS)},
                   fees=Param(FEES), seed=7, backend="cpu", progress=False)
    C = len(TAUS) * len(FEES)
    P = np.repeat(np.array(TAUS), len(FEES)).reshape(-1, 1)
    fees = np.tile(FEES, len(TAUS))
    ref = simulate_alloc(band_rebalance, close, np.full((1, 4), 0.25), np.zeros(C, np.int64),
                         np.ones((1, T), bool), np.zeros(C, np.int64), P, fees, 1.0,
                         float(mkt.ann), 0.0, 7, np.arange(C))
    np.testing.assert_allclose(res.metrics.to_numpy(), ref, rtol=1e-12, atol=1e-14)
    # the random targets differ between combinations and from equal weights
    rec = res.records(tau=0.03, fees=0.005)
    np.testing.assert_array_equal(rec.metrics.to_numpy(), ref[3])
    assert rec.target.shape[0] == rec.metrics["n_rebalances"] > 2
    assert not np.allclose(rec.target.iloc[0], 0.25)
    np.testing.assert_allclose(rec.target.sum(axis=1), 1.0)
    assert {"date", "bar", "symbol", "units", "price", "fee"} <= set(rec.orders.columns)
    np.testing.assert_allclose(rec.orders["fee"].sum(), rec.metrics["fees_paid"], rtol=1e-9)
    # the same seed gives the same result, another seed another one
    again = backtest(mkt, alloc=band_rebalance, params={"tau": Param(TAUS)},
                     fees=Param(FEES), seed=7, backend="cpu", progress=False)
    np.testing.assert_array_equal(again.metrics.to_numpy(), res.metrics.to_numpy())
    other = backtest(mkt, alloc=band_rebalance, params={"tau": Param(TAUS)},
                     fees=Param(FEES), seed=8, backend="cpu", progress=False)
    assert not np.allclose(other.metrics["final_value"], res.metrics["final_value"])


def test_best_rows_show_the_targets_in_force_at_the_end(mkt):
    """A function that draws its own targets: the best table's weights by symbol are each row's
    last targets (as its records say), not the initial equal weights; a function that never
    names its targets keeps the initial ones."""
    res = backtest(mkt, alloc=band_rebalance, params={"tau": Param(TAUS)}, seed=7,
                   backend="cpu", progress=False)
    best = res.best(k=2, weights=True)
    for key, row in best.iterrows():
        last = res.records(key).target.iloc[-1]
        np.testing.assert_array_equal(row[mkt.symbols].to_numpy(dtype=float), last.to_numpy())
        assert not np.allclose(last, 0.25)
    plain = backtest(mkt, alloc=threshold_rule, params={"tau": Param(TAUS)},
                     weights=np.array([0.1, 0.2, 0.3, 0.4]), backend="cpu", progress=False)
    np.testing.assert_array_equal(plain.best(k=3, weights=True)[mkt.symbols].to_numpy(),
                                  np.tile([0.1, 0.2, 0.3, 0.4], (3, 1)))


def test_cuda_simulator_equals_cpu(mkt):
    small = synthetic_market(n_assets=3, n_bars=50, seed=4)
    for fn in (threshold_rule, band_rebalance):
        kw = {"params": {"tau": Param([0.01, 0.05])}, "fees": Param(FEES), "seed": 3,
              "progress": False}
        cpu = backtest(small, alloc=fn, backend="cpu", **kw)
        gpu = backtest(small, alloc=fn, backend="gpu", **kw)
        assert gpu.summary["backend"] != cpu.summary["backend"]
        np.testing.assert_array_equal(gpu.metrics.to_numpy(), cpu.metrics.to_numpy())
    builtin = backtest(small, threshold=Param([0.01, 0.05]), fees=Param(FEES), backend="gpu",
                       progress=False)
    ours = backtest(small, alloc=threshold_rule, params={"tau": Param([0.01, 0.05])},
                    fees=Param(FEES), backend="gpu", progress=False)
    np.testing.assert_array_equal(ours.metrics.to_numpy(), builtin.metrics.to_numpy())


def test_shared_draws_give_every_tau_the_same_targets(mkt):
    res = backtest(mkt, alloc=band_rebalance, params={"tau": Param([0.5, 0.9])}, seed=1,
                   share_draws=["tau"], backend="cpu", progress=False)
    # a band this wide never triggers after bar 0: both taus hold the same random targets
    a, b = res.records(tau=0.5), res.records(tau=0.9)
    np.testing.assert_array_equal(a.target.to_numpy(), b.target.to_numpy())
    apart = backtest(mkt, alloc=band_rebalance, params={"tau": Param([0.5, 0.9])}, seed=1,
                     backend="cpu", progress=False)
    assert not np.allclose(apart.records(tau=0.9).target, a.target)


def test_alloc_called_only_on_rule_bars(mkt):
    def always(c, params, targets):
        return True

    res = backtest(mkt, alloc=always, rebalance="M", backend="cpu", progress=False)
    builtin = backtest(mkt, rebalance="M", backend="cpu", progress=False)
    np.testing.assert_array_equal(res.metrics.to_numpy(), builtin.metrics.to_numpy())


def test_uncompilable_function_names_the_line(mkt):
    def bad(c, params, targets):
        x = pd.Series([1.0])  # Numba cannot type pandas
        return x[0] > 0

    with pytest.raises(GpusimError) as e:
        backtest(mkt, alloc=bad, backend="cpu", progress=False)
    msg = str(e.value)
    assert "'test_uncompilable_function_names_the_line.<locals>.bad'" in msg
    assert "x = pd.Series([1.0])" in msg and "line" in msg and "\n" not in msg


def test_bad_arguments(mkt):
    with pytest.raises(GpusimError, match="three"):
        backtest(mkt, alloc=lambda c: True, progress=False)
    with pytest.raises(GpusimError, match="threshold= and relative= are not used"):
        backtest(mkt, alloc=threshold_rule, threshold=0.1, progress=False)
    with pytest.raises(GpusimError, match="params= is for alloc="):
        backtest(mkt, params={"tau": 0.1}, progress=False)
    with pytest.raises(GpusimError, match="share_draws"):
        backtest(mkt, alloc=threshold_rule, params={"tau": 0.1}, share_draws=["x"],
                 progress=False)
    with pytest.raises(GpusimError, match="'weights' is not allowed"):
        backtest(mkt, alloc=threshold_rule, params={"weights": 0.1}, progress=False)


def test_lockstep_kernel_equals_one_combination_at_a_time(mkt):
    """The CPU kernel's lockstep blocks give the GPU thread's code path bit for bit."""
    from cpu_ref.rng import seed_key_nb
    from gpusim.strategy.compile import prepare
    from gpusim.strategy.cpu import backtest_alloc_cpu

    res = backtest(mkt, alloc=band_rebalance, params={"tau": Param(TAUS)},
                   weights=RandomWeights(13, seed=1), fees=Param(FEES), seed=5, backend="cpu",
                   progress=False)
    ctx = res._ctx
    a = ctx.chunk_args(0, ctx.grid.size)
    one = backtest_alloc_cpu(prepare(band_rebalance), ctx.close, a["W"], a["wid"], ctx.masks,
                             a["mid"], a["params"], a["fees"], (1.0, float(mkt.ann), 0.0),
                             np.uint64(seed_key_nb(5)), a["streams"], scalar=True)
    assert ctx.grid.size > 64                                  # several lockstep blocks
    np.testing.assert_array_equal(res.metrics.to_numpy(), one)


def test_source_rewrite_keeps_the_meaning():
    """c.uniform, c.<field> and x.sum() are rewritten; the function still means the same."""
    from gpusim.strategy.compile import prepare

    uf = prepare(band_rebalance)
    names = set(uf.code.co_names) | set(uf.code.co_varnames)
    assert {"__gpusim_uniform__", "__gpusim_sum__", "_c_weights", "_c_n_assets",
            "__gpusim_n_assets__"} <= names
    assert "uniform" not in uf.code.co_names and uf.first_line < uf.last_line


def test_n_assets_is_a_constant_per_market_and_targets_use_is_detected():
    """``c.n_assets`` is compiled in as a constant: one kernel per (function, A), so the same
    function on markets of 3 and 6 assets uses each market's A (targets 1/A, by hand); a
    function that never names its targets argument is marked so (the kernel then skips the
    copies), one that does is not."""
    from gpusim.strategy.compile import prepare

    def equal_weight_monthly(c, params, targets):
        for j in range(c.n_assets):
            targets[j] = 1.0 / c.n_assets
        return True

    for A in (3, 6):
        m = synthetic_market(n_assets=A, n_bars=60, seed=A)
        for be in ("cpu", "gpu"):
            res = backtest(m, alloc=equal_weight_monthly, rebalance="M", backend=be,
                           progress=False)
            np.testing.assert_allclose(res.records().target.to_numpy(), 1.0 / A, rtol=0)
            ref = backtest(m, weights=np.full(A, 1.0 / A), rebalance="M", backend="cpu",
                           progress=False)
            np.testing.assert_array_equal(res.metrics.to_numpy(), ref.metrics.to_numpy())
    assert prepare(equal_weight_monthly).uses_targets
    assert not prepare(threshold_rule).uses_targets
    assert prepare(band_rebalance).uses_targets


def test_numpy_calls_on_the_state_work_without_warnings(mkt):
    """c.weights is a strided column of the lane scratch: np.dot on it compiles, warns nothing
    (Numba's contiguity note is about our layout), and gives the reference's metrics."""
    import warnings

    def dot_band(c, params, targets):   # |w - t|^2 >= tau^2, through np.dot on the state
        w, t = c.weights, c.targets
        return np.dot(w, w) - 2.0 * np.dot(w, t) + np.dot(t, t) >= params[0] ** 2

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        res = backtest(mkt, alloc=dot_band, params={"tau": Param([0.02, 0.05])},
                       backend="cpu", progress=False)
    assert [str(w.message) for w in seen] == []
    for tau in (0.02, 0.05):
        rec = res.records(tau=tau)
        np.testing.assert_allclose(res.metrics.xs(tau, level="tau").to_numpy()[0],
                                   rec.metrics.to_numpy(), rtol=1e-12, atol=1e-14)
    assert (res.metrics["n_rebalances"] > 1).all()


def test_prepare_is_kept_per_function_and_closure_values(mkt):
    """The rewrite is done once per function object (a call re-used it); a closure whose value
    changed is prepared (and compiled) again, so the new value is used."""
    from gpusim.strategy.compile import prepare

    def make(tau):
        def rule(c, params, targets):
            drift = 0.0
            for j in range(c.n_assets):
                drift = max(drift, abs(c.weights[j] - c.targets[j]))
            return drift >= tau
        return rule

    f = make(0.03)
    assert prepare(f) is prepare(f)
    assert prepare(make(0.03)).key == prepare(f).key
    assert prepare(make(0.08)).key != prepare(f).key
    for tau in (0.03, 0.08):
        ours = backtest(mkt, alloc=make(tau), backend="cpu", progress=False)
        ref = backtest(mkt, threshold=tau, backend="cpu", progress=False)
        np.testing.assert_array_equal(ours.metrics.to_numpy(), ref.metrics.to_numpy())


def test_a_path_without_return_and_an_unknown_field_are_clear_errors(mkt):
    def maybe(c, params, targets):
        if c.t > 3:
            return True

    def unknown(c, params, targets):
        return c.volume > 1

    with pytest.raises(GpusimError, match="must return True or False on every path"):
        backtest(mkt, alloc=maybe, backend="cpu", progress=False)
    with pytest.raises(GpusimError, match=r"'return c.volume > 1': Unknown attribute 'volume' "
                                          r"of the state c \(its fields: t, n_assets"):
        backtest(mkt, alloc=unknown, backend="cpu", progress=False)


def test_dated_weights_are_not_read_as_constant_portfolios(mkt):
    """weights= are the initial targets of a user function: a dated table (a schedule for the
    built-in rules) is an error, not one constant portfolio per date; Portfolios(df) says so."""
    dates = mkt.prices.index[[0, 60]]
    table = pd.DataFrame([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]], index=dates,
                         columns=mkt.symbols)
    with pytest.raises(GpusimError, match=r"backtest\(alloc=...\) takes the initial targets"):
        backtest(mkt, alloc=threshold_rule, params={"threshold": 0.05}, weights=table,
                 progress=False)
    with pytest.raises(GpusimError, match="a dated table is a schedule"):
        gpusim.simulate(mkt, lambda s: None, every="M", weights=table, progress=False)
    ours = backtest(mkt, alloc=threshold_rule, params={"threshold": 0.05},
                    weights=gpusim.Portfolios(table), backend="cpu", progress=False)
    builtin = backtest(mkt, threshold=0.05, weights=gpusim.Portfolios(table), backend="cpu",
                       progress=False)
    assert len(ours.metrics) == 2
    np.testing.assert_array_equal(ours.metrics.to_numpy(), builtin.metrics.to_numpy())
