"""The JSON document ``adaptopt-bench --json FILE`` writes, as dataclasses: ``Run.to_dict()`` is
the document (inf and NaN are written as null), ``Run.from_dict`` reads one back.

Schema 3 (this layout) differs from 2 by the storage axis: each point's and small step's
``storage`` (e.g. ``fp32``, ``bf16-sr-8bit``: ``storage.py``), the point's ``state_dtype``,
``param_mode`` and ``traffic`` (bytes per element stream by stream; ``bytes_per_element``, their
sum, may now be fractional: 8-bit absmax), and the compute floor beside each point
(``floor_*``, ``bound``, ``limit_gb_per_s``, ``share_of_limit``). Schema 2 differed from 1 by:
each point's ``rule`` and ``kwargs`` (the benchmarked configuration exactly), and small-step
entries with ``algo``, ``variant`` and ``name`` as in points (schema 1 put the name, e.g.
``rmsprop-momentum``, in ``algo``).
GB = 1e9 bytes; times are seconds unless a name says ``_us``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

SCHEMA = 3


class _Record:
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


@dataclass
class Skip(_Record):
    """Something the run left out (a point or a peer at a point), and why."""

    what: str  # e.g. "adagrad 1e9 float32 (avx2)", "numpy rmsprop 1e9 float32 t2 avx2"
    reason: str  # the memory or time rule that applied, with its numbers


@dataclass
class Machine(_Record):
    cpu_model: str  # /proc/cpuinfo "model name"
    cores: int  # CPUs this process may run on
    memory_bytes: int
    isa: str  # active at start
    available_isas: list[str]
    numpy: str  # versions
    torch: str | None  # None: torch is not installed
    python: str


@dataclass
class Settings(_Record):
    min_time_s: float  # seconds of timed steps per measurement (at least 3 steps)
    peer_budget_s: float  # above SLOW_PEER_SIZE, a peer's predicted warm-up + 3 steps must fit
    memory_limit_bytes: int | None  # --max-memory (None: the available memory less 5%)
    max_wait_s: float  # waiting for a quiet machine, in all the run


@dataclass
class PeerResult(_Record):
    """A peer's step on the point's arrays (its own state)."""

    median_s: float
    min_s: float
    max_s: float
    steps: int  # timed steps
    elements_per_s: float
    gb_per_s: float  # adaptopt's traffic model over the peer's median
    peak_rss_bytes: int  # process peak RSS while constructing and stepping the peer
    rss_growth_bytes: int  # that peak less the RSS before: state plus temporaries
    other_load: float  # cores other processes kept busy meanwhile
    speedup: float = math.nan  # the peer's median over adaptopt's (> 1: adaptopt is faster)
    threads: int = 1  # threads the peer ran on (numpy: always 1)


@dataclass
class PeerSkipped(_Record):
    skipped: str  # why (also in Run.skipped)


@dataclass
class Point(_Record):
    """One configuration x size x dtype x threads x ISA: one parameter of ``size`` elements and
    its gradient stepped in place, then the probe over the same arrays, then the peers."""

    algo: str  # the rule, lower-case: rmsprop, adam, sgd, ...
    variant: str  # plain, momentum, centered, nesterov, amsgrad, ...
    name: str  # algo, or algo-variant: rmsprop-momentum
    rule: str  # the class: RMSprop, AdamW, ...
    kwargs: dict[str, Any]  # the keyword arguments of the class (and of the peers)
    size: int
    dtype: str  # of params and grads: float32, float64, bfloat16, float16
    storage: str  # the storage's name (bench/storage.py): fp32, bf16-sr-8bit, bf16-master-bf16state, ...
    state_dtype: str  # float32, float64, bfloat16 or 8bit
    param_mode: str  # round (to nearest even), stochastic (rounding) or master (weights)
    threads: int
    isa: str
    n_state: int  # state buffers (slots) the step streams
    # traffic model, bytes per element per stream (reads + writes in its width): p, g, master,
    # s0, s1, ... (state slots), s0.absmax, ... (8-bit scales: 8 bytes per 256 elements)
    traffic: dict[str, float]
    bytes_per_element: float  # their sum (plain storage: (3 + 2 * n_state) * itemsize)
    median_s: float  # per step
    min_s: float
    max_s: float
    steps: int  # timed steps
    elements_per_s: float  # from the median
    gb_per_s: float  # traffic model over the median
    probe_gb_per_s: float  # the bandwidth probe over the same arrays, right after
    probe_median_s: float
    share_of_probe: float  # gb_per_s / probe_gb_per_s
    peak_rss_bytes: int  # process peak RSS while constructing and stepping the optimizer
    rss_growth_bytes: int  # that peak less the RSS before (state buffers plus temporaries)
    other_load: float  # cores other processes kept busy during the step or the probe (the larger)
    # The compute floor (None with --no-floor): the same configuration and storage stepped at
    # floor_size elements (arrays in L2), at the point's threads and ISA; its fastest step
    # (min_s) per element
    floor_size: int | None = None
    floor_s_per_element: float | None = None
    floor_gb_per_s: float | None = None  # bytes_per_element / floor_s_per_element
    bound: str | None = None  # "compute" when floor_gb_per_s < probe_gb_per_s, else "memory"
    limit_gb_per_s: float | None = None  # min(probe_gb_per_s, floor_gb_per_s)
    share_of_limit: float | None = None  # gb_per_s / limit_gb_per_s
    # peer name (numpy, torch-forloop, torch-foreach, torch-fused at plain storages;
    # torch-fused-fp32, torch-fused-bf16, bnb-8bit at compact ones: peers.py) -> result; a peer
    # that cannot run this configuration and storage at all is left out
    peers: dict[str, PeerResult | PeerSkipped] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Point:
        peers = {k: PeerSkipped(**v) if "skipped" in v else PeerResult(**v)
                 for k, v in d["peers"].items()}
        return cls(**{**d, "peers": peers})


@dataclass
class SmallPeer(_Record):
    us: float  # median µs per step
    speedup: float  # over adaptopt


@dataclass
class SmallPoint(_Record):
    """A step over many small tensors (mode "COUNTxSIZE") or one 1-element tensor (mode "1")."""

    mode: str
    tensors: int
    tensor_size: int
    algo: str  # as in Point
    variant: str
    name: str
    dtype: str
    storage: str  # as in Point
    threads: int
    isa: str
    adaptopt_us: float  # median µs per step
    steps: int
    other_load: float  # during adaptopt's measurement
    peers: dict[str, SmallPeer] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SmallPoint:
        return cls(**{**d, "peers": {k: SmallPeer(**v) for k, v in d["peers"].items()}})


@dataclass
class LoadAvg(_Record):
    start: list[float]  # 1, 5 and 15-minute load averages
    end: list[float]


@dataclass
class Run(_Record):
    version: str  # adaptopt's
    schema: int  # this layout's version (SCHEMA)
    command: list[str]  # argv, from "adaptopt-bench"
    date: str  # ISO 8601 start time
    wall_s: float  # duration of the run
    load_avg: LoadAvg
    other_load: float  # cores other processes kept busy, averaged over the run
    machine: Machine
    settings: Settings
    retries: int  # measurements repeated because other processes disturbed them
    waited_s: float  # time spent waiting for a quiet machine
    skipped: list[Skip]
    points: list[Point]
    small: list[SmallPoint]

    def to_dict(self) -> dict[str, Any]:
        return _finite(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Run:
        if d.get("schema") != SCHEMA:
            raise ValueError(f"schema {d.get('schema')!r}: this reader knows schema {SCHEMA}")
        return cls(**{**d, "load_avg": LoadAvg(**d["load_avg"]), "machine": Machine(**d["machine"]),
                      "settings": Settings(**d["settings"]), "skipped": [Skip(**s) for s in d["skipped"]],
                      "points": [Point.from_dict(p) for p in d["points"]],
                      "small": [SmallPoint.from_dict(s) for s in d["small"]]})


def _finite(obj: Any) -> Any:
    """JSON has no inf/nan: they become None (null)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
