"""The command line: ``adaptopt-bench [MODE] [options]``. The default mode, ``sweep``, measures
the configurations x sizes x threads the options describe, prints the tables and writes the JSON
and the plot; ``MODES`` maps every mode's name to its ``main(argv) -> exit code``, so another mode
(e.g. a trainer loop) is one entry there."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from collections.abc import Sequence
from typing import Callable

import adaptopt

from . import algos, budget, report
from . import storage as storage_mod
from .measure import default_max_threads
from .peers import PEER_ORDER
from .sweep import run_sweep
from .units import fmt_size

DEFAULT_SIZES = [10**k for k in range(3, 10)]
QUICK_SIZES = [10**4, 10**6, 10**7]
PROG = "adaptopt-bench"


def parse_sizes(text: str) -> list[int]:
    """'1e4,1e6,5000' -> [10000, 1000000, 5000]."""
    out = []
    for tok in text.split(","):
        v = float(tok)
        if not (v >= 1 and v == int(v)):
            raise argparse.ArgumentTypeError(f"invalid size {tok!r} (a positive integer, e.g. 1e6)")
        out.append(int(v))
    return out


def parse_memory(text: str) -> int:
    """'20G', '512M', '1.5T', '1000000' (bytes); K/M/G/T are powers of 1024."""
    m = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"invalid memory size {text!r} (e.g. 20G)")
    return int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " "))


def _choices(valid: Sequence[str], what: str) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in valid]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(bad) or text!r}; "
                                             f"choose from {', '.join(valid)}")
        return items
    return parse


def _storages(text: str) -> list[storage_mod.Storage]:
    out = []
    for tok in text.split(","):
        if not tok.strip():
            continue
        try:
            out.append(storage_mod.parse(tok))
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    if not out:
        raise argparse.ArgumentTypeError(f"no storage in {text!r}")
    return list({s.name: s for s in out}.values())


def _threads(text: str) -> list[int]:
    try:
        out = [int(t) for t in text.split(",")]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"invalid thread counts {text!r} (e.g. 1,2)")
    return out


def _small(text: str) -> tuple:
    m = re.fullmatch(r"(\d+)x(\d+)", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise argparse.ArgumentTypeError(f"invalid --small-tensors {text!r} (e.g. 100x1000)")
    return int(m.group(1)), int(m.group(2))


def build_parser() -> argparse.ArgumentParser:
    nmax = default_max_threads()
    names = [a.name for a in algos.configurations()]
    ap = argparse.ArgumentParser(
        prog=PROG,
        usage=f"{PROG} [{'|'.join(MODES)}] [options]",
        description="Throughput of adaptopt's optimizer steps against a same-run bandwidth probe "
                    "(streaming the step's buffers in their widths) and a compute floor, "
                    "hand-written NumPy, torch.optim (for-loop, foreach, fused; fused in float32 "
                    "and bfloat16 at compact storages) and bitsandbytes' 8-bit Adam.",
        epilog=f"Modes: {', '.join(MODES)} (default: sweep; '{PROG} MODE --help' for another "
               "mode's options; targets: the compact-storage ratios of issue 9; memory: the peak "
               "RSS of one very large step). The rules are in adaptopt/bench/: budget.py (what is skipped and "
               "repeated), sweep.py (what is measured), schema.py (every JSON field).")
    ap.add_argument("--quick", action="store_true",
                    help=f"a run of under a minute: sizes {','.join(map(fmt_size, QUICK_SIZES))}, "
                         f"threads {nmax}, algos {','.join(algos.QUICK)}, shorter timings")
    ap.add_argument("--algos", type=_choices(names, "algorithm"),
                    help="comma list (default: all): " + ", ".join(names))
    ap.add_argument("--sizes", type=parse_sizes,
                    help="comma list of element counts (default 1e3,1e4,...,1e9, capped by memory)")
    ap.add_argument("--threads", type=_threads, help=f"comma list (default 1,{nmax})")
    ap.add_argument("--dtype", dest="dtypes", type=_choices(["float32", "float64"], "dtype"),
                    help="float32, float64 or both (default float32): shorthand for --storage "
                         "fp32, fp64")
    ap.add_argument("--storage", dest="storages", type=_storages, metavar="LIST",
                    help="comma list of storages (default fp32): the param/grad dtype (fp32, fp64, "
                         "bf16, fp16), then optionally sr (stochastic_rounding) or master "
                         "(master_weights), then optionally the state dtype (8bit, bf16state, "
                         "fp32state), dash-separated: e.g. " + ",".join(storage_mod.EXAMPLES) +
                         ". The traffic model counts each stream in its width (8-bit state: 1 byte "
                         "+ 8 bytes of absmax per 256 elements); the probe streams the same widths")
    ap.add_argument("--no-floor", dest="floor", action="store_false",
                    help="skip the compute floor (the fastest step's time per element with its "
                         "arrays in L2, measured once per configuration x storage x threads, "
                         "reported beside each point; a point whose floor is slower than its probe "
                         "is compute-bound)")
    ap.add_argument("--isa", dest="isas", type=_choices(adaptopt.available_isas(), "ISA"),
                    help=f"comma list from {', '.join(adaptopt.available_isas())} "
                         f"(default: the active one, {adaptopt.isa()})")
    ap.add_argument("--max-memory", type=parse_memory,
                    help="memory cap for a point, e.g. 20G (default: available memory less 5%%)")
    ap.add_argument("--min-time", type=float,
                    help="seconds of timed steps per measurement (default 0.3; --quick 0.1); "
                         "at least 3 steps are timed")
    ap.add_argument("--peer-budget", type=float, default=5.0,
                    help=f"above {fmt_size(budget.SLOW_PEER_SIZE)} elements, skip a peer whose "
                         "warm-up + 3 steps are predicted to take longer than this many seconds "
                         "(default 5; 'inf' = never)")
    ap.add_argument("--max-wait", type=float,
                    help="a measurement during which other processes kept more than "
                         f"{budget.BUSY} cores busy is repeated (up to {budget.ATTEMPTS} times) once "
                         "the machine is quiet; this caps the waiting, in seconds over the run "
                         "(default 180, --quick 20; 0 = never wait)")
    ap.add_argument("--small-tensors", type=_small, default=(100, 1000),
                    help="the many-small-tensors step, COUNTxSIZE (default 100x1000)")
    ap.add_argument("--no-small", dest="small", action="store_false",
                    help="skip the small-step (many tensors, 1 element) measurements")
    ap.add_argument("--no-torch", action="store_true",
                    help="do not run the torch.optim (and bitsandbytes) peers")
    ap.add_argument("--peers", type=_choices(list(PEER_ORDER), "peer"),
                    help="comma list of the peers to run where they apply (default: all): "
                         + ", ".join(PEER_ORDER))
    ap.add_argument("--no-bnb", action="store_true",
                    help="do not run bitsandbytes' 8-bit Adam (a peer at 8-bit-state points when "
                         "bitsandbytes is installed; skipped with the reason when it is not)")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    ap.add_argument("--plot", metavar="FILE.png", help="plot throughput against size (matplotlib)")
    ap.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    ap.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    return ap


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The sweep's options, with the defaults filled in (``args.algos`` are ``algos.Algo``)."""
    ap = build_parser()
    args = ap.parse_args(argv)
    nmax = default_max_threads()
    table = algos.by_name()
    args.algos = [table[a] for a in (args.algos or (algos.QUICK if args.quick else list(table)))]
    args.sizes = sorted(set(args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)))
    args.threads = args.threads or ([nmax] if args.quick else sorted({1, nmax}))
    args.isas = args.isas or [adaptopt.isa()]
    if args.dtypes and args.storages:
        ap.error("give --dtype or --storage, not both (--dtype float64 is --storage fp64)")
    args.storages = args.storages or [storage_mod.of_dtype(d) for d in (args.dtypes or ["float32"])]
    args.dtypes = sorted({str(s.param_dtype) for s in args.storages})
    if args.min_time is None:
        args.min_time = 0.1 if args.quick else 0.3
    if args.max_wait is None:
        args.max_wait = 20.0 if args.quick else 180.0
    if not args.min_time > 0 or not args.peer_budget > 0 or not args.max_wait >= 0:
        ap.error("--min-time and --peer-budget must be positive, --max-wait not negative")
    return args


