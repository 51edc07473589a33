"""Optimizer classes with torch.optim's names, defaults, param groups and state_dict layout.

The difference from torch.optim: there is no ``.grad`` on a NumPy array, so ``step(grads)``
takes the gradients, one per parameter in parameter order (``None`` skips a parameter).
Each class is a thin signature over its spec in :mod:`adaptopt._rules`; the shared machinery is
here (groups, stepping, options), in ``_group.py`` (one group's native binding) and
``_state.py`` (state export and load planning).
"""

from __future__ import annotations

import inspect
import math
import threading
from typing import Any, Callable, ClassVar, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core, _rules, _storage, checkpoint
from ._group import GroupBinding
from ._rules import Spec
from ._state import export_groups, export_state, plan_load
from .sparse import SparseRows, densify

__all__ = ["Optimizer", "RMSprop", "Adagrad", "Adadelta", "Adam", "AdamW", "SGD", "NAdam", "RAdam", "Adamax"]

LR = Union[float, Callable[[int], float]]  # a number, or a schedule of the steps applied so far
Betas = Tuple[float, float]


def _stats_dict(s: Any) -> Dict[str, Any]:
    n = s.count
    if n == 0:  # no gradient for this group in this step
        return {"elements": 0, "grad_norm": 0.0, "update_rms": None, "lr_min": None, "lr_mean": None,
                "lr_max": None}
    return {"elements": n, "grad_norm": math.sqrt(s.grad_sq), "update_rms": math.sqrt(s.update_sq / n),
            "lr_min": s.lr_min, "lr_mean": s.lr_sum / n, "lr_max": s.lr_max}


def param_groups_of(params: Any) -> List[Any]:
    """The constructor's ``params`` as a list of groups (torch's rule: an iterable of arrays is one
    group, an iterable of dicts is the groups); refuses a bare ndarray and an empty list."""
    if isinstance(params, np.ndarray):
        raise TypeError("params: expected an iterable of numpy arrays or of param-group dicts, "
                        "got a single ndarray (wrap it in a list)")
    groups = list(params)
    if not groups:
        raise ValueError("params: optimizer got an empty parameter list")
    if not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    return groups


class StepOptions:
    """The step options that :class:`Optimizer` and ``distributed.ZeroRedundancyOptimizer``
    share, validated on assignment."""

    _max_grad_norm: Optional[float]
    _skip_nonfinite: bool
    _track_stats: bool

    @property
    def max_grad_norm(self) -> Optional[float]:
        """Clip the gradients of each step to this global L2 norm (torch's clip_grad_norm_),
        fused into the update; None turns clipping off."""
        return self._max_grad_norm

    @max_grad_norm.setter
    def max_grad_norm(self, value: Optional[float]) -> None:
        if value is not None:
            v = _rules.real("max_grad_norm", value)
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
        self._skip_nonfinite = _rules.boolean("skip_nonfinite", value)

    @property
    def track_stats(self) -> bool:
        """Compute per-group statistics in the update pass itself; after each step,
        ``last_stats[i]`` holds group i's gradient norm, update RMS and the min / mean / max of
        the effective per-element learning rate (the factor of g in the update, lr/denominator)."""
        return self._track_stats

    @track_stats.setter
    def track_stats(self, value: bool) -> None:
        self._track_stats = _rules.boolean("track_stats", value)


