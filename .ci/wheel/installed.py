"""The venv imports the installed wheel (not the source tree) and, after a threaded step, maps
no OpenMP runtime and runs adaptopt's own pool (its worker thread is named adaptopt-1).

Usage: installed.py SITE_PACKAGES"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import adaptopt
import adaptopt._core


def main() -> None:
    site = os.path.realpath(sys.argv[1]) + os.sep
    for mod in (adaptopt, adaptopt._core):
        assert os.path.realpath(mod.__file__).startswith(site), f"{mod.__name__} from {mod.__file__}"
    # A threaded step (more than one 4096-element chunk), then: no OpenMP runtime is mapped and
    # adaptopt's own pool has started its worker.
    adaptopt.set_num_threads(2)
    adaptopt._core.set_parallel_threshold(1)
    p = np.zeros(100_000, np.float32)
    adaptopt.Adam([p]).step([np.ones_like(p)])
    omp = {line.split()[-1] for line in open("/proc/self/maps")
           if any(lib in line for lib in ("libgomp", "libiomp", "libomp"))}
    assert not omp, f"an OpenMP runtime is mapped: {omp}"
    deadline = time.monotonic() + 10  # the worker names itself when it first runs
    while True:
        names = sorted(open(f"/proc/self/task/{t}/comm").read().strip()
                       for t in os.listdir("/proc/self/task"))
        if "adaptopt-1" in names or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert "adaptopt-1" in names, f"no adaptopt worker thread: {names}"
    print(f"adaptopt {adaptopt.__version__} from {adaptopt.__file__}, isa {adaptopt.isa()}, "
          f"threads {names}")

if __name__ == "__main__":
    main()
