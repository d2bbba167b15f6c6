"""The ``gpusim`` command line: thin layers that parse arguments, call the API and print.

``main.py`` is the dispatcher (:func:`gpusim.cli.main.main`, the ``gpusim`` command and
``python -m gpusim``); ``common.py`` holds the wiring of a sub-command (:class:`Command`), the
error-to-exit-code guard and the result printers; each sub-command has a module: ``search.py``
(search, verify, bench), ``backtest.py``, ``simulate.py``, ``walkforward.py``, ``dynopt.py``,
``sweep.py``, ``info.py``. Text values shared with sweep job files are parsed by
:mod:`gpusim.parse`. The library never imports this package.
"""
