"""The ``trainer-loop`` mode: is adaptopt a good neighbour inside a training loop?

Run ``adaptopt-bench trainer-loop`` (or ``python -m adaptopt.bench trainer-loop``) (about a minute; ``--quick`` for ~15 s). It measures,
in one run with the compared sides interleaved (blocks of ``--iters`` iterations, the order
rotated every round) and reports medians:

1. **numpy host**: an MLP-like loop (four 512x512 float32 layers with biases, batch 256,
   forward and backward in NumPy, so OpenBLAS's threads) followed by an adaptopt Adam step over
   its ~1.05e6 parameters. Three sides: ``none`` (the same loop without an optimizer step),
   ``default`` (adaptopt's default thread count) and ``one`` (``set_num_threads(1)``).
   Ratios: host forward+backward time with a step vs ``none`` (goal <= 1.10: the step must not
   slow the host's next forward/backward down), and the whole iteration ``default`` vs ``one``
   (goal <= 1.02: threads must not cost more than they give).
2. **torch host** (if torch is importable): the same model as ``torch.nn.Linear`` layers,
   forward and backward in torch (its own thread pool), adaptopt stepping the same memory
   through ``tensor.numpy()`` views. The same sides and ratios.
3. **small steps after BLAS**: an Adam step over 100 x 1000 and over 10 x 1e5 elements, right
   after a NumPy matmul (256x512 @ 512x512) vs in isolation (back-to-back steps). Ratio goal
   <= 2.

Every number is a median of per-iteration times. The load averages (``os.getloadavg()``) at the
start and the end are printed and recorded: on a shared 2-core machine other work shifts the
ratios, so re-run when the load was high. ``--json FILE`` writes everything.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
from typing import Dict, List, Optional

import numpy as np

import adaptopt

GOALS = {"host_ratio": 1.10, "iteration_ratio": 1.02, "small_ratio": 2.0}
WIDTH, LAYERS, BATCH = 512, 4, 256
SMALL_CASES = [(100, 1000), (10, 100_000)]
SIDES = ("none", "default", "one")


def _clock() -> float:
    return time.perf_counter()


# --------------------------------------------------------------------------------------------
# numpy host


class NumpyMLP:
    """Four WIDTH x WIDTH ReLU layers with biases, mean-squared-error loss; forward and backward
    write into preallocated arrays (the gradients an optimizer steps with)."""

    def __init__(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        scale = np.float32(1 / np.sqrt(WIDTH))
        self.W = [(rng.standard_normal((WIDTH, WIDTH)) * scale).astype(np.float32)
                  for _ in range(LAYERS)]
        self.b = [np.zeros(WIDTH, np.float32) for _ in range(LAYERS)]
        self.gW = [np.zeros_like(w) for w in self.W]
        self.gb = [np.zeros_like(b) for b in self.b]
        self.x = rng.standard_normal((BATCH, WIDTH)).astype(np.float32)
        self.y = rng.standard_normal((BATCH, WIDTH)).astype(np.float32)
        self.h = [np.empty((BATCH, WIDTH), np.float32) for _ in range(LAYERS + 1)]
        self.d = np.empty((BATCH, WIDTH), np.float32)
        self.d2 = np.empty((BATCH, WIDTH), np.float32)

    @property
    def params(self) -> List[np.ndarray]:
        return [a for pair in zip(self.W, self.b) for a in pair]

    @property
    def grads(self) -> List[np.ndarray]:
        return [a for pair in zip(self.gW, self.gb) for a in pair]

    def forward_backward(self) -> None:
        h = self.h
        h[0][...] = self.x
        for k in range(LAYERS):
            np.matmul(h[k], self.W[k], out=h[k + 1])
            h[k + 1] += self.b[k]
            if k + 1 < LAYERS:
                np.maximum(h[k + 1], 0, out=h[k + 1])
        d, e = self.d, self.d2
        np.subtract(h[LAYERS], self.y, out=d)
        d *= np.float32(2.0 / d.size)
        for k in reversed(range(LAYERS)):
            np.matmul(h[k].T, d, out=self.gW[k])
            np.sum(d, axis=0, out=self.gb[k])
            if k > 0:
                np.matmul(d, self.W[k].T, out=e)
                e *= h[k] > 0  # ReLU'
                d, e = e, d


# --------------------------------------------------------------------------------------------
# torch host


class TorchMLP:
    """The same model as torch.nn.Linear layers; adaptopt steps their memory through numpy()
    views (the gradients are kept allocated: zero_grad(set_to_none=False))."""

    def __init__(self, seed: int = 0):
        import torch

        self.torch = torch
        torch.manual_seed(seed)
        mods = []
        for k in range(LAYERS):
            mods.append(torch.nn.Linear(WIDTH, WIDTH))
            if k + 1 < LAYERS:
                mods.append(torch.nn.ReLU())
        self.model = torch.nn.Sequential(*mods)
        self.x = torch.randn(BATCH, WIDTH)
        self.y = torch.randn(BATCH, WIDTH)
        self.forward_backward()  # allocates .grad
        self.params = [p.detach().numpy() for p in self.model.parameters()]
        self.grads = [p.grad.numpy() for p in self.model.parameters()]

    def forward_backward(self) -> None:
        torch = self.torch
        self.model.zero_grad(set_to_none=False)
        loss = torch.nn.functional.mse_loss(self.model(self.x), self.y)
        loss.backward()


# --------------------------------------------------------------------------------------------
# measurement


def _median(xs: List[float]) -> float:
    return float(np.median(np.asarray(xs))) if xs else float("nan")


def host_loop(host, default_threads: int, rounds: int, iters: int, warmup: int = 3) -> dict:
    """Interleaves the three sides in blocks of ``iters`` iterations, the order rotated each
    round; returns per side the median host (forward+backward), step and iteration times."""
    opt = adaptopt.Adam(host.params, lr=1e-6)
    grads = host.grads
    times: Dict[str, Dict[str, List[float]]] = {
        s: {"host": [], "step": [], "iteration": []} for s in SIDES}

    def block(side: str, n: int, record: bool) -> None:
        adaptopt.set_num_threads(1 if side == "one" else default_threads)
        for _ in range(n):
            t0 = _clock()
            host.forward_backward()
            t1 = _clock()
            if side != "none":
                opt.step(grads)
            t2 = _clock()
            if record:
                rec = times[side]
                rec["host"].append(t1 - t0)
                rec["step"].append(t2 - t1)
                rec["iteration"].append(t2 - t0)

    try:
        for side in SIDES:
            block(side, warmup, False)
        for r in range(rounds):
            order = SIDES[r % 3:] + SIDES[:r % 3]
            for side in order:
                block(side, 1, False)  # the first iteration after a switch carries the last side
                block(side, iters, True)
    finally:
        adaptopt.set_num_threads(default_threads)
    out = {s: {k: _median(v) for k, v in rec.items()} for s, rec in times.items()}
    out["iterations_per_side"] = rounds * iters
    out["host_ratio"] = out["default"]["host"] / out["none"]["host"]
    out["host_ratio_one_thread"] = out["one"]["host"] / out["none"]["host"]
    out["iteration_ratio"] = out["default"]["iteration"] / out["one"]["iteration"]
    return out


def small_after_blas(tensors: int, size: int, rounds: int, iters: int) -> dict:
    """Adam over ``tensors`` x ``size`` float32 elements: isolated (back-to-back steps) vs right
    after a NumPy matmul (outside the timed window), with the default thread count and, as the
    control, one thread: the matmul also evicts the step's buffers from the caches, which costs
    a step on one thread too, so the one-thread ratio is the floor threads cannot beat."""
    rng = np.random.default_rng(1)
    params = [rng.standard_normal(size).astype(np.float32) for _ in range(tensors)]
    grads = [rng.standard_normal(size).astype(np.float32) * np.float32(1e-3) for _ in range(tensors)]
    opt = adaptopt.Adam(params, lr=1e-6)
    a = rng.standard_normal((BATCH, WIDTH)).astype(np.float32)
    b = rng.standard_normal((WIDTH, WIDTH)).astype(np.float32)
    c = np.empty((BATCH, WIDTH), np.float32)
    default_threads = adaptopt.get_num_threads()
    sides = [(t, after) for t in (default_threads, 1) for after in (False, True)]
    times: Dict[tuple, List[float]] = {side: [] for side in sides}
    matmul: List[float] = []
    for _ in range(20):
        opt.step(grads)
        np.matmul(a, b, out=c)
    try:
        for r in range(rounds):
            for threads, after in sides[r % 4:] + sides[:r % 4]:
                adaptopt.set_num_threads(threads)
                opt.step(grads)  # settles into this side
                for _ in range(iters):
                    if after:
                        t0 = _clock()
                        np.matmul(a, b, out=c)
                        matmul.append(_clock() - t0)
                    t1 = _clock()
                    opt.step(grads)
                    times[threads, after].append(_clock() - t1)
    finally:
        adaptopt.set_num_threads(default_threads)
    med = {side: _median(v) for side, v in times.items()}
    out = {"tensors": tensors, "size": size,
           "isolated_s": med[default_threads, False], "after_blas_s": med[default_threads, True],
           "isolated_one_thread_s": med[1, False], "after_blas_one_thread_s": med[1, True],
           "matmul_s": _median(matmul), "steps_per_side": rounds * iters}
    out["small_ratio"] = out["after_blas_s"] / out["isolated_s"]
    out["small_ratio_one_thread"] = out["after_blas_one_thread_s"] / out["isolated_one_thread_s"]
    return out


def _cpu_times() -> Optional[tuple]:
    """(wall, busy CPU seconds of the machine, CPU seconds of this process, steal seconds), or
    None without psutil."""
    try:
        import psutil
    except ImportError:
        return None
    t = psutil.cpu_times()
    busy = sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) \
        - getattr(t, "guest_nice", 0.0) - getattr(t, "steal", 0.0)
    me = os.times()
    return _clock(), busy, me.user + me.system, getattr(t, "steal", 0.0)


def _other_load(t0: Optional[tuple], t1: Optional[tuple]) -> Optional[dict]:
    """Cores kept busy by other processes, and cores stolen by the hypervisor, on average."""
    if t0 is None or t1 is None:
        return None
    wall, busy, me, steal = (b - a for a, b in zip(t0, t1))
    return {"other_processes_cores": round(max(0.0, busy - me) / wall, 3),
            "steal_cores": round(steal / wall, 3)}


def _thread_info() -> dict:
    info = {"adaptopt": adaptopt.get_num_threads(), "cpus": os.cpu_count()}
    try:
        info["affinity"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        from threadpoolctl import threadpool_info

        info["pools"] = [{k: d.get(k) for k in ("internal_api", "prefix", "num_threads", "version")}
                         for d in threadpool_info()]
    except ImportError:
        pass
    return info


def _fmt_t(s: float) -> str:
    if math.isnan(s):
        return "-"
    return f"{s * 1e3:.3f} ms" if s >= 1e-3 else f"{s * 1e6:.1f} µs"


def _verdict(value: float, goal: float) -> str:
    return "ok" if value <= goal else "MISSED"


def print_report(res: dict, file=None) -> None:
    file = sys.stdout if file is None else file
    p = lambda *a: print(*a, file=file)
    la = res["load_avg"]
    p(f"adaptopt {res['version']} trainer loop ({res['date']}), isa {res['isa']}, "
      f"threads {res['threads']['adaptopt']} (default), {res['machine']}")
    p(f"load average (1/5/15 min): start {la['start']}, end {la['end']}")
    if res.get("other_load"):
        o = res["other_load"]
        p(f"during the run: other processes kept {o['other_processes_cores']:.2f} cores busy, "
          f"the hypervisor stole {o['steal_cores']:.2f} cores (wall {res['wall_s']} s)")
    for name in ("numpy", "torch"):
        h = res.get(name)
        if h is None:
            continue
        if "skipped" in h:
            p(f"\n{name} host: skipped ({h['skipped']})")
            continue
        p(f"\n{name} host: {LAYERS} x {WIDTH}x{WIDTH} layers, batch {BATCH}, Adam over "
          f"{h['parameters']:,} parameters; medians of {h['iterations_per_side']} iterations per side")
        p(f"  {'side':<22}{'fwd+bwd':>12}{'step':>12}{'iteration':>12}")
        for side, label in (("none", "no optimizer step"), ("default", "adaptopt, default"),
                            ("one", "adaptopt, 1 thread")):
            s = h[side]
            step = "-" if side == "none" else _fmt_t(s["step"])
            p(f"  {label:<22}{_fmt_t(s['host']):>12}{step:>12}{_fmt_t(s['iteration']):>12}")
        p(f"  fwd+bwd with step / without:      {h['host_ratio']:.3f}x  (goal <= "
          f"{GOALS['host_ratio']:.2f}: {_verdict(h['host_ratio'], GOALS['host_ratio'])}; "
          f"1 thread: {h['host_ratio_one_thread']:.3f}x)")
        p(f"  iteration default / 1 thread:     {h['iteration_ratio']:.3f}x  (goal <= "
          f"{GOALS['iteration_ratio']:.2f}: {_verdict(h['iteration_ratio'], GOALS['iteration_ratio'])})")
    if res.get("small"):
        p(f"\nsmall Adam steps right after a {BATCH}x{WIDTH} @ {WIDTH}x{WIDTH} matmul vs isolated")
        p(f"  {'step':<14}{'isolated':>12}{'after BLAS':>12}{'ratio':>9}  goal <= "
          f"{GOALS['small_ratio']:.0f}   1 thread: isolated, after BLAS, ratio (cache floor)")
        for s in res["small"]:
            p(f"  {s['tensors']} x {s['size']:<8}{_fmt_t(s['isolated_s']):>12}"
              f"{_fmt_t(s['after_blas_s']):>12}{s['small_ratio']:>8.2f}x  "
              f"{_verdict(s['small_ratio'], GOALS['small_ratio']):<9}"
              f"{_fmt_t(s['isolated_one_thread_s']):>10}{_fmt_t(s['after_blas_one_thread_s']):>12}"
              f"{s['small_ratio_one_thread']:>8.2f}x")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="adaptopt-bench trainer-loop",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=12, help="rounds of interleaved blocks (12)")
    ap.add_argument("--iters", type=int, default=8, help="iterations per side per round (8)")
    ap.add_argument("--small-iters", type=int, default=40,
                    help="steps per side per round in the small-step part (40)")
    ap.add_argument("--quick", action="store_true", help="4 rounds (about 15 s)")
    ap.add_argument("--no-torch", action="store_true", help="skip the torch host")
    ap.add_argument("--parts", default="numpy,torch,small",
                    help="comma list of numpy, torch, small (default: all)")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    return ap


def run(argv: Optional[List[str]] = None) -> dict:
    args = build_parser().parse_args(argv)
    rounds = 4 if args.quick else args.rounds
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = parts - {"numpy", "torch", "small"}
    if unknown:
        raise SystemExit(f"unknown --parts {sorted(unknown)}")
    default_threads = adaptopt.get_num_threads()
    t_start = _clock()
    cpu0 = _cpu_times()
    res: dict = {
        "version": adaptopt.__version__, "command": sys.argv[:1] + list(argv or sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "isa": adaptopt.isa(), "machine": f"{platform.machine()}, Python "
        f"{platform.python_version()}, NumPy {np.__version__}",
        "load_avg": {"start": [round(x, 2) for x in os.getloadavg()]},
        "goals": GOALS, "settings": {"rounds": rounds, "iters": args.iters,
                                     "small_iters": args.small_iters},
    }
    if "numpy" in parts:
        host = NumpyMLP()
        res["numpy"] = host_loop(host, default_threads, rounds, args.iters)
        res["numpy"]["parameters"] = sum(p.size for p in host.params)
    if "torch" in parts:
        if args.no_torch:
            res["torch"] = {"skipped": "--no-torch"}
        else:
            try:
                import torch
            except ImportError as e:
                res["torch"] = {"skipped": f"torch not importable: {e}"}
            else:
                host = TorchMLP()
                res["torch"] = host_loop(host, default_threads, rounds, args.iters)
                res["torch"]["parameters"] = sum(p.size for p in host.params)
                res["torch"]["torch_version"] = torch.__version__
                res["torch"]["torch_threads"] = torch.get_num_threads()
    if "small" in parts:
        res["small"] = [small_after_blas(t, n, rounds, args.small_iters) for t, n in SMALL_CASES]
    res["threads"] = _thread_info()
    res["load_avg"]["end"] = [round(x, 2) for x in os.getloadavg()]
    res["other_load"] = _other_load(cpu0, _cpu_times())
    res["wall_s"] = round(_clock() - t_start, 1)
    return res


def main(argv: Optional[List[str]] = None) -> int:
    res = run(argv)
    print_report(res)
    args = build_parser().parse_args(argv)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0

