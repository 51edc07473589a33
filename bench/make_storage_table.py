"""Markdown tables of the compact-storage runs (issue 9):

    python bench/make_storage_table.py --targets bench/targets.json   # the target ratios
    python bench/make_storage_table.py --sweep bench/storage.json     # per storage: GB/s, probe,
                                                                      # compute floor, peers
"""

from __future__ import annotations

import argparse
import json

from adaptopt.bench.units import fmt_time


def targets_table(doc: dict) -> str:
    lines = ["| target | goal | median | per round | met |", "|---|---|---|---|---|"]
    for t in doc["targets"]:
        share = "share" in t["target"]

        def fmt(v: float | None, share: bool = share) -> str:
            return "-" if v is None else (f"{v:.0%}" if share else f"{v:.2f}x")

        met = "?" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {fmt(t['goal'])} | {fmt(t['median'])} | "
                     f"{', '.join(fmt(v) for v in t['rounds'])} | {met} |")
    return "\n".join(lines)


def sweep_table(doc: dict) -> str:
    peers = ["torch-fused", "torch-fused-fp32", "torch-fused-bf16", "bnb-8bit"]
    seen = [p for p in peers if any(p in r["peers"] for r in doc["points"])]
    header = ["algorithm", "storage", "thr", "B/elem", "median", "GB/s", "probe GB/s", "of probe",
              "floor ns/elem", "floor GB/s", "bound", "of limit", *(f"x {p}" for p in seen)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in doc["points"]:
        cells = [r["name"], r["storage"], str(r["threads"]), f"{r['bytes_per_element']:.4g}",
                 fmt_time(r["median_s"]), f"{r['gb_per_s']:.1f}", f"{r['probe_gb_per_s']:.1f}",
                 f"{r['share_of_probe']:.0%}",
                 "-" if r["floor_s_per_element"] is None else f"{r['floor_s_per_element'] * 1e9:.3f}",
                 "-" if r["floor_gb_per_s"] is None else f"{r['floor_gb_per_s']:.1f}",
                 r["bound"] or "-",
                 "-" if r["share_of_limit"] is None else f"{r['share_of_limit']:.0%}"]
        for p in seen:
            res = r["peers"].get(p)
            cells.append("-" if res is None else ("skip" if "skipped" in res else f"{res['speedup']:.2f}x"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", help="a file written by adaptopt-bench targets --json")
    ap.add_argument("--sweep", help="a file written by adaptopt-bench --storage ... --json")
    args = ap.parse_args(argv)
    if args.targets:
        with open(args.targets) as f:
            print(targets_table(json.load(f)))
        print()
    if args.sweep:
        with open(args.sweep) as f:
            print(sweep_table(json.load(f)))


if __name__ == "__main__":
    main()
