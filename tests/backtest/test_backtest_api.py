"""gpusim.backtest API and `gpusim backtest` CLI: labels, parameter mapping, records, validation,
outputs. The numbers are checked against the reference cpu_ref.backtest.simulate_1d_nb."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cpu_ref.backtest import METRICS, simulate_1d_nb
from cpu_ref.rng import population_nb, sampler_code
from gpusim.backtest.api import BacktestResult, backtest, calendar_mask, rebalance_mask
from gpusim.cli.backtest import build_parser, parse_values, run
from gpusim.data.market import synthetic_market
from gpusim.errors import GpusimError
from gpusim.grid import Param
from gpusim.specs import RandomWeights

RTOL = 1e-10


@pytest.fixture(scope="module")
def mkt():
    return synthetic_market(n_assets=4, n_bars=160, seed=1)


def ref_metrics(mkt, w, mask, threshold, fees, relative=False, init_cash=1.0, rf=0.0):
    close = np.ascontiguousarray(mkt.prices.to_numpy())
    thr = np.nan if threshold is None or (isinstance(threshold, float) and np.isnan(threshold)) \
        else float(threshold)
    return simulate_1d_nb(close, np.asarray(w, float), np.asarray(mask, bool), thr, relative,
                          float(fees), float(init_cash), float(mkt.ann), float(rf))


def hand_mask(mkt, rule):
    """Rebalance mask computed here from the rule label, independently of the API."""
    idx = mkt.prices.index
    T = len(idx)
    if rule == "never":
        return np.zeros(T, bool)
    if isinstance(rule, int):
        return np.arange(T) % rule == 0
    assert rule == "M"
    ym = idx.year * 12 + idx.month
    return np.r_[True, ym[1:] != ym[:-1]]


def close_enough(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert np.array_equal(np.isnan(a), np.isnan(b))
    ok = ~np.isnan(a)
    np.testing.assert_allclose(a[ok], b[ok], rtol=RTOL, atol=1e-13)


# ---------------------------------------------------------------------------------------------
# Metrics equal the reference, combination by combination, located by label
# ---------------------------------------------------------------------------------------------

def test_grid_metrics_equal_reference_by_label(mkt):
    W = pd.DataFrame([[0.4, 0.3, 0.2, 0.1], [0.1, 0.1, 0.1, 0.7]], columns=mkt.symbols,
                     index=["tilt", "heavy3"])
    res = backtest(mkt, weights=W, rebalance=Param(["never", "M", 10]),
                   threshold=Param([None, 0.03]), fees=Param([0.0, 0.005]),
                   init_cash=100.0, backend="cpu", progress=False)
    assert isinstance(res, BacktestResult) and not res.partial
    assert list(res.metrics.columns) == list(METRICS)
    assert len(res.metrics) == 2 * 3 * 2 * 2
    for (wl, rb, th, fe), row in res.metrics.iterrows():
        m = ref_metrics(mkt, W.loc[wl].to_numpy(), hand_mask(mkt, rb), th, fe, init_cash=100.0)[0]
        close_enough(row.to_numpy(), m)
    # the grid really varies: monthly + fees differs from buy-and-hold without fees
    never = res.metrics.xs(("tilt", "never", 0.0), level=("weights", "rebalance", "fees"))
    monthly = res.metrics.xs(("tilt", "M", 0.005), level=("weights", "rebalance", "fees"))
    assert not np.allclose(never["final_value"].to_numpy(), monthly["final_value"].to_numpy())


def test_relative_band_and_rf_reach_the_kernel(mkt):
    w = {s: v for s, v in zip(mkt.symbols, [0.25, 0.25, 0.25, 0.25])}
    res = backtest(mkt, weights=w, threshold=Param([0.05, 0.2]), relative=True, rf=0.02,
                   fees=0.001, backend="cpu", progress=False)
    for th in (0.05, 0.2):
        m = ref_metrics(mkt, [0.25] * 4, np.zeros(160, bool), th, 0.001, relative=True, rf=0.02)[0]
        close_enough(res.metrics.loc[(0, th)].to_numpy(), m)


def test_prices_dataframe_is_accepted(mkt):
    a = backtest(mkt, rebalance=5, backend="cpu", progress=False).metrics
    b = backtest(mkt.prices, rebalance=5, backend="cpu", progress=False).metrics
    close_enough(a.to_numpy(), b.to_numpy())


# ---------------------------------------------------------------------------------------------
# Index levels
# ---------------------------------------------------------------------------------------------

def test_multiindex_levels_names_and_crossing(mkt):
    res = backtest(mkt, weights=np.array([[0.25] * 4, [0.7, 0.1, 0.1, 0.1], [0, 0, 0, 1.0]]),
                   rebalance="M", threshold=Param([0.01, 0.02, 0.05, 0.1], name="tau"),
                   fees=Param([0.0, 0.001]), backend="cpu", progress=False)
    idx = res.metrics.index
    assert list(idx.names) == ["weights", "tau", "fees"]      # fixed rebalance: no level
    assert len(idx) == 3 * 4 * 2
    assert list(idx.levels[0]) == [0, 1, 2]
    assert list(idx.get_level_values("tau").unique()) == [0.01, 0.02, 0.05, 0.1]
    assert idx[0] == (0, 0.01, 0.0) and idx[-1] == (2, 0.1, 0.001)
    assert res.summary["fixed"]["rebalance"] == "M"
    assert res.summary["levels"] == {"weights": 3, "tau": 4, "fees": 2}


def test_zipped_levels_vary_together(mkt):
    res = backtest(mkt, weights="equal", threshold=Param([0.02, 0.05], level="z"),
                   fees=Param([0.001, 0.003], level="z"), backend="cpu", progress=False)
    assert list(res.metrics.index) == [("equal", 0.02, 0.001), ("equal", 0.05, 0.003)]
    m = ref_metrics(mkt, [0.25] * 4, np.zeros(160, bool), 0.05, 0.003)[0]
    close_enough(res.metrics.iloc[1].to_numpy(), m)


def test_weights_param_of_vectors_and_rebalance_masks(mkt):
    T = len(mkt.prices)
    mask = np.zeros(T, bool)
    mask[[40, 41, 120]] = True
    s = pd.Series([0.1, 0.2, 0.3, 0.4], index=mkt.symbols[::-1], name="rev")  # reordered
    res = backtest(mkt, weights=Param(["equal", s], name="target"),
                   rebalance=Param(["never", mask, 7]), backend="cpu", progress=False)
    assert list(res.metrics.index.names) == ["target", "rebalance"]
    assert list(res.metrics.index) == [(t, r) for t in ("equal", "rev")
                                       for r in ("never", "mask1", 7)]
    w_rev = np.array([0.4, 0.3, 0.2, 0.1])
    m = ref_metrics(mkt, w_rev, mask, None, 0.0)[0]
    close_enough(res.metrics.loc[("rev", "mask1")].to_numpy(), m)
    assert res.metrics.loc[("rev", "mask1"), "n_rebalances"] == 4


# ---------------------------------------------------------------------------------------------
# Calendar rules
# ---------------------------------------------------------------------------------------------

def test_calendar_mask_monthly_first_bars():
    idx = pd.bdate_range("2024-01-29", "2024-04-03")
    m = calendar_mask(idx, "M")
    expected = pd.DatetimeIndex(["2024-01-29", "2024-02-01", "2024-03-01", "2024-04-01"])
    assert idx[m].equals(expected)
    # a month whose first business day is missing from the data starts on the next bar
    idx2 = idx.drop(pd.Timestamp("2024-03-01"))
    assert list(idx2[calendar_mask(idx2, "M")].strftime("%Y-%m-%d")) == [
        "2024-01-29", "2024-02-01", "2024-03-04", "2024-04-01"]


def test_calendar_mask_week_quarter_year_day():
    idx = pd.DatetimeIndex(["2024-01-05", "2024-01-09", "2024-01-10", "2024-01-15",  # Fr Tu We Mo
                            "2024-03-29", "2024-04-02", "2024-12-31", "2025-01-02"])
    assert calendar_mask(idx, "W").tolist() == [True, True, False, True, True, True, True, False]
    assert calendar_mask(idx, "Q").tolist() == [True, False, False, False, False, True, True,
                                                True]
    assert calendar_mask(idx, "Y").tolist() == [True] + [False] * 6 + [True]
    hourly = pd.date_range("2024-01-01 22:00", periods=4, freq="h")
    assert calendar_mask(hourly, "D").tolist() == [True, False, True, False]
    lab, m = rebalance_mask("m", idx)                     # case-insensitive label "M"
    assert lab == "M" and m.tolist() == calendar_mask(idx, "M").tolist()
    lab, m = rebalance_mask(3, idx)
    assert lab == 3 and np.flatnonzero(m).tolist() == [0, 3, 6]


# ---------------------------------------------------------------------------------------------
# Records and plots
# ---------------------------------------------------------------------------------------------

def test_records_of_a_threshold_run_match_the_reference(mkt):
    tau = 0.04
    res = backtest(mkt, weights="equal", threshold=Param(np.arange(1, 16) / 100),
                   fees=0.005, init_cash=100, backend="cpu", progress=False)
    rec = res.records(threshold=tau)
    _m, value, bars, tgt, real = ref_metrics(mkt, [0.25] * 4, np.zeros(160, bool), tau, 0.005,
                                            init_cash=100)
    dates = mkt.prices.index
    assert rec.rebalance_bars.equals(dates[bars])
    assert np.array_equal(rec.rebalance_idx, bars)
    assert len(bars) > 2 and bars[0] == 0
    assert res.metrics.loc[("equal", tau), "n_rebalances"] == len(bars)
    close_enough(rec.metrics.to_numpy(), res.metrics.loc[("equal", tau)].to_numpy())
    np.testing.assert_array_equal(rec.target.to_numpy(), tgt)
    np.testing.assert_array_equal(rec.realised.to_numpy(), real)
    assert list(rec.realised.columns) == mkt.symbols
    np.testing.assert_array_equal(rec.value.to_numpy(), value)
    # daily allocations: equal to `realised` on rebalance bars; the drift that triggered each
    # rebalance is >= tau and it stays < tau on every other bar
    A = rec.allocations[mkt.symbols].to_numpy()
    np.testing.assert_allclose(A[bars], real, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(rec.allocations.sum(axis=1), 1.0, atol=1e-12)
    p = mkt.prices.to_numpy()
    V = value
    for t in range(1, len(V)):
        h = A[t - 1] * V[t - 1] / p[t - 1]
        cash = rec.allocations["cash"].iloc[t - 1] * V[t - 1]
        pre = h * p[t] / (cash + h @ p[t])
        drift = np.abs(pre - 0.25).max()
        assert (drift >= tau) == (t in set(bars)), t
    assert rec["value"] is rec.value and set(rec.to_dict()) >= {"target", "realised", "value"}
    # by full row label, e.g. the best row
    best_label = res.best("sharpe", k=1).index[0]
    assert res.records(best_label).params["threshold"] == best_label[1]


def test_plot_allocations_writes_png(mkt, tmp_path):
    res = backtest(mkt, threshold=Param([0.03, 0.06]), backend="cpu", progress=False)
    out = res.plot_allocations(tmp_path / "plots" / "alloc.png", threshold=0.03)
    data = Path(out).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_best_directions(mkt):
    res = backtest(mkt, weights=RandomWeights(40, seed=2), rebalance=Param(["never", 20]),
                   fees=0.002, backend="cpu", progress=False)
    m = res.metrics
    b = res.best("sharpe", k=5)
    assert len(b) == 5 and b["sharpe"].iloc[0] == m["sharpe"].max()
    assert b["sharpe"].is_monotonic_decreasing
    assert res.best("max_drawdown", k=1)["max_drawdown"].iloc[0] == m["max_drawdown"].max()
    assert res.best("volatility", 1)["volatility"].iloc[0] == \
        m["volatility"].min()
    assert res.best("sharpe", 1, ascending=True)["sharpe"].iloc[0] == m["sharpe"].min()
    with pytest.raises(GpusimError, match="metric='sharp' is unknown; use one of total_return"):
        res.best("sharp")


# ---------------------------------------------------------------------------------------------
# Random weights
# ---------------------------------------------------------------------------------------------

def test_random_weights_rows_reproducible_and_chunking_invariant(mkt):
    rw = RandomWeights(30, seed=5)
    a = backtest(mkt, weights=rw, rebalance="M", fees=0.001, backend="cpu", progress=False,
                 chunk_size=7)
    b = backtest(mkt, weights=rw, rebalance="M", fees=0.001, backend="cpu", progress=False)
    assert a.summary["n_chunks"] == 5 and b.summary["n_chunks"] == 1
    np.testing.assert_array_equal(a.metrics.to_numpy(), b.metrics.to_numpy())
    assert list(a.metrics.index.get_level_values("weights")) == list(range(30))
    W, _ = population_nb(np.uint64(5), 17, 1, 4, sampler_code("dirichlet"), 1.0, np.zeros(4),
                         np.ones(4))
    rec = a.records(weights=17)
    np.testing.assert_array_equal(rec.target.iloc[0].to_numpy(), W[0])
    m = ref_metrics(mkt, W[0], hand_mask(mkt, "M"), None, 0.001)[0]
    close_enough(a.metrics.loc[17].to_numpy().ravel(), m)


def test_keyboard_interrupt_returns_partial(mkt, monkeypatch):
    from gpusim.backtest import cpu as bk

    real = bk.backtest_cpu_nb
    calls = {"n": 0}

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == 3:            # warm-up, chunk 1, then Ctrl-C during chunk 2
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(bk, "backtest_cpu_nb", flaky)
    res = backtest(mkt, weights=RandomWeights(25, seed=1), backend="cpu", chunk_size=10,
                   progress=False)
    assert res.partial and res.summary["partial"] and res.summary["n_done"] == 10
    assert len(res.metrics) == 10 and res.summary["n_combinations"] == 25
    with pytest.raises(GpusimError, match="not run"):
        res.records(weights=20)


# ---------------------------------------------------------------------------------------------
# Validation: one-line messages naming the argument and the fix
# ---------------------------------------------------------------------------------------------

BAD_INPUTS = [
    (dict(weights=[0.3, 0.3, 0.3, 0.0]), r"sums to 0\.9, not 1 .*normalise it"),
    (dict(weights=[0.5, 0.6, -0.1, 0.0]), r"weight -0\.1 for 'A02'; weights are long-only"),
    (dict(weights=[0.5, 0.5, 0.0]), r"a vector has 3 values but the prices have 4 symbols"),
    (dict(weights={"A00": 0.5, "A01": 0.5, "A02": 0.0, "ZZZ": 0.0}),
     r"symbols don't match the prices \(ZZZ not in the prices; no weight for A03\)"),
    (dict(weights=pd.DataFrame([[0.5, 0.5, 0.0, 0.0, 0.0]],
                               columns=["A00", "A01", "A02", "A03", "X"])),
     r"X not in the prices"),
    (dict(weights="optimal"), r"weights='optimal' is not understood; use 'equal'"),
    (dict(threshold=0.0), r"threshold=0\.0 must be > 0"),
    (dict(threshold=Param([0.05, -0.01])), r"threshold=-0\.01 must be > 0"),
    (dict(fees=-0.001), r"fees=-0\.001 must be in \[0, 1\)"),
    (dict(fees=Param([0.0, 1.0])), r"fees=1\.0 must be in \[0, 1\)"),
    (dict(rebalance="monthly"), r"rebalance='monthly' is not a rebalance rule; use 'never', "
                                r"'D', 'W', 'M', 'Q', 'Y', an int k >= 1"),
    (dict(rebalance=Param(["M", "fortnight"])), r"rebalance='fortnight' is not a rebalance rule"),
    (dict(rebalance=0), r"rebalance=0: k must be an int >= 1"),
    (dict(rebalance=np.zeros(5, bool)), r"the mask has shape \(5,\); it needs one bool per bar"),
    (dict(init_cash=0), r"init_cash=0\.0 must be a finite number > 0"),
    (dict(backend="tpu"), r"backend='tpu' is not a backend; use one of"),
    (dict(chunk_size=0), r"chunk_size=0 must be an int >= 1"),
    (dict(weights=RandomWeights(10), threshold=Param([0.01, 0.01])), r"duplicate values"),
    (dict(weights=RandomWeights(2 ** 38), fees=Param([0.0, 0.001])),
     r"the grid has 549,755,813,888 combinations: its metrics table needs .* split the grid"),
]


@pytest.mark.parametrize("kwargs,pattern", BAD_INPUTS, ids=[p[:30] for _, p in BAD_INPUTS])
def test_validation_errors(mkt, kwargs, pattern):
    with pytest.raises(GpusimError, match=pattern) as ei:
        backtest(mkt, **{"backend": "cpu", "progress": False, **kwargs})
    assert "\n" not in str(ei.value)


def test_records_selection_errors(mkt):
    res = backtest(mkt, threshold=Param([0.02, 0.05]), fees=Param([0.0, 0.01]), backend="cpu",
                   progress=False)
    with pytest.raises(GpusimError, match=r"give a value for fees \(2 values\)"):
        res.records(threshold=0.02)
    with pytest.raises(GpusimError, match=r"threshold=0\.03 is not in the grid"):
        res.records(threshold=0.03, fees=0.0)
    with pytest.raises(GpusimError, match="unknown level"):
        res.records(tau=0.02, fees=0.0)


# ---------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------

def test_save_writes_parquet_best_and_summary(mkt, tmp_path):
    res = backtest(mkt, rebalance=Param(["never", "M", 10]), fees=Param([0.0, 0.002]),
                   backend="cpu", progress=False)
    out = res.save(tmp_path / "run", best_k=3, sort_by="calmar")
    files = sorted(p.name for p in out.iterdir())
    assert files == ["best.csv", "metrics.parquet", "summary.json"]
    table = pd.read_parquet(out / "metrics.parquet")
    assert list(table.columns[:3]) == ["weights", "rebalance", "fees"]
    np.testing.assert_array_equal(table[list(METRICS)].to_numpy(), res.metrics.to_numpy())
    assert list(table["rebalance"].unique()) == ["never", "M", "10"]     # mixed -> str
    s = json.loads((out / "summary.json").read_text())
    assert s["n_combinations"] == 6 and s["backend"] == "cpu" and s["metrics_file"] == \
        "metrics.parquet"
    assert s["combination_bars_per_s"] > 0 and "numba" in s["versions"]
    assert len(pd.read_csv(out / "best.csv")) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temp folders
    # re-saving as CSV into the same folder replaces the Parquet file
    res.save(out, fmt="csv")
    assert sorted(p.name for p in out.iterdir()) == ["best.csv", "metrics.csv", "summary.json"]
    assert len(pd.read_csv(out / "metrics.csv")) == 6


def test_failed_save_leaves_nothing_half_written(mkt, tmp_path, monkeypatch):
    res = backtest(mkt, fees=Param([0.0, 0.002]), backend="cpu", progress=False)

    import gpusim.results as results_mod

    real_table, calls = results_mod.flat_table, []

    def boom(df):                                   # 1st call: metrics file; 2nd: best.csv
        calls.append(1)
        if len(calls) % 2 == 0:
            raise OSError("disk full")
        return real_table(df)

    monkeypatch.setattr(results_mod, "flat_table", boom)  # fails after metrics were written
    with pytest.raises(OSError, match="disk full"):
        res.save(tmp_path / "new")
    assert list(tmp_path.iterdir()) == []                # no folder, no temp left over
    old = tmp_path / "old"
    old.mkdir()
    (old / "summary.json").write_text("previous")
    with pytest.raises(OSError):
        res.save(old)
    assert [p.name for p in old.iterdir()] == ["summary.json"]
    assert (old / "summary.json").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]
    with pytest.raises(GpusimError, match="is unknown"):
        res.save(tmp_path / "x", sort_by="nope")
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

def cli(argv):
    return run(build_parser().parse_args(argv))


def test_parse_values():
    assert parse_values("0.01:0.15:0.01", "--threshold") == [i / 100 for i in range(1, 16)]
    assert parse_values("0,0.001", "--fees") == [0.0, 0.001]
    assert parse_values("0.005", "--fees") == [0.005]
    assert parse_values("none,0.05", "--threshold", allow_none=True) == [None, 0.05]
    for bad in ("0.1:0.05:0.01", "a", "0.1:0.2", ""):
        with pytest.raises(GpusimError, match="--fees"):
            parse_values(bad, "--fees")


def test_cli_end_to_end_threshold_sweep(tmp_path, capsys):
    out = tmp_path / "thr"
    rc = cli(["--threshold", "0.01:0.15:0.01", "--fees", "0.005,0", "--rebalance", "never,M",
              "--backend", "cpu", "--out", str(out), "--top-k", "4", "--sort-by", "sortino",
              "--no-progress", "--prices", "synthetic:3:200:4"])
    o = capsys.readouterr()
    assert rc == 0, o.err
    assert "60 of 60 combinations x 200 bars x 3 assets on cpu" in o.out
    assert "best 4 by sortino" in o.out
    assert sorted(p.name for p in out.iterdir()) == ["best.csv", "metrics.parquet",
                                                       "summary.json"]
    table = pd.read_parquet(out / "metrics.parquet")
    assert len(table) == 60 and sorted(table["threshold"].unique())[4] == 0.05
    # the CLI's numbers are the API's numbers
    m = synthetic_market(n_assets=3, n_bars=200, seed=4)
    ref = ref_metrics(m, [1 / 3] * 3, hand_mask(m, "M"), 0.05, 0.005)[0]
    row = table[(table.rebalance == "M") & (table.threshold == 0.05) & (table.fees == 0.005)]
    close_enough(row[list(METRICS)].to_numpy()[0], ref)


def test_cli_json_random_and_weights_file(tmp_path, capsys):
    rc = cli(["--weights", "random:20:3", "--rebalance", "M", "--fees", "0.001", "--json",
              "--backend", "cpu", "--no-progress", "--prices", "synthetic:3:120"])
    o = capsys.readouterr()
    assert rc == 0, o.err
    s = json.loads(o.out)
    assert s["n_combinations"] == 20 and len(s["best"]) == 10 and s["out"] is None
    assert s["best"][0]["sharpe"] >= s["best"][-1]["sharpe"]
    csv = tmp_path / "w.csv"
    csv.write_text("name,A00,A01,A02\nsixty,0.6,0.4,0\nthirds,0.3333333333333333,"
                   "0.3333333333333333,0.3333333333333334\n")
    rc = cli(["--weights", str(csv), "--rebalance", "21", "--json", "--backend", "cpu",
              "--no-progress", "--prices", "synthetic:3:120"])
    o = capsys.readouterr()
    assert rc == 0, o.err
    assert {r["weights"] for r in json.loads(o.out)["best"]} == {"sixty", "thirds"}


@pytest.mark.parametrize("argv,msg", [
    (["--threshold", "0"], "threshold=0.0 must be > 0"),
    (["--fees", "1.5"], "fees=1.5 must be in [0, 1)"),
    (["--rebalance", "fortnightly"], "rebalance='fortnightly' is not a rebalance rule"),
    (["--weights", "random:x"], "--weights: 'random:x' is not random:N[:seed]"),
    (["--weights", "nofile.csv"], "--weights: 'nofile.csv' is not a file"),
    (["--prices", "nofile.csv"], "--prices: file 'nofile.csv' not found"),
    (["--sort-by", "alpha"], "--sort-by 'alpha' is not a metric"),
    (["--backend", "tpu"], "backend='tpu' is not a backend"),
])
def test_cli_errors_are_one_line_and_write_nothing(tmp_path, capsys, argv, msg):
    out = tmp_path / "out"
    rc = cli([*argv, "--out", str(out), "--no-progress", "--prices", "synthetic:3:60"]
             if "--prices" not in argv else [*argv, "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and msg in err, err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_cli_weights_file_with_wrong_symbols(tmp_path, capsys):
    csv = tmp_path / "w.csv"
    csv.write_text("A00,A01,BTC\n0.5,0.5,0\n")
    out = tmp_path / "out"
    rc = cli(["--weights", str(csv), "--out", str(out), "--backend", "cpu", "--no-progress",
              "--prices", "synthetic:3:60"])
    err = capsys.readouterr().err
    assert rc == 2 and "BTC not in the prices; no weight for A02" in err
    assert not out.exists()


def test_cli_module_runs_as_subprocess(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    p = subprocess.run([sys.executable, "-m", "gpusim.cli.backtest", "--fees", "-1",
                        "--no-progress", "--backend", "cpu"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert p.returncode == 2 and p.stderr.startswith("error: fees=-1.0 must be in [0, 1)")


# ---------------------------------------------------------------------------------------------
# GPU kernel in the CUDA simulator agrees with the CPU path
# ---------------------------------------------------------------------------------------------

def test_gpu_backend_in_simulator_matches_cpu():
    from gpusim.backend import simulator_requested

    if not simulator_requested():
        pytest.skip("NUMBA_ENABLE_CUDASIM is not set (the test conftest sets it)")
    m = synthetic_market(n_assets=3, n_bars=40, seed=3)
    kw = dict(weights=RandomWeights(8, seed=9), rebalance=Param(["never", 5]),
              threshold=Param([None, 0.02, 0.05]), fees=0.01, progress=False)
    g = backtest(m, backend="gpu", **kw)
    c = backtest(m, backend="cpu", **kw)
    assert g.summary["backend"] == "gpu-simulator" and len(g.metrics) == 48
    assert g.metrics.index.equals(c.metrics.index)
    close_enough(g.metrics.to_numpy(), c.metrics.to_numpy())
