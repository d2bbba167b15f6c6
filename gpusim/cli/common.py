"""Pieces shared by the sub-command modules of :mod:`gpusim.cli`: the :class:`Command` wiring
(``add_parser``, ``build_parser``, ``run``, ``main``), the error-to-exit-code guard, the data
options of every command that takes prices (:func:`add_data_options`, :func:`load_market`),
argument checks, the result printers and the partial-result ending.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gpusim.errors import GpusimError

__all__ = [
    "DATA_EPILOG",
    "Command",
    "add_data_options",
    "add_plot_option",
    "add_subcommand",
    "check_output_paths",
    "check_ranking",
    "grid_run_line",
    "guarded",
    "load_market",
    "partial_exit",
    "print_json",
    "print_table",
    "printer",
    "records",
    "require",
    "standalone_parser",
    "table_format",
]


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
    """The parser of ``gpusim <name>`` used on its own (``python -m gpusim.cli.<name>``)."""
    p = argparse.ArgumentParser(prog=f"gpusim {name}", description=description, epilog=epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


def guarded(fn: Callable[[argparse.Namespace], int], args: argparse.Namespace,
            interrupted: str = "error: interrupted") -> int:
    """Run ``fn(args)`` and turn failures into one line on stderr and an exit code: 2 for bad
    input (GpusimError, OSError), 130 for Ctrl-C (``interrupted`` is printed), 0 when stdout
    was closed early (e.g. piped into ``head``).
    """
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


@dataclass(frozen=True)
class Command:
    """One sub-command of ``gpusim``: its texts, its arguments and the function that runs it.

    A sub-command module defines ``COMMAND = Command(...)`` and exposes its bound methods as
    ``add_parser, build_parser, run, main = COMMAND.functions()``. :meth:`run` turns errors into one
    line ``error: ...`` on stderr and an exit code (2 bad input, 130 Ctrl-C; :func:`guarded`),
    never a traceback.

    Attributes
    ----------
    name : the sub-command (``gpusim <name>``).
    help : one line for ``gpusim --help``.
    description, epilog : the text above and below the options in ``gpusim <name> --help``.
    add_arguments : adds the options to a parser.
    execute : runs the command with parsed arguments; returns the exit code.
    interrupted : the line printed on stderr when Ctrl-C stops it.
    """

    name: str
    help: str
    description: str
    epilog: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    execute: Callable[[argparse.Namespace], int]
    interrupted: str = "error: interrupted"

    def add_parser(self, subparsers: Any) -> argparse.ArgumentParser:
        """Add the sub-command to an ``argparse`` subparsers object (``func`` = :meth:`run`)."""
        return add_subcommand(subparsers, self.name, self.help, self.description, self.epilog,
                              self.add_arguments, self.run)

    def build_parser(self) -> argparse.ArgumentParser:
        """The sub-command's parser on its own (``python -m gpusim.cli.<name>``)."""
        return standalone_parser(self.name, self.description, self.epilog, self.add_arguments)

    def run(self, args: argparse.Namespace) -> int:
        """Execute the command with parsed ``args``; returns the exit code (0 ok, 2 bad input,
        130 interrupted; see :func:`guarded`).
        """
        return guarded(self.execute, args, self.interrupted)

    def main(self, argv: Sequence[str] | None = None) -> int:
        """Parse ``argv`` (default: ``sys.argv[1:]``) and run; returns the exit code."""
        return self.run(self.build_parser().parse_args(argv))

    def functions(self) -> tuple[Callable, Callable, Callable, Callable]:
        """``(add_parser, build_parser, run, main)``, the module-level functions of a
        sub-command module.
        """
        return self.add_parser, self.build_parser, self.run, self.main


# ----------------------------------------------------------------------------- data options
DATA_EPILOG = """data: --prices takes a CSV/Parquet file (dates x symbols), several files or a
quoted glob ('dir/*.csv', one file per symbol: --column close names the price column, the symbol is
the part of the file names that differs, e.g. Binance_BTCUSDT_1h.csv -> BTCUSDT, or
--symbol-from stem|re:PATTERN|column:symbol), or synthetic[:ASSETS[:BARS[:SEED]]]. --symbols
are chosen before --align common keeps the window where all of them have prices (printed, with
the listing that set it). Nothing is sorted, de-duplicated or filled unless asked (--sort,
--dedupe, --fill ffill); each says what it did on stderr. Dates: ISO text, YYYY-MM-DD HH-AM,
dd/mm/yyyy when the values show it (else --dayfirst/--monthfirst or --date-format), YYYYMMDD
or Unix-time integers; different UTC offsets are converted to UTC."""


