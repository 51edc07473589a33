"""The trainer-loop benchmark against another git revision, and against OpenMP settings.

    python bench/trainer_ab.py --base bddb74f --rounds 3

Builds the base revision's wheel (cached, as bench/ab.py does) and the working tree's, then runs
``adaptopt-bench trainer-loop`` (the working tree's trainer.py, so both sides measure alike) in a
fresh ``python -S`` process per side, the sides' order alternating round by round. Sides:

- ``base``: the base revision with default settings;
- ``base+ENV`` for every ``--base-env`` given (e.g. ``OMP_WAIT_POLICY=passive``, the
  environment-variable workaround of an OpenMP build);
- ``current``: the working tree.

Prints per side the median over rounds of every ratio the trainer loop reports (each itself a
ratio of medians within one run) with its spread, and the load averages.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ab import ROOT, base_package, build  # noqa: E402

RATIOS = [  # (label, path in the trainer loop's JSON)
    ("numpy host fwd+bwd with step / without (goal <= 1.10)", ("numpy", "host_ratio")),
    ("numpy iteration default / 1 thread (goal <= 1.02)", ("numpy", "iteration_ratio")),
    ("torch host fwd+bwd with step / without (goal <= 1.10)", ("torch", "host_ratio")),
    ("torch iteration default / 1 thread (goal <= 1.02)", ("torch", "iteration_ratio")),
    ("100x1000 step after BLAS / isolated (goal <= 2)", ("small", 0, "small_ratio")),
    ("  same, 1 thread (the cache floor)", ("small", 0, "small_ratio_one_thread")),
    ("10x1e5 step after BLAS / isolated (goal <= 2)", ("small", 1, "small_ratio")),
    ("  same, 1 thread (the cache floor)", ("small", 1, "small_ratio_one_thread")),
    ("numpy iteration, default threads (ms)", ("numpy", "default", "iteration")),
    ("numpy iteration, no step (ms)", ("numpy", "none", "iteration")),
]


def run_side(package: Path, script_dir: Path, env_extra: dict, argv: list) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMP_", "GOMP_", "ADAPTOPT_"))}
    env.update(env_extra)
    env["PYTHONPATH"] = os.pathsep.join([str(package), sysconfig.get_paths()["purelib"],
                                         sysconfig.get_paths()["platlib"]])
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        code = ("import sys; sys.path.insert(0, sys.argv[1]); import trainer; "
                "sys.exit(trainer.main(sys.argv[2:]))")
        subprocess.run([sys.executable, "-S", "-c", code, str(script_dir), *argv, "--json", out.name],
                       env=env, check=True, capture_output=True, text=True, cwd=tempfile.gettempdir())
        return json.loads(Path(out.name).read_text())


def pick(doc: dict, path: tuple) -> float:
    for key in path:
        doc = doc[key]
    return float(doc)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="git revision to compare with")
    ap.add_argument("--base-env", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                    help="another base side with these environment variables (repeatable)")
    ap.add_argument("--rounds", type=int, default=3, help="runs per side (3)")
    ap.add_argument("--trainer-args", default="--rounds 8",
                    help="arguments of each trainer-loop run (default: --rounds 8; a value that "
                         "starts with a dash needs the = form: --trainer-args=--quick)")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "adaptopt-ab")
    ap.add_argument("--current", type=Path, help="an unpacked wheel of the working tree built earlier "
                    "(default: build it now)")
    ap.add_argument("--json", type=Path, help="write every run's results here")
    args = ap.parse_args(argv)
    base = base_package(args.base, args.cache)
    current = args.current or build(ROOT, Path(tempfile.mkdtemp(prefix="adaptopt-ab-current-")))
    script_dir = Path(tempfile.mkdtemp(prefix="adaptopt-trainer-"))
    shutil.copy(ROOT / "python" / "adaptopt" / "bench" / "trainer.py", script_dir / "trainer.py")
    sides = [("base", base, {})]
    for spec in args.base_env:
        env = dict(kv.split("=", 1) for kv in spec.split(","))
        sides.append((f"base+{spec}", base, env))
    sides.append(("current", current, {}))
    load0 = os.getloadavg()
    runs: dict = {name: [] for name, _, _ in sides}
    for r in range(args.rounds):
        order = sides if r % 2 == 0 else sides[::-1]
        for name, package, env in order:
            runs[name].append(run_side(package, script_dir, env, args.trainer_args.split()))
            print(f"round {r + 1}/{args.rounds}: {name} done (load {os.getloadavg()[0]:.2f})",
                  file=sys.stderr, flush=True)
    load1 = os.getloadavg()
    print(f"trainer loop: base {args.base} vs current ({ROOT}); {args.rounds} runs per side "
          f"({args.trainer_args}), order alternating; load average {load0[0]:.2f} at the start, "
          f"{load1[0]:.2f} at the end")
    other = [run.get("other_load") or {} for rs in runs.values() for run in rs]
    cores = [o["other_processes_cores"] for o in other if "other_processes_cores" in o]
    if cores:
        print(f"other processes kept {min(cores):.2f}-{max(cores):.2f} cores busy during the runs")
    names = [name for name, _, _ in sides]
    w = max(24, *(len(n) + 2 for n in names))
    print(f"{'median over runs (min-max)':56s}" + "".join(f"{n:>{w}s}" for n in names))
    for label, path in RATIOS:
        cells = []
        for n in names:
            try:
                vals = [pick(run, path) for run in runs[n]]
            except (KeyError, IndexError, TypeError):
                cells.append(f"{'-':>{w}s}")
                continue
            scale = 1e3 if label.endswith("(ms)") else 1.0
            med = statistics.median(vals) * scale
            cells.append(f"{med:9.3f} ({min(vals) * scale:.2f}-{max(vals) * scale:.2f})".rjust(w))
        print(f"{label:56s}" + "".join(cells))
    if args.json:
        args.json.write_text(json.dumps({"base": args.base, "load": [load0, load1], "runs": runs},
                                        indent=1))


if __name__ == "__main__":
    main()
