"""The ``gpusim`` command line: search, backtest, simulate, walkforward, dynopt, sweep, tune,
verify, bench, info, selftest.

Every command prints one line ``error: ...`` on stderr and exits with status 2 on bad input
(never a traceback); Ctrl-C exits with 130 (a search interrupted mid-way still prints and saves
the best so far, marked partial).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gpusim.errors import GpusimError


def build_parser() -> argparse.ArgumentParser:
    """The ``gpusim`` parser with every sub-command."""
    from gpusim._version import __version__
    from gpusim.cli.backtest import add_parser as add_backtest
    from gpusim.cli.dynopt import add_parser as add_dynopt
    from gpusim.cli.info import add_parser as add_info
    from gpusim.cli.search import add_bench_parser, add_verify_parser
    from gpusim.cli.search import add_parser as add_search
    from gpusim.cli.selftest import add_parser as add_selftest
    from gpusim.cli.simulate import add_parser as add_simulate
    from gpusim.cli.sweep import add_parser as add_sweep
    from gpusim.cli.tune import add_parser as add_tune
    from gpusim.cli.walkforward import add_parser as add_walkforward

    p = argparse.ArgumentParser(prog="gpusim", description="Batch simulator for portfolio "
                                "research on CUDA GPUs, with a CPU fallback.")
    p.add_argument("--version", action="version", version=f"gpusim {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    add_search(sub)
    add_backtest(sub)
    add_simulate(sub)
    add_walkforward(sub)
    add_dynopt(sub)
    add_sweep(sub)
    add_tune(sub)
    add_verify_parser(sub)
    add_bench_parser(sub)
    add_info(sub)
    add_selftest(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``gpusim`` command line on ``argv`` (default: ``sys.argv[1:]``); returns the
    exit code.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    import warnings

    from gpusim.backend import BackendFallbackWarning
    from gpusim.errors import DataWarning

    warnings.simplefilter("ignore", BackendFallbackWarning)  # `gpusim info` says why
    warnings.simplefilter("ignore", DataWarning)             # printed as "warning: ..." lines
    try:
        return int(args.func(args) or 0)
    except (GpusimError, OSError) as exc:     # bad input, or an output path that fails
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
