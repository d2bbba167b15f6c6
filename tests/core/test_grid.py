"""gpusim.grid: Param axes, Cartesian products, zipped levels, per-combination index arrays."""

import itertools

import numpy as np
import pandas as pd
import pytest

from gpusim.errors import GpusimError
from gpusim.grid import Param, build_grid, product_grid
from gpusim.specs import RandomWeights


def test_product_order_names_and_fixed_scalars():
    idx = product_grid(a=Param([1, 2]), b=Param(["x", "y", "z"], name="bee"), fee=0.001)
    assert isinstance(idx, pd.MultiIndex)
    assert list(idx.names) == ["a", "bee"]
    assert list(idx) == list(itertools.product([1, 2], ["x", "y", "z"]))


def test_param_accepts_range_array_index():
    idx = product_grid(r=Param(range(3)), t=Param(np.arange(1, 3) / 100), s=Param(pd.Index([5])))
    assert len(idx) == 3 * 2 * 1
    assert list(idx.get_level_values("t").unique()) == [0.01, 0.02]


def test_zipped_levels_vary_together():
    idx = product_grid(w=Param(["a", "b"]), tau=Param([0.01, 0.02], level="z"),
                       fee=Param([0.0, 0.005], level="z"))
    assert list(idx.names) == ["w", "tau", "fee"]
    assert list(idx) == [("a", 0.01, 0.0), ("a", 0.02, 0.005),
                         ("b", 0.01, 0.0), ("b", 0.02, 0.005)]


def test_codes_blocks_match_full_enumeration():
    g = build_grid({"a": Param([10, 20, 30]), "x": 7, "b": Param(["p", "q"], level=1),
                    "c": Param([0.1, 0.2], level=1), "d": Param([True, False])})
    assert g.shape == (3, 2, 2) and g.size == 12 and g.fixed == {"x": 7}
    full = g.codes()
    # blocks concatenate to the full arrays
    parts = [g.codes(s, min(s + 5, g.size)) for s in range(0, g.size, 5)]
    for name in g.names:
        assert np.array_equal(np.concatenate([p[name] for p in parts]), full[name])
        assert full[name].dtype == np.int64
    assert np.array_equal(full["b"], full["c"])
    rows = list(g.index)
    for i in range(g.size):
        assert rows[i] == (g.axis("a").values[full["a"][i]], g.axis("b").values[full["b"][i]],
                           g.axis("c").values[full["c"][i]], g.axis("d").values[full["d"][i]])


def test_locate_and_labels_of():
    g = build_grid({"w": Param(["a", "b"]), "t": Param(np.arange(1, 16) / 100)})
    i = g.locate(w="b", t=0.05)
    assert g.labels_of(i) == {"w": "b", "t": 0.05}
    assert g.locate(("a", 0.15)) == 14
    # float tolerance: 0.05000000000000001 from arange arithmetic still matches
    assert g.locate(w="a", t=np.arange(0.01, 0.16, 0.01)[4]) == 4
    with pytest.raises(GpusimError, match=r"give a value for t \(15 values\)"):
        g.locate(w="a")
    with pytest.raises(GpusimError, match="not in the grid"):
        g.locate(w="c", t=0.05)
    with pytest.raises(GpusimError, match="unknown level"):
        g.locate(x=1)
    single = build_grid({"w": Param(["only"]), "t": Param([0.1, 0.2])})
    assert single.locate(t=0.2) == 1


def test_none_value_is_a_nan_label():
    g = build_grid({"t": Param([None, 0.01])})
    assert g.index.get_level_values("t").isna().tolist() == [True, False]
    assert g.locate(t=None) == 0


def test_grid_errors():
    with pytest.raises(GpusimError, match="needs a list of values"):
        Param("M")
    with pytest.raises(GpusimError, match="needs a list of values"):
        Param(0.01)
    with pytest.raises(GpusimError, match="has no values"):
        Param([])
    with pytest.raises(GpusimError, match="duplicate values"):
        product_grid(t=Param([0.01, 0.01]))
    with pytest.raises(GpusimError, match="the same length"):
        product_grid(a=Param([1, 2], level="z"), b=Param([1, 2, 3], level="z"))
    with pytest.raises(GpusimError, match="distinct name"):
        product_grid(a=Param([1], name="x"), b=Param([2], name="x"))
    with pytest.raises(GpusimError, match="at least one Param"):
        product_grid(a=1)


def test_random_weights_rows_are_pure_in_seed_and_index():
    from cpu_ref.rng import population_nb, sampler_code

    rw = RandomWeights(100, seed=7)
    full = rw.rows(0, 100, 4)
    assert full.shape == (100, 4)
    assert np.allclose(full.sum(axis=1), 1.0) and (full > 0).all()
    assert np.array_equal(rw.rows(37, 41, 4), full[37:41])
    W, _ = population_nb(np.uint64(7), 37, 1, 4, sampler_code("dirichlet"), 1.0,
                         np.zeros(4), np.ones(4))
    assert np.array_equal(W[0], full[37])
    assert not np.array_equal(RandomWeights(100, seed=8).rows(0, 5, 4), full[:5])
    with pytest.raises(GpusimError, match="sampler"):
        RandomWeights(5, sampler="gauss")
    with pytest.raises(GpusimError, match="n must be"):
        RandomWeights(0)


def test_zipped_params_may_repeat_values_but_not_rows():
    g = build_grid({"w": Param(["a"]),
                    "every": Param(["W", "M", "W", "M"], level="t"),
                    "lookback": Param([None, 63, 63, None], level="t"),
                    "fees": Param([0.0, 0.0, 0.001, 0.001], level="t")})
    assert g.shape == (1, 4) and g.size == 4
    c = g.codes()
    # repeats get the position of their first occurrence (work per distinct value done once)
    assert c["every"].tolist() == [0, 1, 0, 1]
    assert c["lookback"].tolist() == [0, 1, 1, 0]
    assert c["fees"].tolist() == [0, 0, 2, 2]
    idx = g.index
    assert list(idx.get_level_values("every")) == ["W", "M", "W", "M"]
    assert idx.get_level_values("lookback").isna().tolist() == [True, False, False, True]
    assert list(idx.get_level_values("fees")) == [0.0, 0.0, 0.001, 0.001]
    assert g.locate(every="W", lookback=63) == 2
    assert g.locate(every="M", lookback=None, fees=0.001) == 3
    with pytest.raises(GpusimError, match="match 2 rows.*give lookback, fees too"):
        g.locate(every="W")
    with pytest.raises(GpusimError, match="not zipped"):
        g.locate(every="W", lookback=63, fees=0.0)
    with pytest.raises(GpusimError, match="repeat the row"):
        build_grid({"a": Param([1, 1], level="z"), "b": Param([2, 2], level="z")})
    with pytest.raises(GpusimError, match="repeat the row"):
        build_grid({"a": Param([1, 2, 1], level="z")})
    with pytest.raises(GpusimError, match="duplicate values"):
        build_grid({"a": Param([1, 1])})