def run(argv: Sequence[str] | None = None) -> dict:
    """Runs the sweep ``argv`` describes (sweep options, no mode) and returns the JSON document
    as a dict (``schema.Run.to_dict()``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    doc = run_sweep(args, [PROG, *argv]).to_dict()
    if not args.quiet:
        report.print_run(doc)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    if args.plot:
        report.plot(doc, args.plot)
    return doc


def _sweep(argv: list[str]) -> int:
    run(argv)
    return 0


# mode name -> main(argv without the mode) -> exit code; the first is the default
def _targets(argv: list[str]) -> int:
    from . import targets

    return targets.main(argv)


def _memory(argv: list[str]) -> int:
    from . import memory

    return memory.main(argv)


MODES: dict[str, Callable[[list[str]], int]] = {"sweep": _sweep, "targets": _targets, "memory": _memory}


def main(argv: Sequence[str] | None = None) -> int:
    """``adaptopt-bench [MODE] [options]``: runs MODE (default: the sweep) on the options."""
    args = list(sys.argv[1:] if argv is None else argv)
    if importlib.util.find_spec("psutil") is None and not any(a in ("-h", "--help") for a in args):
        print("adaptopt-bench needs psutil (memory and machine-load readings): install the bench extra, "
              "pip install 'adaptopt[bench]'", file=sys.stderr)
        return 2
    if args and args[0] in MODES:
        return MODES[args[0]](args[1:])
    return MODES["sweep"](args)
