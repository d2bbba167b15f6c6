"""Weights by symbol in the best table and best.csv of a backtest (issue 15)."""

import numpy as np
import pandas as pd

import gpusim
from gpusim.specs import RandomWeights


def test_best_rows_carry_target_weights_by_symbol(tmp_path):
    m = gpusim.synthetic_market(n_assets=4, n_bars=60, seed=2)
    rw = RandomWeights(6, seed=9)
    res = gpusim.backtest(m, weights=rw, rebalance="M", fees=0.001, backend="cpu",
                          progress=False)
    best = res.best("sharpe", 3, weights=True)
    syms = list(m.symbols)
    assert list(best.columns[-4:]) == syms
    # each row's weights are the random vector of its row number, regenerated from the seed
    W = rw.rows(0, 6, 4)
    for key, row in best.iterrows():
        wi = int(key[0] if isinstance(key, tuple) else key)
        np.testing.assert_array_equal(row[syms].to_numpy(dtype=float), W[wi])
    np.testing.assert_allclose(best[syms].sum(axis=1), 1.0, rtol=1e-12)
    # the metrics are those of best() without weights
    pd.testing.assert_frame_equal(best[list(res.metrics.columns)], res.best("sharpe", 3))
    out = res.save(tmp_path / "bt", best_k=3, fmt="csv")
    csv = pd.read_csv(out / "best.csv")
    assert set(syms) <= set(csv.columns)
    np.testing.assert_allclose(csv[syms].to_numpy(), best[syms].to_numpy(), rtol=0, atol=0)


def test_sweep_best_rows_carry_weights_by_symbol(tmp_path):
    from gpusim.sweep.api import sweep as run_sweep

    m = gpusim.synthetic_market(n_assets=3, n_bars=80, seed=4)
    rw = RandomWeights(7, seed=5)
    res = run_sweep("backtest", {"fees": [0.0, 0.002]}, market=m, weights=rw,
                    out=tmp_path / "sw", backend="cpu", progress=False)
    rows = res.summary["best"]["rows"]
    assert rows
    W = rw.rows(0, 7, 3)
    for r in rows:
        np.testing.assert_array_equal([r[s] for s in m.symbols], W[int(r["weights"])])
    assert all(s in res.to_text() for s in m.symbols)
