"""Prints markdown tables of the key points of an adaptopt-bench JSON file.

    python bench/make_table.py bench/results.json             # all sections
    python bench/make_table.py bench/results.json --sizes 1e7,1e8,1e9 --threads 2

Sections: memory-bound sizes (1e7-1e9), in-cache sizes (1e5-1e6), small steps. Each at the
largest thread count in the file unless --threads says otherwise.
"""

from __future__ import annotations

import argparse
import json

from adaptopt.bench import parse_sizes
from adaptopt.bench.report import markdown_points, markdown_small
from adaptopt.bench.units import fmt_size


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", help="a file written by adaptopt-bench --json")
    ap.add_argument("--sizes", type=parse_sizes, help="only these sizes, one table (e.g. 1e7,1e8)")
    ap.add_argument("--threads", type=int, help="thread count (default: the largest measured)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--storage", help="one storage of a schema 3 file (e.g. bf16-sr-8bit)")
    args = ap.parse_args(argv)
    with open(args.json) as f:
        doc = json.load(f)
    measured = {r["size"] for r in doc["points"]}
    sections = ([("", args.sizes)] if args.sizes else
                [("Memory-bound sizes", [10**7, 10**8, 10**9]), ("In cache", [10**5, 10**6])])
    for title, sizes in sections:
        sizes = [s for s in sizes if s in measured]
        if not sizes:
            continue
        if title:
            print(f"**{title}** ({', '.join(map(fmt_size, sizes))} elements)\n")
        print(markdown_points(doc, sizes, args.threads, args.dtype, args.storage))
        print()
    if not args.sizes and doc.get("small"):
        print("**Small steps** (µs per step; in parentheses: peer time / adaptopt time)\n")
        print(markdown_small(doc, args.threads, args.dtype))


if __name__ == "__main__":
    main()
