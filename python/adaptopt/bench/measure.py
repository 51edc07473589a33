"""Measuring one thing: a step's time, the resources a block used (peak RSS, other processes'
load), the bandwidth probe and the traffic model it is compared under, and the machine."""

from __future__ import annotations

import gc
import os
import platform
import re
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

import adaptopt
from adaptopt import _core

from .schema import Machine

MIN_STEPS = 3  # timed steps per measurement, at least
BATCH_TIME = 1e-3  # steps shorter than this are timed in batches of about this length
SETTLE = 0.005  # s of sleep before a measurement: the last one's idle pool workers go to sleep
GC_BYTES = 64 << 20  # after measurements on arrays this large, collect reference cycles (~0.1 s)
# so that the next measurement finds the memory free


def traffic_bytes(n_state: int, itemsize: int) -> int:
    """Bytes per element of a plain (one dtype everywhere) step: it reads p, g and each state
    buffer once (2 + n_state) and writes p and each state buffer once (1 + n_state). GB = 1e9
    bytes. ``storage.Storage.traffic`` is the model per stream for every storage."""
    return (3 + 2 * n_state) * itemsize


class BandwidthProbe:
    """The native STREAM-style probe (``_core.Probe``): one pass over exactly the buffers a step
    with ``n_state`` state buffers streams, in their widths (reads p or the master, g and each
    state buffer with its 8-bit absmax, writes p, the master and each state buffer), with the
    kernels' ISA, thread count and parallel split, and a trivial add per stream that leaves the
    values unchanged. ``p``, ``g`` and ``states`` (``n_state`` buffers: arrays, or (codes,
    absmax) pairs for 8-bit state) and ``master`` may be given to stream a point's own arrays
    (e.g. an optimizer's state: already paged in). ``storage`` (``storage.Storage``, default the
    plain storage of ``dtype``) sets the widths; buffers not given are made in them."""

    def __init__(self, n: int, n_state: int, dtype: Any = np.float32, p: np.ndarray | None = None,
                 g: np.ndarray | None = None, states: Sequence[Any] | None = None,
                 storage: Any = None, master: np.ndarray | None = None):
        from adaptopt import _storage

        from . import storage as st

        if not 0 <= n_state <= _core.MAX_SLOTS:
            raise ValueError(f"n_state must be in 0..{_core.MAX_SLOTS}, got {n_state}")
        if states is not None and len(states) != n_state:
            raise ValueError(f"states: expected {n_state} arrays, got {len(states)}")
        self.storage = st.of_dtype(dtype) if storage is None else storage
        self.n, self.n_state = n, n_state
        self.dtype = self.storage.param_dtype
        self.p = np.zeros(n, self.dtype) if p is None else p
        self.g = np.ones(n, self.dtype) if g is None else g
        if states is None:
            kind = self.storage.state_dtype
            if kind == "8bit":
                states = [(np.zeros(n, np.uint8), np.zeros(-(-n // _storage.Q8_BLOCK), np.float32))
                          for _ in range(n_state)]
            else:
                sd = {"bfloat16": _storage.BFLOAT16}.get(kind, np.dtype(kind))
                states = [np.zeros(n, sd) for _ in range(n_state)]
        self.states = list(states)
        if self.storage.master and master is None:
            master = self.p.astype(np.float32)
        self.master = master if self.storage.master else None
        self._probe = _core.Probe(self.p, self.g, self.states, self.storage.state_kind, self.master)

    @property
    def bytes_per_element(self) -> float:
        return self.storage.bytes_per_element(self.n_state)

    @property
    def bytes_per_pass(self) -> float:
        return self.bytes_per_element * self.n

    def run(self) -> None:
        """One pass (time it like a step)."""
        self._probe.run()


@dataclass
class Timing:
    median_s: float
    min_s: float
    max_s: float
    steps: int


def time_steps(step: Callable[[], None], min_time: float, min_steps: int = MIN_STEPS) -> Timing:
    """Warm up (at least one step, which pages in lazily allocated state; about 10% of the budget
    for short steps), then time ``step`` for about ``min_time`` seconds and at least
    ``min_steps`` samples; steps under BATCH_TIME are timed in batches (sample = batch time /
    batch). So a 1e9 point takes 1 + 3 steps."""
    clock = time.perf_counter
    t0 = clock()
    step()
    est = clock() - t0
    if est < min_time / 20:
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


def cpu_sample() -> tuple[float, float, float]:
    """(wall clock, busy CPU seconds of the whole system, CPU seconds of this process)."""
    import psutil

    t = psutil.cpu_times()
    busy = sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) \
        - getattr(t, "guest_nice", 0.0)
    me = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), busy, me.ru_utime + me.ru_stime


def other_load(start: tuple[float, float, float], end: tuple[float, float, float],
               slack: float = 0.0) -> float:
    """Cores other processes kept busy between two ``cpu_sample()``s, on average."""
    wall, busy, me = (b - a for a, b in zip(start, end))
    return max(0.0, (busy - me - slack) / wall) if wall > 0 else 0.0


class Usage:
    """Context manager recording, for the block: the process's peak RSS (``peak``), its growth
    over the RSS at entry (``growth``: state buffers plus temporaries), and ``other_load``, the
    cores other processes kept busy (system busy CPU time less this process's, over wall time).
    Peak RSS is Linux's VmHWM, reset through /proc/self/clear_refs; elsewhere ru_maxrss, which
    cannot be reset (then a lower bound). Memory the allocator already holds is reused without
    growing the RSS, so small sizes may show 0."""

    def __init__(self) -> None:
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

    def __enter__(self) -> Usage:  # noqa: PYI034 (typing.Self needs 3.11)
        self._read: Callable[[], int]
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._start = self._status("VmRSS:")
            self._read = lambda: self._status("VmHWM:")
        except OSError:
            self._start = self._maxrss()
            self._read = self._maxrss
        self._cpu0 = cpu_sample()
        return self

    def __exit__(self, *exc: object) -> None:
        # CPU times tick at 100 Hz: two ticks of slack keep short blocks from false alarms
        self.other_load = other_load(self._cpu0, cpu_sample(), slack=0.02)
        self.peak = self._read()
        self.growth = max(0, self.peak - self._start)


def measure_step(make: Callable[..., Callable[[], None]], *args: Any, min_time: float,
                 nbytes: int = 0) -> tuple[Timing, Usage]:
    """Builds a step with ``make(*args)`` and times it, with the resources it used. ``nbytes``:
    the size of one array, to collect reference cycles (torch.optim's) after large ones."""
    time.sleep(SETTLE)
    with Usage() as use:
        step = make(*args)
        timing = time_steps(step, min_time)
        del step
    if nbytes > GC_BYTES:
        gc.collect()
    return timing, use


def filled(n: int, dtype: Any, seed: int, scale: float) -> np.ndarray:
    """``scale`` x standard normal values, made from a tiled 1 MiB block (fast at 1e9)."""
    block = np.random.default_rng(seed).standard_normal(min(n, 1 << 18)).astype(dtype) * scale
    a = np.empty(n, dtype)
    for i in range(0, n, block.size):
        a[i:i + block.size] = block[:n - i]
    return a


def default_max_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def torch_version() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return str(torch.__version__)


def machine_info() -> Machine:
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.MULTILINE)
            cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    isas: list[str] = adaptopt.available_isas()
    return Machine(cpu_model=cpu, cores=default_max_threads(),
                   memory_bytes=psutil.virtual_memory().total, isa=adaptopt.isa(),
                   available_isas=isas, numpy=np.__version__, torch=torch_version(),
                   python=platform.python_version())
