"""The ``dynopt`` sweep task (gpusim.dynopt.task): job keys, rows equal to direct calls."""

from __future__ import annotations

import numpy as np
import pytest

import gpusim
from gpusim.data.futures import synthetic_futures
from gpusim.errors import GpusimError
from gpusim.grid import Param
from gpusim.sweep.api import load_job, run_job
from gpusim.sweep.api import sweep as run_sweep


def test_sweep_rows_equal_direct_dynopt_calls(tmp_path):
    res = run_sweep("dynopt", {"capital": [2e5, 1e7], "buffer": [0.0, 0.03],
                               "no_trade_rule": [False, True]},
                    futures="synthetic:4:150:2", idm=2.0, min_periods=10, compare_static=True,
                    out=tmp_path / "s", backend="cpu", progress=False)
    assert res.ok
    t = res.table
    assert t.index.names == ["no_trade_rule", "capital", "buffer"] and len(t) == 8
    data = synthetic_futures(n_instruments=4, n_days=150, seed=2).last_years(10)
    for rule in (False, True):
        ref = gpusim.dynopt(data, idm=2.0, min_periods=10, compare_static=True,
                            no_trade_rule=rule, capital=Param([2e5, 1e7]),
                            buffer=Param([0.0, 0.03]), backend="cpu", progress=False).metrics
        got = t.xs(rule, level="no_trade_rule")
        assert list(got.columns) == list(ref.columns)
        np.testing.assert_array_equal(got.to_numpy(), ref.to_numpy())
    # the early exit changes something on this grid, and the static columns do not depend on it
    a, b = t.xs(False, level="no_trade_rule"), t.xs(True, level="no_trade_rule")
    assert not np.array_equal(a["sharpe"].to_numpy(), b["sharpe"].to_numpy())
    np.testing.assert_array_equal(a.filter(like="static_").to_numpy(),
                                  b.filter(like="static_").to_numpy())


def test_job_file_keys(tmp_path):
    path = tmp_path / "job.toml"
    path.write_text("""
task = "dynopt"
backend = "cpu"
[fixed]
futures = "synthetic:3:120:5"
idm = 2.0
min_periods = 10
shadow_cost = 10.0
no_trade_rule = true
compare_static = true
static_buffer = 0.2
[grid]
capital = [5e5, 2e6]
""")
    res = run_job(load_job(path, out=tmp_path / "o"), progress=False)
    assert res.ok and res.table.index.names == ["capital"]
    ref = gpusim.dynopt(synthetic_futures(n_instruments=3, n_days=120, seed=5), idm=2.0,
                        min_periods=10, no_trade_rule=True, compare_static=True,
                        static_buffer=0.2, capital=Param([5e5, 2e6]), backend="cpu",
                        progress=False).metrics
    np.testing.assert_array_equal(res.table.to_numpy(), ref.to_numpy())
    with pytest.raises(GpusimError, match="synthetic"):
        run_sweep("dynopt", {"capital": [1e6]}, futures="synthetic:x", backend="cpu",
                  progress=False)


def test_futures_folder_content_is_in_the_job_hash(tmp_path):
    """The dynopt task reads its data from ``futures``, not ``[data]``: a changed file under the
    same folder path changes the job hash (a resume refuses), a synthetic spec is hashed as text."""
    from gpusim.data.market import synthetic_market
    from gpusim.sweep.job import Job, fingerprint

    folder = tmp_path / "futures"
    (folder / "adjusted_prices_csv").mkdir(parents=True)
    prices = folder / "adjusted_prices_csv" / "GOLD.csv"
    prices.write_text("DATETIME,price\n2020-01-02,1500.0\n")
    mkt = synthetic_market(n_assets=2, n_bars=30, seed=1)

    def job_hash():
        return fingerprint(Job("dynopt", fixed={"futures": str(folder)}), mkt, "cpu")["job_hash"]

    h0 = job_hash()
    assert job_hash() == h0
    prices.write_text("DATETIME,price\n2020-01-02,1501.0\n")
    h1 = job_hash()
    assert h1 != h0
    (folder / "adjusted_prices_csv" / "CORN.csv").write_text("DATETIME,price\n")
    assert job_hash() != h1
    syn = fingerprint(Job("dynopt", fixed={"futures": "synthetic:3:120:5"}), mkt, "cpu")
    assert syn["job"]["fixed"]["futures"] == "synthetic:3:120:5"
