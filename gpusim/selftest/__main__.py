"""``python -m gpusim.selftest``: the GPU check (see :mod:`gpusim.selftest`)."""

import sys

from gpusim.selftest import main

sys.exit(main())
