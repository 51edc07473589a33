"""Crash-safe optimizer checkpoints in NumPy's .npz format.

A checkpoint holds the optimizer's state_dict (and, by default, the parameters) as arrays plus
one JSON metadata entry. It is written to a temporary file in the target directory, flushed and
fsynced, then renamed over the old file, and the directory is fsynced: a process killed at any
moment leaves either the previous checkpoint or the new one, never a torn file. Reads check
zip CRCs, so a truncated or corrupted file is an error, not silently wrong state.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from typing import TYPE_CHECKING, Any, Dict, Union

import numpy as np

from . import schedules

if TYPE_CHECKING:
    from .optim import Optimizer

FORMAT = "adaptopt-checkpoint"
VERSION = 1
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


def save(opt: "Optimizer", path: PathLike, *, include_params: bool = True) -> None:
    """Writes ``opt``'s state (and its parameters unless ``include_params=False``) to ``path``
    atomically."""
    path = os.fspath(path)
    sd = opt.state_dict()
    arrays: Dict[str, Any] = {}
    state_meta = {}
    for index, entry in sd["state"].items():
        state_meta[str(index)] = {"step": int(entry["step"]),
                                  "keys": [k for k in entry if k != "step"]}
        for k, v in entry.items():
            if k != "step":
                arrays[f"state/{index}/{k}"] = v
    if include_params:
        for i, p in enumerate(opt._all_params()):
            arrays[f"param/{i}"] = p
    meta = {"format": FORMAT, "version": VERSION, "optimizer": type(opt).__name__,
            "param_groups": sd["param_groups"], "state": state_meta,
            "num_params": len(opt._all_params()), "include_params": include_params,
            "adaptopt": sd["adaptopt"]}
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


def load(opt: "Optimizer", path: PathLike) -> None:
    """Restores a checkpoint written by :func:`save` into ``opt`` (and copies the saved
    parameters into its parameter arrays, if the checkpoint has them). Everything is read and
    validated first; on any error nothing is changed."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            if "meta" not in files:
                raise ValueError("no 'meta' entry")
            meta = json.loads(z["meta"].tobytes().decode())
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise ValueError("not an adaptopt checkpoint")
            if meta.get("version") != VERSION:
                raise ValueError(f"unsupported checkpoint version {meta.get('version')!r}")
            state = {}
            for index, entry in meta["state"].items():
                st: Dict[str, Any] = {"step": entry["step"]}
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

    if meta["optimizer"] != type(opt).__name__:
        raise ValueError(f"checkpoint {path!r} holds {meta['optimizer']} state, not {type(opt).__name__}")
    targets = opt._all_params()
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
    opt.load_state_dict({"state": state, "param_groups": groups, "adaptopt": meta.get("adaptopt", {})})
    if params is not None:
        for src, dst in zip(params, targets):
            np.copyto(dst, src)
