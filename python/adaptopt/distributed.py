"""ZeRO-sharded optimizer steps over MPI (mpi4py), on top of the same native step.

Each rank keeps the full parameters and gradients (as in data-parallel training) but optimizer
state only for the part of each param group it owns, so state memory per rank is 1/P of the
total (ZeRO stage 1/2, as DeepSpeed; torch's ZeroRedundancyOptimizer gives whole parameters to
ranks and all-reduces the full gradient). One step:

1. the gradients of every rank are summed and scattered (an in-place, non-blocking reduce-scatter
   per bucket), so each rank receives the summed gradient of its shard only;
2. each rank runs the fused native step of ``optimizer_class`` on its shard, bucket by bucket as
   the reductions arrive, the average over ranks (1/P) and any clipping coefficient folded into
   the kernels' gradient scale (no pass of their own);
3. the updated shards are all-gathered in place (in the params' own width: 16-bit params are
   gathered as 16 bits), so every rank ends with the same full parameters.

The result equals one process stepping the mean of the ranks' gradients, to float tolerance
(bit for bit when the gradients' sum is exact and there is no clipping; for 16-bit params also
P a power of two, as one process's mean would be a rounded 16-bit array). Memory per rank: the
params and the gradients in full (as any data-parallel trainer has them), the state / P.

Layout
------
Each param group lives in one flat buffer (one dtype per group): the params at offsets aligned
to 64 bytes (256 elements with ``state_dtype="8bit"``, so the 8-bit blocks are those of one
process), split into buckets of about ``bucket_bytes``; each bucket is split into P equal
shards, a multiple of 64 bytes each, padded at the end. Rank r owns shard r of every bucket.
The local optimizer (``opt.optim``, an ordinary ``optimizer_class``) has one parameter per
(parameter, bucket) piece this rank owns: 1-D views of the flat buffer, so its state holds the
shard only, its step counters and per-parameter rule state are those of the whole parameter.

Parameters are updated in place. When the params of a group are views of one C-contiguous
buffer at offsets this layout accepts (as :meth:`ZeroRedundancyOptimizer.flat_params` makes
them), that buffer is the flat buffer: a step copies nothing. Otherwise (separate arrays) the
optimizer copies them once into its own flat buffer and, after every step and load, copies the
flat buffer back into them: one extra read and write of the params per step
(``opt.copies_params`` is then True).

Gradients go to a flat gradient buffer per group. ``opt.grad_buffers()`` gives per-param views
of it for a backward pass to write into; ``step()`` (or ``step(grads)`` with those views) then
copies nothing. Other gradient arrays are copied into it, bucket by bucket, each bucket's copy
before its reduction is posted. The buffer is consumed by the step (the reduce-scatter writes
in place): write every gradient again before the next step.

Options
-------
``max_grad_norm``, ``skip_nonfinite`` and ``track_stats`` work as in one process: the norm and
statistics come from per-rank partial sums (float64) combined in rank order, so every rank gets
the same values whatever MPI's reduction tree. Param groups, lr schedules, every rule and the
storage options (``state_dtype``, ``master_weights``, ``stochastic_rounding``) work as in one
process; stochastic rounding draws other (equally unbiased) random bits, as its key includes the
index of the piece. Sparse gradients are not supported (the gradient buffer is dense).

Every rank must call the collective methods (the constructor, ``step``, ``add_param_group``,
``save``, ``load``) in the same order with the same hyperparameters and the same set of
gradients that are None. Bad input on any rank raises the same exception on every rank before
any data moves, with nothing modified (a check of every rank's arguments, then one small
all-reduce); ranks that disagree on hyperparameters also raise.

Checkpoints
-----------
``save(path)`` writes, from rank 0, the checkpoint one process would write (the format of
:mod:`adaptopt.checkpoint`, with the full unsharded state in parameter order), gathering one
array at a time so rank 0 never holds more than one parameter's state on top of its own.
``load(path)`` reads it on every rank (the path must be visible to every rank: a shared file
system across hosts; each rank holds the whole saved state while loading) and keeps each rank's
pieces, so a checkpoint loads at any world size, and into (or from) a single-process
``optimizer_class``. The storage options must be those the checkpoint was saved with.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import zlib
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

try:
    from mpi4py import MPI
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("adaptopt.distributed needs mpi4py: pip install 'adaptopt[mpi]' "
                      "(mpi4py and an MPI such as the mpich wheel)") from e

from . import _core, _rules, _storage, checkpoint
from ._group import freeze
from ._state import export_groups
from .optim import Optimizer, StepOptions, _stats_dict, expected_state, param_groups_of
from .sparse import SparseRows

__all__ = ["ZeroRedundancyOptimizer"]

CACHE_LINE = 64
DEFAULT_BUCKET_BYTES = 32 << 20
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64), *_storage.SIXTEEN_BIT)
_WRAPPER_OPTIONS = ("max_grad_norm", "skip_nonfinite", "track_stats")
# Exceptions re-raised as their own type on the other ranks (any other: RuntimeError there).
_ERRORS = {c.__name__: c for c in (TypeError, ValueError, OSError, FileNotFoundError, PermissionError,
                                   IsADirectoryError, RuntimeError, ZeroDivisionError, KeyError, IndexError)}


# ---------------------------------------------------------------------------------------------
# MPI datatypes and the reduction of 16-bit gradients


def _half_sum(dtype: np.dtype) -> Any:
    """A commutative MPI sum of 16-bit floats stored as uint16 (each pair added in float32)."""
    def add(inbuf: Any, inoutbuf: Any, datatype: Any) -> None:
        a = np.frombuffer(inbuf, dtype)
        b = np.frombuffer(inoutbuf, dtype)
        b[...] = (a.astype(np.float32) + b.astype(np.float32)).astype(dtype)
    return MPI.Op.Create(add, commute=True)


_OPS: Dict[np.dtype, Any] = {}


def _reduce_type(dtype: np.dtype) -> Tuple[Any, Any, np.dtype]:
    """(MPI datatype, op, view dtype) that sums gradients of ``dtype``."""
    if dtype == np.float32:
        return MPI.FLOAT, MPI.SUM, dtype
    if dtype == np.float64:
        return MPI.DOUBLE, MPI.SUM, dtype
    native = getattr(MPI, "FLOAT16_T" if dtype == np.float16 else "BFLOAT16_T", MPI.DATATYPE_NULL)
    if native != MPI.DATATYPE_NULL:
        return native, MPI.SUM, np.dtype(np.uint16)
    if dtype not in _OPS:
        _OPS[dtype] = _half_sum(dtype)
    return MPI.UINT16_T, _OPS[dtype], np.dtype(np.uint16)


def _move_type(dtype: np.dtype) -> Tuple[Any, np.dtype]:
    """(MPI datatype, view dtype) that moves values of ``dtype`` unchanged."""
    if dtype.itemsize == 2:
        return MPI.UINT16_T, np.dtype(np.uint16)
    return (MPI.FLOAT if dtype == np.float32 else MPI.DOUBLE), dtype


def _aligned_zeros(n: int, dtype: np.dtype) -> np.ndarray:
    """A zero-filled 1-D array whose data starts on a cache line."""
    raw = np.zeros(n * dtype.itemsize + CACHE_LINE, np.uint8)
    start = (-raw.ctypes.data) % CACHE_LINE
    return raw[start:start + n * dtype.itemsize].view(dtype)


def _alignment(dtype: np.dtype, q8: bool) -> int:
    a = max(1, CACHE_LINE // dtype.itemsize)
    return math.lcm(a, _storage.Q8_BLOCK) if q8 else a


def _default_offsets(sizes: Sequence[int], align: int) -> List[int]:
    out, o = [], 0
    for n in sizes:
        out.append(o)
        o += -(-n // align) * align
    return out


# ---------------------------------------------------------------------------------------------
# Layout of one group


class _Bucket:
    __slots__ = ("start", "shard", "counts", "equal")

    def __init__(self, start: int, shard: int, counts: List[int]):
        self.start = start  # first element in the flat buffer
        self.shard = shard  # C: elements per rank (the last bucket may have fewer at its end)
        self.counts = counts  # elements each rank owns in this bucket
        self.equal = all(c == shard for c in counts)

    @property
    def length(self) -> int:
        return sum(self.counts)

    def owned(self, rank: int) -> Tuple[int, int]:
        lo = self.start + rank * self.shard
        return lo, lo + self.counts[rank]


class _Piece:
    """One local parameter: elements [lo, hi) of the flat buffer, part of param ``param`` (a
    global index; None for a placeholder), reduced gradient at ``goff`` of the grad buffer."""

    __slots__ = ("group", "param", "lo", "hi", "bucket", "goff", "view", "gview")

    def __init__(self, group: int, param: Optional[int], lo: int, hi: int, bucket: Optional[int], goff: int):
        self.group, self.param, self.lo, self.hi, self.bucket, self.goff = group, param, lo, hi, bucket, goff
        self.view: np.ndarray = None  # type: ignore[assignment]
        self.gview: np.ndarray = None  # type: ignore[assignment]


class _Part:
    """One bucket of the step: its group's layout, the params copied into the gradient buffer
    before its reduction, this rank's local pieces in it."""

    __slots__ = ("bucket", "copies", "lay", "pieces")

    def __init__(self, lay: Optional["_GroupLayout"], bucket: Optional[_Bucket], copies: List[int]):
        self.lay, self.bucket, self.copies = lay, bucket, copies
        self.pieces: List[int] = []


