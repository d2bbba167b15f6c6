"""Argument checks: the one home of the small checks every public call makes.

One message style, one line: the argument and the value as given, what it must be, and where it
helps the fix — ``"risk_target=0 must be a finite number > 0"``,
``"n_bars=1 must be an integer >= 2 (one return needs two prices)"``. Each check returns the
value converted (``float`` / ``int``) and raises :class:`~gpusim.errors.GpusimError`, or the
subclass given as ``error`` (:class:`~gpusim.errors.DataError` for data arguments), so callers
keep catching what they caught before.

Also here: :func:`py_scalar` (NumPy scalar -> Python value, for messages and JSON) and
:func:`date_text` (a timestamp as text in messages and summaries).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from gpusim.errors import DataError, GpusimError

__all__ = [
    "cash_and_rate",
    "check_ann",
    "check_choice",
    "check_chunk_size",
    "date_text",
    "dirichlet_alpha",
    "integer",
    "listing",
    "number",
    "positive",
    "py_scalar",
    "whole_number",
]


def py_scalar(x: Any) -> Any:
    """``x`` as a plain Python value when it is a NumPy scalar (``np.float64(1.5)`` -> ``1.5``);
    anything else unchanged.
    """
    return x.item() if isinstance(x, np.generic) else x


def date_text(ts: Any, *, time: bool = True) -> str:
    """A timestamp as text: ``"2024-01-02"``, or ``"2024-01-02 13:30:00"`` when it has a time.

    Parameters
    ----------
    ts : anything ``pd.Timestamp`` reads (Timestamp, datetime, str, datetime64).
    time : bool
        True (default): the date alone when the time is midnight, else the ISO date and time.
        False: always the date alone (for daily data, whose rows may carry a close time).
    """
    ts = pd.Timestamp(ts)
    try:
        if not time or ts == ts.normalize():
            return ts.date().isoformat()
        return ts.isoformat(sep=" ")
    except (ValueError, NotImplementedError, OverflowError):  # outside Python's datetime range
        return str(ts)


def listing(names: Any, limit: int = 25) -> str:
    """Names joined by ``", "`` for a message, the first ``limit`` of them then
    ``", ... (N in total)"``.
    """
    names = [str(n) for n in names]
    more = f", ... ({len(names)} in total)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def number(value: Any, name: str, *, expect: str = "a number",
           error: type[GpusimError] = GpusimError) -> float:
    """``float(value)``; a value that is not a number raises ``"{name}={value!r} must be
    {expect}"`` (``expect`` says what the argument takes, e.g. ``"a number in [0, 1)"``).
    """
    try:
        return float(py_scalar(value))
    except (TypeError, ValueError):
        raise error(f"{name}={py_scalar(value)!r} must be {expect}") from None


def positive(value: Any, name: str, *, allow_zero: bool = False, fix: str = "",
             error: type[GpusimError] = GpusimError) -> float:
    """A finite number > 0 (``>= 0`` with ``allow_zero``) as a float.

    Raises ``error`` with ``"{name}={value!r} must be a number{fix}"`` or
    ``"{name}={value!r} must be a finite number > 0{fix}"`` (``>= 0``); NumPy scalars are shown
    as plain values.
    """
    x = py_scalar(value)
    v = number(x, name, expect=f"a number{fix}", error=error)
    ok = v >= 0 if allow_zero else v > 0
    if not (ok and math.isfinite(v)):
        raise error(f"{name}={x!r} must be a finite number {'>= 0' if allow_zero else '> 0'}{fix}")
    return v


def check_ann(ann: Any, *, error: type[GpusimError] = DataError) -> float:
    """``ann=``, bars per year: a finite number > 0 (:func:`positive`; ``DataError`` by default)."""
    return positive(ann, "ann", fix="; pass bars per year, e.g. ann=252 for daily bars",
                    error=error)


def cash_and_rate(init_cash: Any, rf: Any) -> tuple[float, float]:
    """``(init_cash, rf)`` as floats: the starting cash a finite number > 0, ``rf`` a finite
    annual rate (the messages show the values converted to float).
    """
    cash = positive(number(init_cash, "init_cash"), "init_cash")
    rate = number(rf, "rf", expect="a finite annual rate")
    if not math.isfinite(rate):
        raise GpusimError(f"rf={rate!r} must be a finite annual rate")
    return cash, rate


def integer(value: Any, name: str, lo: int, hi: int | None = None, *, expect: str | None = None,
            fix: str = "", error: type[GpusimError] = GpusimError) -> int:
    """An ``int`` (Python or NumPy integer, not a bool; ``5.0`` is refused) with
    ``lo <= value`` (``<= hi`` when given).

    The message is ``"{name}={value!r} must be {expect}{fix}"``; ``expect`` defaults to
    ``"an int >= {lo}"`` (``"an int in {lo}..{hi}"`` with ``hi``).
    """
    ok = (not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, np.integer))
          and lo <= value and (hi is None or value <= hi))
    if not ok:
        if expect is None:
            expect = f"an int >= {lo}" if hi is None else f"an int in {lo}..{hi}"
        raise error(f"{name}={value!r} must be {expect}{fix}")
    return int(value)


def whole_number(value: Any, name: str, lo: int, *, fix: str = "",
                 error: type[GpusimError] = GpusimError) -> int:
    """A number with an integer value ``>= lo`` (``5`` and ``5.0`` both give ``5``).

    The message is ``"{name}={value!r} must be an integer >= {lo}{fix}"``; it is also raised for
    values that are not numbers, NaN and infinities.
    """
    try:
        ok = int(value) == value and value >= lo
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise error(f"{name}={value!r} must be an integer >= {lo}{fix}")
    return int(value)


def check_chunk_size(value: Any) -> int | None:
    """``chunk_size=``: None (the call plans it) or an int >= 1."""
    if value is None:
        return None
    return integer(value, "chunk_size", 1, fix=" (or None to plan it)")


LN_TINY = 744.44
"""-ln of the smallest positive float64 (2**-1074): a Gamma(alpha) draw ``g * u**(1/alpha)``
underflows to 0 when ``u < exp(-LN_TINY * alpha)``, with probability ``exp(-LN_TINY * alpha)``."""
UNDEFINED_SHARE = 1e-15
"""Largest share of candidates allowed to have every draw underflow (no weights at all)."""


def dirichlet_alpha(alpha: Any, n_assets: int, name: str = "alpha") -> float:
    """The Dirichlet concentration ``alpha`` as a float, within its valid range for
    ``n_assets``: a finite number >= ``ln(1/UNDEFINED_SHARE) / (LN_TINY * n_assets)``
    (0.0464 / n_assets; below it the Gamma draws of a whole candidate all underflow to 0 too
    often, and that candidate has no weights). The message names ``--alpha`` too.
    """
    a = number(alpha, name, expect="a positive concentration (1 = flat)")
    floor = math.log(1.0 / UNDEFINED_SHARE) / (LN_TINY * max(int(n_assets), 1))
    if not (math.isfinite(a) and a >= floor):
        raise GpusimError(
            f"{name}={py_scalar(alpha)!r} (--alpha) must be a finite Dirichlet concentration "
            f">= {floor:.3g} for {n_assets} assets (below it the Gamma draws of a candidate "
            f"all underflow to 0: no weights); 1 is flat, < 1 favours few assets")
    return a


def check_choice(value: Any, name: str, choices, *, cli: str | None = None,
                 error: type[GpusimError] = GpusimError) -> Any:
    """``value`` when it is one of ``choices`` (strings by ``==``, None/True/False by identity,
    so ``0`` is not ``False``), else
    ``"{name}={value!r} is not valid; use one of 'a', 'b'"`` (``cli``, e.g. ``"--align"``, is
    named beside ``name``: ``"align='x' (--align) is not valid; ..."``).
    """
    ok = any(value is c or (isinstance(c, str) and isinstance(value, str) and value == c)
             for c in choices)
    if not ok:
        flag = f" ({cli})" if cli else ""
        valid = ", ".join(map(repr, choices))
        raise error(f"{name}={value!r}{flag} is not valid; use one of {valid}")
    return value
