"""Storage of a param group: the state dtype (float32, bfloat16 or 8-bit codes), and how 16-bit
parameters are written (rounded to nearest even, through a float32 master copy, or
stochastically rounded). Options of every optimizer, per param group:

* ``state_dtype``: ``None`` (float32 state, float64 for float64 params), ``"float32"``,
  ``"bfloat16"`` or ``"8bit"`` (blockwise: uint8 codes plus a float32 absmax per block of
  ``Q8_BLOCK`` elements; see cpp/src/kernels/storage.h for the code);
* ``master_weights=True`` (float16/bfloat16 params): a float32 copy in ``state[i]["master"]`` is
  updated, and the param is the master rounded to nearest even;
* ``stochastic_rounding=True`` (float16/bfloat16 params, no master): the new value is rounded up
  or down with probabilities that make it unbiased, from random bits keyed by (``seed``, the
  param's index, the step, the element's index): reproducible, whatever the thread count or ISA.

In state dicts an 8-bit slot ``name`` is two entries, ``name`` (uint8 codes, the param's shape)
and ``name + "_absmax"`` (float32, one per block); ``state_dict(dequantize=True)`` gives float32
arrays under torch's keys instead.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple, Union

import ml_dtypes
import numpy as np

from . import _core

BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
_core.set_bfloat16_dtype(BFLOAT16)
Q8_BLOCK: int = _core.Q8_BLOCK
SIXTEEN_BIT = (np.dtype(np.float16), BFLOAT16)
MATH, BF16, Q8 = 0, 1, 2  # native StateKind
ROUND, MASTER, STOCHASTIC = 0, 1, 2  # native ParamMode
STATE_DTYPES = {None: MATH, "float32": MATH, "bfloat16": BF16, "8bit": Q8}
KEYS = ("state_dtype", "master_weights", "stochastic_rounding", "seed")
DEFAULTS: Dict[str, Any] = {"state_dtype": None, "master_weights": False, "stochastic_rounding": False, "seed": 0}

Buffer = Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]  # an array, or 8-bit (codes, absmax)


@dataclass(frozen=True)
class Storage:
    state: int  # MATH, BF16 or Q8
    mode: int  # ROUND, MASTER or STOCHASTIC
    seed: int

    @property
    def state_dtype(self) -> str:
        return {MATH: "float32", BF16: "bfloat16", Q8: "8bit"}[self.state]


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_, numbers.Integral)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}: {value!r}")
    return bool(value)


def storage_of(group: Dict[str, Any]) -> Storage:
    """The group's storage options, checked (TypeError / ValueError naming the option)."""
    sd = group.get("state_dtype")
    if sd is not None and not isinstance(sd, str):
        raise TypeError(f"state_dtype must be None or one of 'float32', 'bfloat16', '8bit', got {sd!r}")
    if sd not in STATE_DTYPES:
        raise ValueError(f"Invalid state_dtype: state_dtype={sd!r} (expected None, 'float32', 'bfloat16' or '8bit')")
    master = _flag("master_weights", group.get("master_weights", False))
    sr = _flag("stochastic_rounding", group.get("stochastic_rounding", False))
    if master and sr:
        raise ValueError("Invalid master_weights: master_weights=True and stochastic_rounding=True exclude each "
                         "other (the master is rounded to nearest)")
    seed = group.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**64:
        raise ValueError(f"Invalid seed: seed={seed!r} (an integer in [0, 2**64))")
    return Storage(STATE_DTYPES[sd], MASTER if master else STOCHASTIC if sr else ROUND, int(seed))


def check_params(storage: Storage, params, first: int) -> None:
    """Each param's dtype allows the group's storage: clear errors naming the option."""
    for i, p in enumerate(params):
        if not isinstance(p, np.ndarray):
            continue  # the native check names what is wrong with it
        where = f"params[{first + i}] ({p.dtype})"
        if storage.state != MATH and p.dtype == np.float64:
            raise ValueError(f"Invalid state_dtype: state_dtype={storage.state_dtype!r} is not available for "
                             f"float64 parameters, {where}: their state is float64")
        if storage.mode != ROUND and p.dtype not in SIXTEEN_BIT:
            name = "master_weights" if storage.mode == MASTER else "stochastic_rounding"
            raise ValueError(f"Invalid {name}: {name}=True needs float16 or bfloat16 parameters, {where}")


