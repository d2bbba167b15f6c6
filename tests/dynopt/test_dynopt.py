"""Dynamic optimisation fast paths and API (DESIGN §8, issue 6).

The CPU fast path (gpusim.dynopt.cpu) and the numba.cuda kernel (gpusim.dynopt.cuda,
run here in Numba's CUDA simulator with small launches) against the hand-computed cases of
tests/test_dynopt_ref.py and against the reference cpu_ref.dynopt: positions must agree exactly.
Then the public API (gpusim.dynopt.api.dynopt), its input preparation, outputs, CLI, and the
acceptance on the pysystemtrade futures data.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from conftest import shared_file

from cpu_ref.dynopt import dynopt_1d_nb
from gpusim.backend import simulator_requested
from gpusim.data.futures import synthetic_futures
from gpusim.dynopt.api import METRICS, dynopt, prepare
from gpusim.dynopt.cpu import dynopt_cpu
from gpusim.dynopt.steps import greedy_nb, round_half_even_nb
from gpusim.errors import GpusimError
from gpusim.grid import Param

M = {name: i for i, name in enumerate(METRICS)}
sim_only = pytest.mark.skipif(not simulator_requested(),
                              reason="the CUDA simulator is off (GPUSIM_TEST_HARDWARE=1)")


def gpu_kernel():
    from gpusim.dynopt.cuda import dynopt_gpu

    return dynopt_gpu


def kernels():
    """(name, callable) of the fast paths: CPU, and the CUDA kernel (simulator)."""
    return [("cpu", dynopt_cpu), ("cuda", gpu_kernel())]


def ref_positions(args, masks, mid, caps, shs, bus, ann):
    return np.stack([dynopt_1d_nb(*args, masks[mid[j]], caps[j], shs[j], bus[j], ann)[1]
                     for j in range(len(caps))])


def one_day(c, w_star, cov, cost=None):
    """Kernel inputs of a single rebalance day with capital 1 (so notional = c)."""
    N = len(c)
    notional = np.asarray(c, float).reshape(1, N)
    cost = np.zeros((1, N)) if cost is None else np.asarray(cost, float).reshape(1, N)
    k = cost / notional
    return (np.zeros((1, N)), notional, cost, k, np.asarray(w_star, float).reshape(1, N),
            np.asarray(cov, float).reshape(1, N, N), np.zeros(1, np.int64))


# --------------------------------------------------------------------------------------------
# Step bodies and hand-computed cases on every implementation
# --------------------------------------------------------------------------------------------

def test_round_half_even_matches_rint():
    xs = [0.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999999999999996, 2.5000000000000004, 0.49,
          -0.51, 3.0, -7.0, 1e6 + 0.5, 1e6 + 1.5, 123.45, -123.55]
    got = [round_half_even_nb(x) for x in xs]
    assert got == [float(np.rint(x)) for x in xs]
    assert round_half_even_nb(2.5) == 2.0 and round_half_even_nb(-1.5) == -2.0


def test_fast_greedy_body_on_the_four_instrument_example():
    # the example of tests/test_dynopt_ref.py: greedy (0, 0, 1, 3), integer optimum (1, -1, 1, 3)
    c = np.array([0.2, 0.2, 0.1, 0.1])
    cov = np.zeros((1, 4, 4))
    cov[0, :2, :2] = 0.01 * np.array([[1.0, 0.9], [0.9, 1.0]])
    cov[0, 2, 2] = cov[0, 3, 3] = 0.04
    w_star = np.array([[0.15, -0.15, 0.12, 0.27]])
    z = np.zeros((4, 1))
    ng, g = np.zeros((4, 1)), np.zeros((4, 1))
    steps = greedy_nb(cov, 0, w_star, np.zeros((1, 4)), 0, c.reshape(4, 1), z, ng, g, 0, 4, 0.0,
                      1000)
    assert ng[:, 0].tolist() == [0.0, 0.0, 1.0, 3.0] and steps == 4
    # g = Σ (w - w*) kept up to date: compare with a fresh product
    np.testing.assert_allclose(g[:, 0], cov[0] @ (ng[:, 0] * c - w_star[0]), atol=1e-15)


@pytest.mark.parametrize("name", ["cpu", "cuda"])
def test_kernels_reproduce_the_hand_computed_days(name):
    kern = dict(kernels())[name]
    one = np.ones((1, 1), np.bool_)
    # 4-instrument local optimum, no buffer: the greedy answer, not the integer optimum
    cov = np.zeros((4, 4))
    cov[:2, :2] = 0.01 * np.array([[1.0, 0.9], [0.9, 1.0]])
    cov[2, 2] = cov[3, 3] = 0.04
    args = one_day([0.2, 0.2, 0.1, 0.1], [0.15, -0.15, 0.12, 0.27], cov)
    _, pos = kern(*args, one, 0, 1.0, 0.0, 0.0, 252.0, record=True)
    assert pos[0, 0].tolist() == [0.0, 0.0, 1.0, 3.0]
    # buffering: alpha = 0.5 on (4, -3) -> (2, -1.5) -> (2, -2) (half to even)
    args = one_day([0.125, 0.125], [0.52, -0.36], np.diag([0.0625, 0.0625]))
    _, pos = kern(*args, one, 0, 1.0, 0.0, 0.078125, 252.0, record=True)
    assert pos[0, 0].tolist() == [2.0, -2.0]
    # alpha = 0.68 on 5 contracts -> 3.4 -> 3 (rounded down); alpha = 0.5 -> 2.5 -> 2
    args = one_day([0.125], [0.6], [[0.0625]])
    m, pos = kern(*args, one, np.zeros(3, np.int64), 1.0, 0.0,
                  np.array([0.05, 0.078125, 0.0]), 252.0, record=True)
    assert pos[:, 0, 0].tolist() == [3.0, 2.0, 5.0]
    np.testing.assert_allclose(m[:, M["avg_adjustment_factor"]], [0.68, 0.5, 1.0], rtol=1e-12)
    # shadow cost from flat (w0 = 0): k = 0.01 / 0.1 = 0.1 per unit of weight; objective at n
    # contracts 0.2 |0.1 n - 0.26| + s 0.1 (0.1 n).  s = 10: n=0 0.052, n=1 0.032 + 0.1 -> stay
    # at 0;  s = 1: n=1 0.042, n=2 0.032, n=3 0.008 + 0.03 = 0.038 -> stop at 2
    args = one_day([0.1], [0.26], [[0.04]], cost=[0.01])
    _, pos = kern(*args, one, np.zeros(2, np.int64), 1.0, np.array([10.0, 1.0]), 0.0, 252.0,
                  record=True)
    assert pos[:, 0, 0].tolist() == [0.0, 2.0]


@pytest.mark.parametrize("name", ["cpu", "cuda"])
def test_kernels_reproduce_the_three_day_loop(name):
    # the 3-day case of tests/test_dynopt_ref.py::test_daily_loop_by_hand
    kern = dict(kernels())[name]
    notional = np.array([[1000.0], [1020.0], [1010.0]])
    cost = np.full((3, 1), 5.0)
    args = (np.array([[0.0], [20.0], [-10.0]]), notional, cost, cost / notional,
            np.array([[0.33], [0.33], [0.45]]), np.array([[[0.04]]]), np.zeros(3, np.int64))
    m, pos = kern(*args, np.ones((1, 3), np.bool_), 0, 10_000.0, 0.0, 0.012, 252.0,
                  record=True)
    assert pos[0, :, 0].tolist() == [2.0, 2.0, 3.0]
    r = np.array([-10.0, 40.0, -25.0]) / 10_000.0
    np.testing.assert_allclose(m[0, M["mean_return"]], r.mean() * 252, rtol=1e-12)
    np.testing.assert_allclose(m[0, M["sharpe"]], r.mean() / r.std(ddof=1) * math.sqrt(252),
                               rtol=1e-12)
    np.testing.assert_allclose(m[0, M["avg_tracking_error"]], (0.026 + 0.0252 + 0.0294) / 3,
                               rtol=1e-12)
    assert m[0, M["costs"]] == pytest.approx(15.0 / 10_000.0, rel=1e-15)
    assert m[0, M["contracts_per_year"]] == 252.0


# --------------------------------------------------------------------------------------------
# Exact agreement: reference vs CPU fast path vs CUDA kernel (acceptance 3)
# --------------------------------------------------------------------------------------------

GRID = dict(caps=np.array([5e5, 1e6, 2e6, 5e5, 2e6, 1e6]),
            shs=np.array([0.0, 10.0, 50.0, 100.0, 10.0, 1.0]),
            bus=np.array([0.0, 0.0125, 0.01, 0.02, 0.0, 0.05]),
            mid=np.array([0, 0, 1, 1, 0, 1]))


def _check_all_agree(inp, masks, caps, shs, bus, mid):
    args = inp.kernel_args()
    ref_m = np.stack([dynopt_1d_nb(*args, masks[mid[j]], caps[j], shs[j], bus[j], inp.ann)[0]
                      for j in range(len(caps))])
    ref_p = ref_positions(args, masks, mid, caps, shs, bus, inp.ann)
    assert np.abs(ref_p).sum() > 100            # the case trades
    for name, kern in kernels():
        m, p = kern(*args, masks, mid, caps, shs, bus, inp.ann, record=True)
        assert np.array_equal(p, ref_p), f"{name}: positions differ from the reference"
        np.testing.assert_allclose(m, ref_m, rtol=1e-10, atol=1e-14, err_msg=name)


def test_all_paths_agree_exactly_on_synthetic_futures():
    data = synthetic_futures(n_instruments=5, n_days=160, seed=4)
    inp = prepare(data, idm=2.0, min_periods=10, cov_every=5)
    T = inp.dprice.shape[0]
    from gpusim.specs import calendar_mask

    masks = np.stack([np.ones(T, np.bool_), calendar_mask(inp.index, "W")])
    _check_all_agree(inp, masks, **GRID)


def test_all_paths_agree_exactly_on_futures_data():
    shared_file("pysystemtrade/adjusted_prices_csv/SP500_micro.csv")
    from gpusim.data.futures import load_futures

    data = load_futures(instruments=["SP500_micro", "US10", "GOLD_micro", "EUROSTX", "CORN",
                                     "KOSPI"]).window("2021-06-01", "2022-06-30")
    inp = prepare(data, idm=2.0)
    T = inp.dprice.shape[0]
    masks = np.ones((2, T), np.bool_)
    masks[1, 1::2] = False
    _check_all_agree(inp, masks, caps=np.array([5e4, 2e5, 1e6, 1e6]),
                     shs=np.array([10.0, 50.0, 0.0, 100.0]),
                     bus=np.array([0.0125, 0.0, 0.02, 0.01]), mid=np.array([0, 1, 0, 1]))


# --------------------------------------------------------------------------------------------
# Input preparation
# --------------------------------------------------------------------------------------------

def test_prepare_by_hand():
    idx = pd.bdate_range("2024-01-01", periods=30)
    rng = np.random.default_rng(0)
    p = pd.DataFrame({"A": 100 * np.exp(np.cumsum(0.01 * rng.standard_normal(30))),
                      "B": 50 * np.exp(np.cumsum(0.02 * rng.standard_normal(30)))}, index=idx)
    p.iloc[:5, 1] = np.nan                                   # B lists on day 5
    p.iloc[12, 0] = np.nan                                   # a holiday for A: forward-filled
    fx = pd.DataFrame({"B": np.linspace(1.1, 1.2, 30)}, index=idx)   # B quoted in EUR
    inp = prepare(p, {"A": 10, "B": 20}, fx, {"A": 4.0, "B": 2.0}, risk_target=0.25, idm=1.5,
                  weights={"A": 0.6, "B": 0.4}, cov_every="D", lookback=10, min_periods=5)
    pf = p.ffill().to_numpy()
    fxb = fx["B"].to_numpy()
    # returns for risk: p_t / p_{t-1} - 1 (notional price = price); vols on the last 10 days
    r = pf[1:] / pf[:-1] - 1
    vol_a = r[-10:, 0].std(ddof=1) * math.sqrt(252)
    assert inp.vols[-1, 0] == pytest.approx(vol_a, rel=1e-12)
    t = 29
    assert inp.notional[t].tolist() == pytest.approx([pf[t, 0] * 10, pf[t, 1] * 20 * fxb[t]],
                                                     rel=1e-15)
    assert inp.cost[t].tolist() == pytest.approx([4.0, 2.0 * fxb[t]], rel=1e-15)
    assert inp.k[t, 1] == pytest.approx(2.0 / (pf[t, 1] * 20), rel=1e-12)   # FX cancels
    assert inp.w_star[t, 0] == pytest.approx(1.5 * 0.6 * 0.25 / vol_a, rel=1e-12)
    assert inp.dprice[t, 1] == pytest.approx((pf[t, 1] - pf[t - 1, 1]) * 20 * fxb[t], rel=1e-12)
    assert inp.dprice[12, 0] == 0.0 and inp.dprice[13, 0] == pytest.approx(
        (pf[13, 0] - pf[11, 0]) * 10, rel=1e-12)
    # B: no price before day 5, and no risk estimate before 5 returns (day 10): outside
    act_b = inp.active[:, 1]
    assert not act_b[:10].any() and act_b[10:].all()
    assert (inp.notional[:10, 1] == 0).all() and (inp.w_star[:10, 1] == 0).all()
    assert np.isfinite(inp.dprice).all() and np.isfinite(inp.cost).all()


def test_optimal_positions_round_trip_and_capital_scaling():
    data = synthetic_futures(n_instruments=4, n_days=120, seed=2)
    kw = dict(min_periods=10, backend="cpu", progress=False)
    res = dynopt(data, idm=2.0, capital=Param([5e5, 2e6]), **kw)
    # feed the vol-targeted optimal contracts at capital 1e6 back in: the same w*, so the
    # same positions at every capital (contracts scale linearly with capital)
    opt = res.optimal_positions(1e6)
    res2 = dynopt(data, optimal_positions=opt, optimal_capital=1e6, capital=Param([5e5, 2e6]),
                  **kw)
    for cap in (5e5, 2e6):
        pd.testing.assert_frame_equal(res.positions(capital=cap), res2.positions(capital=cap))
    np.testing.assert_allclose(res2.metrics.to_numpy(), res.metrics.to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(res.optimal_positions(2e6).to_numpy(), 2 * opt.to_numpy(),
                               rtol=1e-12)


# --------------------------------------------------------------------------------------------
# API
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_result():
    data = synthetic_futures(n_instruments=5, n_days=200, seed=1)
    return dynopt(data, idm=2.0, capital=Param([2e5, 1e6]), shadow_cost=Param([10, 100]),
                  buffer=Param([0.0, 0.0125, 0.02]), rebalance=Param(["D", "W"]),
                  min_periods=10, backend="cpu", progress=False)


def test_result_table_and_positions(small_result):
    res = small_result
    m = res.metrics
    assert list(m.index.names) == ["capital", "shadow_cost", "buffer", "rebalance"]
    assert len(m) == 24 and list(m.columns) == list(METRICS)
    assert m.index[0] == (2e5, 10.0, 0.0, "D") and m.index[-1] == (1e6, 100.0, 0.02, "W")
    s = res.summary
    assert s["n_combinations"] == 24 and s["n_instruments"] == 5 and s["backend"] == "cpu"
    assert s["optimal"] == "vol targeting, equal weights" and 0 < s["avg_optimal_risk"] < 1
    # positions() (reference re-run) gives the fast path's positions and metrics
    pos = res.positions(capital=1e6, shadow_cost=10, buffer=0.0125, rebalance="W")
    assert pos.shape == (200, 5) and pos.dtypes.eq(np.int64).all()
    inp = res._ctx.inputs
    from gpusim.specs import calendar_mask

    wk = calendar_mask(inp.index, "W").reshape(1, -1)
    mm, rec = dynopt_cpu(*inp.kernel_args(), wk, 0, 1e6, 10.0, 0.0125, inp.ann, record=True)
    assert np.array_equal(pos.to_numpy(), rec[0])
    np.testing.assert_allclose(mm[0], m.loc[(1e6, 10.0, 0.0125, "W")].to_numpy(), rtol=1e-12)
    # weekly: positions change only on the first trading day of a week
    changed = (pos.diff().abs().sum(axis=1) > 0).to_numpy()
    assert not (changed & ~wk[0]).any()
    day = res.daily(m.index[5])
    assert list(day.columns) == ["return", "tracking_error", "adjustment_factor",
                                 "optimal_risk", "contracts"]
    assert day["tracking_error"].mean() == pytest.approx(m.iloc[5]["avg_tracking_error"],
                                                         rel=1e-10)
    assert res.best("contracts_per_year", 3)["contracts_per_year"].is_monotonic_increasing


def test_buffer_zero_means_alpha_one_and_more_turnover(small_result):
    m = small_result.metrics
    assert (m.xs(0.0, level="buffer")["avg_adjustment_factor"] == 1.0).all()
    buffered = m.xs(0.02, level="buffer")
    assert (buffered["avg_adjustment_factor"] < 1.0).all()
    assert (buffered["contracts_per_year"].to_numpy()
            <= m.xs(0.0, level="buffer")["contracts_per_year"].to_numpy()).all()


@pytest.mark.skipif(not simulator_requested(), reason="needs the CUDA simulator")
def test_gpu_backend_in_simulator_matches_cpu():
    data = synthetic_futures(n_instruments=3, n_days=90, seed=5)
    kw = dict(idm=2.0, capital=Param([3e5, 1e6]), shadow_cost=Param([0.0, 50.0]),
              buffer=0.0125, min_periods=10, progress=False)
    c = dynopt(data, backend="cpu", **kw)
    g = dynopt(data, backend="gpu", **kw)
    assert g.summary["backend"] == "gpu-simulator"
    np.testing.assert_allclose(g.metrics.to_numpy(), c.metrics.to_numpy(), rtol=1e-10,
                               atol=1e-14)


def test_interrupt_returns_partial_rows(monkeypatch):
    from gpusim.dynopt import cpu as dk

    calls = {"n": 0}
    real = dk.dynopt_cpu

    def flaky(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:          # warm-up, chunk 1, then Ctrl-C in chunk 2
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(dk, "dynopt_cpu", flaky)
    data = synthetic_futures(n_instruments=3, n_days=60, seed=1)
    res = dynopt(data, capital=Param([1e5, 1e6]), shadow_cost=Param([1.0, 2.0]), chunk_size=2,
                 min_periods=10, backend="cpu", progress=False)
    assert res.partial and len(res.metrics) == 2 and res.summary["n_done"] == 2
    with pytest.raises(GpusimError, match="not run"):
        res.positions(capital=1e6, shadow_cost=1.0)


@pytest.mark.parametrize("kw, match", [
    (dict(capital=-1.0), r"capital=-1.0 must be a finite number > 0"),
    (dict(capital=Param([1e5, 0.0])), r"capital=0.0 must be"),
    (dict(buffer=-0.01), r"buffer=-0.01 must be a finite number >= 0"),
    (dict(shadow_cost=float("nan")), r"shadow_cost=nan"),
    (dict(rebalance="never"), r"rebalance='never' would never trade"),
    (dict(rebalance="X"), r"rebalance='X' is not a rebalance rule"),
    (dict(weights={"F00": 1.0}), r"weights has no value for \['F01', 'F02'\]"),
    (dict(optimal_positions=pd.DataFrame()), r"pass optimal_capital="),
    (dict(optimal_positions=pd.DataFrame(), weights=[1, 1, 1], optimal_capital=1.0),
     r"not both"),
    (dict(shrinkage=2.0), r"shrinkage=2.0 must be in \[0, 1\]"),
    (dict(min_periods=1), r"min_periods=1 must be an int in 2..lookback"),
    (dict(risk_target=0), r"risk_target=0 must be a finite number > 0"),
    (dict(backend="tpu"), r"backend='tpu' is not a backend"),
])
def test_errors_are_one_line_and_name_the_argument(kw, match):
    data = synthetic_futures(n_instruments=3, n_days=40, seed=0)
    with pytest.raises(GpusimError, match=match) as e:
        dynopt(data, min_periods=kw.pop("min_periods", 10), progress=False, **kw)
    assert "\n" not in str(e.value)


def test_data_errors():
    idx = pd.bdate_range("2024-01-01", periods=5)
    good = pd.DataFrame({"A": [1.0, 2, 3, 4, 5]}, index=idx)
    with pytest.raises(GpusimError, match=r"multipliers is required"):
        dynopt(good)
    with pytest.raises(GpusimError, match=r"multipliers\['A'\]=-2.0 must be a number > 0"):
        dynopt(good, {"A": -2})
    with pytest.raises(GpusimError, match=r"prices\['B'\] has no valid price"):
        dynopt(good.assign(B=np.nan), {"A": 1, "B": 1})
    with pytest.raises(GpusimError, match=r"dates are not sorted"):
        dynopt(good.iloc[::-1], {"A": 1})
    with pytest.raises(GpusimError, match=r"costs must be >= 0"):
        dynopt(good, {"A": 1}, costs={"A": -1})
    with pytest.raises(GpusimError, match=r"not both|metric='x' is unknown"):
        dynopt(good, {"A": 1}, min_periods=2, backend="cpu", progress=False).best("x")


def test_save_writes_outputs_atomically(small_result, tmp_path):
    out = small_result.save(tmp_path / "run", best_k=3, sort_by="sharpe", fmt="csv",
                            positions=True)
    files = sorted(p.name for p in out.iterdir())
    assert files == ["best.csv", "metrics.csv", "positions_best.csv", "summary.json"]
    summ = json.loads((out / "summary.json").read_text())
    assert summ["command"] == "dynopt" and summ["metrics_file"] == "metrics.csv"
    best = pd.read_csv(out / "best.csv")
    assert len(best) == 3 and best["sharpe"].is_monotonic_decreasing
    pos = pd.read_csv(out / "positions_best.csv", index_col="date", parse_dates=True)
    key = tuple(best.iloc[0][["capital", "shadow_cost", "buffer", "rebalance"]])
    assert np.array_equal(pos.to_numpy(), small_result.positions(key).to_numpy())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def test_cli_synthetic_table_json_and_errors(tmp_path, capsys):
    from gpusim.cli.dynopt import main

    out = tmp_path / "dyn"
    rc = main(["--synthetic", "4:120:3", "--capital", "2e5,1e6", "--shadow-cost", "10",
               "--buffer", "0,0.02", "--min-periods", "10", "--backend", "cpu", "--out",
               str(out), "--format", "csv", "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "synthetic futures (n=4, days=120, seed=3)" in text
    assert "4 of 4 combinations x 120 days x 4 instruments on cpu" in text
    assert "avg_tracking_error" in text and f"wrote {out}" in text
    assert (out / "metrics.csv").exists() and (out / "summary.json").exists()
    rc = main(["--synthetic", "3:60", "--capital", "1e6", "--min-periods", "10", "--json",
               "--no-progress", "--backend", "cpu"])
    assert rc == 0
    cap = capsys.readouterr()
    payload = json.loads(cap.out)
    assert payload["n_combinations"] == 12 and len(payload["metrics"]) == 12
    assert "synthetic futures" in cap.err
    assert main(["--synthetic", "3:60", "--buffer", "-1", "--no-progress"]) == 2
    assert "error: buffer=-1.0 must be a finite number >= 0" in capsys.readouterr().err
    assert main(["--synthetic", "x"]) == 2
    assert main(["--synthetic", "3:60", "--sort-by", "foo"]) == 2


# --------------------------------------------------------------------------------------------
# Acceptance on the pysystemtrade futures data (a subset and a short window)
# --------------------------------------------------------------------------------------------

def test_futures_turnover_falls_with_shadow_cost_and_buffer_and_te_stays_in_range():
    shared_file("pysystemtrade/adjusted_prices_csv/SP500_micro.csv")
    from gpusim.data.futures import load_futures

    names = ["SP500_micro", "NASDAQ_micro", "US10", "US2", "GOLD_micro", "CORN", "EUR",
             "EUROSTX", "CRUDE_W_mini", "VIX"]
    data = load_futures(instruments=names).window("2019-01-01", "2021-12-31")
    res = dynopt(data, idm=2.0, capital=Param([2e5, 1e6]), shadow_cost=Param([10, 50, 100]),
                 buffer=Param([0.0, 0.01, 0.0125, 0.02]), backend="cpu", progress=False)
    m = res.metrics
    assert len(m) == 24
    by_shadow = m.groupby(level="shadow_cost")["contracts_per_year"].mean().to_numpy()
    by_buffer = m.groupby(level="buffer")["contracts_per_year"].mean().to_numpy()
    assert (np.diff(by_shadow) < 0).all(), by_shadow
    assert (np.diff(by_buffer) < 0).all(), by_buffer
    for cap in (2e5, 1e6):          # also within each capital
        mc = m.xs(cap, level="capital")
        assert (np.diff(mc.groupby(level="shadow_cost")["contracts_per_year"].mean()) < 0).all()
        assert (np.diff(mc.groupby(level="buffer")["contracts_per_year"].mean()) < 0).all()
    # documented range: 0 < average TE < average risk of the optimal portfolio (the TE of
    # holding nothing); larger accounts track better
    te = m["avg_tracking_error"]
    assert (te > 0).all() and (te < res.summary["avg_optimal_risk"]).all()
    by_cap = m.groupby(level="capital")["avg_tracking_error"].mean().to_numpy()
    assert by_cap[1] < by_cap[0]
    assert (m["avg_adjustment_factor"].xs(0.0, level="buffer") == 1.0).all()
