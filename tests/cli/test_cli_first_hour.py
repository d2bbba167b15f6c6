"""A researcher's first hour (issue 15): optional packages are checked before any work or
folder, every option has help text, and --plot exists on every command that computes results.
"""

import argparse
import sys

import pytest

from gpusim.cli.main import build_parser, main


def _all_parsers():
    todo = [("gpusim", build_parser())]
    while todo:
        name, p = todo.pop()
        yield name, p
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                todo += [(f"gpusim {n}", sp) for n, sp in a.choices.items()]


def test_every_option_has_help_and_every_command_a_description():
    missing = []
    for name, p in _all_parsers():
        if name != "gpusim" and not (p.description or "").strip():
            missing.append(f"{name}: no description")
        for a in p._actions:
            if isinstance(a, (argparse._HelpAction, argparse._VersionAction,
                              argparse._SubParsersAction)):
                continue
            if not a.help or a.help == argparse.SUPPRESS:
                missing.append(f"{name} {'/'.join(a.option_strings) or a.dest}")
    assert not missing, missing


def test_plot_on_every_command_that_computes():
    for name, p in _all_parsers():
        if name in ("gpusim search", "gpusim backtest", "gpusim walkforward", "gpusim dynopt"):
            assert "--plot" in p._option_string_actions, name


def test_sweep_help_lists_every_task():
    from gpusim.sweep.tasks import PROVIDERS

    text = next(p for n, p in _all_parsers() if n == "gpusim sweep").format_help()
    for t in PROVIDERS:
        assert t in text, t


@pytest.mark.parametrize("argv", [
    ["search", "--n", "1e9", "--plot", "{tmp}/f.png", "--out", "{tmp}/run"],
    ["backtest", "--plot", "{tmp}/f.png", "--out", "{tmp}/run"],
])
def test_missing_matplotlib_fails_before_any_work(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    rc = main([a.format(tmp=tmp_path) for a in argv])
    cap = capsys.readouterr()
    assert rc == 2
    assert cap.err.strip() == "error: --plot needs matplotlib: pip install 'gpusim[plot]'"
    assert cap.out == "" and not (tmp_path / "run").exists()


def test_missing_dask_fails_before_the_folder(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    job = Path(__file__).resolve().parents[2] / "examples" / "sweep_backtest.toml"
    monkeypatch.setitem(sys.modules, "distributed", None)
    rc = main(["sweep", str(job), "--engine", "dask", "--out", str(tmp_path / "sw")])
    assert rc == 2
    assert "--engine dask needs distributed" in capsys.readouterr().err
    assert not (tmp_path / "sw").exists()
    # the API refuses the same way, before the folder
    from gpusim.errors import GpusimError
    from gpusim.sweep.engine import check_engine

    with pytest.raises(GpusimError, match="needs Dask"):
        check_engine("dask")


def test_missing_optuna_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)
    rc = main(["tune", str(tmp_path / "no_such_job.toml")])
    assert rc == 2
    assert capsys.readouterr().err.startswith("error: gpusim tune needs optuna")


def test_backtest_plot_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "eq.png"
    rc = main(["backtest", "--prices", "synthetic:3:120", "--rebalance", "never,M",
               "--no-progress", "--plot", str(png)])
    assert rc == 0 and png.stat().st_size > 1000
    assert f"wrote {png}" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["walkforward", "--prices", "synthetic:3:200", "--every", "M", "--num-tests", "50"],
    ["dynopt", "--synthetic", "3:200:1", "--capital", "1e6"],
])
def test_walkforward_and_dynopt_plot_write_a_png(argv, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "p.png"
    rc = main([*argv, "--no-progress", "--plot", str(png)])
    assert rc == 0 and png.stat().st_size > 1000
    assert capsys.readouterr().out.rstrip().endswith(f"wrote {png}")
