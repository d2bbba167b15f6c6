"""docs/ builds with ``mkdocs build --strict`` (no broken link, no unknown page, every API
object found and its docstring parsed), and every page of docs/ is in the navigation.

Skipped when mkdocs or mkdocstrings is not installed (both are in the dev extra).
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert pages and all(f" {p}" in nav for p in pages), pages


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("mkdocstrings_handlers.python")
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q",
                        "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    ref = (tmp_path / "site" / "reference" / "index.html").read_text()
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", ref))
    # the API reference really came from the docstrings
    for words in ("Score candidates start", "Walk-forward re-optimisation over the grid",
                  "Exact maximum-Sharpe portfolio"):
        assert words in text, words
    guide = (tmp_path / "site" / "search" / "index.html").read_text()
    assert "gpusim search" in guide
