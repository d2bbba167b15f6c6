"""gpusim.parse: the text values of the command line and of sweep job files."""

import pytest

from gpusim import Param, RandomWeights
from gpusim.errors import GpusimError
from gpusim.parse import (
    as_axis,
    parse_lookbacks,
    parse_rebalance,
    parse_values,
    parse_weights,
)


def test_values_lists_and_ranges():
    assert parse_values("0.005", "--fees") == [0.005]
    assert parse_values("0, 0.001", "--fees") == [0.0, 0.001]
    assert parse_values("0.01:0.05:0.01", "--threshold") == [0.01, 0.02, 0.03, 0.04, 0.05]
    assert parse_values("0.01,none", "--threshold", allow_none=True) == [0.01, None]
    with pytest.raises(GpusimError, match="--fees: 'x' is not a number"):
        parse_values("x", "--fees")
    with pytest.raises(GpusimError, match="needs step > 0"):
        parse_values("1:0:1", "--fees")


def test_rebalance_lookbacks_and_axes():
    assert parse_rebalance("never, M,21") == ["never", "M", 21]
    with pytest.raises(GpusimError, match="empty rule"):
        parse_rebalance("M,,W")
    assert parse_lookbacks("none, 63,ALL") == [None, 63.0, None]
    with pytest.raises(GpusimError, match="--lookback: 'x' is not a number"):
        parse_lookbacks("63,x")
    # a range gives every value (it used to give only its start, silently)
    assert parse_lookbacks("20:100:20") == [20.0, 40.0, 60.0, 80.0, 100.0]
    assert parse_lookbacks("21:63:21,none") == [21.0, 42.0, 63.0, None]
    for bad, words in (("a:b:c", "'a' is not a number"), ("20::5", "'' is not a number"),
                       ("20:100", "is not start:stop:step"), ("100:20:20", "stop >= start"),
                       ("20:100:0", "step > 0"), ("60,", "empty value")):
        with pytest.raises(GpusimError, match=f"--lookback: .*{words}"):
            parse_lookbacks(bad)
    assert as_axis([0.1], "fees") == 0.1
    axis = as_axis([0.1, 0.2], "fees")
    assert isinstance(axis, Param) and axis.name == "fees" and list(axis.values) == [0.1, 0.2]


def test_weights_specs(tmp_path):
    assert parse_weights(" Equal ", ["A", "B"]) == "equal"
    w = parse_weights("random:50:7", ["A", "B"])
    assert isinstance(w, RandomWeights) and w.n == 50 and w.seed == 7
    with pytest.raises(GpusimError, match="random:N"):
        parse_weights("random:x", ["A", "B"])
    f = tmp_path / "w.csv"
    f.write_text("label,A,B\nx,0.5,0.5\ny,0.2,0.8\n")
    df = parse_weights(str(f), ["A", "B"])
    assert list(df.columns) == ["A", "B"] and list(df.index) == ["x", "y"]
    with pytest.raises(GpusimError, match="is not a file"):
        parse_weights(str(tmp_path / "missing.csv"), ["A", "B"])
