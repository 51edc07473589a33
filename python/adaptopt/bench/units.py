"""How sizes, bytes and times are written (skip reasons, tables, plot)."""

from __future__ import annotations

import math


def fmt_size(n: int) -> str:
    """10000000 -> '1e7'; other numbers as they are."""
    k = round(math.log10(n)) if n > 0 else 0
    return f"1e{k}" if n == 10**k and k >= 3 else str(n)


def fmt_bytes(b: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(b) >= scale:
            return f"{b / scale:.1f} {unit}"
    return f"{b:.0f} B"


def fmt_time(s: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"
