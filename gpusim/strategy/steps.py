"""Per-combination body of a user-function backtest, compiled for the CPU and the GPU.

:func:`simulate_alloc` is the whole work of one combination: it is a plain Python body whose
globals (the backtest's step functions ``portfolio_value``, ``rebalance``, ``bar_update``,
``write_metrics`` of :mod:`gpusim.backtest.steps`, the user's function ``alloc`` and the RNG
``uniform``) are bound per target by :func:`cpu_ref.jitting.compile_bodies`: the same fills,
fees and online metrics as the built-in rules, bit for bit.

Scratch per column ``col``: ``h``, ``oval``, ``order`` and ``cur`` (current weights, seen by
the function as the column ``cur[:, col]``) are (A, ncols) as in the backtest's step bodies;
``tin`` (targets in force) and ``prop`` (the targets the function writes) are (ncols, A) rows,
so the targets the user function writes are contiguous.
"""

from __future__ import annotations

from collections import namedtuple

State = namedtuple("State", ["t", "n_assets", "n_bars", "close", "weights", "targets",
                             "holdings", "cash", "value", "last_rebalance", "key", "stream"])
"""What an allocation function reads at bar ``t`` (before any order).

``t`` bar; ``n_assets`` A; ``n_bars`` T; ``close`` (t+1, A) closes of bars 0..t; ``weights``
(A,) current weights h_j p_j / V (0 when V <= 0); ``targets`` (A,) targets in force;
``holdings`` (A,) units; ``cash``; ``value`` V_t; ``last_rebalance`` bar of the last rebalance
(-1 before bar 0); ``key``, ``stream`` the random stream of ``c.uniform(j, k)``.
"""

UNIFORM_NAME = "__gpusim_uniform__"
"""Global name that ``c.uniform(j, k)`` is rewritten to in the user's function."""


def state_uniform(c, j, k=0):
    """U(0, 1) of the counter-based stream (DESIGN §4) for candidate ``stream * T + t``,
    asset ``j``, draw ``k``: what ``c.uniform(j, k)`` means in an allocation function.
    """
    return uniform(c.key, c.stream * c.n_bars + c.t, j, k)  # noqa: F821 (bound per target)


def simulate_alloc(close, W, wi, mask, params, fee, acct, rng, scratch, col, out, c):
    """Simulate one combination driven by ``alloc``; write its 11 metrics to ``out[c]``.

    ``close`` (T, A); ``W[wi]`` (A,) the targets in force before bar 0; ``mask`` (T,) bool bars
    at which ``alloc`` is called (bar 0 always, and bar 0 always rebalances); ``params`` (P,)
    the parameter row; ``fee``; ``acct = (init_cash, ann, rf)``; ``rng = (key, stream)``;
    ``scratch = (h, oval, order, cur, tin, prop)``.
    """
    init_cash, ann, rf = acct
    key, stream = rng
    h, oval, order, cur, tin, prop = scratch
    T = close.shape[0]
    A = close.shape[1]
    for j in range(A):
        h[j, col] = 0.0
        tin[col, j] = W[wi, j]
    rf_bar = rf / ann
    cash = init_cash
    v_prev = init_cash
    acc = (0.0, 0.0, 0.0, -_INF, 0.0, 0.0)  # online metrics, see backtest.steps.bar_update
    traded = 0.0
    fees = 0.0
    nreb = 0
    last = -1
    for t in range(T):
        v = portfolio_value(close, t, cash, h, col)  # noqa: F821
        do = False
        if t == 0 or mask[t]:
            for j in range(A):
                cur[j, col] = h[j, col] * close[t, j] / v if v > 0.0 else 0.0
                prop[col, j] = tin[col, j]
            state = State(t, A, T, close[:t + 1], cur[:, col], tin[col], h[:, col], cash, v, last,
                          key, stream)
            do = alloc(state, params, prop[col])  # noqa: F821
            if t == 0:
                do = True
            if do:
                for j in range(A):
                    tin[col, j] = prop[col, j]
        if do:
            cash, tr, fe = rebalance(close, t, v, cash, tin, col, h, oval, order, col,  # noqa
                                     fee)
            traded += tr
            fees += fe
            nreb += 1
            last = t
            v = portfolio_value(close, t, cash, h, col)  # noqa: F821
        acc = bar_update(t, v / v_prev - 1.0, v, rf_bar, acc)  # noqa: F821
        v_prev = v
    write_metrics(out, c, T, acct, v, acc, traded, fees, nreb)  # noqa: F821


_INF = float("inf")


def step_overrides(backtest_bodies: dict, alloc, uniform) -> dict:
    """Names that :func:`simulate_alloc` and :func:`state_uniform` call, bound to one target's
    compiled functions: the backtest's step bodies, the user's ``alloc`` and the RNG ``uniform``.
    """
    return {"portfolio_value": backtest_bodies["portfolio_value"],
            "rebalance": backtest_bodies["rebalance"],
            "bar_update": backtest_bodies["bar_update"],
            "write_metrics": backtest_bodies["write_metrics"],
            "alloc": alloc, "uniform": uniform}
