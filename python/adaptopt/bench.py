"""adaptopt-bench: throughput of adaptopt's optimizer steps against the memory-bandwidth limit
and against hand-written NumPy and torch.optim.

Run ``adaptopt-bench --quick`` (under a minute) or ``adaptopt-bench`` (the full sweep: every
algorithm, 1e3 ... 1e9 elements, 1 thread and all threads, float32). ``--help`` lists the options.

What is measured
----------------
For every algorithm × size × dtype × thread count × ISA (a *point*), one parameter of ``size``
elements with its gradient is stepped in place:

* **adaptopt**: warm-up (at least one step, which pages in the state; more for short steps), then
  timed steps for about ``--min-time`` seconds but at least 3 (so a 1e9 point takes 1 + 3 steps).
  Steps shorter than 1 ms are timed in batches and divided. Median, min and max per step.
* **probe**: :class:`BandwidthProbe` right after the step, at the same threads and ISA, over the
  same arrays (p, g and the optimizer's own state buffers, so as many streams as the step),
  timed the same way; its GB/s is the limit the step is held against (``share_of_probe``).
* **peers** on the same arrays: ``numpy`` (the in-place ufunc chain a user would write; NumPy is
  single-threaded, so it is measured once per algorithm/size/dtype and reported at every thread
  count) and, when torch is installed, ``torch-forloop`` / ``torch-foreach`` / ``torch-fused``
  (torch.optim with ``foreach=False`` / ``foreach=True`` / ``fused=True``; fused only where torch
  has it on CPU; ``torch.set_num_threads`` = the point's thread count). ``speedup`` is the peer's
  median over adaptopt's.

Traffic model: a step reads p, g and each state buffer once and writes p and each state buffer
once, so it moves ``(3 + 2 * n_state) * itemsize`` bytes per element (GB = 1e9 bytes).

Skipping rules (each skip is printed and recorded in ``skipped``)
-----------------------------------------------------------------
* memory: a point needs ``(2 + n_state) * size * itemsize`` bytes (params, grads, state); a peer
  (which shares the params and grads) needs its state and temporaries (estimated: numpy 3,
  torch-foreach 3, torch-forloop 2, torch-fused 0 arrays of ``size``, or the RSS growth it
  showed at the previous size scaled up, whichever is larger). The limit is ``--max-memory``
  or the available memory (psutil) less a 5 % reserve, whichever is smaller.
* time: above 1e8 elements a peer runs only if its warm-up plus 3 steps, predicted linearly
  from its median at the previous size, fit in ``--peer-budget`` seconds (default 5;
  ``--peer-budget inf`` runs them all). At 1e9 this typically keeps torch's fused
  Adam/AdamW/Adagrad and drops the peers that would take 10 s or more per point.

Other work on the machine disturbs the numbers (on 2 cores, a busy core stalls every
2-thread step). Each measurement records ``other_load``: the average number of cores that other
processes kept busy meanwhile. Above 0.25, the harness waits until the machine is quiet (other
processes under 0.1 cores for 0.5 s) and measures again, 3 times at most and for at most
``--max-wait`` seconds of waiting in all; points still disturbed are marked ``*`` in the table.

Small steps (``small``): a step over ``--small-tensors`` (default 100x1000: 100 tensors of 1000
elements) and over one 1-element tensor, in µs per step, for adaptopt and every peer.

JSON (``--json FILE``)
----------------------
Top level:
  ``version`` adaptopt version; ``schema`` this layout's version (1); ``command`` argv;
  ``date`` ISO 8601 start time; ``wall_s`` duration of the run;
  ``load_avg`` {``start``, ``end``}: 1/5/15-minute load averages;
  ``other_load`` cores kept busy by other processes, averaged over the run;
  ``retries`` measurements repeated because other processes disturbed them, ``waited_s`` the
  time spent waiting for a quiet machine;
  ``machine`` {``cpu_model`` (/proc/cpuinfo "model name"), ``cores``, ``memory_bytes``,
  ``isa`` (active at start), ``available_isas``, ``numpy``, ``torch`` (version or null),
  ``python``};
  ``settings`` {``min_time_s``, ``peer_budget_s``, ``memory_limit_bytes``, ``max_wait_s``};
  ``skipped`` list of {``what``, ``reason``};
  ``points`` and ``small`` below.
Each of ``points``:
  ``algo`` (rmsprop, adagrad, adadelta, adam, adamw), ``variant`` (plain, momentum, centered,
  nesterov, amsgrad), ``name`` (e.g. rmsprop-momentum), ``size``, ``dtype``, ``threads``,
  ``isa``, ``n_state``, ``bytes_per_element`` (traffic model);
  ``median_s``, ``min_s``, ``max_s`` seconds per step, ``steps`` timed steps;
  ``elements_per_s``, ``gb_per_s`` (from the median and the traffic model);
  ``probe_gb_per_s``, ``probe_median_s``, ``share_of_probe`` (= gb_per_s / probe_gb_per_s);
  ``peak_rss_bytes`` process peak RSS while constructing and stepping the optimizer,
  ``rss_growth_bytes`` that peak less the RSS before (state buffers plus any temporaries);
  ``other_load`` cores busy with other processes during the probe or the step (the larger);
  ``peers`` {peer name: {``median_s``, ``min_s``, ``max_s``, ``steps``, ``elements_per_s``,
  ``gb_per_s`` (adaptopt's traffic model over the peer's time), ``speedup``,
  ``peak_rss_bytes``, ``rss_growth_bytes``, ``other_load``, ``threads``} or
  {``skipped``: reason}}; a peer that cannot run the algorithm at all is left out.
Each of ``small``:
  ``mode`` ("100x1000" or "1"), ``tensors``, ``tensor_size``, ``algo`` (the name, as in
  points), ``dtype``, ``threads``, ``isa``, ``adaptopt_us``, ``steps``, ``other_load`` (during
  adaptopt's measurement), ``peers`` {peer name: {``us``, ``speedup``}}.

Peak RSS comes from Linux's VmHWM, reset before each measurement through /proc/self/clear_refs;
elsewhere from ``ru_maxrss``, which cannot be reset (then it is a lower bound). Memory that
the allocator already holds is reused without growing the RSS, so small sizes may show 0.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import gc
import json
import math
import os
import platform
import re
import resource
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

import adaptopt
from adaptopt import _core, _hyper
from adaptopt._bench_algos import (
    ALGO_BY_NAME,
    ALGOS,
    Algo,
    adaptopt_step,
    make_peers,
    torch_version,
)
from adaptopt._bench_report import BUSY, fmt_bytes, fmt_size, plot, print_small_table, print_table

SCHEMA = 1
DEFAULT_SIZES = [10**k for k in range(3, 10)]
QUICK_SIZES = [10**4, 10**6, 10**7]
QUICK_ALGOS = ["rmsprop", "adagrad", "adam"]
MIN_STEPS = 3  # timed steps per measurement, at least
BATCH_TIME = 1e-3  # steps shorter than this are timed in batches of about this length
SLOW_PEER_SIZE = 10**8  # above this, peers are subject to --peer-budget
MEMORY_RESERVE = 0.05  # of the available memory, kept free
SETTLE = 0.005  # s of sleep before a measurement: the last one's idle OpenMP workers go to sleep
ATTEMPTS = 3  # measurements of a point at most, while other processes disturb it
QUIET, QUIET_WINDOW = 0.1, 0.5  # a quiet machine: other processes below 0.1 cores over 0.5 s
GC_BYTES = 64 << 20  # after measurements on arrays this large, collect reference cycles (~0.1 s)
# so that the next measurement finds the memory free


# --------------------------------------------------------------------------------------------
# Measurement primitives


class BandwidthProbe:
    """The native STREAM-style probe: one pass over exactly the buffers a step with ``n_state``
    state buffers streams (reads p, g and each state buffer, writes p and each state buffer),
    with the kernels' ISA, thread count and parallel split, and a trivial add per stream that
    leaves the values unchanged. ``p``, ``g`` and ``states`` (``n_state`` arrays) may be given
    to stream a point's own arrays (e.g. an optimizer's state: already paged in)."""

    def __init__(self, n: int, n_state: int, dtype=np.float32, p: Optional[np.ndarray] = None,
                 g: Optional[np.ndarray] = None, states: Optional[List[np.ndarray]] = None):
        if not 0 <= n_state <= 3:
            raise ValueError(f"n_state must be in 0..3, got {n_state}")
        if states is not None and len(states) != n_state:
            raise ValueError(f"states: expected {n_state} arrays, got {len(states)}")
        dtype = np.dtype(dtype)
        self.n, self.n_state, self.dtype = n, n_state, dtype
        self.p = np.zeros(n, dtype) if p is None else p
        self.g = np.ones(n, dtype) if g is None else g
        if states is None:
            states = [np.zeros(n, dtype) for _ in range(n_state)]
        states = list(states) + [None] * (3 - n_state)
        self._group = _core.Group(_hyper.PROBE, [self.p], [states], np.zeros(1, np.int64),
                                  "params", 0, ["s0", "s1", "s2"])
        self._hyper = _core.Hyper(_hyper.PROBE, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0)
        self._args = ([self._group], [self._hyper], [self.g])

    @property
    def bytes_per_pass(self) -> int:
        return traffic_bytes(self.n_state, self.dtype.itemsize) * self.n

    def run(self) -> None:
        """One pass (time it like a step)."""
        _core.multi_step(*self._args)


def traffic_bytes(n_state: int, itemsize: int) -> int:
    """Bytes per element of a step: reads (2 + n_state) and writes (1 + n_state)."""
    return (3 + 2 * n_state) * itemsize


@dataclass
class Timing:
    median_s: float
    min_s: float
    max_s: float
    steps: int

    def as_dict(self) -> dict:
        return dict(median_s=self.median_s, min_s=self.min_s, max_s=self.max_s, steps=self.steps)


def time_steps(step: Callable[[], None], min_time: float, min_steps: int = MIN_STEPS) -> Timing:
    """Warm up, then time ``step`` for about ``min_time`` seconds and at least ``min_steps``
    samples; steps under BATCH_TIME are timed in batches (each sample = batch time / batch)."""
    clock = time.perf_counter
    t0 = clock()
    step()  # pages in lazily allocated state
    est = clock() - t0
    if est < min_time / 20:  # short steps: warm caches and threads for ~10% of the budget
        deadline, k = clock() + min_time / 10, 0
        t0 = clock()
        while True:
            step()
            k += 1
            if clock() >= deadline:
                break
        est = (clock() - t0) / k
    batch = max(1, int(BATCH_TIME / est)) if est < BATCH_TIME else 1
    samples = max(min_steps, round(min_time / (batch * est)))
    times = np.empty(samples)
    for i in range(samples):
        t0 = clock()
        for _ in range(batch):
            step()
        times[i] = (clock() - t0) / batch
    return Timing(float(np.median(times)), float(times.min()), float(times.max()), samples * batch)


class Usage:
    """Context manager recording, for the block: the process's peak RSS (``peak``) and its
    growth over the RSS at entry (``growth``), and ``other_load``, the average number of cores
    that other processes kept busy (system busy CPU time less this process's, over wall time).
    Peak RSS is Linux's VmHWM, reset through /proc/self/clear_refs; elsewhere ru_maxrss, which
    cannot be reset (then it is a lower bound)."""

    def __init__(self):
        self.peak = self.growth = 0
        self.other_load = 0.0

    @staticmethod
    def _status(key: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        raise KeyError(key)

    @staticmethod
    def _maxrss() -> int:
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r if sys.platform == "darwin" else r * 1024

    @staticmethod
    def _cpu() -> tuple:
        """(wall, busy CPU seconds of the whole system, CPU seconds of this process)."""
        import psutil

        t = psutil.cpu_times()
        busy = sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) \
            - getattr(t, "guest_nice", 0.0)
        me = resource.getrusage(resource.RUSAGE_SELF)
        return time.perf_counter(), busy, me.ru_utime + me.ru_stime

    def __enter__(self):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._start = self._status("VmRSS:")
            self._read = lambda: self._status("VmHWM:")
        except OSError:
            self._start = self._maxrss()
            self._read = self._maxrss
        self._cpu0 = self._cpu()
        return self

    def __exit__(self, *exc):
        wall, busy, me = (b - a for a, b in zip(self._cpu0, self._cpu()))
        # CPU times tick at 100 Hz: two ticks of slack keep short blocks from false alarms
        self.other_load = max(0.0, (busy - me - 0.02) / wall) if wall > 0 else 0.0
        self.peak = self._read()
        self.growth = max(0, self.peak - self._start)


def filled(n: int, dtype, seed: int, scale: float) -> np.ndarray:
    """``scale`` × standard normal values, made from a tiled 1 MiB block (fast at 1e9)."""
    block = np.random.default_rng(seed).standard_normal(min(n, 1 << 18)).astype(dtype) * scale
    a = np.empty(n, dtype)
    for i in range(0, n, block.size):
        a[i:i + block.size] = block[:n - i]
    return a


# --------------------------------------------------------------------------------------------
# Machine


def machine_info() -> dict:
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
            cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    return dict(cpu_model=cpu, cores=default_max_threads(),
                memory_bytes=psutil.virtual_memory().total, isa=adaptopt.isa(),
                available_isas=adaptopt.available_isas(),
                numpy=np.__version__, torch=torch_version(), python=platform.python_version())


def default_max_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# --------------------------------------------------------------------------------------------
# The sweep


@dataclass
class _PeerMemo:
    size: int
    median_s: Optional[float]  # None: it did not run at that size
    growth: int


class Sweep:
    """Runs the points and small-step measurements an ``argparse`` namespace describes."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.algos: List[Algo] = args.algos
        self.peers = make_peers(not args.no_torch)
        self.points: List[dict] = []
        self.small: List[dict] = []
        self.skipped: List[dict] = []
        self._peer_cache: Dict[tuple, dict] = {}  # results reused across ISAs (and threads)
        self._peer_memo: Dict[tuple, _PeerMemo] = {}  # last size a peer ran at, for the rules
        self._bar = None
        self._last_status = ""
        self.retries, self.waited = 0, 0.0

    # -- helpers -----------------------------------------------------------------------------
    def _note(self, what: str, reason: str) -> None:
        self.skipped.append(dict(what=what, reason=reason))
        self._write(f"skipped {what}: {reason}")

    def _write(self, msg: str) -> None:
        if self._bar is not None:
            self._bar.write(msg, file=sys.stderr)
        elif not self.args.quiet:
            print(msg, file=sys.stderr)

    def _status(self, msg: str) -> None:
        if self._bar is not None:
            self._bar.set_description_str(msg, refresh=False)
        self._last_status = msg

    def memory_limit(self, held: int = 0) -> int:
        """Bytes a measurement may allocate: the available memory less MEMORY_RESERVE, capped by
        --max-memory less ``held`` (what the point already holds: params and grads)."""
        import psutil

        avail = int(psutil.virtual_memory().available * (1 - MEMORY_RESERVE))
        cap = self.args.max_memory
        return avail if cap is None else min(avail, cap - held)

    def _set_threads(self, n: int) -> None:
        adaptopt.set_num_threads(n)
        if any(p.threaded for p in self.peers):
            import torch

            torch.set_num_threads(n)

    def _retry(self, measure: Callable[[], Tuple[Any, float]]):
        """``measure() -> (result, other_load)``; while other processes disturbed it (other_load
        above BUSY cores), wait for a quiet machine (--max-wait seconds in all the run) and
        measure again, ATTEMPTS times at most. Returns the last result."""
        for _ in range(ATTEMPTS - 1):
            result, load = measure()
            if load <= BUSY or not self._wait_quiet():
                return result
            self.retries += 1
        return measure()[0]

    def _wait_quiet(self) -> bool:
        """Waits until other processes use less than QUIET cores over a QUIET_WINDOW; False if
        the --max-wait budget ran out first."""
        import psutil

        was = self._last_status
        self._status(f"{was} (waiting for other processes to quieten)")
        try:
            while self.waited < self.args.max_wait:
                t0 = time.perf_counter()
                busy = psutil.cpu_percent(interval=QUIET_WINDOW) / 100 * (psutil.cpu_count() or 1)
                self.waited += time.perf_counter() - t0
                if busy < QUIET:
                    return True
            return False
        finally:
            self._status(was)

    def _timed(self, min_time: float, nbytes: int, make: Callable[..., Callable[[], None]],
               *args) -> Tuple[Timing, Usage]:
        """``_once``, measured again if other processes disturbed it."""
        def measure():
            timing, use = self._once(min_time, nbytes, make, *args)
            return (timing, use), use.other_load

        return self._retry(measure)

    def _once(self, min_time: float, nbytes: int, make: Callable[..., Callable[[], None]],
              *args) -> Tuple[Timing, Usage]:
        """Build a step with ``make(*args)`` and time it, with the resources it used. ``nbytes``:
        the size of one array, to collect reference cycles (torch.optim's) after large ones."""
        time.sleep(SETTLE)
        with Usage() as mem:
            step = make(*args)
            timing = time_steps(step, min_time)
            del step
        if nbytes > GC_BYTES:
            gc.collect()
        return timing, mem

    # -- large points ------------------------------------------------------------------------
    def run(self) -> None:
        a = self.args
        total = len(a.isas) * len(a.dtypes) * len(a.threads) * len(self.algos) * (
            len(a.sizes) + (2 if a.small else 0))
        self._bar = _progress(total, disable=a.quiet or not a.progress)
        try:
            for isa in a.isas:
                adaptopt.set_isa(isa)
                for dtype in a.dtypes:
                    for n in a.sizes:
                        self._run_size(isa, np.dtype(dtype), n)
                    if a.small:
                        self._run_small(isa, np.dtype(dtype))
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def _run_size(self, isa: str, dtype: np.dtype, n: int) -> None:
        limit = self.memory_limit()
        algos = []
        for algo in self.algos:
            need = (2 + algo.n_state) * n * dtype.itemsize
            if need > limit:
                self._note(f"{algo.name} {fmt_size(n)} {dtype} ({isa})",
                           f"needs {fmt_bytes(need)} (params + grads + state), "
                           f"limit {fmt_bytes(limit)}")
                self._bar_update(len(self.args.threads))
            else:
                algos.append(algo)
        if not algos:
            return
        p = filled(n, dtype, seed=1, scale=1.0)
        g = filled(n, dtype, seed=2, scale=1e-2)
        for threads in self.args.threads:
            self._set_threads(threads)
            for algo in algos:
                tag = f"{algo.name} {fmt_size(n)} {dtype} t{threads} {isa}"
                self._status(tag)
                point = self._measure_point(algo, p, g, threads, isa)
                for peer in self.peers:
                    if peer.supports(algo) is None:
                        self._status(f"{tag}: {peer.name}")
                        point["peers"][peer.name] = self._run_peer(peer, algo, p, g, threads,
                                                                   point["median_s"], tag)
                self.points.append(point)
                self._bar_update(1)
        del p, g

    def _measure_point(self, algo: Algo, p: np.ndarray, g: np.ndarray, threads: int,
                       isa: str) -> dict:
        return self._retry(lambda: self._point_once(algo, p, g, threads, isa))

    def _point_once(self, algo: Algo, p: np.ndarray, g: np.ndarray, threads: int,
                    isa: str) -> Tuple[dict, float]:
        """adaptopt's step, then the probe over the same arrays (the optimizer's own state
        buffers, already paged in); and the cores other processes used meanwhile."""
        n, min_time = p.size, self.args.min_time
        time.sleep(SETTLE)
        with Usage() as use:
            opt, grads = algo.make([p]), [g]
            timing = time_steps(functools.partial(opt.step, grads), min_time)
        states = [a for k, a in opt.state[0].items() if k != "step"]
        probe, probe_use = self._once(min_time, 0, _probe_step, n, algo.n_state, p, g, states)
        del opt, states
        if p.nbytes > GC_BYTES:
            gc.collect()
        bpe = traffic_bytes(algo.n_state, p.dtype.itemsize)
        gbs = bpe * n / timing.median_s / 1e9
        probe_gbs = bpe * n / probe.median_s / 1e9
        load = max(use.other_load, probe_use.other_load)
        return dict(algo=algo.algo, variant=algo.variant, name=algo.name, size=n,
                    dtype=str(p.dtype), threads=threads, isa=isa, n_state=algo.n_state,
                    bytes_per_element=bpe, **timing.as_dict(), elements_per_s=n / timing.median_s,
                    gb_per_s=gbs, probe_gb_per_s=probe_gbs, probe_median_s=probe.median_s,
                    share_of_probe=gbs / probe_gbs, peak_rss_bytes=use.peak,
                    rss_growth_bytes=use.growth, other_load=load, peers={}), load

    def _run_peer(self, peer, algo: Algo, p, g, threads: int, ours_s: float, tag: str) -> dict:
        n, dtype = p.size, p.dtype
        key = (peer.name, algo.name, n, str(dtype), threads if peer.threaded else None)
        if key not in self._peer_cache:
            self._peer_cache[key] = self._measure_peer(peer, algo, p, g, key, tag)
        res = dict(self._peer_cache[key])
        if "median_s" in res:
            res["speedup"] = res["median_s"] / ours_s
            res["threads"] = threads if peer.threaded else 1
        return res

    def _measure_peer(self, peer, algo: Algo, p, g, key: tuple, tag: str) -> dict:
        n, itemsize = p.size, p.dtype.itemsize
        memo_key = key[:2] + key[3:]
        memo = self._peer_memo.get(memo_key)
        need = (algo.n_state + peer.temporaries) * n * itemsize  # p and g are already there
        if memo is not None and memo.growth:
            need = max(need, memo.growth * n // memo.size)
        limit = self.memory_limit(held=2 * n * itemsize)
        reason = None
        if need > limit:
            reason = (f"needs about {fmt_bytes(need)} for state and temporaries besides params "
                      f"and grads, limit {fmt_bytes(limit)}")
        elif n > SLOW_PEER_SIZE and memo is not None:
            if memo.median_s is None:
                reason = f"skipped at {fmt_size(memo.size)} already"
            else:
                predicted = memo.median_s * n / memo.size
                if predicted * (1 + MIN_STEPS) > self.args.peer_budget:
                    reason = (f"predicted {predicted:.1f} s/step from {fmt_size(memo.size)}: "
                              f"warm-up + {MIN_STEPS} steps exceed --peer-budget "
                              f"{self.args.peer_budget:g} s")
        if reason is not None:
            self._note(f"{peer.name} {tag}", reason)
            self._peer_memo[memo_key] = _PeerMemo(n, None, memo.growth if memo else 0)
            return dict(skipped=reason)
        timing, mem = self._timed(self.args.min_time, p.nbytes, peer.make, algo, [p], [g])
        self._peer_memo[memo_key] = _PeerMemo(n, timing.median_s, mem.growth)
        bpe = traffic_bytes(algo.n_state, itemsize)
        return dict(**timing.as_dict(), elements_per_s=n / timing.median_s,
                    gb_per_s=bpe * n / timing.median_s / 1e9,
                    peak_rss_bytes=mem.peak, rss_growth_bytes=mem.growth, other_load=mem.other_load)

    # -- small steps -------------------------------------------------------------------------
    def _run_small(self, isa: str, dtype: np.dtype) -> None:
        count, size = self.args.small_tensors
        modes = [(f"{count}x{size}", count, size), ("1", 1, 1)]
        min_time = self.args.min_time / 2
        for threads in self.args.threads:
            self._set_threads(threads)
            for algo in self.algos:
                for mode, k, m in modes:
                    self._status(f"small {mode} {algo.name} t{threads} {isa}")
                    params = [filled(m, dtype, seed=1 + i, scale=1.0) for i in range(k)]
                    grads = [filled(m, dtype, seed=1000 + i, scale=1e-2) for i in range(k)]
                    ours, use = self._timed(min_time, 0, adaptopt_step, algo, params, grads)
                    peers = {}
                    for peer in self.peers:
                        if peer.supports(algo) is None:
                            key = ("small", peer.name, algo.name, mode, str(dtype),
                                   threads if peer.threaded else None)
                            if key not in self._peer_cache:
                                t, _ = self._timed(min_time, 0, peer.make, algo, params, grads)
                                self._peer_cache[key] = dict(us=t.median_s * 1e6)
                            res = dict(self._peer_cache[key])
                            res["speedup"] = res["us"] / (ours.median_s * 1e6)
                            peers[peer.name] = res
                    self.small.append(dict(mode=mode, tensors=k, tensor_size=m, algo=algo.name,
                                           dtype=str(dtype), threads=threads, isa=isa,
                                           adaptopt_us=ours.median_s * 1e6, steps=ours.steps,
                                           other_load=use.other_load, peers=peers))
                    self._bar_update(1)

    def _bar_update(self, k: int) -> None:
        if self._bar is not None:
            self._bar.update(k)


def _probe_step(n: int, n_state: int, p, g, states) -> Callable[[], None]:
    return BandwidthProbe(n, n_state, p.dtype, p, g, states).run


def _progress(total: int, disable: bool):
    if disable:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="pt", file=sys.stderr, dynamic_ncols=True)


# --------------------------------------------------------------------------------------------
# Command line


def parse_sizes(text: str) -> List[int]:
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
    m = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"invalid memory size {text!r} (e.g. 20G)")
    return int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " "))


