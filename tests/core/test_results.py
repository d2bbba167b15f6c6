"""gpusim.results: the MetricsResult base class (best, repr, save, locate) and jsonable."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from gpusim.errors import GpusimError
from gpusim.grid import Param, build_grid
from gpusim.results import MetricsResult, jsonable


class _Toy(MetricsResult):
    metric_names = ("sharpe", "cost")
    lower_is_better = frozenset({"cost"})


def _toy(partial=False, n_done=4):
    grid = build_grid({"a": Param([1, 2]), "b": Param(["x", "y"]), "fee": 0.5})
    metrics = pd.DataFrame({"sharpe": [0.5, np.nan, 2.0, 0.5], "cost": [3.0, 1.0, 2.0, np.nan]},
                           index=grid.index_block(0, 4)).iloc[:n_done]
    summary = {"backend": "cpu", "n_combinations": 4, "x": np.float32("nan")}
    return _Toy(metrics, summary, partial, SimpleNamespace(grid=grid))


def test_best_orders_by_direction_nan_last_ties_in_grid_order():
    r = _toy()
    assert r.best("sharpe", 3).index.tolist() == [(2, "x"), (1, "x"), (2, "y")]
    assert r.best("cost", 4).index.tolist() == [(1, "y"), (2, "x"), (1, "x"), (2, "y")]
    assert r.best("cost", 2, ascending=False).index.tolist() == [(1, "x"), (2, "x")]
    with pytest.raises(GpusimError, match=r"metric='nope' is unknown; use one of sharpe, cost"):
        r.best("nope")


def test_repr_and_partial():
    assert repr(_toy()) == "_Toy(4 of 4 combinations, levels=['a', 'b'], backend='cpu')"
    r = _toy(partial=True, n_done=2)
    assert repr(r) == "_Toy(2 of 4 combinations, levels=['a', 'b'], backend='cpu', partial)"
    assert r._locate(None, {"a": 1, "b": "y"}) == 1
    with pytest.raises(GpusimError, match="was not run"):
        r._locate((2, "x"), {})


def test_save_writes_tables_best_summary_and_drops_stale_format(tmp_path):
    r = _toy()
    out = r.save(tmp_path / "run", best_k=2, sort_by="cost", fmt="csv")
    assert sorted(p.name for p in out.iterdir()) == ["best.csv", "metrics.csv", "summary.json"]
    s = json.loads((out / "summary.json").read_text())
    assert s["metrics_file"] == "metrics.csv" and s["best"] == {"sort_by": "cost", "k": 2}
    assert s["x"] is None                                    # NaN in a NumPy scalar -> null
    assert pd.read_csv(out / "best.csv")["b"].tolist() == ["y", "x"]
    (out / "metrics.parquet").write_text("stale")
    r.save(out, fmt="csv")
    assert not (out / "metrics.parquet").exists()
    with pytest.raises(GpusimError, match="fmt='xls' is unknown"):
        r.save(tmp_path / "x", fmt="xls", sort_by="nope")   # fmt is checked first
    with pytest.raises(GpusimError, match="metric='nope'"):
        r.save(tmp_path / "x", sort_by="nope")
    assert not (tmp_path / "x").exists()


def test_save_hooks_tables_and_extra_files_without_best(tmp_path):
    class WithReport(_Toy):
        def save(self, out_dir, fmt=None):
            return self._save(out_dir, fmt)

        def _tables(self):
            return {"report": self.metrics[["cost"]] * 2}

        def _extra_files(self, best, **options):
            return {"note.txt": lambda path: path.write_text("hi")}

    base = _toy()
    r = WithReport(base.metrics, base.summary, False, base._ctx)
    out = r.save(tmp_path / "run", fmt="csv")
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv", "note.txt", "report.csv",
                                                     "summary.json"]
    s = json.loads((out / "summary.json").read_text())
    assert s["report_file"] == "report.csv" and "best" not in s


def test_jsonable():
    assert jsonable(np.int64(3)) == 3 and isinstance(jsonable(np.int64(3)), int)
    assert jsonable(np.float32("nan")) is None and jsonable(math.nan) is None
    assert jsonable(np.bool_(True)) is True and jsonable(None) is None
    assert jsonable(pd.Timestamp("2020-01-02")) == "2020-01-02 00:00:00"
