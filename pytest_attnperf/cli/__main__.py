"""``python -m pytest_attnperf.cli``: the ``attnperf`` command without its script."""

import sys

from .commands import main

sys.exit(main())
