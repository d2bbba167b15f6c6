"""The gpusim command line, end to end (in-process: gpusim.cli.main.main)."""

import json

import pandas as pd
import pytest

from gpusim.cli.main import main


def test_search_default_market_writes_outputs(tmp_path, capsys):
    out = tmp_path / "results"
    rc = main(["search", "--n", "2e5", "--top-k", "4", "--seed", "7", "--out", str(out),
               "--no-progress", "--format", "csv"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "Top 4 by ex-ante Sharpe" in text and "exact max sharpe" in text and "Gap:" in text
    top = pd.read_csv(out / "top_k.csv", index_col="rank")
    assert len(top) == 4 and list(top.columns[:4]) == ["candidate", "sharpe", "expected_return",
                                                       "expected_volatility"]
    summ = json.loads((out / "summary.json").read_text())
    assert summ["n"] == 200_000 and summ["seed"] == 7 and summ["backend"] == "cpu"
    assert summ["best_sharpe"] == pytest.approx(top["sharpe"].iloc[0], rel=1e-15)
    assert main(["verify", str(out), "--sample", "5000"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_search_json_to_stdout_only(capsys):
    rc = main(["search", "--prices", "synthetic:3:200:1", "--n", "10^4", "--json",
               "--no-progress", "--no-baselines", "--sampler", "uniform"])
    assert rc == 0
    cap = capsys.readouterr()
    summ = json.loads(cap.out)  # stdout is exactly the JSON summary
    assert summ["sampler"] == "uniform" and summ["n_assets"] == 3 and summ["n"] == 10_000
    assert "Top 10" in cap.err


def test_search_with_prices_file_and_plot(tmp_path, capsys):
    from gpusim import synthetic_market

    m = synthetic_market(n_assets=4, n_bars=260, seed=5)
    csv = tmp_path / "prices.csv"
    m.prices.to_csv(csv, index_label="date")
    png = tmp_path / "plots" / "frontier.png"
    rc = main(["search", "--prices", str(csv), "--n", "50000", "--plot", str(png),
               "--no-progress", "--hi", "0.6"])
    assert rc == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "within the upper bounds" in capsys.readouterr().out


@pytest.mark.parametrize("argv,needle", [
    (["search", "--n", "0"], "n=0"),
    (["search", "--sampler", "sobol", "--n", "10"], "sampler='sobol' is unknown"),
    (["search", "--backend", "tpu", "--n", "10"], "backend='tpu' is not a backend"),
    (["search", "--lo", "0.3", "--n", "10"], "simplex empty"),
    (["search", "--prices", "/nonexistent/p.csv"], "not found"),
    (["verify", "/nonexistent"], "summary.json not found"),
])
def test_bad_input_one_line_nonzero_exit(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and needle in err and "\n" not in err
    assert "Traceback" not in err


def test_bad_prices_names_column_and_date(tmp_path, capsys):
    p = tmp_path / "bad.csv"
    p.write_text("date,AAA,BBB\n2024-01-01,1,2\n2024-01-02,-1,2\n2024-01-03,1,2\n")
    assert main(["search", "--prices", str(p), "--n", "10"]) == 2
    err = capsys.readouterr().err
    assert "AAA" in err and "2024-01-02" in err and err.count("\n") == 1
    p.write_text("date,AAA\n2024-01-01,1\n")
    assert main(["search", "--prices", str(p), "--n", "10"]) == 2
    assert "row" in capsys.readouterr().err


def test_info_lists_backends(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("cpu ") and "gpu-simulator  yes" in out


def test_console_script_entry_point():
    from importlib.metadata import entry_points

    eps = [e for e in entry_points(group="console_scripts") if e.name == "gpusim"]
    if not eps:
        pytest.skip("package not installed (run via pip install)")
    assert eps[0].value == "gpusim.cli.main:main"


def test_python_dash_m_gpusim_runs_the_cli():
    import os
    import subprocess
    import sys
    from pathlib import Path

    import gpusim

    env = dict(os.environ)
    env["PYTHONPATH"] = (str(Path(__file__).resolve().parents[2]) + os.pathsep
                         + env.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-m", "gpusim", "--version"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == f"gpusim {gpusim.__version__}"
    p = subprocess.run([sys.executable, "-m", "gpusim", "backtest", "--fees", "2",
                        "--no-progress"], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and p.stderr.startswith("error: ") and p.stderr.count("\n") == 1
