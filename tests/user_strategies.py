"""Tiny user strategies for the tests of ``--alloc`` / ``--optimize`` and of sweep jobs with
``alloc = "..."`` (loaded by file path: gpusim.strategy.loader)."""

import numpy as np


def band(c, params, targets):
    """New random targets (scaled by params[1], then normalised) whenever an asset drifts past
    params[0] = tau; holds otherwise."""
    tau = params[0]
    drift = 0.0
    for j in range(c.n_assets):
        drift = max(drift, abs(c.weights[j] - c.targets[j]))
    if c.t == 0 or drift >= tau:
        for j in range(c.n_assets):
            targets[j] = -np.log(c.uniform(j, 0)) * params[1]
        s = targets.sum()
        for j in range(c.n_assets):
            targets[j] /= s
        return True
    return False


def two_args(c, params):
    """A wrong signature for an allocation function."""
    return True


def inverse_vol(state):
    """Inverse-volatility weights over the last 40 bars (state.params["scale"] ** 0 = 1 keeps
    the answer; it only checks that params arrive)."""
    h = state.history.iloc[-40:]
    if len(h) < 20:
        return None
    v = h.pct_change().std().to_numpy() ** state.params.get("power", 1.0)
    w = 1.0 / v
    return w / w.sum()


def optimize_two_args(state, extra):
    """A wrong signature for an optimiser."""
    return None
