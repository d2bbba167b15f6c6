"""Pieces shared by the sub-command modules (``cli_backtest``, ``cli_dynopt``,
``cli_walkforward``, ``cli_sweep``): parser set-up, the error-to-exit-code guard, argument
checks and the partial-result ending."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from gpusim.errors import GpusimError


def add_subcommand(subparsers, name: str, help: str, description: str, epilog: str,
                   add_arguments: Callable, run: Callable) -> argparse.ArgumentParser:
    """Add sub-command ``name`` (arguments from ``add_arguments``, executed by ``run``)."""
    p = subparsers.add_parser(name, help=help, description=description, epilog=epilog,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def standalone_parser(name: str, description: str, epilog: str,
                      add_arguments: Callable) -> argparse.ArgumentParser:
    """The parser of ``gpusim <name>`` used on its own (``python -m gpusim.cli_<name>``)."""
    p = argparse.ArgumentParser(prog=f"gpusim {name}", description=description, epilog=epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


def guarded(fn: Callable[[argparse.Namespace], int], args: argparse.Namespace,
            interrupted: str = "error: interrupted") -> int:
    """Run ``fn(args)`` and turn failures into one line on stderr and an exit code: 2 for bad
    input (GpusimError, OSError), 130 for Ctrl-C (``interrupted`` is printed), 0 when stdout
    was closed early (e.g. piped into ``head``)."""
    try:
        return fn(args)
    except GpusimError as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
              file=sys.stderr)
        return 2
    except BrokenPipeError:
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130


def check_ranking(sort_by: str, top_k: int, metrics: Sequence[str]) -> None:
    """Validate ``--sort-by`` (a metric name) and ``--top-k`` (>= 1)."""
    if sort_by not in metrics:
        raise GpusimError(f"--sort-by {sort_by!r} is not a metric; use one of "
                          f"{', '.join(metrics)}")
    if top_k < 1:
        raise GpusimError(f"--top-k {top_k} must be >= 1")


def partial_exit(summary: dict, partial: bool) -> int:
    """Exit code of a grid command: 130 with a warning when it was interrupted, else 0."""
    if partial:
        print(f"warning: interrupted; {summary['n_done']} of {summary['n_combinations']} "
              "combinations done (partial results)", file=sys.stderr)
        return 130
    return 0
