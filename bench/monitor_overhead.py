"""Cost of adaptopt.monitor logging every k steps, against plain steps, interleaved in one run.

    python bench/monitor_overhead.py --size 1e7 --every 10 --rounds 30

Each round times a block of `every` plain Adam steps and a block of `every` logged steps (statistics
on for the logged step, a CSV row and TensorBoard scalars when tensorboardX is installed), the
order alternating, on the same optimizer and arrays (two optimizers' arrays can sit differently in
memory and differ by several percent on their own); prints the median time per step of each and
the overhead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np

import adaptopt as ao
from adaptopt import monitor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=float, default=1e7)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    n = int(args.size)
    g = np.random.default_rng(0).standard_normal(n).astype(np.float32) * 1e-2
    opt = ao.Adam([np.zeros(n, np.float32)])
    tmp = tempfile.mkdtemp()
    try:
        import tensorboardX  # noqa: F401
        kw = dict(logdir=os.path.join(tmp, "tb"))
    except ImportError:
        kw = {}
    logger = monitor.Logger(opt, every=args.every, csv=os.path.join(tmp, "run.csv"), **kw)
    for _ in range(2):
        opt.step([g])
        logger.log(loss=1.0)
    t_plain, t_logged = [], []
    for r in range(args.rounds):
        for which in (("plain", "logged") if r % 2 == 0 else ("logged", "plain")):
            if which == "plain":
                opt.track_stats = False
            else:
                logger._arm()  # statistics for the next step when the logger will log it
            t0 = time.perf_counter()
            for _ in range(args.every):
                opt.step([g])
                if which == "logged":
                    logger.log(loss=1.0)
            (t_plain if which == "plain" else t_logged).append((time.perf_counter() - t0) / args.every)
    logger.close()
    a, b = statistics.median(t_plain), statistics.median(t_logged)
    print(f"adaptopt {ao.__version__}, isa {ao.isa()}, {ao.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}")
    print(f"Adam step, {n:.0e} float32: plain {a * 1e3:.3f} ms, logged every {args.every} steps "
          f"{b * 1e3:.3f} ms per step (medians of {args.rounds} rounds): overhead {100 * (b / a - 1):+.1f}%")


if __name__ == "__main__":
    main()
