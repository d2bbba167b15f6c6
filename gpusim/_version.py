"""The version of gpusim, in a leaf module: library code reads it from here (importing the
``gpusim`` package itself from a submodule would be an import cycle), and ``pyproject.toml``
reads it at build time (``[tool.setuptools.dynamic]``).
"""

__version__ = "0.1.0"
