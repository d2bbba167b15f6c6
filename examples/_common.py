"""Shared bits of the example scripts: the command line (``--small``, ``--out DIR``) and the
real data of ``../shared/data`` when it is present (the scripts fall back to synthetic data).
"""

from __future__ import annotations

import argparse
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared(rel: str) -> Path | None:
    """``../shared/data/<rel>`` when it exists, else None."""
    p = SHARED_DATA / rel
    return p if p.exists() else None


def cli(doc: str) -> argparse.Namespace:
    """``--small`` (seconds, synthetic data: what the tests run) and ``--out DIR``."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--small", action="store_true", help="tiny sizes on synthetic data")
    p.add_argument("--out", metavar="DIR", default=None, help="save results (and pictures) here")
    return p.parse_args()


def can_plot() -> bool:
    """Whether matplotlib is installed (``pip install "gpusim[plot]"``)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True