def add_data_options(p: argparse.ArgumentParser, *, start: Sequence[str] = ("--start",),
                     end: Sequence[str] = ("--end",)) -> None:
    """Add the "data options" group (``--prices`` and every :func:`gpusim.load_prices` option
    under the same name) to a sub-command's parser. ``start`` / ``end`` are the flags of the
    date window (``--data-start`` / ``--data-end`` where a command uses ``--start`` already).
    """
    g = p.add_argument_group("data options (the same names as gpusim.load_prices)")
    g.add_argument("--prices", nargs="+", default=None, metavar="FILE",
                   help="price file(s) or a quoted glob ('dir/*.csv'), or "
                        "synthetic[:ASSETS[:BARS[:SEED]]] (default: synthetic, 5 assets x 756 "
                        "business days)")
    g.add_argument("--symbols", default=None, metavar="LIST",
                   help="comma list of symbols to use, chosen before alignment (default: all)")
    g.add_argument("--ann", type=float, default=None,
                   help="periods per year (default: inferred from the dates)")
    g.add_argument("--date-col", default=None, metavar="NAME",
                   help="the date column (default: a column named date/datetime/time/"
                        "timestamp, else the first)")
    g.add_argument("--column", default=None, metavar="NAME",
                   help="the price column of every file (OHLCV files: close); each file is "
                        "then one symbol")
    g.add_argument("--symbol-from", default="name", metavar="RULE",
                   help="symbol of each file read with --column: name (default: the part of "
                        "the file names that differs), stem, re:PATTERN or column:NAME")
    g.add_argument("--sort", action="store_true",
                   help="sort each file's rows by date (e.g. newest-first exports); says so")
    g.add_argument("--dedupe", nargs="?", const="exact", default=None,
                   choices=("exact", "first", "last"),
                   help="drop rows repeating a date: exact (the default of --dedupe: only when "
                        "their prices agree), first or last (keep that row of each date)")
    g.add_argument("--align", default="common", choices=("common", "none"),
                   help="common (default): the window where every symbol has a price; none: "
                        "every row, NaN is an error")
    g.add_argument("--fill", default=None, choices=("ffill",),
                   help="ffill: carry the last price forward over gaps inside the window")
    g.add_argument(*start, dest="data_start", default=None, metavar="DATE",
                   help="first date of the data (inclusive, before alignment)")
    g.add_argument(*end, dest="data_end", default=None, metavar="DATE",
                   help="last date of the data (inclusive)")
    g.add_argument("--date-format", default=None, metavar="FMT",
                   help="strftime format of text dates, e.g. %%d/%%m/%%Y")
    g.add_argument("--dayfirst", dest="dayfirst", action="store_const", const=True,
                   default=None, help="read NN/NN/YYYY dates day first")
    g.add_argument("--monthfirst", dest="dayfirst", action="store_const", const=False,
                   help="read NN/NN/YYYY dates month first")


def load_market(args: argparse.Namespace, say: Callable[..., None] | None = None):
    """The :class:`gpusim.Market` chosen by the data options of ``args``; prints what the
    loader did (sorting, de-duplication, filling, date rules, the window) with ``say``
    (default: on stderr).
    """
    from gpusim.data.load import market_from_spec

    symbols = ([s.strip() for s in args.symbols.split(",") if s.strip()]
               if args.symbols else None)
    market = market_from_spec(
        args.prices, ann=args.ann, symbols=symbols, start=args.data_start, end=args.data_end,
        date_col=args.date_col, column=args.column, symbol_from=args.symbol_from,
        sort=args.sort, dedupe=args.dedupe or False, align=args.align, fill=args.fill,
        date_format=args.date_format, dayfirst=args.dayfirst)
    say = say or (lambda *a: print(*a, file=sys.stderr))
    for note in market.load_notes:
        say(f"data: {note}")
    return market


def check_ranking(sort_by: str, top_k: int, metrics: Sequence[str]) -> None:
    """Validate ``--sort-by`` (a metric name) and ``--top-k`` (>= 1)."""
    if sort_by not in metrics:
        raise GpusimError(f"--sort-by {sort_by!r} is not a metric; use one of "
                          f"{', '.join(metrics)}")
    if top_k < 1:
        raise GpusimError(f"--top-k {top_k} must be >= 1")


OPTIONAL_PACKAGES = {
    "matplotlib": "pip install 'gpusim[plot]'",
    "distributed": "pip install 'gpusim[dask]' (or pip install 'dask[distributed]')",
    "optuna": "pip install 'gpusim[tune]' (or pip install optuna)",
}
"""Optional packages a command may need, and how to install each."""


def require(module: str, what: str) -> None:
    """Fail in one line, before any work or folder, when the optional package ``module``
    (a key of :data:`OPTIONAL_PACKAGES`) is not installed; ``what`` names what needs it
    (``"--engine dask"``). Looks the package up without importing it.
    """
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise GpusimError(f"{what} needs {module}: {OPTIONAL_PACKAGES[module]}")


