"""Target schedules and drift bands through ``gpusim.backtest`` (DESIGN §6, issue 11): every
combination equals the readable reference ``cpu_ref.backtest_sched`` (re-run by ``records``),
closed-form equivalences between band kinds, and one-line errors for ambiguous input.
"""

import numpy as np
import pandas as pd
import pytest

import gpusim
from cpu_ref.backtest import simulate_1d_nb
from cpu_ref.backtest_sched import simulate_schedule_1d_nb
from gpusim import Param
from gpusim.errors import GpusimError

T, A = 160, 4


@pytest.fixture(scope="module")
def mkt():
    return gpusim.synthetic_market(n_assets=A, n_bars=T, seed=21)


def _sched(mkt, bars, seed=0):
    rng = np.random.default_rng(seed)
    idx = mkt.prices.index
    return pd.DataFrame(rng.dirichlet(np.ones(A), len(bars)), index=idx[list(bars)],
                        columns=mkt.prices.columns)


def _none_band():
    return np.zeros((1, A)), np.full((1, A), np.inf), np.zeros(1, np.int64)


@pytest.mark.parametrize("relative", [False, True])
def test_reference_with_constant_rows_equals_the_issue_3_reference(relative):
    rng = np.random.default_rng(1)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, A)), axis=0))
    w = rng.dirichlet(np.ones(A))
    mask = np.zeros(T, bool)
    mask[::25] = True
    tau = 0.2 if relative else 0.03
    rel = np.full((1, A), tau if relative else 0.0)
    ab = np.full((1, A), 0.0 if relative else tau)
    got = simulate_schedule_1d_nb(close, w[None], np.zeros(1, np.int64), mask, rel, ab,
                                  np.zeros(1, np.int64), 0.002, 10.0, 252.0, 0.01)
    want = simulate_1d_nb(close, w, mask, tau, relative, 0.002, 10.0, 252.0, 0.01)
    for g, x in zip(got[:5], want):
        np.testing.assert_array_equal(g, x)
    orders = got[5]
    assert orders.shape[1] == 5 and set(orders[:, 0].astype(int)) == set(want[2])
    np.testing.assert_allclose(orders[:, 4].sum() / 10.0, want[0][8], rtol=1e-12)


def _grid_kwargs(mkt):
    idx = mkt.prices.index
    s1 = _sched(mkt, [0, 40, 90])
    s2 = gpusim.Schedule(_sched(mkt, [0, 15, 16, 120], seed=2), name="s2")
    dated = pd.Series([0.05, 0.015], index=idx[[30, 100]])
    per_asset = {str(mkt.prices.columns[0]): 0.01, str(mkt.prices.columns[2]): 0.04}
    return dict(weights=Param([s1, s2, np.full(A, 1 / A)]), rebalance=Param(["never", 30]),
                threshold=Param([None, 0.03, per_asset, dated]), fees=Param([0.0, 0.004]),
                progress=False)


@pytest.mark.parametrize("band", ["absolute", "relative"])
def test_every_combination_equals_the_reference(mkt, band):
    kw = _grid_kwargs(mkt)
    res = gpusim.backtest(mkt, band=band, backend="cpu", **kw)
    assert len(res.metrics) == 3 * 2 * 4 * 2
    assert list(res.metrics.index.get_level_values("weights").unique()) == [0, "s2", 2]
    assert list(res.metrics.index.get_level_values("threshold").unique())[2:] == [
        "per-asset2", "dated3"]
    for key, row in res.metrics.iterrows():
        ref = res.records(key).metrics
        np.testing.assert_allclose(row.to_numpy(), ref.to_numpy(), rtol=1e-10, atol=1e-13,
                                   err_msg=str(key))
    # the schedules rebalance at their own bars: s2's rows at bars 15 and 16 both trade
    rec = res.records(weights="s2", rebalance="never", threshold=None, fees=0.0)
    assert rec.rebalance_idx.tolist() == [0, 15, 16, 120]


def test_gpu_simulator_equals_cpu_with_schedules_and_bands(mkt):
    from gpusim.backend import simulator_requested

    if not simulator_requested():
        pytest.skip("NUMBA_ENABLE_CUDASIM is not set")
    kw = _grid_kwargs(mkt)
    kw["weights"] = Param(kw["weights"].values[:2])
    kw["fees"] = 0.004
    g = gpusim.backtest(mkt, backend="gpu", **kw)
    c = gpusim.backtest(mkt, backend="cpu", **kw)
    assert g.summary["backend"] == "gpu-simulator"
    np.testing.assert_array_equal(g.metrics["n_rebalances"], c.metrics["n_rebalances"])
    np.testing.assert_allclose(g.metrics.to_numpy(), c.metrics.to_numpy(), rtol=1e-12)


def test_band_kinds_closed_forms(mkt):
    w = np.array([0.4, 0.3, 0.2, 0.1])
    run = lambda **k: gpusim.backtest(mkt, weights=w, fees=0.001, progress=False,  # noqa: E731
                                      backend="cpu", **k).metrics.to_numpy()
    # hybrid with an absolute part below every tau * w_j is the relative band, and with a
    # relative part below the absolute one it is the absolute band
    np.testing.assert_array_equal(run(band="hybrid", threshold=0.3, threshold_abs=0.001),
                                  run(threshold=0.3, relative=True))
    np.testing.assert_array_equal(run(band="hybrid", threshold=0.001, threshold_abs=0.02),
                                  run(threshold=0.02))
    # a per-asset vector / dict of one value is the scalar band
    sym = [str(s) for s in mkt.prices.columns]
    np.testing.assert_array_equal(run(threshold=[0.02] * A), run(threshold=0.02))
    np.testing.assert_array_equal(run(threshold=dict.fromkeys(sym, 0.02)), run(threshold=0.02))
    # a band from bar 0 in a dated Series is the scalar band; a later start has no band before
    idx = mkt.prices.index
    np.testing.assert_array_equal(run(threshold=pd.Series([0.02], index=idx[:1])),
                                  run(threshold=0.02))
    late = gpusim.backtest(mkt, weights=w, threshold=pd.Series([0.02], index=idx[80:81]),
                           progress=False, backend="cpu").records()
    first = gpusim.backtest(mkt, weights=w, threshold=0.02, progress=False,
                            backend="cpu").records()
    assert late.rebalance_idx[0] == 0 and late.rebalance_idx[1] >= 80
    assert first.rebalance_idx[1] < 80
    # hybrid sweeps threshold_abs as a level
    h = gpusim.backtest(mkt, weights=w, band="hybrid", threshold=0.2,
                        threshold_abs=Param([0.01, 0.05]), progress=False, backend="cpu")
    assert h.metrics.index.names == ["weights", "threshold_abs"]
    assert h.summary["band"] == "hybrid"


