"""The storage axis of the benchmark: how a configuration's params, gradients and state are
held, and the traffic model that follows from it, stream by stream.

A storage is named by dash-separated words (``--storage``):

* the param (and gradient) dtype, first: ``fp32``, ``fp64``, ``bf16`` or ``fp16``;
* for 16-bit params, how they are written (optional): ``sr`` (``stochastic_rounding=True``) or
  ``master`` (``master_weights=True``: a float32 master copy); none = round to nearest even;
* the state dtype (optional): ``8bit`` (``state_dtype="8bit"``), ``bf16state``
  (``state_dtype="bfloat16"``) or ``fp32state`` (the default for 16- and 32-bit params).

E.g. ``fp32`` (everything float32, the harness's original points), ``bf16-sr-8bit`` (bfloat16
params and grads, stochastic rounding, 8-bit state), ``bf16-master-bf16state``, ``fp32-8bit``,
``bf16-8bit``. The traffic model: a step reads g, reads p (or, with master weights, reads and
writes the master and only writes p), reads and writes p, and reads and writes every state slot
in its width; an 8-bit slot also reads and writes one float32 absmax per Q8_BLOCK elements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from adaptopt import _storage

PARAM_DTYPES = {"fp32": np.dtype(np.float32), "fp64": np.dtype(np.float64),
                "bf16": _storage.BFLOAT16, "fp16": np.dtype(np.float16)}
MODES = {"sr": "stochastic", "master": "master"}
STATES = {"fp32state": "float32", "bf16state": "bfloat16", "8bit": "8bit"}
STATE_KIND = {"float32": _storage.MATH, "float64": _storage.MATH, "bfloat16": _storage.BF16,
              "8bit": _storage.Q8}
STATE_WIDTH = {"float32": 4, "float64": 8, "bfloat16": 2, "8bit": 1}
ABSMAX_BYTES = 2 * 4 / _storage.Q8_BLOCK  # per element of an 8-bit slot: its absmax read and written
EXAMPLES = ("fp32", "bf16-sr-8bit", "bf16-master-bf16state", "bf16-8bit", "fp32-8bit",
            "bf16-master", "bf16-sr")


@dataclass(frozen=True)
class Storage:
    name: str  # canonical: param[-mode][-state], the state word left out when it is the default
    param_dtype: np.dtype
    param_mode: str  # "round", "stochastic" or "master"
    state_dtype: str  # "float32", "float64", "bfloat16" or "8bit"

    @property
    def kwargs(self) -> dict[str, Any]:
        """The optimizer options of this storage (empty for plain float32/float64)."""
        out: dict[str, Any] = {}
        if self.state_dtype in ("bfloat16", "8bit"):
            out["state_dtype"] = self.state_dtype
        if self.param_mode == "stochastic":
            out["stochastic_rounding"] = True
        elif self.param_mode == "master":
            out["master_weights"] = True
        return out

    @property
    def plain(self) -> bool:
        """float32 or float64 everywhere: the storage every peer of the original harness runs."""
        return self.param_dtype.itemsize >= 4 and self.state_dtype in ("float32", "float64")

    @property
    def sixteen_bit(self) -> bool:
        return self.param_dtype.itemsize == 2

    @property
    def state_kind(self) -> int:
        return STATE_KIND[self.state_dtype]

    @property
    def master(self) -> bool:
        return self.param_mode == "master"

    def traffic(self, slots: int) -> dict[str, float]:
        """Bytes per element of one step, stream by stream (reads + writes, each in its width):
        ``p``, ``g``, ``master`` (with master weights), ``s0``, ``s1``, ... for ``slots`` state
        slots and ``s0.absmax``, ... for 8-bit ones."""
        w = self.param_dtype.itemsize
        out: dict[str, float] = {}
        if self.master:
            out["master"] = 2 * 4
            out["p"] = w  # written only: the step reads the master
        else:
            out["p"] = 2 * w
        out["g"] = w
        sw = STATE_WIDTH[self.state_dtype]
        for s in range(slots):
            out[f"s{s}"] = 2 * sw
            if self.state_dtype == "8bit":
                out[f"s{s}.absmax"] = ABSMAX_BYTES
        return out

    def bytes_per_element(self, slots: int) -> float:
        return float(sum(self.traffic(slots).values()))

    def footprint(self, slots: int) -> float:
        """Bytes per element the arrays occupy: p, g, the master, the state (with absmax)."""
        w = self.param_dtype.itemsize
        sw = STATE_WIDTH[self.state_dtype] + (4 / _storage.Q8_BLOCK if self.state_dtype == "8bit" else 0)
        return 2 * w + (4 if self.master else 0) + slots * sw


def parse(name: str) -> Storage:
    """A storage from its name (ValueError naming what is wrong)."""
    words = name.strip().lower().split("-")
    if not words or words[0] not in PARAM_DTYPES:
        raise ValueError(f"storage {name!r}: starts with the param dtype, one of {', '.join(PARAM_DTYPES)}")
    dtype, rest = PARAM_DTYPES[words[0]], words[1:]
    mode = "round"
    if rest and rest[0] in MODES:
        mode = MODES[rest.pop(0)]
        if dtype.itemsize != 2:
            raise ValueError(f"storage {name!r}: sr and master need 16-bit params (bf16, fp16)")
    state = "float64" if dtype == np.float64 else "float32"
    if rest and rest[0] in STATES:
        state = STATES[rest.pop(0)]
        if dtype == np.float64 and state != "float32":
            raise ValueError(f"storage {name!r}: float64 params have float64 state only")
        if dtype == np.float64:
            state = "float64"
    if rest:
        raise ValueError(f"storage {name!r}: unexpected {'-'.join(rest)!r} (param dtype "
                         f"{'/'.join(PARAM_DTYPES)}, then optionally sr or master, then optionally "
                         f"{'/'.join(STATES)})")
    canon = [words[0]] + [k for k, v in MODES.items() if v == mode] + \
        [k for k, v in STATES.items() if v == state and v != "float32"]
    return Storage("-".join(canon), dtype, mode, state)


def of_dtype(dtype: Any) -> Storage:
    """The plain storage of a float32 or float64 dtype (``--dtype``)."""
    return parse({np.dtype(np.float32): "fp32", np.dtype(np.float64): "fp64"}[np.dtype(dtype)])


def probe_states(spec: Any, state: dict[str, Any]) -> tuple[list[Any], np.ndarray | None]:
    """The state arrays of an optimizer's ``state[i]`` as ``_core.Probe`` takes them: in slot
    order, an 8-bit slot as (codes, absmax); and the master copy (or None)."""
    states: list[Any] = []
    for name in spec.slots:
        a = state.get(name)
        if not isinstance(a, np.ndarray):
            continue
        absmax = state.get(f"{name}_absmax")
        states.append((a, absmax) if isinstance(absmax, np.ndarray) else a)
    master = state.get("master")
    return states, master if isinstance(master, np.ndarray) else None
