"""The venv imports the installed wheel (not the source tree) and, after a threaded step, maps
only the bundled OpenMP runtime.

Usage: installed.py SITE_PACKAGES"""

from __future__ import annotations

import os
import sys
import numpy as np
import adaptopt
import adaptopt._core


def main() -> None:
    site = os.path.realpath(sys.argv[1]) + os.sep
    for mod in (adaptopt, adaptopt._core):
        assert os.path.realpath(mod.__file__).startswith(site), f"{mod.__name__} from {mod.__file__}"
    # A threaded step, then: the only OpenMP runtime mapped is the bundled one.
    adaptopt.set_num_threads(2)
    adaptopt._core.set_parallel_threshold(1)
    p = np.zeros(1000, np.float32)
    adaptopt.Adam([p]).step([np.ones_like(p)])
    gomp = {line.split()[-1] for line in open("/proc/self/maps") if "libgomp" in line}
    assert gomp and all(os.path.realpath(g).startswith(site) for g in gomp), f"libgomp mapped: {gomp}"
    print(f"adaptopt {adaptopt.__version__} from {adaptopt.__file__}, isa {adaptopt.isa()}, "
          f"libgomp {sorted(gomp)}")


if __name__ == "__main__":
    main()
