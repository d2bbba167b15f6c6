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
