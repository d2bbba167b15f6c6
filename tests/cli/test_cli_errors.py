"""Bad command lines from issue 16: one clear line on stderr and exit 2, never a traceback."""

import pytest

from gpusim.cli.main import main


@pytest.mark.parametrize("argv, words", [
    (["search", "--n", "inf"], "is not a finite count"),
    (["search", "--n", "nan"], "is not a finite count"),
    (["bench", "--assets", "-5"], "every asset count must be >= 1"),
    (["bench", "--assets", "0"], "every asset count must be >= 1"),
    (["bench", "--seconds", "0"], "--seconds 0 must be > 0"),
    (["dynopt", "--synthetic", "--years", "0"], "--years 0 must be > 0"),
    (["dynopt", "--synthetic", "--years", "-1"], "--years -1 must be > 0"),
    (["walkforward", "--gap", "--no-gap"], "not allowed with argument"),
])
def test_one_line_and_exit_2(argv, words, capsys):
    try:
        rc = main(argv)
    except SystemExit as exc:          # argparse's own errors
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2
    assert words in err and "Traceback" not in err


def test_output_paths_that_fail_are_one_line(tmp_path, capsys):
    not_a_file = tmp_path / "adir"
    not_a_file.mkdir()
    rc = main(["search", "--prices", "synthetic:3:60:1", "--n", "100", "--no-baselines",
               "--no-progress", "--plot", str(not_a_file)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1
    rc = main(["search", "--prices", "synthetic:3:60:1", "--n", "100", "--no-baselines",
               "--no-progress", "--out", "/proc/no/such/dir"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1


@pytest.mark.parametrize("command", ["search", "backtest", "walkforward", "dynopt"])
def test_unwritable_outputs_fail_before_any_work_and_leave_nothing(tmp_path, capsys, command,
                                                                   monkeypatch):
    """--out / --plot are checked before computing: one line naming the flag, exit 2, and no
    folder written (before, search wrote --out and then failed on --plot)."""
    import importlib

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    adir = tmp_path / "adir"
    adir.mkdir()
    loaded = []
    mod = importlib.import_module(f"gpusim.cli.{command}")
    for name in ("load_market", "dynopt_inputs"):
        if hasattr(mod, name):
            monkeypatch.setattr(mod, name, lambda *a, **k: loaded.append(1))
    cases = [(["--out", str(a_file)], "--out", "is a file"),
             (["--out", str(a_file / "sub")], "--out", "cannot write in"),
             (["--out", "/proc/x/y"], "--out", "cannot write in /proc")]
    if command == "search":
        cases += [(["--out", str(tmp_path / "res"), "--plot", str(adir)], "--plot",
                   "is a directory"),
                  (["--plot", str(a_file / "f.png")], "--plot", "cannot write in")]
    for extra, flag, words in cases:
        argv = [command, "--no-progress", *extra]
        rc = main(argv + (["--synthetic"] if command == "dynopt" else []))
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith(f"error: {flag} ") and words in err, (argv, err)
        assert err.count("\n") == 1
    assert not loaded and not (tmp_path / "res").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "adir"]
