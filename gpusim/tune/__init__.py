"""Tuning strategy parameters with Optuna instead of a full grid (DESIGN §12).

:func:`gpusim.tune` (in :mod:`gpusim.tune.api`) proposes batches of trials over a space of a
task's parameters with Optuna's TPE (ask/tell, seeded) and evaluates each batch as one grid call
of the task (:mod:`gpusim.tune.targets`); :mod:`gpusim.tune.space` parses the spaces,
:mod:`gpusim.tune.result` holds the trials table, the best parameters and the comparison with
the full grid; :mod:`gpusim.tune.job` reads the ``gpusim tune`` job files, and
:mod:`gpusim.tune.task` is the ``tune`` sweep task (one study per point of a sweep).

Optuna is an extra (``pip install "gpusim[tune]"``): nothing here imports it at module level.
"""
