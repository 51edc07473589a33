"""``python -m adaptopt.bench``: the same as ``adaptopt-bench``."""

import sys

from .cli import main

sys.exit(main())
