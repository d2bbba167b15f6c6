"""Results that can be reproduced from their own files (issue 16, item 9): seeds, data, versions."""

import json

from gpusim.cli.dynopt import main as dynopt_main
from gpusim.cli.walkforward import main as wf_main


def test_dynopt_synthetic_summary_records_its_seed(tmp_path):
    assert dynopt_main(["--synthetic", "4:300:7", "--out", str(tmp_path / "d"),
                        "--no-progress", "--backend", "cpu"]) == 0
    s = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert s["data"] == {"synthetic_futures": {"n_instruments": 4, "n_days": 300, "seed": 7}}
    assert "gpusim" in s["versions"]


def test_walkforward_summary_has_versions_and_data(tmp_path):
    assert wf_main(["--prices", "synthetic:4:300:3", "--lookback", "60", "--num-tests", "50",
                    "--out", str(tmp_path / "w"), "--no-progress", "--backend", "cpu"]) == 0
    s = json.loads((tmp_path / "w" / "summary.json").read_text())
    assert s["versions"]["gpusim"] and s["versions"]["numpy"]
    assert s["data"]["name"] == "synthetic(seed=3)" and s["data"]["n_bars"] == 300
    assert s["seed"] == 0
