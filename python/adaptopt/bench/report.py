"""Tables and the plot of a run (the JSON document as a dict, schema 1 or 2): the terminal
tables, the markdown tables of bench/make_table.py, matplotlib's throughput plot."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from . import budget
from .peers import PEER_ORDER
from .units import fmt_bytes, fmt_size, fmt_time

Doc = dict[str, Any]


def _name(row: dict) -> str:
    """The configuration's name (schema 1 small-step rows kept it in ``algo``)."""
    return str(row.get("name") or row["algo"])


def _busy(load: float) -> str:
    return f"{load:.2f}" + ("*" if load > budget.BUSY else "")


def _speedup(res: dict | None) -> str:
    if res is None:
        return "-"
    if "skipped" in res:
        return "skip"
    return f"{res['speedup']:.1f}x"


def _peers_in(rows: Iterable[dict]) -> list[str]:
    seen = {name for r in rows for name in r["peers"]}
    return [p for p in PEER_ORDER if p in seen] + sorted(seen - set(PEER_ORDER))


def _render(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool = False) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:  # first column left-aligned, numbers right-aligned
        return "  ".join(c.rjust(w) if i else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _varying(rows: list[dict], key: str) -> bool:
    return len({r.get(key) for r in rows}) > 1


def _floor(r: dict) -> str:
    """The compute floor's GB/s, starred when it, not the probe, is the limit."""
    f = r.get("floor_gb_per_s")
    if f is None:
        return "-"
    return f"{f:.1f}" + ("*" if r.get("bound") == "compute" else "")


def _of_limit(r: dict) -> str:
    v = r.get("share_of_limit")
    return "-" if v is None else f"{v:.0%}"


# --------------------------------------------------------------------------------------------
# Terminal tables


def print_table(doc: Doc) -> None:
    points = doc["points"]
    if not points:
        print("no points were measured")
        return
    peers = _peers_in(points)
    extra = [k for k in ("storage", "dtype", "isa") if _varying(points, k)]
    header = ["algorithm", "size", *extra, "thr", "median", "min", "max", "Melem/s", "B/elem", "GB/s",
              "probe GB/s", "of probe", "floor GB/s", "of limit", "RSS +", "other",
              *(f"x {p}" for p in peers)]
    rows = []
    for r in points:
        rows.append([r["name"], fmt_size(r["size"]), *(str(r.get(k)) for k in extra), str(r["threads"]),
                     fmt_time(r["median_s"]), fmt_time(r["min_s"]), fmt_time(r["max_s"]),
                     f"{r['elements_per_s'] / 1e6:.0f}", f"{r['bytes_per_element']:.4g}",
                     f"{r['gb_per_s']:.1f}",
                     f"{r['probe_gb_per_s']:.1f}", f"{r['share_of_probe']:.0%}", _floor(r), _of_limit(r),
                     fmt_bytes(r["rss_growth_bytes"]), _busy(r.get("other_load", 0.0)),
                     *(_speedup(r["peers"].get(p)) for p in peers)])
    print("\nSteps (one tensor; GB/s by the traffic model: B/elem = every stream's reads + writes "
          "in its width; floor = the same step in cache, * = compute-bound (floor below the "
          "probe); of limit = GB/s over min(probe, floor); 'x peer' = peer time / adaptopt time)")
    print(_render(header, rows))
    if "numpy" in peers:
        print("numpy is single-threaded (NumPy ufuncs use one thread) at every thread count.")
    busy = sum(r.get("other_load", 0.0) > budget.BUSY for r in points)
    if busy:
        print(f"* {busy} point(s) ran while other processes kept more than {budget.BUSY} cores busy "
              "('other'): their numbers are likely low.")


def print_small_table(doc: Doc) -> None:
    small = doc["small"]
    if not small:
        return
    peers = _peers_in(small)
    extra = [k for k in ("storage", "dtype", "isa") if _varying(small, k)]
    header = ["algorithm", "tensors", *extra, "thr", "adaptopt µs",
              *(f"{p} µs (x)" for p in peers)]
    rows = []
    for r in small:
        cells = []
        for p in peers:
            res = r["peers"].get(p)
            cells.append("-" if res is None else f"{res['us']:.1f} ({res['speedup']:.1f}x)")
        rows.append([_name(r), r["mode"], *(str(r.get(k)) for k in extra), str(r["threads"]),
                     f"{r['adaptopt_us']:.2f}", *cells])
    print("\nSmall steps (µs per step; mode = tensors x elements, '1' = one 1-element tensor)")
    print(_render(header, rows))


# --------------------------------------------------------------------------------------------
# Markdown (bench/make_table.py)


def _pick(rows: list[dict], **want) -> list[dict]:
    return [r for r in rows if all(r.get(k) == v for k, v in want.items() if v is not None)]


def markdown_points(doc: Doc, sizes: Sequence[int], threads: int | None = None,
                    dtype: str = "float32", storage: str | None = None) -> str:
    """Key points: throughput, share of the probe and speedups over each peer (``storage``: one
    storage of a schema 3 document, e.g. bf16-sr-8bit; None: the ``dtype``'s points)."""
    threads = threads or max(r["threads"] for r in doc["points"])
    want = {"storage": storage} if storage else {"dtype": dtype}
    rows_in = [r for r in _pick(doc["points"], threads=threads, **want) if r["size"] in sizes]
    if not storage and any("storage" in r for r in rows_in):
        rows_in = [r for r in rows_in if r.get("param_mode", "round") == "round"
                   and r.get("state_dtype") in (None, "float32", "float64")]
    peers = _peers_in(rows_in)
    best = any(p.startswith("torch-") for p in peers)
    header = ["algorithm", "size", "median", "GB/s", "probe GB/s", "of probe",
              *(f"x {p}" for p in peers), *(["x best torch"] if best else [])]
    rows = [[r["name"], fmt_size(r["size"]), fmt_time(r["median_s"]), f"{r['gb_per_s']:.1f}",
             f"{r['probe_gb_per_s']:.1f}", f"{r['share_of_probe']:.0%}",
             *(_speedup(r["peers"].get(p)) for p in peers),
             *([_best_torch(r)] if best else [])] for r in rows_in]
    return _render(header, rows, markdown=True)


def _best_torch(point: dict) -> str:
    """Speedup over the fastest torch.optim implementation that ran."""
    ran = [v for k, v in point["peers"].items() if k.startswith("torch-") and "speedup" in v]
    return f"{min(v['speedup'] for v in ran):.1f}x" if ran else "-"


def markdown_small(doc: Doc, threads: int | None = None, dtype: str = "float32") -> str:
    small = doc["small"]
    if not small:
        return ""
    threads = threads or max(r["threads"] for r in small)
    rows_in = _pick(small, threads=threads, dtype=dtype)
    peers = _peers_in(rows_in)
    header = ["algorithm", "tensors", "adaptopt µs", *(f"{p} µs" for p in peers)]
    rows = [[_name(r), r["mode"], f"{r['adaptopt_us']:.2f}",
             *("-" if r["peers"].get(p) is None else
               f"{r['peers'][p]['us']:.1f} ({r['peers'][p]['speedup']:.1f}x)" for p in peers)]
            for r in rows_in]
    return _render(header, rows, markdown=True)


# --------------------------------------------------------------------------------------------
# Plot


def plot(doc: Doc, path: str, dtype: str | None = None, isa: str | None = None,
         storage: str | None = None) -> None:
    """One subplot per algorithm: GB/s (traffic model) against size, log-log. adaptopt solid
    and the probe dotted for each thread count; peers dashed at the largest thread count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = doc["points"]
    if not points:
        return
    if dtype is None:
        dtype = "float32" if any(r["dtype"] == "float32" for r in points) else points[0]["dtype"]
    isa = isa or doc["machine"]["isa"]
    if not any(r["isa"] == isa for r in points):
        isa = points[0]["isa"]
    if storage is None and any("storage" in r for r in points):
        names = [r["storage"] for r in points]
        storage = "fp32" if "fp32" in names else names[0]
    points = _pick(points, dtype=None if storage else dtype, isa=isa, storage=storage)
    dtype = storage or dtype
    names = list(dict.fromkeys(r["name"] for r in points))
    thread_counts = sorted({r["threads"] for r in points}, reverse=True)
    peers = _peers_in(points)
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 3.6 * nrows), squeeze=False,
                             sharex=True)
    shade = {t: 0.55 * i / max(1, len(thread_counts) - 1) for i, t in enumerate(thread_counts)}
    peer_color = {p: f"C{i + 1}" for i, p in enumerate(peers)}
    for ax, name in zip(axes.flat, names):
        rows = _pick(points, name=name)
        for t in thread_counts:
            rt = sorted(_pick(rows, threads=t), key=lambda r: r["size"])
            color = str(shade[t])
            x = [r["size"] for r in rt]
            ax.plot(x, [r["gb_per_s"] for r in rt], "-o", color=color, ms=3,
                    label=f"adaptopt, {t} thr")
            ax.plot(x, [r["probe_gb_per_s"] for r in rt], ":", color=color, lw=1.5,
                    label=f"probe limit, {t} thr")
        rt = sorted(_pick(rows, threads=thread_counts[0]), key=lambda r: r["size"])
        for p in peers:
            xy = [(r["size"], r["peers"][p]["gb_per_s"]) for r in rt
                  if "gb_per_s" in r["peers"].get(p, {})]
            if xy:
                label = p if p == "numpy" else f"{p}, {thread_counts[0]} thr"
                ax.plot(*zip(*xy), "--", color=peer_color[p], lw=1.2, marker=".", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(name)
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("elements")
    for ax in axes[:, 0]:
        ax.set_ylabel("GB/s (traffic model)")
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles.keys()), loc="lower center",
               ncol=min(4, len(handles)), frameon=False)
    m = doc["machine"]
    fig.suptitle(f"adaptopt {doc['version']} step throughput, {dtype}, {isa} — {m['cpu_model']}, "
                 f"{m['cores']} cores")
    fig.tight_layout(rect=(0, 0.04 + 0.025 * math.ceil(len(handles) / 4), 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_run(doc: Doc) -> None:
    """The terminal report of a run: both tables and the conditions it ran under."""
    print_table(doc)
    print_small_table(doc)
    print(f"\nwall time {doc['wall_s']:.0f} s; other processes kept {doc['other_load']:.2f} "
          f"cores busy on average (load average {doc['load_avg']['start'][0]:.2f} at start); "
          f"{doc['retries']} measurement(s) repeated after waiting {doc['waited_s']:.0f} s for "
          "a quiet machine")
