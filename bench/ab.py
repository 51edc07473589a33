"""A/B timing of the installed adaptopt against another git revision, sides interleaved.

    python bench/ab.py --base 3c0e8d6 --sizes 1,1e5,1e7,1e8 --algos adam,rmsprop --threads 2

Builds the base revision's wheel once (cached under --cache) and the working tree's wheel, then
for every round runs each case in a fresh process per side, alternating base and current
(B A A B B A ...), so drift of the shared machine hits both sides alike. Both sides run with
``python -S`` and PYTHONPATH = the side's package, then site-packages (an editable install's
import hook would otherwise shadow both). A case is one optimizer over ``tensors`` x ``size``
float32 elements; each process warms up and times steps for about --min-time seconds and
reports its median. Printed per case: the median over rounds of each side, and the ratio
current / base with its spread over rounds (min-max).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MEASURE = r"""
import json, sys, time
import numpy as np
import adaptopt
name, tensors, size, threads, min_time, kwargs = json.loads(sys.argv[1])
adaptopt.set_num_threads(threads)
rng = np.random.default_rng(0)
params = [rng.standard_normal(size).astype(np.float32) for _ in range(tensors)]
grads = [rng.standard_normal(size).astype(np.float32) * 1e-2 for _ in range(tensors)]
opt = getattr(adaptopt, name)(params, **kwargs)
opt.step(grads)
t0 = time.perf_counter(); opt.step(grads); est = time.perf_counter() - t0
batch = max(1, int(1e-3 / max(est, 1e-9)))
times = []
deadline = time.perf_counter() + min_time
while len(times) < 5 or time.perf_counter() < deadline:
    t0 = time.perf_counter()
    for _ in range(batch):
        opt.step(grads)
    times.append((time.perf_counter() - t0) / batch)
print(json.dumps(float(np.median(times))))
"""


def build(src: Path, out: Path) -> Path:
    """Builds the package at ``src`` and unpacks it into ``out`` (returned)."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", str(src), "--no-deps", "-w", tmp,
                        f"--config-settings=build-dir={Path(tmp) / 'build'}"], check=True)
        out.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(next(Path(tmp).glob("adaptopt-*.whl"))) as z:
            z.extractall(out)
    return out


def base_package(rev: str, cache: Path) -> Path:
    """A directory holding the base revision's built `adaptopt` package (cached)."""
    out = cache / rev
    if (out / "adaptopt").is_dir():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(src), rev], check=True,
                       capture_output=True)
        try:
            return build(src, out)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(src)], check=True)


def measure(package_dir: Path, case: list) -> float:
    import sysconfig

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(package_dir), sysconfig.get_paths()["purelib"],
                                         sysconfig.get_paths()["platlib"]])
    r = subprocess.run([sys.executable, "-S", "-c", MEASURE, json.dumps(case)], env=env, capture_output=True,
                       text=True, check=True, cwd=tempfile.gettempdir())
    return json.loads(r.stdout)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="git revision to compare with")
    ap.add_argument("--sizes", default="1,1e5,1e7,1e8")
    ap.add_argument("--algos", default="Adam,RMSprop", help="class names, optionally name:json-kwargs")
    ap.add_argument("--small-tensors", type=int, default=100, help="tensors in the small-step case")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.3)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "adaptopt-ab")
    ap.add_argument("--current", type=Path, help="an unpacked wheel of the working tree built earlier "
                    "(default: build it now)")
    args = ap.parse_args(argv)
    base = base_package(args.base, args.cache)
    current = args.current or build(ROOT, Path(tempfile.mkdtemp(prefix="adaptopt-ab-current-")))
    cases = []
    for algo in args.algos.split(","):
        name, _, kw = algo.partition(":")
        name = {"adam": "Adam", "rmsprop": "RMSprop", "adagrad": "Adagrad", "adadelta": "Adadelta",
                "sgd": "SGD", "adamw": "AdamW"}.get(name.lower(), name)
        for s in args.sizes.split(","):
            n = int(float(s))
            cases.append([name, 1, n, args.threads, args.min_time, json.loads(kw or "{}")])
        cases.append([name, args.small_tensors, 1000, args.threads, args.min_time, json.loads(kw or "{}")])
    print(f"base {args.base} vs current ({ROOT}), {args.rounds} rounds, {args.threads} threads, "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"{'case':32s} {'base':>10s} {'current':>10s} {'cur/base':>9s} {'spread':>13s}")
    for case in cases:
        a, b, ratio = [], [], []
        for r in range(args.rounds):
            order = ["base", "cur"] if r % 2 == 0 else ["cur", "base"]
            got = {}
            for side in order:
                got[side] = measure(base if side == "base" else current, case)
            a.append(got["base"])
            b.append(got["cur"])
            ratio.append(got["cur"] / got["base"])
        label = f"{case[0]}{case[5] or ''} {case[1]}x{case[2]:.0e}"
        fmt = (lambda s: f"{s * 1e3:8.3f}ms" if s >= 1e-3 else f"{s * 1e6:8.2f}us")
        print(f"{label:32s} {fmt(statistics.median(a)):>10s} {fmt(statistics.median(b)):>10s} "
              f"{statistics.median(ratio):9.3f} {min(ratio):6.3f}-{max(ratio):.3f}", flush=True)
    print(f"load {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
