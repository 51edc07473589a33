"""What a run may spend: the memory and time rules that skip a point or a peer, and the
quiet-machine rule that repeats a measurement other processes disturbed.

Memory: a point needs ``(2 + n_state) * size * itemsize`` bytes (params, grads, state); a peer
(which shares the params and grads) needs its state and temporaries (the peer's estimate in
arrays of ``size``, or the RSS growth it showed at the previous size scaled up, whichever is
larger). The limit is ``--max-memory`` or the available memory (psutil) less MEMORY_RESERVE,
whichever is smaller.

Time: above SLOW_PEER_SIZE elements a peer runs only if its warm-up plus MIN_STEPS steps,
predicted linearly from its median at the previous size, fit in ``--peer-budget`` seconds.

Quiet machine: on 2 cores a busy core stalls every 2-thread step. A measurement during which
other processes kept more than BUSY cores busy is repeated once they stay under QUIET cores for
QUIET_WINDOW s, ATTEMPTS times at most and for at most ``--max-wait`` s of waiting in all.

The constants are read here at call time: tests patch them on this module.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Callable, TypeVar

from .measure import MIN_STEPS
from .units import fmt_bytes, fmt_size

MEMORY_RESERVE = 0.05  # of the available memory, kept free
SLOW_PEER_SIZE = 10**8  # above this, peers are subject to --peer-budget
BUSY = 0.25  # other processes' cores above which a measurement is disturbed (marked * in tables)
QUIET, QUIET_WINDOW = 0.1, 0.5  # a quiet machine: other processes below 0.1 cores over 0.5 s
ATTEMPTS = 3  # measurements of a point at most, while other processes disturb it

T = TypeVar("T")


def memory_limit(cap: int | None, held: int = 0) -> int:
    """Bytes a measurement may allocate: the available memory less MEMORY_RESERVE, capped by
    ``cap`` (--max-memory) less ``held`` (what the point already holds: params and grads)."""
    import psutil

    avail = int(psutil.virtual_memory().available * (1 - MEMORY_RESERVE))
    return avail if cap is None else min(avail, cap - held)


def point_skip(n_state: int, n: int, itemsize: int, cap: int | None,
               per_element: float | None = None) -> str | None:
    """Why a point of ``n`` elements does not fit in memory, or None. ``per_element``: the
    bytes per element of params, grads and state (with a master copy) when the storage is not
    one dtype everywhere (``storage.Storage.footprint``)."""
    need = int((2 + n_state) * itemsize * n if per_element is None else per_element * n)
    limit = memory_limit(cap)
    if need > limit:
        return f"needs {fmt_bytes(need)} (params + grads + state), limit {fmt_bytes(limit)}"
    return None


@dataclass
class _Memo:
    size: int  # the last size the peer was considered at
    median_s: float | None  # None: it did not run at that size
    growth: int  # its RSS growth there


class PeerBudget:
    """The memory and time rules for peers. ``key`` identifies a peer x configuration x dtype x
    thread count; the rules look at the last size that key was considered at."""

    def __init__(self, cap: int | None, seconds: float):
        self.cap, self.seconds = cap, seconds
        self._memo: dict[Hashable, _Memo] = {}

    def skip(self, key: Hashable, n: int, itemsize: int, n_state: int, temporaries: int,
             per_element: float | None = None) -> str | None:
        """Why the peer should not run at ``n`` elements, or None (then call ``ran``). A skip is
        remembered: a peer skipped at one size is skipped at the larger ones. ``per_element``:
        the peer's own bytes per element (its ``extra_bytes``), else (n_state + temporaries) x
        itemsize."""
        memo = self._memo.get(key)
        # p and g are already there
        need = int((n_state + temporaries) * n * itemsize if per_element is None else per_element * n)
        if memo is not None and memo.growth:
            need = max(need, memo.growth * n // memo.size)
        limit = memory_limit(self.cap, held=2 * n * itemsize)
        reason = None
        if need > limit:
            reason = (f"needs about {fmt_bytes(need)} for state and temporaries besides params "
                      f"and grads, limit {fmt_bytes(limit)}")
        elif n > SLOW_PEER_SIZE and memo is not None:
            if memo.median_s is None:
                reason = f"skipped at {fmt_size(memo.size)} already"
            else:
                predicted = memo.median_s * n / memo.size
                if predicted * (1 + MIN_STEPS) > self.seconds:
                    reason = (f"predicted {predicted:.1f} s/step from {fmt_size(memo.size)}: "
                              f"warm-up + {MIN_STEPS} steps exceed --peer-budget {self.seconds:g} s")
        if reason is not None:
            self._memo[key] = _Memo(n, None, memo.growth if memo else 0)
        return reason

    def ran(self, key: Hashable, n: int, median_s: float, growth: int) -> None:
        self._memo[key] = _Memo(n, median_s, growth)


class Quiet:
    """Repeats measurements that other processes disturbed; counts ``retries`` and the seconds
    ``waited``. ``on_wait(True)`` / ``on_wait(False)`` bracket each wait (for a status line)."""

    def __init__(self, max_wait: float, on_wait: Callable[[bool], None] = lambda waiting: None):
        self.max_wait = max_wait
        self.on_wait = on_wait
        self.retries, self.waited = 0, 0.0

    def retry(self, measure: Callable[[], tuple[T, float]]) -> T:
        """``measure() -> (result, other_load)``; while other_load is above BUSY cores, wait for a
        quiet machine and measure again, ATTEMPTS times at most. Returns the last result."""
        for _ in range(ATTEMPTS - 1):
            result, load = measure()
            if load <= BUSY or not self.wait():
                return result
            self.retries += 1
        return measure()[0]

    def wait(self) -> bool:
        """Waits until other processes use less than QUIET cores over a QUIET_WINDOW; False if
        the --max-wait budget ran out first."""
        import psutil

        self.on_wait(True)
        try:
            while self.waited < self.max_wait:
                t0 = time.perf_counter()
                busy = psutil.cpu_percent(interval=QUIET_WINDOW) / 100 * (psutil.cpu_count() or 1)
                self.waited += time.perf_counter() - t0
                if busy < QUIET:
                    return True
            return False
        finally:
            self.on_wait(False)