def test_nan_row_means_no_change_and_dates_between_bars(mkt):
    idx = mkt.prices.index
    s = _sched(mkt, [0, 50, 100])
    with_nan = pd.concat([s, pd.DataFrame(np.nan, index=[idx[70]], columns=s.columns)])
    # a row dated between two bars is in force from the next bar
    shifted = s.set_axis([idx[0] - pd.Timedelta(days=3), idx[50] - pd.Timedelta(hours=6),
                          idx[100]])
    a, b, c = (gpusim.backtest(mkt, weights=x, fees=0.002, progress=False, backend="cpu")
               for x in (s, with_nan.sort_index(), shifted))
    np.testing.assert_array_equal(a.metrics.to_numpy(), b.metrics.to_numpy())
    np.testing.assert_array_equal(a.metrics.to_numpy(), c.metrics.to_numpy())
    assert a.records().rebalance_idx.tolist() == [0, 50, 100]
    assert a.summary["weights"] == "1 schedule(s)"


def test_schedule_wrapper_reads_date_text_and_periods_are_ambiguous(mkt):
    s = _sched(mkt, [0, 50, 100])
    text = s.set_axis(s.index.strftime("%Y-%m-%d"))
    a = gpusim.backtest(mkt, weights=s, progress=False, backend="cpu").metrics
    b = gpusim.backtest(mkt, weights=gpusim.Schedule(text), progress=False, backend="cpu").metrics
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())
    with pytest.raises(GpusimError, match="Schedule"):
        gpusim.backtest(mkt, weights=s.set_axis(s.index.to_period("D")), progress=False)


def test_portfolios_wrapper_keeps_constant_portfolios_labelled_by_dates(mkt):
    s = _sched(mkt, [0, 50, 100])
    res = gpusim.backtest(mkt, weights=gpusim.Portfolios(s), progress=False, backend="cpu")
    assert list(res.metrics.index.get_level_values("weights")) == list(s.index)
    assert res.metrics["n_rebalances"].eq(1).all()


@pytest.mark.parametrize("kw, msg", [
    (dict(weights="text-dates"), r"gpusim\.Schedule\(df\).*gpusim\.Portfolios\(df\)"),
    (dict(weights="late"), "after the first bar"),
    (dict(weights="partial-nan"), "NaN for some symbols only"),
    (dict(band="hybrid", threshold=0.1), "needs threshold_abs"),
    (dict(threshold=0.1, threshold_abs=0.02), "absolute part of band='hybrid'"),
    (dict(band="relative-ish", threshold=0.1), "band='relative-ish' is unknown"),
    (dict(relative=True, band="absolute", threshold=0.1), "contradicts"),
    (dict(threshold=[0.1, 0.2]), "one value per symbol"),
    (dict(threshold={"NOPE": 0.1}), "NOPE"),
    (dict(threshold=-0.1), "must be > 0"),
])
def test_errors_name_the_fix(mkt, kw, msg):
    s = _sched(mkt, [0, 50])
    table = {"text-dates": s.set_axis(s.index.strftime("%Y-%m-%d")),
             "late": _sched(mkt, [5, 50]),
             "partial-nan": s.mask(np.array([[False] * A, [False, True] + [False] * (A - 2)]))}
    if kw.get("weights") in table:
        kw = {**kw, "weights": table[kw["weights"]]}
    with pytest.raises(GpusimError, match=msg):
        gpusim.backtest(mkt, progress=False, backend="cpu", **kw)


@pytest.mark.gpu
def test_gpu_hardware_schedules_and_bands_equal_cpu():
    # a real device (GPUSIM_TEST_HARDWARE=1): the CUDA kernel's schedules and band rows give the
    # CPU path's rebalance counts exactly and its metrics to 1e-12 (cagr/calmar: libdevice pow)
    m = gpusim.synthetic_market(n_assets=6, n_bars=500, seed=3)
    idx = m.prices.index
    rng = np.random.default_rng(8)
    scheds = [pd.DataFrame(rng.dirichlet(np.ones(6), 4), index=idx[[0, 90, 250, 400]],
                           columns=m.prices.columns) for _ in range(30)]
    kw = dict(weights=Param(scheds), band="hybrid",
              threshold=Param([0.1, pd.Series([0.3, 0.05], index=idx[[0, 200]])]),
              threshold_abs=Param([0.01, 0.03]), fees=Param([0.0, 0.004]), progress=False)
    g = gpusim.backtest(m, backend="gpu", **kw).metrics
    c = gpusim.backtest(m, backend="cpu", **kw).metrics
    np.testing.assert_array_equal(g["n_rebalances"], c["n_rebalances"])
    np.testing.assert_allclose(g.to_numpy(), c.to_numpy(), rtol=1e-12, atol=1e-15)