def math_dtype(p: np.ndarray) -> np.dtype:
    return np.dtype(np.float64 if p.dtype == np.float64 else np.float32)


def new_buffer(p: np.ndarray, storage: Storage, init: float, unsigned: bool) -> Buffer:
    """A state buffer for param ``p`` whose every element is ``init``."""
    if storage.state == MATH:
        dt = math_dtype(p)
        return np.full(p.shape, init, dt) if init else np.zeros(p.shape, dt)
    if storage.state == BF16:
        return np.full(p.shape, init, BFLOAT16)
    # Every element equal: the largest code with absmax = init, or zero (the smallest code when
    # unsigned, which has no zero) with absmax 0. Built directly: a float32 array of the
    # param's size would be a temporary four times the state's.
    code = (0xFF if unsigned else 0x7F) if init else (1 if unsigned else 0)
    codes = np.full(p.shape, code, np.uint8) if code else np.zeros(p.shape, np.uint8)
    return codes, np.full(blocks(p), init, np.float32)


def new_master(p: np.ndarray) -> np.ndarray:
    return p.astype(np.float32)


def quantize(values: np.ndarray, unsigned: bool) -> Tuple[np.ndarray, np.ndarray]:
    return tuple(_core.q8_encode(np.asarray(values, np.float32), unsigned))  # type: ignore[return-value]


def dequantize(buf: Buffer, unsigned: bool) -> np.ndarray:
    """float32 values of a state buffer of any kind."""
    if isinstance(buf, tuple):
        return _core.q8_decode(buf[0], buf[1], unsigned)
    return np.asarray(buf, np.float32)


def export(name: str, buf: Buffer) -> Dict[str, np.ndarray]:
    """The state dict entries of slot ``name``: the array, or the codes and their absmax."""
    if isinstance(buf, tuple):
        return {name: buf[0], f"{name}_absmax": buf[1]}
    return {name: buf}


def expected(p: np.ndarray, storage: Storage) -> Tuple[np.dtype, bool]:
    """(dtype of a slot array, whether it comes with an absmax array) for param ``p``."""
    if storage.state == Q8:
        return np.dtype(np.uint8), True
    return (BFLOAT16 if storage.state == BF16 else math_dtype(p)), False


def blocks(p: np.ndarray) -> int:
    return -(-p.size // Q8_BLOCK)


def load(where: str, name: str, entry: Dict[str, Any], p: np.ndarray, storage: Storage,
         unsigned: bool) -> Optional[Buffer]:
    """Slot ``name`` of a saved state entry as a new buffer of the group's storage: the compact
    form (checked), or a float array of the param's shape (converted: rounded to bfloat16, or
    quantized). None when absent. Raises TypeError / ValueError naming the key."""
    if name not in entry:
        return None
    a = np.asarray(entry[name])
    if a.shape != p.shape:
        raise ValueError(f"{where}[{name!r}]: shape {a.shape} does not match the parameter's {p.shape}")
    want, scaled = expected(p, storage)
    if a.dtype == want and scaled:
        key = f"{name}_absmax"
        if key not in entry:
            raise ValueError(f"{where}: {name!r} holds 8-bit codes but {key!r} is missing")
        s = np.asarray(entry[key])
        if s.dtype != np.float32 or s.shape != (blocks(p),):
            raise ValueError(f"{where}[{key!r}]: expected float32 of shape ({blocks(p)},), got {s.dtype}{s.shape}")
        if not np.all(np.isfinite(s)) or np.any(s < 0):
            raise ValueError(f"{where}[{key!r}]: absmax values must be finite and >= 0")
        return np.array(a, order="C", copy=True), np.array(s, order="C", copy=True)
    if a.dtype == want:
        return np.array(a, order="C", copy=True)
    if storage.state != MATH and a.dtype == np.float32:  # the dequantized form
        return quantize(a, unsigned) if storage.state == Q8 else np.array(a.astype(want), order="C", copy=True)
    if storage.state == MATH and p.dtype in (np.float32, np.float64):
        raise TypeError(f"{where}[{name!r}]: dtype {a.dtype} does not match the parameter's {p.dtype}")
    raise TypeError(f"{where}[{name!r}]: dtype {a.dtype} is not a state dtype of this group "
                    f"(state_dtype={storage.state_dtype!r}, {p.dtype} parameter: {want}"
                    f"{', or float32 to convert' if storage.state != MATH else ''})")