def add_plot_option(p: argparse.ArgumentParser, what: str) -> None:
    """Add ``--plot PNG`` (``what``: the picture, in words) to a sub-command's parser."""
    p.add_argument("--plot", metavar="PNG", default=None,
                   help=f"write {what} to this PNG file (needs matplotlib)")


def check_output_paths(out: str | None = None, plot: str | None = None) -> None:
    """Fail before any work when ``--out DIR`` or ``--plot PNG`` cannot be written.

    Raises GpusimError (one line, exit 2) when ``--plot`` is a directory, matplotlib is missing,
    ``--out`` is an existing file, or the folder that would receive either cannot be written
    (probed by creating and removing a temporary file there), so that a run never computes for
    minutes and then leaves half of its outputs behind.
    """
    from pathlib import Path

    if plot is not None:
        p = Path(plot)
        if p.is_dir():
            raise GpusimError(f"--plot {plot!r} is a directory; give a PNG file name, e.g. "
                              f"--plot {p / 'frontier.png'}")
        _probe_folder(p.parent, "--plot", plot)
        require("matplotlib", "--plot")
    if out is not None:
        p = Path(out)
        if p.exists() and not p.is_dir():
            raise GpusimError(f"--out {out!r} is a file; give a folder (it is created)")
        _probe_folder(p if p.is_dir() else p.parent, "--out", out)


def _probe_folder(folder, flag: str, value: str) -> None:
    """Raise GpusimError unless a file can be created in ``folder`` (or its first existing
    ancestor, where the missing folders would be made).
    """
    import tempfile
    from pathlib import Path

    a = Path(folder).absolute()
    while not a.exists() and a != a.parent:
        a = a.parent
    try:
        if not a.is_dir():
            raise NotADirectoryError(f"{a} is not a folder")
        with tempfile.TemporaryFile(dir=a):
            pass
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise GpusimError(f"{flag} {value!r}: cannot write in {a} ({why}); choose a writable "
                          "folder") from None


def partial_exit(summary: dict, partial: bool) -> int:
    """Exit code of a grid command: 130 with a warning when it was interrupted, else 0."""
    if partial:
        print(f"warning: interrupted; {summary['n_done']} of {summary['n_combinations']} "
              "combinations done (partial results)", file=sys.stderr)
        return 130
    return 0


# ----------------------------------------------------------------------------- output
def printer(to_stderr: bool) -> Callable[..., None]:
    """``print``, or a print to stderr when stdout is kept for the JSON summary."""
    return (lambda *a: print(*a, file=sys.stderr)) if to_stderr else print


def table_format(fmt: str) -> str | None:
    """The ``fmt`` argument of a result's ``save`` for ``--format``: None for ``parquet``
    (Parquet, falling back to CSV when pyarrow is missing), else the format.
    """
    return None if fmt == "parquet" else fmt


def records(df) -> list[dict]:
    """The rows of a flat DataFrame as JSON-ready dicts (pandas' JSON conversion)."""
    return json.loads(df.to_json(orient="records"))


def print_json(summary: dict, **extra: Any) -> None:
    """Print ``summary`` and ``extra`` as one indented JSON object on stdout."""
    print(json.dumps({**summary, **extra}, indent=2, default=str))


def print_table(df, *, width: int = 200, max_columns: int | None = None,
                max_rows: int | None = None, groups=()) -> None:
    """Print a table for people (:func:`gpusim.tables.format_table`: rounded per column,
    every column, missing parameters in words; ``groups`` of columns share their decimals).
    ``max_columns`` is ignored (kept for callers).
    """
    from gpusim.tables import format_table

    print(format_table(df, width=width, max_rows=max_rows, groups=groups))


COMPILED_S = 0.5
"""A warm-up slower than this (seconds) compiled (a load from the disk cache takes less)."""


def grid_run_line(s: dict, steps: str, items: str) -> str:
    """The run line of a grid command, e.g. ``"36 of 36 combinations x 756 bars x 5 assets on
    cpu in 0.012 s (2.27e+06 combination-bars/s)"`` for ``steps="bars", items="assets"``, from
    a summary with keys ``n_<steps>``, ``n_<items>`` and ``combination_<steps>_per_s``.
    """
    from gpusim.compiling import compile_text

    rate = s[f"combination_{steps}_per_s"]
    cs = s.get("compile_s") or 0.0
    return (f"{s['n_done']} of {s['n_combinations']} combinations x {s[f'n_{steps}']} {steps} x "
            f"{s[f'n_{items}']} {items} on {s['backend']} in {s['elapsed_s']:.3f} s"
            + (f" ({rate:.3g} combination-{steps}/s)" if rate else "")
            + compile_text(cs, cs >= COMPILED_S))