class Optimizer(StepOptions):
    """Base class of the optimizers; each subclass sets ``_spec`` (its rule) and declares its
    constructor with torch's arguments.

    Every optimizer also takes these keyword-only options (attributes, changeable any time):
    ``max_grad_norm`` (clip each step's gradients to this global L2 norm, fused into the update;
    the norm is then in ``last_grad_norm``), ``skip_nonfinite`` (skip a step whose gradients
    hold a NaN or Inf; counted in ``skipped_steps``), ``sparse_mode`` ("lazy" or "dense",
    for :class:`SparseRows` gradients) and ``track_stats`` (per-group statistics computed in
    the update pass, in ``last_stats``). ``lr`` may be a schedule: a callable of the number of
    steps applied so far (see :mod:`adaptopt.schedules`)."""

    _spec: ClassVar[Spec]
    _classes: ClassVar[Dict[str, type]] = {}  # every rule class by its spec's name

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        spec = cls.__dict__.get("_spec")
        if spec is not None:
            _check_signature(cls, spec)
            Optimizer._classes[spec.name] = cls

    def __init__(self, params: Iterable[Any], hyper: Dict[str, Any], *,
                 max_grad_norm: Optional[float] = None, skip_nonfinite: bool = False,
                 sparse_mode: str = "lazy", track_stats: bool = False, state_dtype: Optional[str] = None,
                 master_weights: bool = False, stochastic_rounding: bool = False, seed: int = 0):
        spec = self._spec
        self.defaults: Dict[str, Any] = {k: hyper[k] for k in spec.keys}
        self.defaults.update(spec.fixed)
        self.defaults.update(state_dtype=state_dtype, master_weights=master_weights,
                             stochastic_rounding=stochastic_rounding, seed=seed)
        _storage.storage_of(self.defaults)
        self.track_stats = track_stats
        self.last_stats: Optional[List[Dict[str, Any]]] = None
        self.max_grad_norm = max_grad_norm
        self.skip_nonfinite = skip_nonfinite
        self.sparse_mode = sparse_mode
        self.last_grad_norm: Optional[float] = None
        # [applied steps (what lr schedules are evaluated at), skipped steps]: advanced by the
        # native step itself, atomically with the update.
        self._counts = np.zeros(2, dtype=np.int64)
        self._plan: Any = None  # _core.Plan of the steady-state step, or None
        self._nparams = 0
        self._lock = threading.Lock()  # steps, loads and saves of one optimizer serialize
        self.param_groups: List[Dict[str, Any]] = []
        self._bindings: List[GroupBinding] = []
        spec.build(self._resolved(self.defaults))
        for g in param_groups_of(params):
            self._add_param_group(g)

    # -- groups ------------------------------------------------------------------------------
    def _prepare(self, group: Dict[str, Any]) -> Dict[str, Any]:
        """The group with the optimizer's defaults filled in, fixed keys set (AdamW) and pairs
        stored as tuples, as torch does (a JSON round trip turns them into lists)."""
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        group.update(self._spec.fixed)
        for name, key in self._spec.keys.items():
            if key.fields and isinstance(group.get(name), list):
                group[name] = tuple(group[name])
        return group

    @property
    def _step_count(self) -> int:
        return int(self._counts[0])

    @property
    def skipped_steps(self) -> int:
        """Steps skipped by ``skip_nonfinite``."""
        return int(self._counts[1])

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        """Adds a group of parameters (a dict with ``params`` and optional hyperparameters)."""
        with self._lock:
            self._add_param_group(param_group)

    def _add_param_group(self, param_group: Dict[str, Any]) -> None:
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
        group["params"] = params
        self._prepare(group)
        storage = _storage.storage_of(group)
        _storage.check_params(storage, params, self._nparams)
        b = GroupBinding(self._spec, params, params, self._nparams, storage)
        b.built = self._spec.build(self._resolved(group))
        b.native = b.bind()  # checks each array, naming it
        if self._spec.eager_state:
            b.init_eager()
            b.native = b.bind()
        self._check_disjoint(params)
        self.param_groups.append(group)
        self._bindings.append(b)
        self._nparams += len(params)
        self._plan = None

    def _check_disjoint(self, params: List[np.ndarray]) -> None:
        """New params must not share memory with each other, with the optimizer's params or with
        any state buffer it holds (a step would write the same memory twice)."""
        written = [(p, f"params[{i}]") for i, p in enumerate(self._all_params())]
        for b in self._bindings:
            for j, bufs in enumerate(b.bufs):
                for name, x in zip(self._spec.slots, bufs):
                    for k, v in _storage.export(name, x).items() if x is not None else ():
                        written.append((v, f"state[{b.first + j}][{k!r}]"))
                if b.masters[j] is not None:
                    written.append((b.masters[j], f"state[{b.first + j}]['master']"))
        written += [(p, f"params[{self._nparams + i}]") for i, p in enumerate(params)]
        overlap = _core.find_overlap([a for a, _ in written])
        if overlap is not None:
            i, j = overlap
            raise ValueError(f"{written[i][1]} and {written[j][1]} overlap in memory "
                             "(each parameter must be a separate array, listed once, and not a state buffer)")

    def _all_params(self) -> List[np.ndarray]:
        return [p for b in self._bindings for p in b.params]

    def _resolved(self, group: Dict[str, Any]) -> Dict[str, Any]:
        """The group with a scheduled lr evaluated at the current step count."""
        lr = group.get("lr")
        if callable(lr):
            group = dict(group)
            group["lr"] = lr(self._step_count)
        return group

    # -- options -----------------------------------------------------------------------------
    @property
    def sparse_mode(self) -> str:
        """How a SparseRows gradient updates: "lazy" (listed rows only) or "dense"."""
        return self._sparse_mode

    @sparse_mode.setter
    def sparse_mode(self, value: str) -> None:
        if value not in ("lazy", "dense"):
            raise ValueError(f"Invalid sparse_mode: sparse_mode={value!r} (expected 'lazy' or 'dense')")
        self._sparse_mode = value

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
            plan = self._plan
            if plan is not None and self._sparse_mode == "lazy":
                clip = self._max_grad_norm
                r = plan.step(grads, -1.0 if clip is None else clip, self._skip_nonfinite, self._track_stats)
                if r is not None:
                    self.last_grad_norm = r[0]
                    self.last_stats = None if r[1] is None else [_stats_dict(s) for s in r[1]]
                    return
            self._step_slow(grads)
            self._plan = self._make_plan()

    def _make_plan(self) -> Any:
        """The plan of the next steps, when every group is complete (no state to create) and its
        values are immutable (a schedule is evaluated each step: no plan)."""
        if self._sparse_mode != "lazy":
            return None
        entries = []
        for group, b in zip(self.param_groups, self._bindings):
            keys = (*self._spec.keys, *_storage.KEYS)
            values = tuple(group.get(k) for k in keys)
            if not b.complete or b.built is None or not all(map(_immutable, values)):
                return None
            entries.append((b.native, b.built.hyper, group, keys, values))
        return _core.Plan(entries, self._counts)

    def _step_slow(self, grads: Sequence[Any]) -> None:
        """The full step: checks the groups and their hyperparameters, creates missing state."""
        n = self._nparams
        if len(grads) != n:
            raise ValueError(f"grads: expected {n} arrays (one per parameter, in parameter order), "
                             f"got {len(grads)}")
        if self._sparse_mode == "dense":
            grads = densify(grads, self._all_params())
        natives, hypers, on_apply = self._native_args(grads)
        clip = self._max_grad_norm
        norm, _, stats = _core.multi_step(natives, hypers, grads, -1.0 if clip is None else clip,
                                          self._skip_nonfinite, False, self._track_stats, self._counts,
                                          on_apply)
        self.last_grad_norm = norm
        self.last_stats = None if stats is None else [_stats_dict(s) for s in stats]

    def _native_args(self, grads: Sequence[Any]) -> Tuple[List[Any], List[Any], List[Any]]:
        """Checks every group's params, storage and hyperparameters and creates missing state;
        returns the native groups, their hyperparameters and the on_apply list of
        ``_core.multi_step`` (the new state is kept, by the native step, only if it applies)."""
        natives: List[Any] = []
        hypers: List[Any] = []
        on_apply: List[Any] = []
        for gi, (group, b) in enumerate(zip(self.param_groups, self._bindings)):
            b.check_params(gi, group)
            self._check_storage(gi, group, b)
            built = b.hyper(gi, group, self._resolved)
            native = b.native
            if not b.complete:
                new = b.missing_state(grads[b.first:b.first + len(b.params)])
                if new is not None:
                    bufs, masters, native = new
                    on_apply += [(b, "bufs", bufs), (b, "masters", masters), (b, "native", native)]
            natives.append(native)
            hypers.append(built.hyper)
        return natives, hypers, on_apply

    def _check_storage(self, gi: int, group: Dict[str, Any], b: GroupBinding) -> None:
        """Storage options changed in the group dict: allowed (and applied) only while the group
        has no state."""
        raw = tuple((type(v), v) for v in map(group.get, _storage.KEYS))
        if raw == b.storage_key:
            return
        try:
            storage = _storage.storage_of(group)
        except (TypeError, ValueError) as e:
            raise type(e)(f"param_groups[{gi}]: {e}") from None
        if storage == b.storage:
            b.storage_key = raw
            return
        if b.has_state():
            raise ValueError(f"param_groups[{gi}]: the storage options (state_dtype, master_weights, "
                             "stochastic_rounding, seed) cannot change once the group has state")
        _storage.check_params(storage, b.params, b.first)
        b.storage, b.storage_key = storage, raw
        b.native = b.bind()
        b.complete = False

    # -- state -------------------------------------------------------------------------------
    @property
    def state(self) -> Dict[int, Dict[str, Any]]:
        """Per-parameter state keyed by the parameter's index (the arrays are live)."""
        return export_state(self._bindings)

    def state_dict(self, *, dequantize: bool = False) -> Dict[str, Any]:
        """torch's layout: ``{"state": {index: {...}}, "param_groups": [...]}`` with plain
        Python values and the live NumPy state arrays (deep-copy it to keep a snapshot).
        Compact state appears in its stored form (bfloat16 arrays, 8-bit codes with their
        ``<name>_absmax``, the float32 ``master``); ``dequantize=True`` gives new float32 arrays
        under torch's keys only, which torch.optim loads."""
        with self._lock:
            return self._state_dict(dequantize)

    def _state_dict(self, dequantize: bool = False) -> Dict[str, Any]:
        return {"state": export_state(self._bindings, dequantize), "param_groups": export_groups(self.param_groups),
                "adaptopt": {"step_count": self._step_count, "skipped_steps": self.skipped_steps}}

    def _planned_load(self, state_dict: Dict[str, Any]) -> List[tuple]:
        """The operations that load ``state_dict`` (validated completely first): for
        _core.commit, which applies them all at once."""
        groups, bindings, counts = plan_load(self._spec, state_dict, self.param_groups, self._bindings,
                                             self._prepare, self._resolved_at(state_dict))
        for group, b in zip(self.param_groups, bindings):  # keep the caller's group dicts
            b.param_list = group["params"]
        ops: List[tuple] = [("replace", group, g) for group, g in zip(self.param_groups, groups)]
        return ops + [("setattr", self, "_bindings", bindings), ("setattr", self, "_plan", None),
                      ("setattr", self, "_counts", np.array(counts, dtype=np.int64))]

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Validates everything first (on any mismatch: an error and nothing changed), then
        restores copies of the state arrays."""
        with self._lock:
            self._load_state_dict(state_dict)

    def _load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        _core.commit(self._planned_load(state_dict))

    def _resolved_at(self, state_dict: Dict[str, Any]) -> Callable[[Dict[str, Any]], Dict[str, Any]]:
        """Resolves schedules at the step count the state dict carries (validated by plan_load)."""
        extra = state_dict.get("adaptopt") if isinstance(state_dict, dict) else None
        count = extra.get("step_count", 0) if isinstance(extra, dict) else 0

        def resolve(group: Dict[str, Any]) -> Dict[str, Any]:
            lr = group.get("lr")
            if callable(lr) and isinstance(count, (int, np.integer)) and count >= 0:
                return {**group, "lr": lr(int(count))}
            return group
        return resolve

    def _expected_array(self, i: int, key: str) -> Optional[Tuple[Tuple[int, ...], Tuple[np.dtype, ...]]]:
        """(shape, acceptable dtypes) of state array ``key`` of param ``i`` in a checkpoint."""
        for b in self._bindings:
            if b.first <= i < b.first + len(b.params):
                return expected_state(self._spec, b.params[i - b.first], b.storage, key)
        return None

    def save(self, path: Any, *, include_params: bool = True) -> None:
        """Writes a crash-safe .npz checkpoint of the state (and the parameters): see
        :mod:`adaptopt.checkpoint`."""
        with self._lock:
            checkpoint.write(path, type(self).__name__, self._state_dict(),
                             self._all_params() if include_params else None)

    def load(self, path: Any) -> None:
        """Restores a checkpoint written by :meth:`save`; on any error nothing changes."""
        with self._lock:
            saved = checkpoint.read(path, type(self).__name__, self._all_params(), self._expected_array)
            try:
                ops = self._planned_load(saved.state_dict)
            except (TypeError, ValueError) as e:
                raise ValueError(f"checkpoint {str(path)!r}: {e}") from None
            # The state and the parameters change together, or not at all.
            _core.commit(ops + [("copyto", dst, src) for dst, src in zip(self._all_params(), saved.params or ())])

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(k for k in g if k != "params"):
                lines.append(f"    {k}: {g[k]}")
        lines.append(")")
        return "\n".join(lines)

    def __deepcopy__(self, memo: Any) -> Any:
        raise TypeError(f"{type(self).__name__} cannot be deep-copied; copy its state_dict() instead")


_NOT_KEYS = {"self", "params", "options"}


def expected_state(spec: Spec, p: np.ndarray, storage: Any,
                   key: str) -> Optional[Tuple[Tuple[int, ...], Tuple[np.dtype, ...]]]:
    """(shape, acceptable dtypes) of state array ``key`` of param ``p`` with ``storage`` in a
    checkpoint, or None when the rule and storage have no such array (also used by
    adaptopt.distributed for its unsharded params)."""
    dtype, scaled = _storage.expected(p, storage)
    if key in spec.slots:
        return p.shape, (dtype,) if storage.state == _storage.MATH else (dtype, np.dtype(np.float32))
    if scaled and key.endswith("_absmax") and key[:-7] in spec.slots:
        return (_storage.blocks(p),), (np.dtype(np.float32),)
    if key == "master" and storage.mode == _storage.MASTER:
        return p.shape, (np.dtype(np.float32),)
    return None


def _immutable(v: Any) -> bool:
    """A value whose identity implies its value (what a plan may compare by identity)."""
    if v is None or isinstance(v, (bool, int, float, str, np.generic)):
        return True
    return type(v) is tuple and all(map(_immutable, v))


def _check_signature(cls: type, spec: Spec) -> None:
    """A class's constructor must declare exactly its spec's keys, in torch's order, with the
    spec's defaults (checked at import, so the two cannot drift apart)."""
    sig = inspect.signature(cls.__init__)  # type: ignore[misc]
    got = [(p.name, p.kind == p.KEYWORD_ONLY, p.default) for p in sig.parameters.values() if p.name not in _NOT_KEYS]
    want = [(k.name, k.keyword_only, k.default) for k in spec.keys.values()]
    if got != want:
        raise TypeError(f"{cls.__name__}.__init__ does not match its spec: {got} != {want}")


