"""Crash-safe optimizer checkpoints in NumPy's .npz format.

A checkpoint holds the optimizer's state_dict (and, by default, the parameters) as arrays plus
one JSON metadata entry. It is written to a temporary file in the target directory, flushed and
fsynced, then renamed over the old file, and the directory is fsynced: a process killed at any
moment leaves either the previous checkpoint or the new one, never a torn file. Reads check
zip CRCs, so a truncated or corrupted file is an error, not silently wrong state.

Use it through ``Optimizer.save(path)`` and ``Optimizer.load(path)``; this module knows the
state_dict layout and the file format only, not the optimizer.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from . import schedules

FORMAT = "adaptopt-checkpoint"
VERSION = 2  # 2: per-parameter scalars (step, NAdam's mu_product) under "scalars"
PathLike = Union[str, "os.PathLike[str]"]


def _json_value(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, schedules.Schedule):
        return x.to_dict()
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
    for index, entry in state_dict["state"].items():
        arrays_of = {k: v for k, v in entry.items() if isinstance(v, np.ndarray)}
        state_meta[str(index)] = {"scalars": {k: v for k, v in entry.items() if k not in arrays_of},
                                  "keys": list(arrays_of)}
        for k, v in arrays_of.items():
            arrays[f"state/{index}/{k}"] = v
    for i, p in enumerate(params or ()):
        arrays[f"param/{i}"] = p
    meta = {"format": FORMAT, "version": VERSION, "optimizer": optimizer,
            "param_groups": state_dict["param_groups"], "state": state_meta,
            "num_params": len(params or ()), "include_params": params is not None,
            "adaptopt": state_dict["adaptopt"]}
    arrays["meta"] = np.frombuffer(json.dumps(meta, default=_json_value).encode(), dtype=np.uint8)

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
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

    def copy_params(self, targets: Sequence[np.ndarray]) -> None:
        if self.params is not None:
            for src, dst in zip(self.params, targets):
                np.copyto(dst, src)


def read(path: PathLike, optimizer: str, targets: Sequence[np.ndarray]) -> Saved:
    """Reads a checkpoint written by :func:`write` for an optimizer of class ``optimizer`` whose
    parameters are ``targets``, and checks the file and its parameters (not the state, which
    load_state_dict validates). Raises ValueError for anything wrong with the file."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            if "meta" not in files:
                raise ValueError("no 'meta' entry")
            meta = json.loads(z["meta"].tobytes().decode())
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise ValueError("not an adaptopt checkpoint")
            if meta.get("version") not in (1, VERSION):
                raise ValueError(f"unsupported checkpoint version {meta.get('version')!r}")
            state = {}
            for index, entry in meta["state"].items():
                st: Dict[str, Any] = dict(entry["scalars"] if "scalars" in entry else {"step": entry["step"]})
                for k in entry["keys"]:
                    st[k] = z[f"state/{index}/{k}"]
                state[int(index)] = st
            params = None
            if meta.get("include_params"):
                params = [z[f"param/{i}"] for i in range(int(meta["num_params"]))]
    except FileNotFoundError:
        raise
    except (ValueError, KeyError, TypeError, OSError, EOFError, zipfile.BadZipFile,
            json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"checkpoint {path!r} is truncated, corrupt or not an adaptopt "
                         f"checkpoint: {e}") from None

    if meta["optimizer"] != optimizer:
        raise ValueError(f"checkpoint {path!r} holds {meta['optimizer']} state, not {optimizer}")
    if params is not None:
        if len(params) != len(targets):
            raise ValueError(f"checkpoint {path!r} has {len(params)} parameters, the optimizer has {len(targets)}")
        for i, (src, dst) in enumerate(zip(params, targets)):
            if src.dtype != dst.dtype or src.shape != dst.shape:
                raise ValueError(f"checkpoint {path!r}: param {i} is {src.dtype}{src.shape}, the optimizer's "
                                 f"is {dst.dtype}{dst.shape}")
    groups = meta["param_groups"]
    for g in groups:  # built-in lr schedules are stored as their to_dict()
        if isinstance(g.get("lr"), dict):
            g["lr"] = schedules.from_dict(g["lr"])
    return Saved({"state": state, "param_groups": groups, "adaptopt": meta.get("adaptopt", {})}, params)
