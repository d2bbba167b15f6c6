"""Tuning the parameters of a user allocation function (``gpusim.tune("backtest", ...)`` with
``alloc`` fixed).

With ``alloc`` among the fixed arguments of a backtest study, the names of the space and of the
fixed arguments that are not arguments of ``gpusim.backtest`` are the function's parameters,
exactly as in a backtest sweep job with ``alloc`` (:mod:`gpusim.strategy.alloc_sweep`)::

    gpusim.tune("backtest", market, space={"tau": (0.005, 0.2), "fees": [0.0, 0.001]},
                fixed={"alloc": band, "params": ["tau", "k"], "k": 3, "seed": 7})

* ``params = [...]`` (a list of names) is the order of the function's params row
  (``params[0]``, ``params[1]``, ...); it is needed when the function has two or more
  parameters, and then every such name must be in it. Fixed parameters are keys of ``fixed``
  (``k = 3``), tuned ones keys of ``space``.
* A batch of trials is one ``gpusim.backtest(alloc=fn, params={"tau": Param(values,
  level="trial"), "k": 3}, fees=Param(values, level="trial"), ...)`` call: the tuned
  parameters of the function, ``rebalance`` and ``fees`` are zipped levels of the trial;
  ``weights``, ``init_cash``, ``rf`` and ``seed`` split a batch into one call per value.
* **Random stream of a trial**: tuning always shares the draws of ``c.uniform`` across the trial
  level (``share_draws`` = the tuned levels), so every trial gets stream 0 — the stream of a
  direct call of its own values, ``gpusim.backtest(alloc=fn, params={"tau": 0.05, "k": 3},
  fees=0.001, seed=7)`` — and its metrics equal that call bit for bit, whatever batch it ran in
  (and the rows of ``compare_grid()`` equal direct calls the same way). ``share_draws`` is
  therefore not a fixed argument of a study.
* ``threshold``, ``threshold_abs``, ``band`` and ``relative`` do not apply (the function tests
  the drift itself); ``alloc``, ``params`` and ``share_draws`` cannot be tuned.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from gpusim.errors import GpusimError
from gpusim.strategy.alloc_sweep import CALL, KEYS, NATIVE, NOT_WITH_ALLOC
from gpusim.validate import listing

__all__ = ["ALLOC_SWEPT", "alloc_kwargs", "alloc_label", "check_alloc", "function_params",
           "load_alloc", "uses_alloc"]

ALLOC_SWEPT = ("rebalance", "fees")
"""Backtest arguments a batch sweeps inside one call with alloc (besides the function's)."""

_FORMS = "a function, \"FILE.py:NAME\" or \"package.module:NAME\""


def uses_alloc(target, fixed: Mapping[str, Any]) -> bool:
    """True for a backtest study with an allocation function among its fixed arguments."""
    return target.name == "backtest" and fixed.get("alloc") is not None


def function_params(args: Sequence[str], names: Sequence[str], fixed: Mapping[str, Any]
                    ) -> list[str]:
    """The function's parameter names in the order of its params row (checked).

    Parameters
    ----------
    args : the arguments of ``gpusim.backtest`` (:meth:`gpusim.tune.targets.Target.arguments`).
    names : the tuned names (the space's), in order.
    fixed : the fixed arguments of the study.

    Returns
    -------
    list of str
        With ``fixed["params"]`` (a list), that list; else the one name of the space and of
        ``fixed`` that is not a backtest argument (an empty list when there is none).
    """
    others = list(dict.fromkeys(n for n in [*names, *fixed] if n not in args))
    order = fixed.get("params")
    if order is None:
        if len(others) > 1:
            eg = ", ".join(repr(n) for n in others)
            raise GpusimError(f"alloc: {listing(others)} are parameters of the function; give "
                              f"the order of its params row in fixed, e.g. params=[{eg}] "
                              f"(params = [{eg}] in a job's [fixed])".replace("'", '"'))
        return others
    if not isinstance(order, list | tuple) or not all(isinstance(n, str) for n in order):
        raise GpusimError(f"fixed: params={order!r} must be the list of the function's "
                          "parameter names in the order of its params row, e.g. params=['tau', "
                          "'k']; give a fixed parameter's value as its own key (k=3)")
    bad = [n for n in order if n in args or not n.isidentifier()]
    if bad or len(set(order)) != len(order):
        raise GpusimError(f"fixed: params={list(order)!r}: names must be distinct identifiers "
                          f"and not arguments of gpusim.backtest (got {listing(bad or order)})")
    unknown = [n for n in others if n not in order]
    if unknown:
        raise GpusimError(f"{listing(unknown)} is not an argument of gpusim.backtest nor a name "
                          f"of params={list(order)}; add it to params or drop it")
    missing = [n for n in order if n not in others]
    if missing:
        raise GpusimError(f"params names {listing(missing)} but the study gives it no value; "
                          "tune it in space or give it in fixed")
    return list(order)


def check_alloc(args: Sequence[str], dims: Sequence, fixed: Mapping[str, Any]) -> list[str]:
    """The checks of a backtest study with ``alloc`` (one line each); returns the function's
    parameter names in row order. Loads and checks the function (a bad spec, a wrong
    signature).
    """
    names = [d.name for d in dims]
    from gpusim.strategy.api import not_with_alloc

    given = [n for n in NOT_WITH_ALLOC if n in names or n in fixed]
    if given:
        raise not_with_alloc(given[0], NOT_WITH_ALLOC,
                             where="space" if given[0] in names else "fixed")
    tuned = [n for n in KEYS if n in names]
    if tuned:
        raise GpusimError(f"space: {tuned[0]} cannot be tuned; give it in fixed (one function "
                          "per study)")
    if "share_draws" in fixed:
        raise GpusimError("fixed: share_draws is not taken by a study: tuning shares the draws "
                          "across trials, so each trial gets the random stream of a direct call "
                          "of its own values; drop share_draws")
    order = function_params(args, names, fixed)
    from gpusim.strategy.compile import prepare

    prepare(load_alloc(fixed["alloc"]), "fixed.alloc")
    return order


def load_alloc(v: Any):
    """The function of a fixed ``alloc``: loaded from its spec (text) or the function itself."""
    if isinstance(v, str):
        from gpusim.strategy.loader import load_function

        return load_function(v, what="fixed.alloc")
    if not callable(v):
        raise GpusimError(f"fixed.alloc={v!r} must be {_FORMS}")
    return v


def alloc_label(v: Any) -> str:
    """What a summary records of ``alloc``: its spec, or ``FILE.py:NAME`` for a function loaded
    from a file, else ``module:qualname``.
    """
    if isinstance(v, str):
        return v
    from gpusim.strategy.alloc_sweep import _fn_spec

    s = _fn_spec(v)
    if isinstance(s, str):
        return s
    fn = getattr(v, "py_func", v)
    mod = getattr(fn, "__module__", None) or "?"
    return f"{mod}:{getattr(fn, '__qualname__', repr(fn))}" if mod in sys.modules else repr(fn)


def alloc_kwargs(kw: Mapping[str, Any], order: Sequence[str]) -> dict:
    """A backtest call's keyword arguments in the form ``gpusim.backtest(alloc=...)`` takes:
    the function's parameters (values or trial Params) moved into ``params`` in row order, and
    ``share_draws`` set to the tuned levels when there are any (see the module docstring).
    """
    from gpusim.grid import Param

    out = {k: v for k, v in kw.items() if k not in order and k != "params"}
    out["params"] = {n: kw[n] for n in order}
    swept = [n for n in [*order, *NATIVE, *CALL] if n in kw and isinstance(kw[n], Param)]
    if swept:
        out["share_draws"] = [swept[0]]      # the trial level: one zip group
    return out
