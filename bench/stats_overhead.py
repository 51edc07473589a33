"""Cost of track_stats=True (statistics computed in the update pass) over the plain step.

Usage: python bench/stats_overhead.py [--size 1e7] [--threads 2] [--repeats 30] [--algos adam,sgd]
Prints, per benchmark configuration (every variant of every rule spec, as adaptopt-bench names
them), the median step time without and with statistics (interleaved in one run) and the
overhead in percent. Also reports the cost of max_grad_norm (one extra read of the gradients)
for comparison.
"""

from __future__ import annotations

import argparse
import time

import adaptopt as ao
import numpy as np
from adaptopt.bench import algos

OPTIONS = {"plain": {}, "track_stats": {"track_stats": True}, "max_grad_norm": {"max_grad_norm": 1e9}}


def main() -> None:
    table = algos.by_name()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=float, default=1e7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--algos", help="comma list (default: all): " + ", ".join(table))
    args = ap.parse_args()
    names = args.algos.split(",") if args.algos else list(table)
    unknown = sorted(set(names) - set(table))
    if unknown:
        ap.error(f"unknown configuration(s) {', '.join(unknown)}; choose from {', '.join(table)}")
    n = int(args.size)
    ao.set_num_threads(args.threads)
    g = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    print(f"size {n:.0e} float32, {args.threads} threads, isa {ao.isa()}, median of {args.repeats}")
    print(f"{'algorithm':18s} {'plain ms':>9s} {'stats ms':>9s} {'stats +%':>9s} {'clip ms':>9s} {'clip +%':>8s}")
    for name in names:
        opts = {v: table[name].make([np.zeros(n, np.float32)], **kw) for v, kw in OPTIONS.items()}
        times: dict[str, list[float]] = {v: [] for v in OPTIONS}
        for opt in opts.values():
            opt.step([g])  # creates state, pages memory in
        for _ in range(args.repeats):  # interleaved, so drift affects every variant alike
            for v, opt in opts.items():
                t0 = time.perf_counter()
                opt.step([g])
                times[v].append(time.perf_counter() - t0)
        med = {v: float(np.median(t)) * 1e3 for v, t in times.items()}
        print(f"{name:18s} {med['plain']:9.2f} {med['track_stats']:9.2f} "
              f"{100 * (med['track_stats'] / med['plain'] - 1):+8.1f}% {med['max_grad_norm']:9.2f} "
              f"{100 * (med['max_grad_norm'] / med['plain'] - 1):+7.1f}%")
        del opts


if __name__ == "__main__":
    main()
