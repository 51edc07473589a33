"""``adaptopt-bench memory``: the peak RSS of a very large step at a compact storage (issue 9's
memory target: a 2e9-parameter Adam step with bf16 params/grads and 8-bit state peaks at no more
than 6 bytes per parameter + 15%).

The param and gradient are made in their own dtype a chunk at a time from a small block (no
float32 temporary of the param's size), the optimizer is made and stepped ``--steps`` times
(the first step allocates the state), and the process's peak RSS (Linux VmHWM, reset before the
arrays are made) is reported per parameter, with the RSS before (the interpreter and libraries)
and the model: p + g + state (+ 8-bit absmax, + master) bytes per parameter.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

import adaptopt

from . import algos, cli
from . import storage as storage_mod
from .measure import Usage, machine_info
from .units import fmt_bytes

CHUNK = 1 << 22  # elements per chunk when filling


def chunked(n: int, dtype: Any, seed: int, scale: float) -> np.ndarray:
    """n elements of ``dtype``: a 1 MiB-ish block of scale x standard normal values, tiled;
    nothing of the array's size is made in another dtype."""
    block = (np.random.default_rng(seed).standard_normal(min(n, CHUNK)) * scale).astype(dtype)
    a = np.empty(n, dtype)
    for i in range(0, n, block.size):
        a[i:i + block.size] = block[:n - i]
    return a


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=f"{cli.PROG} memory", description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", type=cli.parse_sizes, default=[2 * 10**9],
                    help="parameters in one tensor (default 2e9)")
    ap.add_argument("--algo", default="adam", choices=[a.name for a in algos.configurations()],
                    help="configuration (default adam)")
    ap.add_argument("--storage", default="bf16-sr-8bit", help="storage (default bf16-sr-8bit; see "
                                                              f"'{cli.PROG} --help')")
    ap.add_argument("--steps", type=int, default=2, help="steps (default 2)")
    ap.add_argument("--threads", type=int, help="threads (default: all)")
    ap.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    ap.add_argument("-q", "--quiet", action="store_true")
    return ap


def run(argv: Sequence[str]) -> dict[str, Any]:
    a = build_parser().parse_args(list(argv))
    st = storage_mod.parse(a.storage)
    algo = algos.by_name()[a.algo]
    n = a.params[0]
    threads0 = adaptopt.get_num_threads()
    if a.threads:
        adaptopt.set_num_threads(a.threads)
    start, load = time.time(), os.getloadavg()
    try:
        rss0 = _rss()
        with Usage() as use:
            t0 = time.perf_counter()
            p = chunked(n, st.param_dtype, seed=1, scale=1.0)
            g = chunked(n, st.param_dtype, seed=2, scale=1e-2)
            fill_s = time.perf_counter() - t0
            opt = algo.make([p], **st.kwargs)
            step_s = []
            for _ in range(a.steps):
                t0 = time.perf_counter()
                opt.step([g])
                step_s.append(time.perf_counter() - t0)
            state = sum(v.nbytes for v in opt.state[0].values() if isinstance(v, np.ndarray))
    finally:
        adaptopt.set_num_threads(threads0)
    model = st.footprint(algo.n_state)
    doc = {"kind": "adaptopt-bench memory", "version": adaptopt.__version__,
           "command": [cli.PROG, "memory", *argv],
           "date": datetime.datetime.fromtimestamp(start).astimezone().isoformat(timespec="seconds"),
           "load_avg_start": list(load), "machine": machine_info().to_dict(),
           "algo": algo.name, "storage": st.name, "params": n, "steps": a.steps,
           "threads": a.threads or adaptopt.get_num_threads(),
           "rss_before_bytes": rss0, "peak_rss_bytes": use.peak,
           "array_bytes": p.nbytes + g.nbytes, "state_bytes": state,
           "model_bytes_per_param": model,
           "peak_bytes_per_param": use.peak / n,
           "growth_bytes_per_param": (use.peak - rss0) / n,
           "fill_s": fill_s, "step_s": step_s}
    if not a.quiet:
        print(f"{algo.name} {st.name}, {n:.3g} parameters, {a.steps} steps, {doc['threads']} threads: "
              f"peak RSS {fmt_bytes(use.peak)} = {doc['peak_bytes_per_param']:.3f} bytes/param "
              f"({doc['growth_bytes_per_param']:.3f} over the {fmt_bytes(rss0)} before the arrays; "
              f"model {model:.3f}: params + grads {fmt_bytes(p.nbytes + g.nbytes)}, state "
              f"{fmt_bytes(state)}); steps {', '.join(f'{s:.2f} s' for s in step_s)}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1)
    return doc


def main(argv: list[str]) -> int:
    run(argv)
    return 0
