"""Crash-safe optimizer checkpoints in NumPy's .npz format.

A checkpoint holds the optimizer's state_dict (and, by default, the parameters) as arrays plus
one JSON metadata entry. It is written to a temporary file in the target directory, flushed and
fsynced, then renamed over the old file, and the directory is fsynced: a process killed at any
moment leaves either the previous checkpoint or the new one, never a torn file. Reads check
zip CRCs, so a truncated or corrupted file is an error, not silently wrong state.

Use it through ``Optimizer.save(path)`` and ``Optimizer.load(path)``; this module knows the
state_dict layout and the file format only, not the optimizer. Loading checks every array's
header against what the optimizer expects before reading it; anything wrong with a file is a
ValueError, and on any error nothing changes.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import schedules
from ._storage import BFLOAT16

FORMAT = "adaptopt-checkpoint"
VERSION = 2  # 2: every per-parameter scalar (the step and any rule state) under "scalars"
PathLike = Union[str, "os.PathLike[str]"]


def _json_value(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, schedules.Schedule):
        return schedules.to_saved(x)
    raise TypeError(f"param_groups value {x!r} of type {type(x).__name__} cannot be saved in a checkpoint")


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write(path: PathLike, optimizer: str, state_dict: Dict[str, Any],
          params: Optional[Sequence[np.ndarray]]) -> None:
    """Writes ``state_dict`` of an optimizer of class ``optimizer`` (and ``params`` unless None)
    to ``path`` atomically."""
    path = os.fspath(path)
    arrays: Dict[str, Any] = {}
    state_meta = {}
    bfloat16 = []  # .npy has no bfloat16: such arrays are stored as their uint16 bits
    for index, entry in state_dict["state"].items():
        arrays_of = {k: v for k, v in entry.items() if isinstance(v, np.ndarray)}
        state_meta[str(index)] = {"scalars": {k: v for k, v in entry.items() if k not in arrays_of},
                                  "keys": list(arrays_of)}
        for k, v in arrays_of.items():
            arrays[f"state/{index}/{k}"] = v
    for i, p in enumerate(params or ()):
        arrays[f"param/{i}"] = p
    for name, a in arrays.items():
        if a.dtype == BFLOAT16:
            arrays[name] = a.view(np.uint16)
            bfloat16.append(name)
    meta = {"format": FORMAT, "version": VERSION, "optimizer": optimizer,
            "param_groups": state_dict["param_groups"], "state": state_meta,
            "num_params": len(params or ()), "include_params": params is not None,
            "adaptopt": state_dict["adaptopt"], "bfloat16": bfloat16}
    arrays["meta"] = np.frombuffer(json.dumps(meta, default=_json_value).encode(), dtype=np.uint8)

    directory = os.path.dirname(os.path.abspath(path))
    # A short temporary name: the target's own may already be near the file-name limit.
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)[:64]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


class Saved:
    """A checkpoint read and checked against the optimizer it is for."""

    def __init__(self, state_dict: Dict[str, Any], params: Optional[List[np.ndarray]]):
        self.state_dict = state_dict
        self.params = params


MAX_META_BYTES = 64 << 20


class _Refused(ValueError):
    """A file that is well-formed but does not fit the optimizer (or is not a checkpoint)."""


def _header(z: zipfile.ZipFile, name: str) -> Tuple[Tuple[int, ...], np.dtype]:
    """(shape, dtype) from the .npy header of member ``name``, without reading its data."""
    with z.open(name) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"{name}: unsupported .npy version {version}")
    if fortran or dtype.hasobject:
        raise ValueError(f"{name}: not a C-ordered numeric array")
    return shape, dtype


def _array(z: zipfile.ZipFile, name: str, shape: Tuple[int, ...], dtype: Any, what: str = "",
           bfloat16: frozenset = frozenset()) -> np.ndarray:
    """Member ``name`` after checking that its header announces ``shape`` and ``dtype`` (one
    dtype, or a tuple of acceptable ones), so nothing larger than expected is ever allocated.
    Members listed in ``bfloat16`` hold the uint16 bits of bfloat16 arrays."""
    got = _header(z, name)
    is_bf16 = name[:-4] in bfloat16
    if is_bf16 and got[1] == np.uint16:
        got = (got[0], BFLOAT16)
    dtypes = tuple(np.dtype(d) for d in (dtype if isinstance(dtype, tuple) else (dtype,)))
    if got[0] != tuple(shape) or got[1] not in dtypes:
        raise _Refused(f"{what or name} is {got[1]}{got[0]}, the optimizer's is "
                       f"{' or '.join(map(str, dtypes))}{tuple(shape)}")
    with z.open(name) as f:
        a = np.lib.format.read_array(f, allow_pickle=False)
    return a.view(BFLOAT16) if is_bf16 else a


Expect = Callable[[int, str], Optional[Tuple[Tuple[int, ...], Tuple[np.dtype, ...]]]]


def read(path: PathLike, optimizer: str, targets: Sequence[np.ndarray], expect: Expect) -> Saved:
    """Reads a checkpoint written by :func:`write` for an optimizer of class ``optimizer`` with the
    parameters ``targets``; ``expect(i, key)`` gives the shape and acceptable dtypes of state
    array ``key`` of param ``i``, or None for a key the optimizer does not have. Every array's header is checked against the shape
    and dtype the optimizer expects before its data is read, so a crafted file costs no more
    memory than a genuine one. Anything wrong with the file raises ValueError (a missing file:
    FileNotFoundError)."""
    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path) as z:
            members = set(z.namelist())
            if "meta.npy" not in members:
                raise ValueError("no 'meta' entry")
            shape, dtype = _header(z, "meta.npy")
            if dtype != np.uint8 or len(shape) != 1 or shape[0] > MAX_META_BYTES:
                raise ValueError("malformed 'meta' entry")
            meta = json.loads(_array(z, "meta.npy", shape, dtype).tobytes().decode())
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise _Refused("not an adaptopt checkpoint")
            if meta.get("version") not in (1, VERSION):
                raise _Refused(f"unsupported checkpoint version {meta.get('version')!r}")
            if meta.get("optimizer") != optimizer:
                raise _Refused(f"holds {meta.get('optimizer')} state, not {optimizer}")
            bf16 = frozenset(map(str, meta.get("bfloat16", ())))
            params = None
            if meta.get("include_params"):
                if int(meta["num_params"]) != len(targets):
                    raise _Refused(f"has {meta['num_params']} parameters, the optimizer has {len(targets)}")
                params = [_array(z, f"param/{i}.npy", p.shape, p.dtype, f"param {i}", bf16)
                          for i, p in enumerate(targets)]
            state = {}
            for index, entry in dict(meta["state"]).items():
                i = int(index)
                if not 0 <= i < len(targets) or str(i) != index:
                    raise _Refused(f"state for parameter {index!r}, which the optimizer does not have")
                st: Dict[str, Any] = dict(entry["scalars"] if "scalars" in entry else {"step": entry["step"]})
                for k in entry["keys"]:
                    want = expect(i, k) if isinstance(k, str) else None
                    if want is None:
                        raise _Refused(f"state[{i}][{k!r}]: not a state buffer of {optimizer}")
                    st[k] = _array(z, f"state/{i}/{k}.npy", want[0], want[1], f"state[{i}][{k!r}]", bf16)
                state[i] = st
            groups = meta["param_groups"]
            for g in groups:  # built-in lr schedules are stored as their to_dict()
                if isinstance(g.get("lr"), dict):
                    g["lr"] = schedules.from_dict(g["lr"])
            return Saved({"state": state, "param_groups": groups, "adaptopt": meta.get("adaptopt", {})}, params)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except _Refused as e:
        raise ValueError(f"checkpoint {path!r} {e}" if str(e).startswith(("holds", "has")) else
                         f"checkpoint {path!r}: {e}") from None
    except Exception as e:  # every way a file can be corrupt or crafted: one documented error
        raise ValueError(f"checkpoint {path!r} is truncated, corrupt, crafted or not for this optimizer: "
                         f"{type(e).__name__}: {e}") from None
