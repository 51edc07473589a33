"""Optimizer classes with torch.optim's names, defaults, param groups and state_dict layout.

The difference from torch.optim: there is no ``.grad`` on a NumPy array, so ``step(grads)``
takes the gradients, one per parameter in parameter order (``None`` skips a parameter).
"""

from __future__ import annotations

import math
import operator
import threading
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np

from . import _core, _hyper, checkpoint

__all__ = ["Optimizer", "RMSprop", "Adagrad", "Adadelta", "Adam", "AdamW", "SGD", "SparseRows"]


class SparseRows(tuple):
    """A gradient that touches only some rows of a 2-D parameter (an embedding table):
    ``values[j]`` is the gradient of row ``indices[j]``. Duplicate indices are summed here, once.

    With the optimizer's default ``sparse_mode="lazy"`` only the listed rows of the parameter
    and of its state change (TensorFlow's SparseApply kernels, torch's SparseAdam); the cost is
    proportional to the rows listed. ``sparse_mode="dense"`` gives exactly the result of the
    dense gradient with zeros elsewhere (at the cost of a dense step)."""

    __slots__ = ()

    def __new__(cls, indices, values):
        idx = np.asarray(indices)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"SparseRows: indices must be integers, got dtype {idx.dtype}")
        if idx.ndim != 1:
            raise ValueError(f"SparseRows: indices must be 1-D, got shape {idx.shape}")
        if not isinstance(values, np.ndarray):
            raise TypeError(f"SparseRows: values must be a numpy.ndarray, got {type(values).__name__}")
        if values.ndim != 2 or len(values) != len(idx):
            raise ValueError(f"SparseRows: values must have shape (len(indices), columns) = ({len(idx)}, ...), "
                             f"got {values.shape}")
        if idx.dtype.kind == "u" and len(idx) and idx.max() > np.iinfo(np.int64).max:
            raise ValueError(f"SparseRows: row index {idx.max()} is out of range")
        idx = idx.astype(np.int64, copy=False)
        if len(idx) > 1 and not np.all(idx[1:] > idx[:-1]):
            idx, inverse = np.unique(idx, return_inverse=True)
            summed = np.zeros((len(idx), values.shape[1]), dtype=values.dtype)
            np.add.at(summed, inverse, values)  # sums duplicates in their order of appearance
            values = summed
        return super().__new__(cls, (np.ascontiguousarray(idx), values))

    @property
    def indices(self) -> np.ndarray:
        return self[0]

    @property
    def values(self) -> np.ndarray:
        return self[1]

    def to_dense(self, shape, dtype) -> np.ndarray:
        out = np.zeros(shape, dtype=dtype)
        out[self.indices] = self.values
        return out


_APPLIED, _SKIPPED = 1, 2  # statuses of _core.multi_step


def _stats_dict(grad_sq: float, update_sq: float, lr_sum: float, lr_min: float, lr_max: float,
                count: int) -> Dict[str, Any]:
    if count == 0:  # no gradient for this group in this step
        return {"elements": 0, "grad_norm": 0.0, "update_rms": None, "lr_min": None, "lr_mean": None,
                "lr_max": None}
    return {"elements": count, "grad_norm": math.sqrt(grad_sq), "update_rms": math.sqrt(update_sq / count),
            "lr_min": lr_min, "lr_mean": lr_sum / count, "lr_max": lr_max}


class _Runtime:
    """Native-side bookkeeping of one param group: state buffers, step counters, the native
    Group over them and the last validated hyperparameters."""

    __slots__ = ("params", "param_list", "bufs", "steps", "native", "key", "built", "complete")

    def __init__(self, params: List[np.ndarray], param_list: list, nslots: int):
        self.params = list(params)  # the arrays, to detect replaced entries
        self.param_list = param_list  # the group's own list object
        self.bufs: List[List[Optional[np.ndarray]]] = [[None] * nslots for _ in params]
        self.steps = np.zeros(len(params), dtype=np.int64)
        self.native: Any = None  # _core.Group
        self.key: Optional[tuple] = None
        self.built: Any = None  # _hyper.Built
        self.complete = False  # every param has every slot the current hyperparameters need


