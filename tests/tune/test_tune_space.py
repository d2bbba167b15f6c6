"""gpusim.tune.space: the forms of a dimension, enumeration, Optuna distributions."""

import pytest

from gpusim.errors import GpusimError
from gpusim.tune.space import MAX_GRID_VALUES, Dim, parse_space, space_json


def test_forms_of_a_dimension():
    dims = parse_space({"every": ["D", "W", "M", 5, 10, 21], "num_tests": (5, 10_000, "log"),
                        "fees": (0.0, 0.01), "lookback": (21, 252), "band": (0.0, 0.1, 0.02),
                        "k": {"low": 1, "high": 9, "step": 2}, "lb": [None, 63]})
    by = {d.name: d for d in dims}
    assert [d.name for d in dims] == ["every", "num_tests", "fees", "lookback", "band", "k", "lb"]
    assert by["every"].kind == "categorical" and by["every"].choices == ("D", "W", "M", 5, 10, 21)
    assert (by["num_tests"].kind, by["num_tests"].low, by["num_tests"].high,
            by["num_tests"].log) == ("int", 5, 10_000, True)
    assert by["fees"].kind == "float" and not by["fees"].enumerable
    assert by["lookback"].kind == "int" and by["lookback"].grid_values()[:3] == [21, 22, 23]
    assert by["band"].grid_values() == [0.0, 0.02, 0.04, 0.06, 0.08, 0.1]
    assert by["k"].grid_values() == [1, 3, 5, 7, 9]
    assert by["lb"].grid_values() == [None, 63]
    assert len(by["num_tests"].grid_values()) == 9996
    # the job-file form round-trips
    again = parse_space(space_json(dims))
    assert [d.grid_values() if d.enumerable else (d.low, d.high) for d in again] == [
        d.grid_values() if d.enumerable else (d.low, d.high) for d in dims]
    with pytest.raises(GpusimError, match="continuous float range.*values="):
        by["fees"].grid_values()
    big = Dim("n", "int", low=0, high=MAX_GRID_VALUES)
    with pytest.raises(GpusimError, match="100,001 values"):
        big.grid_values()


@pytest.mark.parametrize("space, msg", [
    ({}, "non-empty dict"),
    ({"every": []}, "has no values"),
    ({"every": ["W", "W"]}, "repeats a value"),
    ({"w": [[0.5, 0.5]]}, "cannot be a choice"),
    ({"fees": (0.01, 0.0)}, "must be >= low"),
    ({"n": (0, 100, "log")}, "needs low > 0"),
    ({"n": (1, 100, "lin")}, "'log' or a step"),
    ({"n": (1, 10, 0.5)}, "needs an int step"),
    ({"n": (1, 2, 3, 4)}, "a range is"),
    ({"n": {"low": 1}}, "needs low and high"),
    ({"n": ("a", 3)}, "is not a number"),
    ({"n": 3}, "give a list of choices"),
    ({"1n": [1]}, "not a parameter name"),
])
def test_bad_spaces_are_one_line_errors(space, msg):
    with pytest.raises(GpusimError, match=msg):
        parse_space(space)


def test_optuna_distributions():
    pytest.importorskip("optuna")
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    d = {x.name: x.distribution() for x in parse_space(
        {"e": ["W", 21, None], "n": (5, 10_000, "log"), "f": (0.0, 0.01), "s": (0.0, 0.1, 0.05)})}
    assert isinstance(d["e"], CategoricalDistribution) and d["e"].choices == ("W", 21, None)
    assert isinstance(d["n"], IntDistribution) and d["n"].log and (d["n"].low, d["n"].high) == (
        5, 10_000)
    assert isinstance(d["f"], FloatDistribution) and not d["f"].log and d["f"].step is None
    assert d["s"].step == 0.05
