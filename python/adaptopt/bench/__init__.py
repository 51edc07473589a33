"""adaptopt-bench: throughput of adaptopt's optimizer steps against the memory-bandwidth limit
(a native probe streaming the same buffers in the same run) and against the rule's NumPy form
and torch.optim. ``adaptopt-bench --quick`` (under a minute) or ``adaptopt-bench`` (the full
sweep: every configuration, 1e3 ... 1e9 elements, 1 thread and all threads, float32).

One job per module: ``algos`` (the configurations, from the rule specs), ``measure`` (timing,
resources, the probe, the traffic model), ``budget`` (skip and retry rules), ``peers``,
``sweep``, ``schema`` (the JSON document, field by field), ``cli``, ``report`` (tables, plot).

The constants re-exported here are copies: patch them on the module that owns them
(``budget.BUSY``, ``cli.QUICK_SIZES``, ...).
"""

from .budget import ATTEMPTS, BUSY, QUIET, QUIET_WINDOW, SLOW_PEER_SIZE
from .cli import QUICK_SIZES, main, parse_args, parse_memory, parse_sizes, run
from .measure import BandwidthProbe

__all__ = [
           "ATTEMPTS",
           "BUSY",
           "QUICK_SIZES",
           "QUIET",
           "QUIET_WINDOW",
           "SLOW_PEER_SIZE",
           "BandwidthProbe",
           "main",
           "parse_args",
           "parse_memory",
           "parse_sizes",
           "run",
]
