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


def metadata(optimizer: str, param_groups: Any, state: Dict[str, Any], num_params: int, include_params: bool,
             counters: Dict[str, Any]) -> Dict[str, Any]:
    """The JSON entry of a checkpoint (``state``: per param index, its scalars and array keys).
    json.dumps(meta, default=_json_value) raises TypeError for a value that cannot be saved."""
    return {"format": FORMAT, "version": VERSION, "optimizer": optimizer, "param_groups": param_groups,
            "state": state, "num_params": num_params, "include_params": include_params, "adaptopt": counters}


class Writer:
    """A checkpoint written array by array into a temporary file beside ``path`` (so that no
    caller needs every array at once: adaptopt.distributed gathers them one at a time), then
    ``commit(meta)`` flushes, fsyncs and renames it over ``path``; ``discard()`` removes it."""

    def __init__(self, path: PathLike):
        self.path = os.fspath(path)
        self.directory = os.path.dirname(os.path.abspath(self.path))
        # A short temporary name: the target's own may already be near the file-name limit.
        fd, self.tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{os.path.basename(self.path)[:64]}.",
                                        suffix=".tmp")
        self.file = os.fdopen(fd, "wb")
        self.zip = zipfile.ZipFile(self.file, "w", zipfile.ZIP_STORED, allowZip64=True)
        self.bfloat16: List[str] = []  # .npy has no bfloat16: such arrays are stored as their uint16 bits

    def add(self, name: str, a: np.ndarray) -> None:
        if a.dtype == BFLOAT16:
            a = a.view(np.uint16)
            self.bfloat16.append(name)
        with self.zip.open(name + ".npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, np.asanyarray(a), allow_pickle=False)

    def commit(self, meta: Dict[str, Any]) -> None:
        text = json.dumps({**meta, "bfloat16": self.bfloat16}, default=_json_value)
        self.add("meta", np.frombuffer(text.encode(), dtype=np.uint8))
        self.zip.close()
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.path)
        _fsync_dir(self.directory)

    def discard(self) -> None:
        for closer in (self.zip, self.file):
            with contextlib.suppress(Exception):
                closer.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


def write(path: PathLike, optimizer: str, state_dict: Dict[str, Any],
          params: Optional[Sequence[np.ndarray]]) -> None:
    """Writes ``state_dict`` of an optimizer of class ``optimizer`` (and ``params`` unless None)
    to ``path`` atomically."""
    state_meta = {}
    for index, entry in state_dict["state"].items():
        state_meta[str(index)] = {"scalars": {k: v for k, v in entry.items() if not isinstance(v, np.ndarray)},
                                  "keys": [k for k, v in entry.items() if isinstance(v, np.ndarray)]}
    meta = metadata(optimizer, state_dict["param_groups"], state_meta, len(params or ()), params is not None,
                    state_dict["adaptopt"])
    json.dumps(meta, default=_json_value)  # an unsavable value raises before a file is made
    w = Writer(path)
    try:
        for index, entry in state_dict["state"].items():
            for k, v in entry.items():
                if isinstance(v, np.ndarray):
                    w.add(f"state/{index}/{k}", v)
        for i, p in enumerate(params or ()):
            w.add(f"param/{i}", p)
        w.commit(meta)
    except BaseException:
        w.discard()
        raise


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
