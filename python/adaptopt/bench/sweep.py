"""The sweep: every ISA x storage x size x thread count x configuration (a *point*), then the
small steps, each measured against its peers; ``run_sweep`` returns the ``schema.Run`` document.

A point steps one parameter of ``size`` elements in place: adaptopt (``measure.time_steps``),
then the bandwidth probe over the same arrays (p, g, the optimizer's own state buffers and
master copy, already paged in, in their widths) at the same threads and ISA, then the compute
floor (the same step in cache, measured once per configuration x storage x threads x ISA), then
each peer on the same arrays. Peer results are reused across ISAs (and, for NumPy, across thread
counts). Small steps: ``--small-tensors`` (default 100 tensors of 1000 elements) and one
1-element tensor, in µs per step.

The storage (``storage.Storage``, ``--storage``) sets the param/grad dtype, the state dtype and
master weights or stochastic rounding; the traffic model is per stream (``Storage.traffic``).
The compute floor: the step's time per element at a size whose arrays take FLOOR_BYTES (in the
L2 caches of two cores), the fastest of many repetitions; a point is ``compute``-bound when that floor, scaled
to its size, is slower than the probe's pass (then the limit is the floor, not the probe).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import gc
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np

import adaptopt

from . import budget
from .algos import Algo
from .measure import (
    GC_BYTES,
    SETTLE,
    BandwidthProbe,
    Timing,
    Usage,
    cpu_sample,
    filled,
    machine_info,
    measure_step,
    other_load,
    time_steps,
)
from .peers import make_peers
from .schema import (
    SCHEMA,
    LoadAvg,
    PeerResult,
    PeerSkipped,
    Point,
    Run,
    Settings,
    Skip,
    SmallPeer,
    SmallPoint,
)
from .storage import Storage, probe_states
from .units import fmt_size

FLOOR_BYTES = 1 << 20  # the compute floor's arrays (p, g, master, state): in two cores' L2


class Progress:
    """A tqdm bar with a status line on stderr, or (disabled, or no tqdm) plain messages."""

    def __init__(self, total: int, enabled: bool, quiet: bool):
        self.quiet, self._status, self._bar = quiet, "", None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self._bar = tqdm(total=total, unit="pt", file=sys.stderr, dynamic_ncols=True)

    def write(self, msg: str) -> None:
        if self._bar is not None:
            self._bar.write(msg, file=sys.stderr)
        elif not self.quiet:
            print(msg, file=sys.stderr)

    def status(self, msg: str) -> None:
        self._status = msg
        if self._bar is not None:
            self._bar.set_description_str(msg, refresh=False)

    def waiting(self, on: bool) -> None:
        if self._bar is not None:
            suffix = " (waiting for other processes to quieten)" if on else ""
            self._bar.set_description_str(self._status + suffix, refresh=False)

    def update(self, k: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(k)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class Sweep:
    """Runs the points and small steps an ``argparse`` namespace (``cli.parse_args``) describes."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.algos: list[Algo] = args.algos
        self.peers = make_peers(not args.no_torch, not getattr(args, "no_bnb", False))
        if getattr(args, "peers", None):
            self.peers = [p for p in self.peers if p.name in args.peers]
        self.points: list[Point] = []
        self.small: list[SmallPoint] = []
        self.skipped: list[Skip] = []
        self.progress = Progress(0, False, args.quiet)
        self.quiet = budget.Quiet(args.max_wait, on_wait=lambda on: self.progress.waiting(on))
        self.peer_budget = budget.PeerBudget(args.max_memory, args.peer_budget)
        self._peer_cache: dict[tuple, Any] = {}  # results reused across ISAs (and threads)
        self._floor_cache: dict[tuple, tuple[int, float]] = {}

    def _note(self, what: str, reason: str) -> None:
        self.skipped.append(Skip(what, reason))
        self.progress.write(f"skipped {what}: {reason}")

    def _set_threads(self, n: int) -> None:
        adaptopt.set_num_threads(n)
        if any(p.threaded and p.name.startswith(("torch", "bnb")) for p in self.peers):
            import torch

            torch.set_num_threads(n)

    def _timed(self, min_time: float, nbytes: int, make: Callable[..., Callable[[], None]],
               *args: Any) -> tuple[Timing, Usage]:
        """``measure.measure_step``, measured again if other processes disturbed it."""
        def measure() -> tuple[tuple[Timing, Usage], float]:
            timing, use = measure_step(make, *args, min_time=min_time, nbytes=nbytes)
            return (timing, use), use.other_load

        return self.quiet.retry(measure)

    def run(self) -> None:
        a = self.args
        total = len(a.isas) * len(a.storages) * len(a.threads) * len(self.algos) * (
            len(a.sizes) + (2 if a.small else 0))
        self.progress = Progress(total, not a.quiet and a.progress, a.quiet)
        try:
            for isa in a.isas:
                adaptopt.set_isa(isa)
                for storage in a.storages:
                    for n in a.sizes:
                        self._run_size(isa, storage, n)
                    if a.small:
                        self._run_small(isa, storage)
        finally:
            self.progress.close()

    # -- large points ------------------------------------------------------------------------
    def _run_size(self, isa: str, storage: Storage, n: int) -> None:
        dtype = storage.param_dtype
        algos = []
        for algo in self.algos:
            reason = budget.point_skip(algo.n_state, n, dtype.itemsize, self.args.max_memory,
                                       per_element=storage.footprint(algo.n_state))
            if reason is not None:
                self._note(f"{algo.name} {fmt_size(n)} {storage.name} ({isa})", reason)
                self.progress.update(len(self.args.threads))
            else:
                algos.append(algo)
        if not algos:
            return
        p = filled(n, dtype, seed=1, scale=1.0)
        g = filled(n, dtype, seed=2, scale=1e-2)
        for threads in self.args.threads:
            self._set_threads(threads)
            for algo in algos:
                tag = f"{algo.name} {fmt_size(n)} {storage.name} t{threads} {isa}"
                self.progress.status(tag)
                point = self.quiet.retry(functools.partial(self._point_once, algo, storage, p, g,
                                                           threads, isa))
                self._add_floor(point, algo, storage, threads, isa)
                for peer in self.peers:
                    if peer.supports(algo, storage) is not None:
                        continue
                    missing = getattr(peer, "unavailable", lambda: None)()
                    if missing is not None:
                        self._note(f"{peer.name} {tag}", missing)
                        point.peers[peer.name] = PeerSkipped(missing)
                        continue
                    self.progress.status(f"{tag}: {peer.name}")
                    point.peers[peer.name] = self._peer(peer, algo, storage, p, g, threads,
                                                        point.median_s, tag)
                self.points.append(point)
                self.progress.update()
        del p, g

    def _point_once(self, algo: Algo, storage: Storage, p: np.ndarray, g: np.ndarray, threads: int,
                    isa: str) -> tuple[Point, float]:
        """adaptopt's step, then the probe over the same arrays; and the cores other processes
        used meanwhile (the larger of the two)."""
        n, min_time = p.size, self.args.min_time
        time.sleep(SETTLE)
        with Usage() as use:
            opt = algo.make([p], **storage.kwargs)
            timing = time_steps(functools.partial(opt.step, [g]), min_time)
        states, master = probe_states(algo.spec, opt.state[0])
        probe, probe_use = measure_step(_probe, algo.n_state, p, g, states, storage, master,
                                        min_time=min_time)
        del opt, states, master
        if p.nbytes > GC_BYTES:
            gc.collect()
        traffic = storage.traffic(algo.n_state)
        bpe = storage.bytes_per_element(algo.n_state)
        gbs, probe_gbs = bpe * n / timing.median_s / 1e9, bpe * n / probe.median_s / 1e9
        load = max(use.other_load, probe_use.other_load)
        return Point(algo=algo.algo, variant=algo.variant.name, name=algo.name, rule=algo.spec.name,
                     kwargs=algo.kwargs, size=n, dtype=str(p.dtype), storage=storage.name,
                     state_dtype=storage.state_dtype, param_mode=storage.param_mode,
                     threads=threads, isa=isa, n_state=algo.n_state, traffic=traffic,
                     bytes_per_element=bpe, **dataclasses.asdict(timing),
                     elements_per_s=n / timing.median_s, gb_per_s=gbs, probe_gb_per_s=probe_gbs,
                     probe_median_s=probe.median_s, share_of_probe=gbs / probe_gbs,
                     peak_rss_bytes=use.peak, rss_growth_bytes=use.growth, other_load=load), load

    def _add_floor(self, point: Point, algo: Algo, storage: Storage, threads: int, isa: str) -> None:
        """The compute floor beside the point: its size and time per element, the GB/s it
        allows, whether the probe or the floor is the limit, and the point's share of it."""
        if not self.args.floor:
            return
        key = (algo.name, storage.name, threads, isa)
        if key not in self._floor_cache:
            self.progress.status(f"{algo.name} {storage.name} t{threads} {isa}: compute floor")
            self._floor_cache[key] = self.quiet.retry(functools.partial(self._floor_once, algo, storage))
        size, per_elem = self._floor_cache[key]
        floor_gbs = point.bytes_per_element / per_elem / 1e9
        point.floor_size, point.floor_s_per_element, point.floor_gb_per_s = size, per_elem, floor_gbs
        point.bound = "compute" if floor_gbs < point.probe_gb_per_s else "memory"
        point.limit_gb_per_s = min(floor_gbs, point.probe_gb_per_s)
        point.share_of_limit = point.gb_per_s / point.limit_gb_per_s

    def _floor_once(self, algo: Algo, storage: Storage) -> tuple[tuple[int, float], float]:
        n = floor_size(algo, storage)
        p = filled(n, storage.param_dtype, seed=1, scale=1.0)
        g = filled(n, storage.param_dtype, seed=2, scale=1e-2)
        timing, use = measure_step(lambda: functools.partial(algo.make([p], **storage.kwargs).step, [g]),
                                   min_time=self.args.min_time)
        # the fastest step: a floor is a lower bound, and on a shared 2-core machine a median of
        # 2-thread steps in cache moves with every other process
        return (n, timing.min_s / n), use.other_load

    def _peer(self, peer: Any, algo: Algo, storage: Storage, p: np.ndarray, g: np.ndarray,
              threads: int, ours_s: float, tag: str) -> PeerResult | PeerSkipped:
        key = (peer.name, algo.name, p.size, storage.name, threads if peer.threaded else None)
        if key not in self._peer_cache:
            self._peer_cache[key] = self._measure_peer(peer, algo, storage, p, g, key, tag)
        res = self._peer_cache[key]
        if isinstance(res, PeerSkipped):
            return res
        return dataclasses.replace(res, speedup=res.median_s / ours_s,
                                   threads=threads if peer.threaded else 1)

    def _measure_peer(self, peer: Any, algo: Algo, storage: Storage, p: np.ndarray, g: np.ndarray,
                      key: tuple, tag: str) -> PeerResult | PeerSkipped:
        n, itemsize = p.size, p.dtype.itemsize
        rule_key = key[:2] + key[3:]  # the budget follows one peer x algo x storage x threads up the sizes
        reason = self.peer_budget.skip(rule_key, n, itemsize, algo.n_state, peer.temporaries,
                                       per_element=peer.extra_bytes(algo, storage))
        if reason is not None:
            self._note(f"{peer.name} {tag}", reason)
            return PeerSkipped(reason)
        timing, use = self._timed(self.args.min_time, p.nbytes, peer.make, algo, [p], [g], storage)
        self.peer_budget.ran(rule_key, n, timing.median_s, use.growth)
        bpe = storage.bytes_per_element(algo.n_state)
        return PeerResult(**dataclasses.asdict(timing), elements_per_s=n / timing.median_s,
                          gb_per_s=bpe * n / timing.median_s / 1e9, peak_rss_bytes=use.peak,
                          rss_growth_bytes=use.growth, other_load=use.other_load)

    # -- small steps -------------------------------------------------------------------------
    def _run_small(self, isa: str, storage: Storage) -> None:
        dtype = storage.param_dtype
        count, size = self.args.small_tensors
        modes = [(f"{count}x{size}", count, size), ("1", 1, 1)]
        min_time = self.args.min_time / 2
        for threads in self.args.threads:
            self._set_threads(threads)
            for algo in self.algos:
                for mode, k, m in modes:
                    self.progress.status(f"small {mode} {algo.name} t{threads} {isa}")
                    params = [filled(m, dtype, seed=1 + i, scale=1.0) for i in range(k)]
                    grads = [filled(m, dtype, seed=1000 + i, scale=1e-2) for i in range(k)]
                    ours, use = self._timed(min_time, 0, algo.stepper, params, grads, storage.kwargs)
                    peers = {}
                    for peer in self.peers:
                        if peer.supports(algo, storage) is not None or \
                                getattr(peer, "unavailable", lambda: None)() is not None:
                            continue
                        key = ("small", peer.name, algo.name, mode, storage.name,
                               threads if peer.threaded else None)
                        if key not in self._peer_cache:
                            self._peer_cache[key] = self._timed(min_time, 0, peer.make, algo, params,
                                                                grads, storage)[0].median_s * 1e6
                        us = self._peer_cache[key]
                        peers[peer.name] = SmallPeer(us=us, speedup=us / (ours.median_s * 1e6))
                    self.small.append(SmallPoint(
                        mode=mode, tensors=k, tensor_size=m, algo=algo.algo, variant=algo.variant.name,
                        name=algo.name, dtype=str(dtype), storage=storage.name, threads=threads, isa=isa,
                        adaptopt_us=ours.median_s * 1e6, steps=ours.steps, other_load=use.other_load,
                        peers=peers))
                    self.progress.update()


