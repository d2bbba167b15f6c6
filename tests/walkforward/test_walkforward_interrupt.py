"""Ctrl-C during a walk-forward run (issue 16): blocks of dates, and the partial result.

Blocks of dates must not change any number; an interrupt after some blocks returns every
combination simulated up to the first date not chosen, equal to a full run on the prices cut at
that bar; a real SIGINT to the CLI saves that result and exits 130.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gpusim
from gpusim.grid import Param
from gpusim.interrupt import Interrupt
from gpusim.walkforward import chunked
from gpusim.walkforward.api import walkforward
from gpusim.walkforward.constraints import WeightBounds

ROOT = Path(__file__).resolve().parents[2]
KW = {"progress": False, "backend": "cpu"}


@pytest.fixture(scope="module")
def mkt():
    return gpusim.synthetic_market(n_assets=4, n_bars=260, seed=11)


def _grid(mkt, **kw):
    return walkforward(mkt, every=Param(["W", "M"]), lookback=Param([None, 40]),
                       num_tests=Param([50, 400]), fees=Param([0.0, 0.002]), start=60, **kw,
                       **KW)


def _same(a, b, exact=True):
    pd.testing.assert_frame_equal(a.metrics, b.metrics, check_exact=True)
    for key in a.metrics.index[::5]:
        pd.testing.assert_frame_equal(a.allocations(key), b.allocations(key), check_exact=True)
        # the window statistics of a shorter price table may round differently (last bit)
        pd.testing.assert_frame_equal(a.decisions(key), b.decisions(key), check_exact=exact,
                                      rtol=1e-12)


def test_date_batches_cover_every_date_once_in_order():
    bd = np.repeat(np.arange(30), 2)[::-1].copy()
    bw = np.tile(np.arange(2), 30)
    work = np.full(60, 1000.0)
    one = chunked.date_batches(bd, bw, work, False)          # 60k of work: one block
    assert len(one) == 1 and sorted(one[0]) == list(range(60))
    per = chunked.date_batches(bd, bw, work, True)
    assert len(per) == 30 and all(len(set(bd[b])) == 1 for b in per)
    many = chunked.date_batches(bd, bw, np.full(60, float(chunked.MIN_BLOCK_WORK)), False)
    assert len(many) == 30                                     # each date is a full block
    blocks = chunked.date_batches(bd, bw, np.full(60, chunked.MIN_BLOCK_WORK / 4), False)
    assert len(blocks) == 15 and all(len(set(bd[b])) == 2 for b in blocks)
    flat = np.concatenate(blocks)
    assert sorted(flat) == list(range(60))
    assert (np.diff(bd[flat]) >= 0).all()                     # date order across blocks


@pytest.mark.parametrize("method", ["random", "exact"])
def test_blocks_of_dates_change_no_number(mkt, monkeypatch, method):
    whole = _grid(mkt, method=method, gap=True)
    monkeypatch.setattr(chunked, "MIN_BLOCK_WORK", 1.0)       # up to 64 blocks
    blocks = _grid(mkt, method=method, gap=True)
    assert not blocks.partial and blocks.summary["n_dates_done"] == blocks.summary["n_dates"]
    _same(whole, blocks)
    pd.testing.assert_frame_equal(whole.report, blocks.report, check_exact=True)


class _StopAfter(Interrupt):
    """An interrupt that arrives once the loop has asked ``after`` times."""

    after = 3

    def __bool__(self):
        self.asked = getattr(self, "asked", 0) + 1
        return self.asked > self.after


@pytest.mark.parametrize("callable_bound", [False, True])
def test_interrupt_returns_the_run_up_to_the_first_date_not_chosen(mkt, monkeypatch,
                                                                   callable_bound):
    cons = [WeightBounds(hi=(lambda state, t: 0.6) if callable_bound else 0.6)]
    monkeypatch.setattr(chunked, "MIN_BLOCK_WORK", 1.0)
    monkeypatch.setattr(chunked, "Interrupt", _StopAfter)
    part = _grid(mkt, constraints=cons, gap=False)
    s = part.summary
    assert part.partial and s["partial"] and 0 < s["n_dates_done"] < s["n_dates"]
    cut = s["n_bars"]
    assert 60 + 2 <= cut < 260 and s["end"] == str(mkt.prices.index[cut - 1].date())
    monkeypatch.undo()
    full_on_cut = _grid(gpusim.load_prices(mkt.prices.iloc[:cut]), constraints=cons, gap=False)
    assert not full_on_cut.partial
    _same(part, full_on_cut, exact=False)
    assert part.verify()["ok"]


def test_interrupt_before_any_date_is_a_plain_keyboard_interrupt(mkt, monkeypatch):
    monkeypatch.setattr(_StopAfter, "after", 0)
    monkeypatch.setattr(chunked, "Interrupt", _StopAfter)
    with pytest.raises(KeyboardInterrupt):
        _grid(mkt, gap=False)


@pytest.mark.slow
def test_cli_ctrl_c_saves_the_partial_walkforward(tmp_path):
    trace = tmp_path / "started"
    # the marker appears once the first block of dates was searched; then SIGINT
    code = (f"import pathlib; from gpusim.walkforward import search as s; f = s.run_search\n"
            f"def g(*x, **k):\n    r = f(*x, **k); pathlib.Path({str(trace)!r}).touch()\n"
            f"    return r\n"
            f"s.run_search = g\nfrom gpusim.cli.walkforward import main\nimport sys\n"
            f"sys.exit(main(['--prices', 'synthetic:6:1500:1', '--every', 'D', '--lookback', "
            f"'60', '--num-tests', '2000000', '--no-progress', '--backend', 'cpu', "
            f"'--out', 'res']))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    p = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while not trace.exists() and p.poll() is None and time.monotonic() - t0 < 180:
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    _out, err = p.communicate(timeout=180)
    assert p.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "SystemError" not in err
    assert "warning: interrupted; simulated up to" in err
    s = json.loads((tmp_path / "res" / "summary.json").read_text())
    assert s["partial"] is True and 0 < s["n_dates_done"] < s["n_dates"]
    m = pd.read_csv(tmp_path / "res" / "metrics.csv") if (
        tmp_path / "res" / "metrics.csv").exists() else pd.read_parquet(
        tmp_path / "res" / "metrics.parquet")
    assert len(m) == 1 and np.isfinite(m["sharpe"]).all()