class Optimizer:
    """Base class. Subclasses set ``_algo``, ``_keys`` (hyperparameters read each step) and
    ``defaults``.

    Every optimizer also takes these keyword-only options (attributes, changeable any time):
    ``max_grad_norm`` (clip each step's gradients to this global L2 norm, fused into the update;
    the norm is then in ``last_grad_norm``), ``skip_nonfinite`` (skip a step whose gradients
    hold a NaN or Inf; counted in ``skipped_steps``), ``sparse_mode`` ("lazy" or "dense",
    for :class:`SparseRows` gradients) and ``track_stats`` (per-group statistics computed in
    the update pass, in ``last_stats``). ``lr`` may be a schedule: a callable of the number of
    steps applied so far (see :mod:`adaptopt.schedules`)."""

    _algo: int
    _keys: tuple

    def __init__(self, params: Iterable, defaults: Dict[str, Any], *,
                 max_grad_norm: Optional[float] = None, skip_nonfinite: bool = False,
                 sparse_mode: str = "lazy", track_stats: bool = False):
        self.defaults = dict(defaults)
        self.track_stats = track_stats
        self.last_stats: Optional[List[Dict[str, Any]]] = None
        self.max_grad_norm = max_grad_norm
        self.skip_nonfinite = skip_nonfinite
        self.sparse_mode = sparse_mode
        self.last_grad_norm: Optional[float] = None
        self.skipped_steps = 0
        self._step_count = 0  # applied steps: what lr schedules are evaluated at
        self._slots = _hyper.SLOTS[self._algo]
        self._key = operator.itemgetter(*self._keys)
        self._nparams = 0
        self._lock = threading.RLock()  # steps, loads and saves of one optimizer serialize
        self.param_groups: List[Dict[str, Any]] = []
        self._runtimes: List[_Runtime] = []
        _hyper.BUILDERS[self._algo](self._resolved(self.defaults))
        if isinstance(params, np.ndarray):
            raise TypeError("params: expected an iterable of numpy arrays or of param-group dicts, "
                            "got a single ndarray (wrap it in a list)")
        groups = list(params)
        if not groups:
            raise ValueError("params: optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    # -- groups ------------------------------------------------------------------------------
    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group: expected a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group.get("params")
        if params is None:
            raise ValueError("param_group: missing 'params'")
        if isinstance(params, np.ndarray):
            params = [params]
        params = list(params)
        if not params:
            raise ValueError("params: optimizer got an empty parameter list")
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        group["params"] = params
        self._group_defaults(group)
        built = _hyper.BUILDERS[self._algo](self._resolved(group))
        first = self._nparams
        rt = _Runtime(params, params, len(self._slots))
        self._init_state(rt, group)
        rt.native = self._make_native(rt.params, rt.bufs, rt.steps, first)
        overlap = _core.find_overlap(self._all_params() + params)
        if overlap is not None:
            i, j = overlap
            raise ValueError(f"params[{i}] and params[{j}] overlap in memory "
                             "(each parameter must be a separate array, listed once)")
        rt.key, rt.built = None, built
        self.param_groups.append(group)
        self._runtimes.append(rt)
        self._nparams += len(params)

    # -- options -----------------------------------------------------------------------------
    @property
    def max_grad_norm(self) -> Optional[float]:
        """Clip the gradients of each step to this global L2 norm (torch's clip_grad_norm_),
        fused into the update; None turns clipping off."""
        return self._max_grad_norm

    @max_grad_norm.setter
    def max_grad_norm(self, value: Optional[float]) -> None:
        if value is not None:
            v = _hyper._real("max_grad_norm", value)
            if not v > 0:
                raise ValueError(f"Invalid max_grad_norm: max_grad_norm={value!r} (must be > 0 or None)")
        self._max_grad_norm = None if value is None else float(value)

    @property
    def skip_nonfinite(self) -> bool:
        """Skip the whole step (params and state untouched) when any gradient element is NaN or
        infinite; ``skipped_steps`` counts them."""
        return self._skip_nonfinite

    @skip_nonfinite.setter
    def skip_nonfinite(self, value: bool) -> None:
        self._skip_nonfinite = _hyper._flag("skip_nonfinite", value)

    @property
    def track_stats(self) -> bool:
        """Compute per-group statistics in the update pass itself; after each step,
        ``last_stats[i]`` holds group i's gradient norm, update RMS and the min / mean / max of
        the effective per-element learning rate (the factor of g in the update, lr/denominator)."""
        return self._track_stats

    @track_stats.setter
    def track_stats(self, value: bool) -> None:
        self._track_stats = _hyper._flag("track_stats", value)

    @property
    def sparse_mode(self) -> str:
        """How a SparseRows gradient updates: "lazy" (listed rows only) or "dense"."""
        return self._sparse_mode

    @sparse_mode.setter
    def sparse_mode(self, value: str) -> None:
        if value not in ("lazy", "dense"):
            raise ValueError(f"Invalid sparse_mode: sparse_mode={value!r} (expected 'lazy' or 'dense')")
        self._sparse_mode = value

    def _resolved(self, group: Dict[str, Any]) -> Dict[str, Any]:
        """The group with a scheduled lr evaluated at the current step count."""
        lr = group.get("lr")
        if callable(lr):
            group = dict(group)
            group["lr"] = lr(self._step_count)
        return group

    def _group_defaults(self, group: Dict[str, Any]) -> None:
        """Hook for options that a subclass fixes (AdamW's decoupled weight decay)."""

    def _init_state(self, rt: _Runtime, group: Dict[str, Any]) -> None:
        """Hook for eagerly created state (Adagrad)."""

    def _all_params(self) -> List[np.ndarray]:
        return [p for rt in self._runtimes for p in rt.params]

    def _make_native(self, params, bufs, steps, first: int):
        labels = [f"state['{s}']" for s in self._slots]
        return _core.Group(self._algo, params, bufs, steps, "params", first, labels)

    # -- stepping ----------------------------------------------------------------------------
    def step(self, grads: Sequence[Any]) -> None:
        """Applies one update to every parameter, in place. ``grads`` holds one array per
        parameter (same order, shape and dtype), ``None`` to skip that parameter, or a
        :class:`SparseRows` for a 2-D parameter."""
        if not isinstance(grads, (list, tuple)):
            if isinstance(grads, np.ndarray):
                raise TypeError("grads: expected a sequence of arrays (one per parameter), got an ndarray")
            grads = list(grads)
        with self._lock:
            n = self._nparams
            if len(grads) != n:
                raise ValueError(f"grads: expected {n} arrays (one per parameter, in parameter order), "
                                 f"got {len(grads)}")
            if self._sparse_mode == "dense":
                grads = self._densify(grads)
            natives, hypers, pending = [], [], []
            first = 0
            for gi, (group, rt) in enumerate(zip(self.param_groups, self._runtimes)):
                self._check_params_unchanged(gi, group, rt)
                if callable(group["lr"]):
                    group = self._resolved(group)
                key = self._key(group)
                # Types too: True == 1 and np.array([0.5]) == 0.5, but only one of each is valid.
                key = (key, tuple(map(type, key)))
                if key != rt.key:
                    try:
                        rt.built = _hyper.BUILDERS[self._algo](group)
                    except (TypeError, ValueError) as e:
                        rt.key = None
                        raise type(e)(f"param_groups[{gi}]: {e}") from None
                    rt.key = key
                    rt.complete = False
                native = rt.native
                if not rt.complete:
                    new = self._missing_state(rt, grads, first)
                    if new is not None:
                        native = self._make_native(rt.params, new, rt.steps, first)
                        pending.append((rt, new, native))
                    elif all(g is not None for g in grads[first:first + len(rt.params)]):
                        rt.complete = True
                natives.append(native)
                hypers.append(rt.built.hyper)
                first += len(rt.params)
            clip = self._max_grad_norm
            norm, status, stats = _core.multi_step(natives, hypers, grads, -1.0 if clip is None else clip,
                                                   self._skip_nonfinite, False, self._track_stats)
            self.last_grad_norm = norm
            self.last_stats = None if stats is None else [_stats_dict(*s) for s in stats]
            if status == _SKIPPED:
                self.skipped_steps += 1
                return
            if status == _APPLIED:  # a step with every gradient None changes nothing
                self._step_count += 1
            for rt, bufs, native in pending:  # new state is kept only once the step succeeded
                rt.bufs, rt.native = bufs, native

    def _densify(self, grads):
        params = self._all_params()
        out = list(grads)
        for i, g in enumerate(out):
            if isinstance(g, SparseRows):
                p = params[i]
                if g.values.dtype != p.dtype:
                    raise TypeError(f"grads[{i}].values: dtype {g.values.dtype} does not match the "
                                    f"parameter's {p.dtype} (no implicit casts)")
                if p.ndim != 2 or g.values.shape[1] != p.shape[1]:
                    raise ValueError(f"grads[{i}]: sparse rows of width {g.values.shape[1]} do not fit "
                                     f"the parameter's shape {p.shape}")
                if len(g.indices) and (g.indices[0] < 0 or g.indices[-1] >= p.shape[0]):
                    bad = g.indices[0] if g.indices[0] < 0 else g.indices[-1]
                    raise ValueError(f"grads[{i}]: row index {bad} is out of range for {p.shape[0]} rows")
                out[i] = g.to_dense(p.shape, p.dtype)
        return out

    def _check_params_unchanged(self, gi: int, group: Dict[str, Any], rt: _Runtime) -> None:
        ps = group["params"]
        if ps is not rt.param_list or len(ps) != len(rt.params) or not all(
                map(operator.is_, ps, rt.params)):
            raise ValueError(f"param_groups[{gi}]['params'] was changed after construction; "
                             "use add_param_group() to add parameters")

    def _missing_state(self, rt: _Runtime, grads, first: int):
        """New buffer lists if some parameter that has a gradient lacks a slot the current
        hyperparameters need, else None. Existing buffers are shared, not copied."""
        needed = rt.built.needed
        new = None
        for j, p in enumerate(rt.params):
            if grads[first + j] is None:
                continue
            for s, need in enumerate(needed):
                if need and rt.bufs[j][s] is None:
                    if new is None:
                        new = [list(b) for b in rt.bufs]
                    new[j][s] = np.zeros_like(p)
        return new

    # -- state -------------------------------------------------------------------------------
    @property
    def state(self) -> Dict[int, Dict[str, Any]]:
        """Per-parameter state keyed by the parameter's index (the arrays are live)."""
        out: Dict[int, Dict[str, Any]] = {}
        i = 0
        for rt in self._runtimes:
            for j in range(len(rt.params)):
                bufs = rt.bufs[j]
                if rt.steps[j] > 0 or any(b is not None for b in bufs):
                    entry: Dict[str, Any] = {"step": int(rt.steps[j])}
                    for name, b in zip(self._slots, bufs):
                        if b is not None:
                            entry[name] = b
                    out[i] = entry
                i += 1
        return out

    def state_dict(self) -> Dict[str, Any]:
        """torch's layout: ``{"state": {index: {...}}, "param_groups": [...]}`` with plain
        Python values and the live NumPy state arrays (deep-copy it to keep a snapshot)."""
        with self._lock:
            return self._state_dict()

    def _state_dict(self) -> Dict[str, Any]:
        groups, i = [], 0
        for group in self.param_groups:
            g = {k: v for k, v in group.items() if k != "params"}
            g["params"] = list(range(i, i + len(group["params"])))
            i += len(group["params"])
            groups.append(g)
        return {"state": self.state, "param_groups": groups,
                "adaptopt": {"step_count": self._step_count, "skipped_steps": self.skipped_steps}}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Validates everything first (on any mismatch: an error and nothing changed), then
        restores copies of the state arrays."""
        with self._lock:
            self._load_state_dict(state_dict)

    def save(self, path, *, include_params: bool = True) -> None:
        """Writes a crash-safe .npz checkpoint of the state (and the parameters): see
        :mod:`adaptopt.checkpoint`."""
        with self._lock:
            checkpoint.save(self, path, include_params=include_params)

    def load(self, path) -> None:
        """Restores a checkpoint written by :meth:`save`; on any error nothing changes."""
        with self._lock:
            checkpoint.load(self, path)

    def _load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict: expected a dict, got {type(state_dict).__name__}")
        if "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError("state_dict: expected the keys 'state' and 'param_groups'")
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(saved_groups, (list, tuple)) or not isinstance(saved_state, dict):
            raise TypeError("state_dict: 'param_groups' must be a list and 'state' a dict")
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"state_dict: has {len(saved_groups)} param groups, the optimizer has "
                             f"{len(self.param_groups)}")
        index_of: Dict[Any, tuple] = {}
        new_groups, new_runtimes = [], []
        first = 0
        for gi, (saved, group, rt) in enumerate(zip(saved_groups, self.param_groups, self._runtimes)):
            if not isinstance(saved, dict) or "params" not in saved:
                raise ValueError(f"state_dict: param_groups[{gi}] must be a dict with 'params'")
            ids = list(saved["params"])
            if len(ids) != len(rt.params):
                raise ValueError(f"state_dict: param_groups[{gi}] has {len(ids)} params, the optimizer's "
                                 f"group has {len(rt.params)}")
            g = {k: v for k, v in saved.items() if k != "params"}
            for k, v in self.defaults.items():
                g.setdefault(k, v)
            g["params"] = group["params"]
            self._group_defaults(g)
            try:
                built = _hyper.BUILDERS[self._algo](self._resolved(g))
            except (TypeError, ValueError) as e:
                raise type(e)(f"state_dict: param_groups[{gi}]: {e}") from None
            for j, pid in enumerate(ids):
                if pid in index_of:
                    raise ValueError(f"state_dict: parameter id {pid!r} appears twice")
                index_of[pid] = (gi, j)
            nrt = _Runtime(rt.params, group["params"], len(self._slots))
            nrt.key, nrt.built = None, built
            new_groups.append(g)
            new_runtimes.append(nrt)
        for pid, entry in saved_state.items():
            if pid not in index_of:
                raise ValueError(f"state_dict: state for parameter id {pid!r}, which no param group lists")
            gi, j = index_of[pid]
            self._load_entry(new_runtimes[gi], new_groups[gi], j, pid, entry)
        for gi, (g, nrt) in enumerate(zip(new_groups, new_runtimes)):
            self._init_state(nrt, g)
            nrt.native = self._make_native(nrt.params, nrt.bufs, nrt.steps, first)
            first += len(nrt.params)
        extra = state_dict.get("adaptopt", {})
        counts = (extra.get("step_count", 0), extra.get("skipped_steps", 0)) if isinstance(extra, dict) else None
        if counts is None or not all(isinstance(c, (int, np.integer)) and c >= 0 for c in counts):
            raise ValueError(f"state_dict: 'adaptopt' must hold non-negative step_count and skipped_steps, "
                             f"got {extra!r}")
        self._step_count, self.skipped_steps = int(counts[0]), int(counts[1])
        for group, g in zip(self.param_groups, new_groups):  # keep the caller's group dicts
            group.clear()
            group.update(g)
        for nrt, group in zip(new_runtimes, self.param_groups):
            nrt.param_list = group["params"]
        self._runtimes = new_runtimes

    def _load_entry(self, rt: _Runtime, group, j: int, pid, entry) -> None:
        where = f"state_dict: state[{pid!r}]"
        if not isinstance(entry, dict):
            raise TypeError(f"{where}: expected a dict, got {type(entry).__name__}")
        unknown = set(entry) - {"step", *self._slots}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(map(str, unknown))}")
        if "step" not in entry:
            raise ValueError(f"{where}: missing 'step'")
        step = np.asarray(entry["step"])
        if step.shape != () or step.dtype.kind not in "iuf" or not np.isfinite(step) or step < 0 \
                or float(step) != int(step) or int(step) > _hyper.MAX_STEP:
            raise ValueError(f"{where}['step']: expected a non-negative integer, got {entry['step']!r}")
        rt.steps[j] = int(step)
        p = rt.params[j]
        needed = rt.built.needed
        for s, name in enumerate(self._slots):
            if name not in entry:
                if needed[s]:
                    raise ValueError(f"{where}: missing {name!r}, which these hyperparameters need")
                continue
            a = np.asarray(entry[name])
            if a.dtype != p.dtype:
                raise TypeError(f"{where}[{name!r}]: dtype {a.dtype} does not match the parameter's {p.dtype}")
            if a.shape != p.shape:
                raise ValueError(f"{where}[{name!r}]: shape {a.shape} does not match the parameter's {p.shape}")
            rt.bufs[j][s] = np.array(a, dtype=p.dtype, order="C", copy=True)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(k for k in g if k != "params"):
                lines.append(f"    {k}: {g[k]}")
        lines.append(")")
        return "\n".join(lines)

    def __deepcopy__(self, memo):
        raise TypeError(f"{type(self).__name__} cannot be deep-copied; copy its state_dict() instead")


class RMSprop(Optimizer):
    """RMSprop with torch.optim.RMSprop's semantics (eps outside the sqrt, L2 weight decay, lr
    outside the momentum buffer), plus ``nesterov`` and ``eps_in_sqrt`` (TF/Keras placement)."""

    _algo = _hyper.RMSPROP
    _keys = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered", "nesterov",
             "eps_in_sqrt", "maximize")

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False,
                 nesterov: bool = False, eps_in_sqrt: bool = False, *, maximize: bool = False,
                 **options: Any):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, nesterov=nesterov,
                                      eps_in_sqrt=eps_in_sqrt, maximize=maximize), **options)


class Adagrad(Optimizer):
    """Adagrad with torch.optim.Adagrad's semantics; state is created at construction. Unlike
    torch, a per-group ``initial_accumulator_value`` is honoured."""

    _algo = _hyper.ADAGRAD
    _keys = ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps", "maximize")

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0, weight_decay: float = 0,
                 initial_accumulator_value: float = 0, eps: float = 1e-10, *, maximize: bool = False,
                 **options: Any):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps,
                                      maximize=maximize), **options)

    def _init_state(self, rt: _Runtime, group: Dict[str, Any]) -> None:
        iav = float(group["initial_accumulator_value"])
        for j, p in enumerate(rt.params):
            if rt.bufs[j][0] is None:
                rt.bufs[j][0] = np.full_like(p, iav)
        rt.complete = False


class Adadelta(Optimizer):
    """Adadelta with torch.optim.Adadelta's semantics."""

    _algo = _hyper.ADADELTA
    _keys = ("lr", "rho", "eps", "weight_decay", "maximize")

    def __init__(self, params, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0, *, maximize: bool = False, **options: Any):
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                                      maximize=maximize), **options)


class Adam(Optimizer):
    """Adam with torch.optim.Adam's semantics (eps after bias correction, amsgrad on the raw
    second moment, L2 or decoupled weight decay)."""

    _algo = _hyper.ADAM
    _keys = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "decoupled_weight_decay")

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False, **options: Any):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize,
                                      decoupled_weight_decay=decoupled_weight_decay), **options)

    def _group_defaults(self, group: Dict[str, Any]) -> None:
        if isinstance(group.get("betas"), list):  # e.g. from JSON: keep torch's tuple
            group["betas"] = tuple(group["betas"])


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay (default 1e-2), as torch.optim.AdamW."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 **options: Any):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize, decoupled_weight_decay=True, **options)

    def _group_defaults(self, group: Dict[str, Any]) -> None:
        super()._group_defaults(group)
        group["decoupled_weight_decay"] = True


class SGD(Optimizer):
    """SGD with momentum, dampening, Nesterov and weight decay (torch.optim.SGD's semantics:
    the momentum buffer starts as a copy of the first gradient). State: momentum_buffer (when
    momentum > 0) and step."""

    _algo = _hyper.SGD
    _keys = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize")

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False,
                 **options: Any):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize), **options)
