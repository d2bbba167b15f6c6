"""``python -m gpusim``: the command line, the same as the ``gpusim`` command."""

import sys

from gpusim.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