def _choices(valid: List[str], what: str):
    def parse(text: str) -> List[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in valid]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(bad) or text!r}; "
                                             f"choose from {', '.join(valid)}")
        return items
    return parse


def _threads(text: str) -> List[int]:
    try:
        out = [int(t) for t in text.split(",")]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"invalid thread counts {text!r} (e.g. 1,2)")
    return out


def _small(text: str):
    m = re.fullmatch(r"(\d+)x(\d+)", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise argparse.ArgumentTypeError(f"invalid --small-tensors {text!r} (e.g. 100x1000)")
    return int(m.group(1)), int(m.group(2))


def build_parser() -> argparse.ArgumentParser:
    nmax = default_max_threads()
    ap = argparse.ArgumentParser(
        prog="adaptopt-bench",
        description="Throughput of adaptopt's optimizer steps against a same-run bandwidth probe, "
                    "hand-written NumPy and torch.optim (for-loop, foreach, fused).",
        epilog="The module docstring (python -c 'import adaptopt.bench as b; help(b)') documents "
               "the measurement rules and the JSON fields.")
    ap.add_argument("--quick", action="store_true",
                    help=f"a run of under a minute: sizes {','.join(map(fmt_size, QUICK_SIZES))}, "
                         f"threads {nmax}, algos {','.join(QUICK_ALGOS)}, shorter timings")
    ap.add_argument("--algos", type=_choices([a.name for a in ALGOS], "algorithm"),
                    help="comma list (default: all): " + ", ".join(a.name for a in ALGOS))
    ap.add_argument("--sizes", type=parse_sizes,
                    help="comma list of element counts (default 1e3,1e4,...,1e9, capped by memory)")
    ap.add_argument("--threads", type=_threads, help=f"comma list (default 1,{nmax})")
    ap.add_argument("--dtype", dest="dtypes", type=_choices(["float32", "float64"], "dtype"),
                    default=["float32"], help="float32, float64 or both (default float32)")
    ap.add_argument("--isa", dest="isas", type=_choices(adaptopt.available_isas(), "ISA"),
                    help=f"comma list from {', '.join(adaptopt.available_isas())} "
                         f"(default: the active one, {adaptopt.isa()})")
    ap.add_argument("--max-memory", type=parse_memory,
                    help="memory cap for a point, e.g. 20G (default: available memory less 5%%)")
    ap.add_argument("--min-time", type=float,
                    help="seconds of timed steps per measurement (default 0.3; --quick 0.1); "
                         "at least 3 steps are timed")
    ap.add_argument("--peer-budget", type=float, default=5.0,
                    help="above 1e8 elements, skip a peer whose warm-up + 3 steps are predicted "
                         "to take longer than this many seconds (default 5; 'inf' = never)")
    ap.add_argument("--max-wait", type=float,
                    help="a measurement during which other processes kept more than "
                         f"{BUSY} cores busy is repeated (up to {ATTEMPTS} times) once the machine "
                         "is quiet; this caps the waiting, in seconds over the run (default 180, "
                         "--quick 20; 0 = never wait)")
    ap.add_argument("--small-tensors", type=_small, default=(100, 1000),
                    help="the many-small-tensors step, COUNTxSIZE (default 100x1000)")
    ap.add_argument("--no-small", dest="small", action="store_false",
                    help="skip the small-step (many tensors, 1 element) measurements")
    ap.add_argument("--no-torch", action="store_true", help="do not run the torch.optim peers")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    ap.add_argument("--plot", metavar="FILE.png", help="plot throughput against size (matplotlib)")
    ap.add_argument("--no-progress", dest="progress", action="store_false",
                    help="no progress bar")
    ap.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    return ap


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    ap = build_parser()
    args = ap.parse_args(argv)
    nmax = default_max_threads()
    args.algos = [ALGO_BY_NAME[a] for a in (args.algos or (QUICK_ALGOS if args.quick else
                                                          [a.name for a in ALGOS]))]
    args.sizes = sorted(set(args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)))
    args.threads = args.threads or ([nmax] if args.quick else sorted({1, nmax}))
    args.isas = args.isas or [adaptopt.isa()]
    if args.min_time is None:
        args.min_time = 0.1 if args.quick else 0.3
    if args.max_wait is None:
        args.max_wait = 20.0 if args.quick else 180.0
    if not args.min_time > 0 or not args.peer_budget > 0 or not args.max_wait >= 0:
        ap.error("--min-time and --peer-budget must be positive, --max-wait not negative")
    return args