def _probe(n_state: int, p: np.ndarray, g: np.ndarray, states: list[Any], storage: Storage,
           master: np.ndarray | None) -> Callable[[], None]:
    return BandwidthProbe(p.size, n_state, p.dtype, p, g, states, storage, master).run


def floor_size(algo: Algo, storage: Storage) -> int:
    """Elements of the compute floor's point: its arrays take about FLOOR_BYTES, a multiple of
    the 8-bit block."""
    return max(4096, int(FLOOR_BYTES / storage.footprint(algo.n_state)) // 256 * 256)


def run_sweep(args: argparse.Namespace, command: Sequence[str]) -> Run:
    """Runs the sweep (restoring the ISA and thread count after) and returns the document."""
    start = time.time()
    load_start = os.getloadavg()
    isa0, threads0 = adaptopt.isa(), adaptopt.get_num_threads()
    machine = machine_info()
    cpu0 = cpu_sample()
    sweep = Sweep(args)
    try:
        sweep.run()
    finally:
        adaptopt.set_isa(isa0)
        adaptopt.set_num_threads(threads0)
    date = datetime.datetime.fromtimestamp(start).astimezone().isoformat(timespec="seconds")
    return Run(version=adaptopt.__version__, schema=SCHEMA, command=list(command), date=date,
               wall_s=time.time() - start,
               load_avg=LoadAvg(start=list(load_start), end=list(os.getloadavg())),
               other_load=other_load(cpu0, cpu_sample()), machine=machine,
               settings=Settings(min_time_s=args.min_time, peer_budget_s=args.peer_budget,
                                 memory_limit_bytes=args.max_memory, max_wait_s=args.max_wait),
               retries=sweep.quiet.retries, waited_s=sweep.quiet.waited,
               skipped=sweep.skipped, points=sweep.points, small=sweep.small)