def _buckets(end: int, length: int, nranks: int, align: int, bucket_elems: int) -> List[_Bucket]:
    """Buckets over flat elements [0, end) of a buffer of ``length`` >= end elements."""
    if end == 0:
        return []
    k = -(-end // max(bucket_elems, nranks * align))
    shard = -(-end // (k * nranks * align)) * align
    out = []
    for b in range(k):
        start = b * nranks * shard
        if start >= end:
            break
        stop = min(start + nranks * shard, length)
        counts = [max(0, min(shard, stop - (start + r * shard))) for r in range(nranks)]
        out.append(_Bucket(start, shard, counts))
    return out


def _padded_length(end: int, nranks: int, align: int, bucket_elems: int) -> int:
    b = _buckets(end, end + nranks * bucket_elems + nranks * align, nranks, align, bucket_elems)
    return b[-1].start + nranks * b[-1].shard if b else 0


def _root(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _adopt(params: List[np.ndarray], align: int, nranks: int, bucket_elems: int,
           avoid: Sequence[np.ndarray]) -> Optional[Tuple[np.ndarray, List[int]]]:
    """(flat buffer, offsets) when ``params`` are views of one C-contiguous buffer in an
    accepted layout: C-contiguous, disjoint, at offsets from the lowest one that are multiples
    of ``align`` elements, and no array of ``avoid`` (other groups' params and buffers) inside
    the flat buffer, which starts at the lowest param and extends to the padded end of the last
    bucket or the end of the buffer. Else None."""
    nonempty = [p for p in params if p.size]
    if not nonempty:
        return None
    root = _root(nonempty[0])
    if not (root.flags.c_contiguous and root.flags.writeable):
        return None
    item = params[0].dtype.itemsize
    addr = [p.__array_interface__["data"][0] if p.size else None for p in params]
    origin = min(a for a in addr if a is not None)
    root_lo = root.__array_interface__["data"][0]
    root_hi = root_lo + root.nbytes
    offsets: List[Optional[int]] = []
    for p, a in zip(params, addr):
        if a is None:
            offsets.append(None)
            continue
        d = a - origin
        if _root(p) is not root or not p.flags.c_contiguous or d % (item * align) or a + p.nbytes > root_hi:
            return None
        offsets.append(d // item)
    spans = sorted((o, o + p.size) for o, p in zip(offsets, params) if o is not None)
    if any(x[1] > y[0] for x, y in zip(spans, spans[1:])):
        return None
    need = _padded_length(spans[-1][1], nranks, align, bucket_elems)
    n = min(need, (root_hi - origin) // item)
    flat = root.reshape(-1).view(np.uint8)[origin - root_lo:origin - root_lo + n * item].view(params[0].dtype)
    if any(x.size and _core.find_overlap([flat, x]) is not None for x in avoid):
        return None
    # A zero-size param takes the place after the param before it (it moves nothing).
    last = 0
    for i, o in enumerate(offsets):
        if o is None:
            offsets[i] = last
        else:
            last = o
    return flat, offsets  # type: ignore[return-value]


class _GroupLayout:
    """One group's flat parameter and gradient buffers and this rank's pieces of them."""

    def __init__(self, index: int, params: List[np.ndarray], first: int, comm: Any, bucket_bytes: int, q8: bool,
                 avoid: Sequence[np.ndarray]):
        P, rank = comm.Get_size(), comm.Get_rank()
        self.dtype = params[0].dtype
        self.params = list(params)  # the arrays (the group dict's list may be changed in place)
        self.first = first
        self.align = _alignment(self.dtype, q8)
        bucket_elems = max(1, bucket_bytes // self.dtype.itemsize)
        adopted = _adopt(params, self.align, P, bucket_elems, avoid)
        if adopted is not None:
            self.flat, self.offsets = adopted
            self.copies = False
        else:
            self.offsets = _default_offsets([p.size for p in params], self.align)
            end = max((o + p.size for o, p in zip(self.offsets, params)), default=0)
            self.flat = _aligned_zeros(_padded_length(end, P, self.align, bucket_elems), self.dtype)
            self.copies = True
        end = max((o + p.size for o, p in zip(self.offsets, params)), default=0)
        self.buckets = _buckets(end, self.flat.size, P, self.align, bucket_elems)
        self.grad = _aligned_zeros(self.flat.size, self.dtype)
        self.views = [self.flat[o:o + p.size].reshape(p.shape) for o, p in zip(self.offsets, params)]
        self.grad_views = [self.grad[o:o + p.size].reshape(p.shape) for o, p in zip(self.offsets, params)]
        # This rank's pieces, bucket by bucket (a param may span buckets: one piece per bucket).
        self.pieces: List[_Piece] = []
        spans = sorted((o, o + p.size, i) for i, (o, p) in enumerate(zip(self.offsets, params)) if p.size)
        for k, b in enumerate(self.buckets):
            lo, hi = b.owned(rank)
            for o, e, i in spans:
                a, z = max(o, lo), min(e, hi)
                if a < z:
                    self.pieces.append(_Piece(index, first + i, a, z, k, b.start + a - lo))
        if rank == 0:  # zero-size params: rank 0 keeps their (empty) state and step counters
            self.pieces += [_Piece(index, first + i, self.offsets[i], self.offsets[i], None, 0)
                            for i, p in enumerate(params) if p.size == 0]
        for pc in self.pieces:
            if pc.hi > pc.lo:
                pc.view = self.flat[pc.lo:pc.hi]
                pc.gview = self.grad[pc.goff:pc.goff + pc.hi - pc.lo]
            else:
                pc.view = np.empty(0, self.dtype)
                pc.gview = np.empty(0, self.dtype)
        if not self.pieces:  # a local param group cannot be empty: an empty placeholder
            pc = _Piece(index, None, 0, 0, None, 0)
            pc.view, pc.gview = np.empty(0, self.dtype), np.empty(0, self.dtype)
            self.pieces.append(pc)

    def copy_out(self) -> None:
        if self.copies:
            for p, v in zip(self.params, self.views):
                np.copyto(p, v)


# ---------------------------------------------------------------------------------------------
# The local step: Optimizer.step's binding logic, for a subset of the local params, without
# clipping, skipping or counting (the distributed step does those once for all its parts).


def _local_step(optim: Optimizer, grads: List[Any], scale: float, want_stats: bool) -> Optional[List[Any]]:
    """Steps the local params whose gradient is not None, each gradient times ``scale`` inside the
    kernels; returns per-group StepStats (of the gradients as given)."""
    natives, hypers, on_apply = optim._native_args(grads)
    _, _, stats = _core.multi_step(natives, hypers, grads, -1.0, False, False, want_stats, None, on_apply, scale)
    return stats


_STAT_FIELDS = 6  # grad_sq, update_sq, lr_sum, lr_min, lr_max, count


def _stats_rows(ngroups: int) -> np.ndarray:
    s = np.zeros((ngroups, _STAT_FIELDS))
    s[:, 3], s[:, 4] = np.inf, -np.inf
    return s


def _merge_stats(rows: np.ndarray, stats: Sequence[Any]) -> None:
    for g, s in enumerate(stats):
        if s.count:
            rows[g, 0] += s.grad_sq
            rows[g, 1] += s.update_sq
            rows[g, 2] += s.lr_sum
            rows[g, 3] = min(rows[g, 3], s.lr_min)
            rows[g, 4] = max(rows[g, 4], s.lr_max)
            rows[g, 5] += s.count


class _Stats:
    __slots__ = ("grad_sq", "update_sq", "lr_sum", "lr_min", "lr_max", "count")

    def __init__(self, row: np.ndarray, grad_sq: float):
        self.grad_sq, self.update_sq, self.lr_sum = grad_sq, float(row[1]), float(row[2])
        self.lr_min, self.lr_max, self.count = float(row[3]), float(row[4]), int(row[5])


def _sumsq(x: np.ndarray, buf: np.ndarray) -> float:
    """Sum of squares of ``x`` in float64, in fixed chunks (no temporary of x's size)."""
    total = 0.0
    step = buf.size
    for i in range(0, x.size, step):
        c = buf[:min(step, x.size - i)]
        np.square(x[i:i + c.size], out=c, dtype=np.float64)
        total += float(c.sum())
    if math.isinf(total) and x.dtype == np.float64 and np.isfinite(x).all():
        total = math.inf  # overflow of finite float64 values: the norm is inf, nothing is NaN
    return total


# ---------------------------------------------------------------------------------------------


class ZeroRedundancyOptimizer(StepOptions):
    """``optimizer_class`` with its state sharded over the ranks of ``comm`` (see the module
    docstring). ``params`` and the keyword arguments are those of ``optimizer_class`` (param
    groups, hyperparameters, storage options, ``max_grad_norm``, ``skip_nonfinite``,
    ``track_stats``); ``bucket_bytes`` is the size of a communication bucket. Collective: every
    rank constructs it with the same arguments; the params of rank 0 are broadcast to the
    others."""

    # Pipelined step (bucket k+1's reduction posted before bucket k's local step). False: every
    # reduction first, then the local steps; on one host (2 ranks, 1e7 and 1e8 Adam) both took the
    # same time, as MPICH moves shared-memory messages only inside MPI calls.
    _overlap = True

    def __init__(self, params: Iterable[Any], optimizer_class: type = None, comm: Any = None, *,  # type: ignore[assignment]
                 bucket_bytes: int = DEFAULT_BUCKET_BYTES, max_grad_norm: Optional[float] = None,
                 skip_nonfinite: bool = False, track_stats: bool = False, **defaults: Any):
        self._comm = (MPI.COMM_WORLD if comm is None else comm).Dup()
        self._rank, self._size = self._comm.Get_rank(), self._comm.Get_size()
        self._lock = threading.Lock()
        self.layouts: List[_GroupLayout] = []
        self.param_groups: List[Dict[str, Any]] = []
        self.last_grad_norm: Optional[float] = None
        self.last_stats: Optional[List[Dict[str, Any]]] = None
        self.last_timings: Optional[Dict[str, float]] = None
        self.profile = False  # fill last_timings (seconds per phase) at each step
        self._hyper_cache: List[Tuple[Any, Dict[str, Any]]] = []
        self.optim: Optimizer = None  # type: ignore[assignment]
        err: Optional[BaseException] = None
        key = b""
        groups: List[Dict[str, Any]] = []
        try:
            if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, Optimizer)
                    and hasattr(optimizer_class, "_spec")):
                raise TypeError(f"optimizer_class: expected an adaptopt optimizer class (adaptopt.Adam, ...), "
                                f"got {optimizer_class!r}")
            self._class = optimizer_class
            self._spec = optimizer_class._spec
            if isinstance(bucket_bytes, bool) or not isinstance(bucket_bytes, int) or bucket_bytes < 1:
                raise ValueError(f"Invalid bucket_bytes: bucket_bytes={bucket_bytes!r} (a positive int)")
            self._bucket_bytes = bucket_bytes
            self.max_grad_norm, self.skip_nonfinite, self.track_stats = max_grad_norm, skip_nonfinite, track_stats
            self._defaults = defaults
            groups = self._normalize(params)
            self._check_new_groups(groups, 0, [])
            key = self._structure_key(groups)
        except Exception as e:  # noqa: BLE001 - any error on one rank is raised on every rank
            err = e
        self._agree(err, key, "construct")
        self._nparams = 0
        local_groups = []
        for gi, g in enumerate(groups):
            others = [p for h in groups[:gi] + groups[gi + 1:] for p in h["params"]]
            local_groups.append(self._lay_out(g, others))
        self.optim = self._class(local_groups, **self._defaults)
        self._finish_groups(groups)

    # -- construction ------------------------------------------------------------------------
    @staticmethod
    def flat_params(shapes: Sequence[Sequence[int]], dtype: Any = np.float32, *, comm: Any = None,
                    state_dtype: Optional[str] = None, bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> List[np.ndarray]:
        """Zero-filled arrays of these shapes that are views of one buffer in the layout
        ZeroRedundancyOptimizer uses for a group (given the world size of ``comm``, the
        group's ``state_dtype`` and ``bucket_bytes``): pass them as one group's params and
        steps copy nothing."""
        dt = np.dtype(dtype)
        nranks = (MPI.COMM_WORLD if comm is None else comm).Get_size()
        align = _alignment(dt, state_dtype == "8bit")
        sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
        offsets = _default_offsets(sizes, align)
        end = max((o + n for o, n in zip(offsets, sizes)), default=0)
        flat = _aligned_zeros(_padded_length(end, nranks, align, max(1, bucket_bytes // dt.itemsize)), dt)
        return [flat[o:o + n].reshape(tuple(s)) for o, n, s in zip(offsets, sizes, shapes)]

    def _normalize(self, params: Any) -> List[Dict[str, Any]]:
        return [self._normalize_group(g) for g in param_groups_of(params)]

    @staticmethod
    def _normalize_group(g: Any) -> Dict[str, Any]:
        if not isinstance(g, dict):
            raise TypeError(f"param_group: expected a dict, got {type(g).__name__}")
        g = dict(g)
        ps = g.get("params")
        if ps is None:
            raise ValueError("param_group: missing 'params'")
        g["params"] = [ps] if isinstance(ps, np.ndarray) else list(ps)
        if not g["params"]:
            raise ValueError("params: optimizer got an empty parameter list")
        return g

    def _check_new_groups(self, groups: List[Dict[str, Any]], first: int, existing: List[np.ndarray]) -> None:
        """Every check the new groups need, before anything is communicated: each param an
        array the optimizer can update, one dtype per group, hyperparameters and storage
        options valid (checked by ``optimizer_class`` itself, on empty stand-ins)."""
        i = first
        for g in groups:
            for key in _WRAPPER_OPTIONS:
                if key in g:
                    raise ValueError(f"param_group: {key!r} is an option of the optimizer, not of a group")
            dt = None
            for p in g["params"]:
                where = f"params[{i}]"
                if not isinstance(p, np.ndarray):
                    raise TypeError(f"{where}: expected a numpy.ndarray, got {type(p).__name__}")
                if p.dtype not in _FLOATS:
                    raise TypeError(f"{where}: dtype {p.dtype} is not float32, float64, float16 or bfloat16")
                if not p.flags.c_contiguous:
                    raise ValueError(f"{where}: array must be C-contiguous")
                if not p.flags.writeable:
                    raise ValueError(f"{where}: array is read-only (it must be writeable: it is updated in place)")
                if dt is not None and p.dtype != dt:
                    raise TypeError(f"{where}: dtype {p.dtype} differs from {dt}, the dtype of its group's first "
                                    "param (ZeroRedundancyOptimizer keeps one flat buffer per group: put params "
                                    "of another dtype in another group)")
                dt = p.dtype
                i += 1
        arrays = existing + [p for g in groups for p in g["params"]]
        overlap = _core.find_overlap(arrays)
        if overlap is not None:
            raise ValueError(f"params[{overlap[0]}] and params[{overlap[1]}] overlap in memory "
                             "(each parameter must be a separate array, listed once)")
        stand_ins = [{**g, "params": [np.empty(0, g["params"][0].dtype)]} for g in groups]
        self._class(stand_ins, **self._defaults)  # validates the hyperparameters as one process would

    def _structure_key(self, groups: List[Dict[str, Any]]) -> bytes:
        items = []
        for g in groups:
            hyper = {k: (v(0) if callable(v) else v) for k, v in g.items() if k != "params"}
            items.append(([(p.shape, p.dtype.str) for p in g["params"]], sorted(hyper.items(), key=str)))
        return repr((items, self._bucket_bytes, sorted(((k, v(0) if callable(v) else v)
                                                       for k, v in self._defaults.items()), key=str))).encode()

    def _lay_out(self, g: Dict[str, Any], others: List[np.ndarray]) -> Dict[str, Any]:
        """Flat buffers of a new (checked) group, rank 0's params broadcast into them; returns
        the local optimizer's group over this rank's pieces."""
        index = len(self.layouts)
        storage = _storage.storage_of({**_storage.DEFAULTS, **{k: v for k, v in self._defaults.items()
                                                               if k in _storage.KEYS}, **g})
        avoid = others + [x for lay in self.layouts for x in (lay.flat, lay.grad)]
        lay = _GroupLayout(index, g["params"], self._nparams, self._comm, self._bucket_bytes,
                           storage.state == _storage.Q8, avoid)
        if lay.copies:
            for p, v in zip(g["params"], lay.views):
                np.copyto(v, p)
        mt, vt = _move_type(lay.dtype)
        if lay.flat.size:
            self._comm.Bcast([lay.flat.view(vt), mt], root=0)
        lay.copy_out()
        self.layouts.append(lay)
        self._nparams += len(g["params"])
        return {**{k: v for k, v in g.items() if k != "params"}, "params": [pc.view for pc in lay.pieces]}

    def _finish_groups(self, groups: List[Dict[str, Any]]) -> None:
        """The user-facing group dicts: the local groups' values (defaults filled in) with the
        user's params; the index of every piece in the local optimizer."""
        start = len(self.param_groups)
        for g, local in zip(groups, self.optim.param_groups[start:]):
            self.param_groups.append({**{k: v for k, v in local.items() if k != "params"}, "params": g["params"]})
            self._hyper_cache.append((None, {}))
        self._param_lists = [g["params"] for g in self.param_groups]
        self._storage_keys = [self._storage_raw(g) for g in self.param_groups]
        self.pieces = [pc for lay in self.layouts for pc in lay.pieces]
        self._parts = self._plan_parts()

    def _plan_parts(self) -> List["_Part"]:
        """The step's parts in order: one per bucket of every group (with the params whose
        gradients must be in the buffer before its reduction is posted, and the local indices
        of this rank's pieces in it); pieces with no bucket (zero-size params) go with the last
        part, or a part without a bucket when there is none."""
        parts: List[_Part] = []
        where: Dict[Tuple[int, int], int] = {}
        for gi, lay in enumerate(self.layouts):
            order = sorted(range(len(lay.params)), key=lambda i: lay.offsets[i])
            done = 0
            for k, b in enumerate(lay.buckets):
                stop = b.start + b.length
                copies = []
                while done < len(order) and lay.offsets[order[done]] < stop:
                    copies.append(order[done])
                    done += 1
                where[(gi, k)] = len(parts)
                parts.append(_Part(lay, b, copies))
        if not parts:
            parts.append(_Part(None, None, []))
        for j, pc in enumerate(self.pieces):
            if pc.param is not None:
                parts[where[(pc.group, pc.bucket)] if pc.bucket is not None else -1].pieces.append(j)
        return parts

    @staticmethod
    def _storage_raw(group: Dict[str, Any]) -> tuple:
        return tuple((type(v), v) for v in map(group.get, _storage.KEYS))

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        """Adds a group (collective: every rank adds the same group)."""
        with self._lock:
            err, key = None, b""
            try:
                g = self._normalize_group(param_group)
                existing = [p for grp in self.param_groups for p in grp["params"]]
                self._check_new_groups([g], len(existing), existing)
                key = self._structure_key([g])
            except Exception as e:  # noqa: BLE001 - any error on one rank is raised on every rank
                err = e
            self._agree(err, key, "add_param_group")
            self.optim.add_param_group(self._lay_out(g, existing))
            self._finish_groups([g])

    # -- options: max_grad_norm, skip_nonfinite, track_stats (StepOptions), as in one process --
    @property
    def comm(self) -> Any:
        """The optimizer's own communicator (a duplicate of the one it was given)."""
        return self._comm

    @property
    def skipped_steps(self) -> int:
        return self.optim.skipped_steps

    @property
    def _step_count(self) -> int:
        return self.optim._step_count

    @property
    def copies_params(self) -> bool:
        """Whether some group's params are separate arrays, copied from the flat buffer after
        every step (see :meth:`flat_params` to avoid it)."""
        return any(lay.copies for lay in self.layouts)

    def grad_buffers(self) -> List[np.ndarray]:
        """Per-param views of the flat gradient buffers (parameter order): write the gradients
        there and call ``step()`` to skip the copy into the buffers. A step consumes them."""
        return [v for lay in self.layouts for v in lay.grad_views]

    def zero_grad(self) -> None:
        """Zeroes the gradient buffers (for a backward pass that accumulates into them)."""
        for lay in self.layouts:
            lay.grad.fill(0)

    # -- collective agreement ----------------------------------------------------------------
    def _agree(self, err: Optional[BaseException], key: bytes, what: str) -> None:
        """Raises on every rank when any rank has an error (the first failing rank's, same type,
        message prefixed with its rank when P > 1) or when the ranks' keys differ."""
        if self._size == 1:
            if err is not None:
                raise err
            return
        h = zlib.crc32(key) if err is None else 0
        flags = np.array([self._rank if err is not None else self._size, h, -h], np.int64)
        self._comm.Allreduce(MPI.IN_PLACE, flags, op=MPI.MIN)
        src = int(flags[0])
        if src < self._size:
            info = (type(err).__name__, str(err)) if self._rank == src else None
            name, msg = self._comm.bcast(info, root=src)
            exc = _ERRORS.get(name, RuntimeError)(f"rank {src}: {msg}")
            if self._rank == src:
                raise exc from err
            raise exc
        if flags[1] != -flags[2]:
            raise ValueError(f"{what}: the ranks disagree on the arguments (the parameters' shapes and dtypes, "
                             "the hyperparameters and options, which gradients are None, or the step count); "
                             "every rank must pass the same")

    # -- stepping ----------------------------------------------------------------------------
    def _resolved(self, group: Dict[str, Any]) -> Dict[str, Any]:
        lr = group.get("lr")
        return {**group, "lr": lr(self._step_count)} if callable(lr) else group

    def _check_groups(self) -> List[Dict[str, Any]]:
        """Validated, resolved hyperparameters of every group (cached while unchanged)."""
        out = []
        for gi, (group, params) in enumerate(zip(self.param_groups, self._param_lists)):
            ps = group.get("params")
            if ps is not params or len(ps) != len(self.layouts[gi].params) or \
                    any(a is not b for a, b in zip(ps, self.layouts[gi].params)):
                raise ValueError(f"param_groups[{gi}]['params'] was changed after construction; "
                                 "use add_param_group() to add parameters")
            if self._storage_raw(group) != self._storage_keys[gi]:
                raise ValueError(f"param_groups[{gi}]: the storage options (state_dtype, master_weights, "
                                 "stochastic_rounding, seed) cannot change in a ZeroRedundancyOptimizer "
                                 "(its buffers are laid out for them)")
            resolved = self._resolved(group)
            try:
                key = tuple(freeze(resolved[k]) for k in self._spec.keys)
            except KeyError as e:
                raise ValueError(f"param_groups[{gi}]: missing hyperparameter {e.args[0]!r}") from None
            cached_key, values = self._hyper_cache[gi]
            if key != cached_key:
                try:
                    values = self._spec.build(resolved).values
                except (TypeError, ValueError) as e:
                    raise type(e)(f"param_groups[{gi}]: {e}") from None
                self._hyper_cache[gi] = (key, values)
            out.append(values)
        return out

    def _check_grads(self, grads: Any) -> List[Optional[np.ndarray]]:
        params = [p for lay in self.layouts for p in lay.params]
        if grads is None:
            return [v for lay in self.layouts for v in lay.grad_views]
        if not isinstance(grads, (list, tuple)):
            if isinstance(grads, np.ndarray):
                raise TypeError("grads: expected a sequence of arrays (one per parameter), got an ndarray")
            grads = list(grads)
        if len(grads) != len(params):
            raise ValueError(f"grads: expected {len(params)} arrays (one per parameter, in parameter order), "
                             f"got {len(grads)}")
        for i, (g, p) in enumerate(zip(grads, params)):
            if g is None:
                continue
            if isinstance(g, SparseRows):
                raise TypeError(f"grads[{i}]: sparse rows are not supported by ZeroRedundancyOptimizer "
                                "(its gradient buffer is dense); pass the dense gradient")
            if not isinstance(g, np.ndarray):
                raise TypeError(f"grads[{i}]: expected a numpy.ndarray, got {type(g).__name__}")
            if g.dtype != p.dtype:
                raise TypeError(f"grads[{i}]: dtype {g.dtype} does not match the parameter's {p.dtype} "
                                "(no implicit casts)")
            if g.shape != p.shape:
                raise ValueError(f"grads[{i}]: shape {g.shape} does not match the parameter's shape {p.shape}")
        return list(grads)

    def step(self, grads: Optional[Sequence[Any]] = None) -> None:
        """One step with this rank's gradients (one per parameter, ``None`` to skip a parameter
        on every rank; no argument: the gradients are in :meth:`grad_buffers`). Collective."""
        with self._lock:
            err, key = None, b""
            try:
                given = self._check_grads(grads)
                values = self._check_groups()
                mask = tuple(g is not None for g in given)
                key = repr((self._step_count, self.skipped_steps, mask, [sorted(v.items()) for v in values],
                            self._max_grad_norm, self._skip_nonfinite, self._track_stats)).encode()
            except Exception as e:  # noqa: BLE001 - any error on one rank is raised on every rank
                err = e
            self._agree(err, key, "step")
            for group, local in zip(self.param_groups, self.optim.param_groups):
                for k, v in group.items():
                    if k != "params" and local.get(k, local) is not v:
                        local[k] = v
            self._step(given, mask)

    def _post_reduce_scatter(self, part: _Part, given: List[Optional[np.ndarray]], times: Dict[str, float]) -> Any:
        """Copies the part's gradients into the buffer (those not already there) and posts the
        in-place reduce-scatter of its bucket."""
        lay, b = part.lay, part.bucket
        assert lay is not None and b is not None
        t0 = time.perf_counter()
        for i in part.copies:
            g, dst = given[lay.first + i], lay.grad_views[i]
            if g is not None and g is not dst and dst.size:
                np.copyto(dst, g)
        t1 = time.perf_counter()
        times["copy_in"] += t1 - t0
        rt, op, vt = _reduce_type(lay.dtype)
        region = lay.grad[b.start:b.start + b.length].view(vt)
        if b.equal:
            req = self._comm.Ireduce_scatter_block(MPI.IN_PLACE, [region, rt], op)
        else:
            req = self._comm.Ireduce_scatter(MPI.IN_PLACE, [region, rt], b.counts, op)
        times["reduce_scatter"] += time.perf_counter() - t1
        return req

    def _post_all_gather(self, part: _Part) -> Any:
        lay, b = part.lay, part.bucket
        assert lay is not None and b is not None
        mt, vt = _move_type(lay.dtype)
        region = lay.flat[b.start:b.start + b.length].view(vt)
        if b.equal:
            return self._comm.Iallgather(MPI.IN_PLACE, [region, mt])
        return self._comm.Iallgatherv(MPI.IN_PLACE, [region, b.counts, [r * b.shard for r in range(self._size)], mt])

    def _step(self, given: List[Optional[np.ndarray]], mask: Tuple[bool, ...]) -> None:
        """The pipeline: one reduce-scatter in flight at a time, bucket k + 1's posted before
        bucket k's local step (so that communication can overlap it where MPI progresses in the
        background: a network with its own progress, or MPICH's MPIR_CVAR_ASYNC_PROGRESS; on
        this 2-core machine several reductions in flight were 2x slower than one), then each
        bucket's all-gather posted after its local step and all awaited at the end. With
        max_grad_norm or skip_nonfinite every reduction completes first (the norm needs them)."""
        P = self._size
        t = time.perf_counter
        times = dict.fromkeys(("copy_in", "reduce_scatter", "norm", "local_step", "all_gather",
                               "copy_out", "stats"), 0.0)
        t_start = t()
        parts = self._parts
        comm_parts = [k for k, part in enumerate(parts) if part.bucket is not None]
        pending: Dict[int, Any] = {}
        if comm_parts:
            pending[comm_parts[0]] = self._post_reduce_scatter(parts[comm_parts[0]], given, times)
        nxt = {a: b for a, b in zip(comm_parts, comm_parts[1:])}

        def arrive(k: int) -> None:
            """Waits for part k's reduction and posts the next one."""
            t0 = t()
            req = pending.pop(k, None)
            if req is not None:
                req.Wait()
                times["reduce_scatter"] += t() - t0
                if k in nxt:
                    pending[nxt[k]] = self._post_reduce_scatter(parts[nxt[k]], given, times)

        inv = 1.0 / P
        scale = inv
        clip = self._max_grad_norm
        group_sq: Optional[np.ndarray] = None
        if not self._overlap or clip is not None or self._skip_nonfinite:
            for k in comm_parts:  # the global norm needs every reduced shard first
                arrive(k)
        if clip is not None or self._skip_nonfinite:
            t1 = t()
            group_sq = self._global_sumsq(mask) * (inv * inv)
            total = 0.0
            for v in group_sq:
                total += v
            norm = math.sqrt(total)
            self.last_grad_norm = norm
            times["norm"] += t() - t1
            if self._skip_nonfinite and not math.isfinite(norm):
                self.optim._counts[1] += 1
                self.last_stats = None
                self._finish_timings(times, t_start)
                return
            if clip is not None:
                coef = clip / (norm + 1e-6)  # torch's clip_grad_norm_
                if not coef >= 1.0:
                    scale = inv * coef
        else:
            self.last_grad_norm = None
        want = self._track_stats
        rows = _stats_rows(len(self.layouts))
        gathers: List[Any] = []
        n_local = len(self.pieces)
        for k, part in enumerate(parts):
            arrive(k)
            t2 = t()
            if part.pieces:
                local: List[Any] = [None] * n_local
                for j in part.pieces:
                    pc = self.pieces[j]
                    if mask[pc.param]:  # type: ignore[index]  # (parts list no placeholders)
                        local[j] = pc.gview
                stats = _local_step(self.optim, local, scale, want)
                if want and stats is not None:
                    _merge_stats(rows, stats)
            t3 = t()
            times["local_step"] += t3 - t2
            if part.bucket is not None:
                gathers.append(self._post_all_gather(part))
            times["all_gather"] += t() - t3
        t0 = t()
        MPI.Request.Waitall(gathers)
        t1 = t()
        times["all_gather"] += t1 - t0
        if any(mask):
            self.optim._counts[0] += 1
        for lay in self.layouts:
            lay.copy_out()
        t2 = t()
        times["copy_out"] += t2 - t1
        self.last_stats = self._combine_stats(rows, group_sq) if want else None
        times["stats"] += t() - t2
        self._finish_timings(times, t_start)

    def _finish_timings(self, times: Dict[str, float], t_start: float) -> None:
        if self.profile:
            times["total"] = time.perf_counter() - t_start
            self.last_timings = times


    def _global_sumsq(self, mask: Tuple[bool, ...]) -> np.ndarray:
        """Per group: the sum of squares of the summed gradients, from every rank's pieces,
        combined in rank order (the same bits on every rank)."""
        part = np.zeros(len(self.layouts))
        buf = np.empty(1 << 16)
        for pc in self.pieces:
            if pc.param is not None and mask[pc.param] and pc.gview.size:
                part[pc.group] += _sumsq(pc.gview, buf)
        total = np.zeros_like(part)
        for row in self._every_rank(part):
            total += row
        return total

    def _every_rank(self, part: np.ndarray) -> np.ndarray:
        """Every rank's ``part`` (float64), indexed by rank: combined in rank order by the caller,
        the result has the same bits on every rank whatever MPI's reduction tree."""
        if self._size == 1:
            return part[None]
        every = np.empty((self._size,) + part.shape)
        self._comm.Allgather(part, every)
        return every

    def _combine_stats(self, rows: np.ndarray, group_sq: Optional[np.ndarray]) -> List[Dict[str, Any]]:
        every = self._every_rank(rows)
        rows = _stats_rows(len(self.layouts))
        for r in every:
            rows[:, [0, 1, 2, 5]] += r[:, [0, 1, 2, 5]]
            rows[:, 3] = np.minimum(rows[:, 3], r[:, 3])
            rows[:, 4] = np.maximum(rows[:, 4], r[:, 4])
        out = []
        # The kernels saw the summed gradient (the 1/P and the clipping were their gradient
        # scale); one process reports the squared norm of the mean gradient as given.
        given = 1.0 / (self._size * self._size)
        for g in range(len(self.layouts)):
            grad_sq = float(group_sq[g]) if group_sq is not None else float(rows[g, 0]) * given
            out.append(_stats_dict(_Stats(rows[g], grad_sq)))
        return out

    # -- checkpoints -------------------------------------------------------------------------
    def _expected_array(self, i: int, key: str) -> Optional[Tuple[Tuple[int, ...], Tuple[np.dtype, ...]]]:
        """(shape, acceptable dtypes) of state array ``key`` of param ``i`` (as
        Optimizer._expected_array, for the full param)."""
        for lay, group in zip(self.layouts, self.param_groups):
            if lay.first <= i < lay.first + len(lay.params):
                return expected_state(self._spec, lay.params[i - lay.first], _storage.storage_of(group), key)
        return None

    def _all_params(self) -> List[np.ndarray]:
        return [p for lay in self.layouts for p in lay.params]

    def save(self, path: Any, *, include_params: bool = True) -> None:
        """Writes (from rank 0) the checkpoint one process with the full state would write, in
        the format of :mod:`adaptopt.checkpoint`; crash-safe as ``Optimizer.save``. Collective."""
        with self._lock:
            self._save(path, include_params)

    def _local_entries(self) -> Dict[int, Dict[str, Any]]:
        """Per global param this rank has a piece of: its scalars and state keys."""
        state = self.optim.state_dict()["state"]
        out: Dict[int, Dict[str, Any]] = {}
        for j, pc in enumerate(self.pieces):
            if pc.param is None or j not in state or pc.param in out:
                continue
            entry = state[j]
            out[pc.param] = {"scalars": {k: v for k, v in entry.items() if not isinstance(v, np.ndarray)},
                             "keys": [k for k, v in entry.items() if isinstance(v, np.ndarray)]}
        return out

    def _save(self, path: Any, include_params: bool) -> None:
        rank = self._rank
        err: Optional[BaseException] = None
        try:  # checked on every rank (only rank 0 writes), raised on every rank by _agree
            path = os.fspath(path)
        except TypeError as e:
            err = e
        # Which params have state, with which scalars and arrays: from every rank, rank order.
        entries: Dict[int, Dict[str, Any]] = {}
        for part in self._comm.allgather(self._local_entries()):
            for i, e in part.items():
                entries.setdefault(i, e)
        params = self._all_params()
        writer: Optional[checkpoint.Writer] = None
        if rank == 0 and err is None:
            try:
                meta = checkpoint.metadata(type(self.optim).__name__, export_groups(self.param_groups),
                                           {str(i): entries[i] for i in sorted(entries)},
                                           len(params) if include_params else 0, include_params,
                                           {"step_count": self._step_count, "skipped_steps": self.skipped_steps})
                json.dumps(meta, default=checkpoint._json_value)  # an unsavable value fails before any data moves
                writer = checkpoint.Writer(path)
            except Exception as e:  # noqa: BLE001 - any error on one rank is raised on every rank
                err = e
        try:
            self._agree(err, b"save", "save")
        except BaseException:
            if writer is not None:
                writer.discard()
            raise

        def write(member: str, a: np.ndarray) -> None:
            nonlocal err
            if writer is not None and err is None:
                try:
                    writer.add(member, a)
                except (OSError, ValueError) as e:
                    err = e

        local_state = self.optim.state_dict()["state"]
        for i in sorted(entries):  # every rank gathers (collective), rank 0 writes
            lay = self._layout_of(i)
            for key in entries[i]["keys"]:
                write(f"state/{i}/{key}", self._gather_array(lay, i, key, local_state, lay.params[i - lay.first]))
        if include_params:
            for i in range(len(params)):
                lay = self._layout_of(i)
                write(f"param/{i}", lay.views[i - lay.first])
        if writer is not None:
            if err is None:
                try:
                    writer.commit(meta)
                except (OSError, ValueError) as e:
                    err = e
            if err is not None:
                writer.discard()
        self._agree(err, b"saved", "save")

    def _layout_of(self, i: int) -> _GroupLayout:
        for lay in self.layouts:
            if lay.first <= i < lay.first + len(lay.params):
                return lay
        raise IndexError(i)

    def _gather_array(self, lay: _GroupLayout, i: int, key: str, local_state: Dict[int, Dict[str, Any]],
                      p: np.ndarray) -> Optional[np.ndarray]:
        """State array ``key`` of param ``i``, assembled on rank 0 from every rank's pieces (one
        gather per bucket the param spans); None on the other ranks."""
        comm, P, rank = self._comm, self._size, self._rank
        absmax = key.endswith("_absmax") and key[:-7] in self._spec.slots
        o = lay.offsets[i - lay.first]
        mine = {pc.lo: j for j, pc in enumerate(self.pieces) if pc.param == i}
        expected = self._expected_array(i, key)
        assert expected is not None, (i, key)
        dtype = expected[1][0]  # the stored form (as the local state holds it)
        n = _storage.blocks(p) if absmax else p.size
        full = np.empty(n, dtype) if rank == 0 else None
        if p.size == 0:
            return full.reshape(p.shape) if full is not None and not absmax else full
        unit = _storage.Q8_BLOCK if absmax else 1
        for b in lay.buckets:
            # The param's elements in this bucket, and each rank's share of them.
            lo, hi = max(o, b.start), min(o + p.size, b.start + b.length)
            if lo >= hi:
                continue
            counts, displs = [], []
            for r in range(P):
                a, z = b.owned(r)
                a, z = max(a, lo), min(z, hi)
                c = max(0, z - a)
                # In elements of the array: blocks for an absmax (pieces start on a block).
                counts.append((-(-(a - o + c) // unit) - (a - o) // unit) if c else 0)
                displs.append((a - o) // unit if c else 0)
            send = np.empty(0, dtype)
            a, z = b.owned(rank)
            if max(a, lo) < min(z, hi):
                send = local_state[mine[max(a, lo)]][key]
            item = dtype.itemsize
            recv = None
            if full is not None:
                recv = [full.view(np.uint8), [c * item for c in counts], [d * item for d in displs], MPI.BYTE]
            comm.Gatherv([np.ascontiguousarray(send).view(np.uint8), send.size * item, MPI.BYTE], recv, root=0)
        if full is not None and not absmax:
            full = full.reshape(p.shape)
        return full

    def load(self, path: Any) -> None:
        """Restores a checkpoint written by :meth:`save` (at any world size) or by
        ``optimizer_class.save``; on any error on any rank, every rank raises and nothing
        changes. Collective; the file must be readable by every rank."""
        with self._lock:
            err: Optional[BaseException] = None
            ops: List[tuple] = []
            try:
                ops = self._plan_load(path)
            except Exception as e:  # noqa: BLE001 - any error on one rank is raised on every rank
                err = e
            self._agree(err, b"load", "load")
            _core.commit(ops)
            for lay in self.layouts:
                lay.copy_out()

    def _plan_load(self, path: Any) -> List[tuple]:
        params = self._all_params()
        saved = checkpoint.read(path, type(self.optim).__name__, params, self._expected_array)
        sd = saved.state_dict
        try:
            local = self._local_state_dict(sd)
            ops = self.optim._planned_load(local)
        except (TypeError, ValueError) as e:
            raise ValueError(f"checkpoint {str(path)!r}: {e}") from None
        for gi, (group, op) in enumerate(zip(self.param_groups, ops)):
            assert op[0] == "replace"
            new = {**{k: v for k, v in op[2].items() if k != "params"}, "params": group["params"]}
            if self._storage_raw(new) != self._storage_keys[gi]:
                raise ValueError(f"checkpoint {str(path)!r}: param_groups[{gi}]: the storage options (state_dtype, "
                                 "master_weights, stochastic_rounding, seed) differ from the optimizer's; a "
                                 "ZeroRedundancyOptimizer lays out its buffers for them at construction")
            ops.append(("replace", group, new))
        self._hyper_cache = [(None, {}) for _ in self.param_groups]
        for i, src in enumerate(saved.params or ()):
            lay = self._layout_of(i)
            ops.append(("copyto", lay.views[i - lay.first], src))
        return ops

    def _local_state_dict(self, sd: Dict[str, Any]) -> Dict[str, Any]:
        """The saved full state cut into this rank's pieces, as the local optimizer's state dict."""
        groups = sd["param_groups"]
        if len(groups) != len(self.layouts):
            raise ValueError(f"state_dict: has {len(groups)} param groups, the optimizer has {len(self.layouts)}")
        for gi, (g, lay) in enumerate(zip(groups, self.layouts)):
            if not isinstance(g, dict) or len(list(g.get("params", ()))) != len(lay.params):
                raise ValueError(f"state_dict: param_groups[{gi}] does not have the optimizer's "
                                 f"{len(lay.params)} params")
        state = sd["state"]
        local: Dict[int, Dict[str, Any]] = {}
        for j, pc in enumerate(self.pieces):
            if pc.param is None or pc.param not in state:
                continue
            lay = self.layouts[pc.group]
            a = pc.lo - lay.offsets[pc.param - lay.first]
            z = a + pc.hi - pc.lo
            entry = {}
            for k, v in state[pc.param].items():
                if not isinstance(v, np.ndarray):
                    entry[k] = v
                elif k.endswith("_absmax") and k[:-7] in self._spec.slots:
                    entry[k] = v[a // _storage.Q8_BLOCK:-(-z // _storage.Q8_BLOCK)]
                else:
                    entry[k] = v.reshape(-1)[a:z]
            local[j] = entry
        first = 0
        local_groups = []
        for g, lay in zip(groups, self.layouts):
            n = len(lay.pieces)
            local_groups.append({**{k: v for k, v in g.items() if k != "params"},
                                 "params": list(range(first, first + n))})
            first += n
        return {"state": local, "param_groups": local_groups, "adaptopt": sd.get("adaptopt", {})}

    def __repr__(self) -> str:
        return (f"ZeroRedundancyOptimizer({type(self.optim).__name__}, rank {self._rank} of {self._size}, "
                f"{len(self.param_groups)} group(s), {len(self.pieces)} local piece(s))")