def run(argv: Optional[List[str]] = None) -> dict:
    """Runs the benchmark that ``argv`` describes and returns the JSON document (as a dict)."""
    args = parse_args(argv)
    start = time.time()
    load_start = os.getloadavg()
    isa0, threads0 = adaptopt.isa(), adaptopt.get_num_threads()
    machine = machine_info()
    cpu0 = Usage._cpu()
    sweep = Sweep(args)
    try:
        sweep.run()
    finally:
        adaptopt.set_isa(isa0)
        adaptopt.set_num_threads(threads0)
    wall, busy, me = (b - a for a, b in zip(cpu0, Usage._cpu()))
    doc = dict(version=adaptopt.__version__, schema=SCHEMA,
               command=["adaptopt-bench", *(sys.argv[1:] if argv is None else argv)],
               date=datetime.datetime.fromtimestamp(start).astimezone().isoformat(timespec="seconds"),
               wall_s=time.time() - start,
               load_avg=dict(start=list(load_start), end=list(os.getloadavg())),
               other_load=max(0.0, (busy - me) / wall),
               machine=machine,
               settings=dict(min_time_s=args.min_time, peer_budget_s=args.peer_budget,
                             memory_limit_bytes=args.max_memory, max_wait_s=args.max_wait),
               retries=sweep.retries, waited_s=sweep.waited,
               skipped=sweep.skipped, points=sweep.points, small=sweep.small)
    if not args.quiet:
        print_table(doc)
        print_small_table(doc)
        print(f"\nwall time {doc['wall_s']:.0f} s; other processes kept {doc['other_load']:.2f} "
              f"cores busy on average (load average {load_start[0]:.2f} at start); "
              f"{sweep.retries} measurement(s) repeated after waiting {sweep.waited:.0f} s for "
              "a quiet machine")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(_finite(doc), f, indent=1)
    if args.plot:
        plot(doc, args.plot)
    return doc


def _finite(obj):
    """JSON has no inf/nan: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def main(argv: Optional[List[str]] = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