# The rule classes. Each passes its arguments to Optimizer.__init__ through locals(), which
# picks its spec's keys (the signature is checked against the spec at import).


class RMSprop(Optimizer):
    _spec = _rules.RMSPROP
    __doc__ = _spec.doc

    def __init__(self, params: Iterable[Any], lr: LR = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False, nesterov: bool = False,
                 eps_in_sqrt: bool = False, *, maximize: bool = False, decoupled_weight_decay: bool = False,
                 initial_scale: float = 0.0, bias_correction: bool = False, **options: Any) -> None:
        Optimizer.__init__(self, params, locals(), **options)


class Adagrad(Optimizer):
    _spec = _rules.ADAGRAD
    __doc__ = _spec.doc

    def __init__(self, params: Iterable[Any], lr: LR = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False, **options: Any) -> None:
        Optimizer.__init__(self, params, locals(), **options)


class Adadelta(Optimizer):
    _spec = _rules.ADADELTA
    __doc__ = _spec.doc

    def __init__(self, params: Iterable[Any], lr: LR = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0.0, *, maximize: bool = False, decoupled_weight_decay: bool = False,
                 **options: Any) -> None:
        Optimizer.__init__(self, params, locals(), **options)


class Adam(Optimizer):
    _spec = _rules.ADAM
    __doc__ = _spec.doc

    def __init__(self, params: Iterable[Any], lr: LR = 1e-3, betas: Betas = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False, eps_root: float = 0.0, **options: Any) -> None:
        Optimizer.__init__(self, params, locals(), **options)


