"""``adaptopt-bench targets``: the compact-storage targets of issue 9, as ratios measured in one
run with the sides interleaved. Each round measures, one after the other at one size and thread
count: Adam fp32 (and torch's fused Adam on it), Adam bf16-sr-8bit with its peers (torch's fused
Adam on float32 copies, torch's fused Adam on bfloat16 views, bitsandbytes' 8-bit Adam), Adam
bf16-master-bf16state, RMSprop fp32 and RMSprop bf16-8bit, every point with its probe (same
widths) and its compute floor; odd rounds run the list backwards. Each ratio is computed within
a round; the report gives the median over the rounds and each round's value.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

import adaptopt

from . import cli
from .measure import cpu_sample, machine_info, other_load
from .sweep import Sweep

PLAN = (("adam", "fp32"), ("adam", "bf16-sr-8bit"), ("adam", "bf16-master-bf16state"),
        ("rmsprop", "fp32"), ("rmsprop", "bf16-8bit"))
PEERS = "torch-fused,torch-fused-fp32,torch-fused-bf16,bnb-8bit"
SHARE = 0.85  # of the probe streaming the same widths (or the compute floor stated)


@dataclass(frozen=True)
class Target:
    name: str
    goal: float
    ratio: Callable[[dict[tuple[str, str], dict]], float | None]  # from one round's points


def _peer(algo: str, storage: str, peer: str) -> Callable[[dict], float | None]:
    def ratio(pts: dict) -> float | None:
        res = pts[algo, storage]["peers"].get(peer, {})
        return res.get("speedup")
    return ratio


def _faster(algo: str, storage: str, than: str) -> Callable[[dict], float | None]:
    return lambda pts: pts[algo, than]["median_s"] / pts[algo, storage]["median_s"]


def _share(algo: str, storage: str) -> Callable[[dict], float | None]:
    return lambda pts: pts[algo, storage]["share_of_probe"]


TARGETS = (
    Target("adam bf16-sr-8bit vs torch fused Adam, fp32 params", 1.5,
           _peer("adam", "bf16-sr-8bit", "torch-fused-fp32")),
    Target("adam bf16-sr-8bit vs torch fused Adam, bf16 params", 1.5,
           _peer("adam", "bf16-sr-8bit", "torch-fused-bf16")),
    Target("adam bf16-sr-8bit vs bitsandbytes Adam8bit (CPU)", 10.0,
           _peer("adam", "bf16-sr-8bit", "bnb-8bit")),
    Target("rmsprop bf16-8bit vs adaptopt rmsprop fp32", 1.5, _faster("rmsprop", "bf16-8bit", "fp32")),
    Target("adam bf16-master-bf16state vs adaptopt adam fp32", 1.2,
           _faster("adam", "bf16-master-bf16state", "fp32")),
    *(Target(f"{a} {s}: share of the probe (same widths)", SHARE, _share(a, s)) for a, s in PLAN),
)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=f"{cli.PROG} targets",
        description="The compact-storage targets (issue 9): ratios measured in one run, sides "
                    "interleaved, medians over rounds. Points: " +
                    ", ".join(f"{a} {s}" for a, s in PLAN) + f"; peers {PEERS}.")
    ap.add_argument("--size", type=cli.parse_sizes, default=[10**8], help="elements (default 1e8)")
    ap.add_argument("--threads", type=int, help="thread count (default: all, here "
                                                f"{cli.default_max_threads()})")
    ap.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    ap.add_argument("--min-time", type=float, default=0.5,
                    help="seconds of timed steps per measurement (default 0.5; at least 3 steps)")
    ap.add_argument("--peer-budget", type=float, default=120.0,
                    help="seconds a peer's warm-up + 3 steps may take (default 120: "
                         "bitsandbytes' CPU path is slow)")
    ap.add_argument("--max-wait", type=float, default=300.0,
                    help="seconds of waiting for a quiet machine, over the run (default 300)")
    ap.add_argument("--no-bnb", action="store_true", help="leave bitsandbytes out")
    ap.add_argument("--json", metavar="FILE", help="write every round's points and the ratios")
    ap.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    return ap


def run(argv: Sequence[str]) -> dict[str, Any]:
    a = build_parser().parse_args(list(argv))
    if a.rounds < 1:
        raise SystemExit("--rounds must be at least 1")
    threads = a.threads or cli.default_max_threads()
    size = a.size[0]
    sweep_argv = ["--algos", "adam,rmsprop", "--storage", ",".join(sorted({s for _, s in PLAN})),
                  "--sizes", str(size), "--threads", str(threads), "--min-time", str(a.min_time),
                  "--peer-budget", str(a.peer_budget), "--max-wait", str(a.max_wait),
                  "--peers", PEERS, "--no-small", "--no-progress", "-q"]
    if a.no_bnb:
        sweep_argv.append("--no-bnb")
    args = cli.parse_args(sweep_argv)
    algos = {x.algo: x for x in args.algos}
    storages = {s.name: s for s in args.storages}
    start, load_start, cpu0 = time.time(), os.getloadavg(), cpu_sample()
    isa, threads0 = adaptopt.isa(), adaptopt.get_num_threads()
    sweep = Sweep(args)
    rounds: list[list[dict]] = []
    try:
        sweep._set_threads(threads)
        for r in range(a.rounds):
            plan = PLAN if r % 2 == 0 else PLAN[::-1]
            sweep._peer_cache.clear()
            sweep._floor_cache.clear()
            points = []
            for algo, storage in plan:
                if not a.quiet:
                    print(f"round {r + 1}/{a.rounds}: {algo} {storage}", file=sys.stderr, flush=True)
                sweep.algos = [algos[algo]]
                before = len(sweep.points)
                sweep._run_size(isa, storages[storage], size)
                points += [p.to_dict() for p in sweep.points[before:]]
            rounds.append(points)
    finally:
        adaptopt.set_num_threads(threads0)
    results = []
    for t in TARGETS:
        values = []
        for points in rounds:
            by = {(p["algo"], p["storage"]): p for p in points}
            try:
                values.append(t.ratio(by))
            except KeyError:
                values.append(None)
        got = [v for v in values if v is not None]
        med = statistics.median(got) if got else None
        results.append({"target": t.name, "goal": t.goal, "rounds": values, "median": med,
                        "met": None if med is None else med >= t.goal})
    floors = {}
    for p in rounds[-1]:
        floors[f"{p['algo']} {p['storage']}"] = {
            k: p.get(k) for k in ("bytes_per_element", "traffic", "gb_per_s", "probe_gb_per_s",
                                  "share_of_probe", "floor_size", "floor_s_per_element",
                                  "floor_gb_per_s", "bound", "limit_gb_per_s", "share_of_limit")}
    doc = {"kind": "adaptopt-bench targets", "version": adaptopt.__version__,
           "command": [cli.PROG, "targets", *argv],
           "date": datetime.datetime.fromtimestamp(start).astimezone().isoformat(timespec="seconds"),
           "wall_s": time.time() - start, "size": size, "threads": threads, "isa": isa,
           "load_avg": {"start": list(load_start), "end": list(os.getloadavg())},
           "other_load": other_load(cpu0, cpu_sample()), "retries": sweep.quiet.retries,
           "waited_s": sweep.quiet.waited, "machine": machine_info().to_dict(),
           "skipped": [s.to_dict() for s in sweep.skipped], "targets": results,
           "last_round": floors, "rounds": rounds}
    if not a.quiet:
        print_targets(doc)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1)
    return doc


def _fmt(v: float | None, share: bool) -> str:
    if v is None:
        return "-"
    return f"{v:.0%}" if share else f"{v:.2f}x"


def print_targets(doc: dict) -> None:
    print(f"\nTargets at {doc['size']:.0e} elements, {doc['threads']} threads, {doc['isa']}; "
          f"{len(doc['rounds'])} rounds, load average {doc['load_avg']['start'][0]:.2f} at start, "
          f"other processes {doc['other_load']:.2f} cores on average")
    for t in doc["targets"]:
        share = "share" in t["target"]
        status = "?" if t["met"] is None else ("met" if t["met"] else "NOT met")
        rounds = ", ".join(_fmt(v, share) for v in t["rounds"])
        print(f"  {t['target']:<58} {_fmt(t['median'], share):>7} (goal {_fmt(t['goal'], share)}) "
              f"{status:<8} rounds: {rounds}")
    print("\n  point (last round)              B/elem   GB/s  probe GB/s  floor GB/s   bound    of limit")
    for name, f in doc["last_round"].items():
        floor = "-" if f["floor_gb_per_s"] is None else f"{f['floor_gb_per_s']:.1f}"
        limit = "-" if f["share_of_limit"] is None else f"{f['share_of_limit']:.0%}"
        print(f"  {name:<30} {f['bytes_per_element']:>7.4g} {f['gb_per_s']:>6.1f} "
              f"{f['probe_gb_per_s']:>11.1f} {floor:>11} {f['bound'] or '-':>8} {limit:>10}")
    for s in doc["skipped"]:
        print(f"  skipped {s['what']}: {s['reason']}")


def main(argv: list[str]) -> int:
    run(argv)
    return 0