class AdamW(Adam):
    _spec = _rules.ADAMW
    __doc__ = _spec.doc

    def __init__(self, params: Iterable[Any], lr: LR = 1e-3, betas: Betas = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 eps_root: float = 0.0, **options: Any) -> None:
        Optimizer.__init__(self, params, locals(), **options)


class SGD(Optimizer):
    _spec = _rules.SGD
    __doc__ = _spec.doc

    def __init__(self, params: Iterable[Any], lr: LR = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False, **options: Any) -> None:
        Optimizer.__init__(self, params, locals(), **options)


class NAdam(Optimizer):
    _spec = _rules.NADAM
    __doc__ = _spec.doc

    def __init__(self, params: Iterable[Any], lr: LR = 2e-3, betas: Betas = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum_decay: float = 4e-3, decoupled_weight_decay: bool = False, *,
                 maximize: bool = False, eps_root: float = 0.0, **options: Any) -> None:
        Optimizer.__init__(self, params, locals(), **options)


class RAdam(Optimizer):
    _spec = _rules.RADAM
    __doc__ = _spec.doc

    def __init__(self, params: Iterable[Any], lr: LR = 1e-3, betas: Betas = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled_weight_decay: bool = False, *, maximize: bool = False,
                 eps_root: float = 0.0, **options: Any) -> None:
        Optimizer.__init__(self, params, locals(), **options)


class Adamax(Optimizer):
    _spec = _rules.ADAMAX
    __doc__ = _spec.doc

    def __init__(self, params: Iterable[Any], lr: LR = 2e-3, betas: Betas = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, *, maximize: bool = False, decoupled_weight_decay: bool = False,
                 **options: Any) -> None:
        Optimizer.__init__(self, params, locals(), **options)


assert set(Optimizer._classes) == {s.name for s in _rules.SPECS}, "every spec needs its class"
