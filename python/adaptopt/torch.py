"""torch.optim optimizers that run adaptopt's fused kernels on CPU tensors.

``adaptopt.torch.Adam``, and the class of every other rule of the registry under the same name as
in ``adaptopt`` (``adaptopt.torch.__all__``), is a ``torch.optim.Optimizer`` subclass with the
constructor arguments and defaults of the torch.optim class of the same name (plus adaptopt's
own options as keywords: e.g. RMSprop's ``nesterov``, ``eps_in_sqrt``, and the storage options
``state_dtype``, ``master_weights``, ``stochastic_rounding``, ``seed``). It reads ``p.grad``, and
updates the parameters and its state tensors in place through zero-copy NumPy views, in one native
call per step. It works with ``torch.optim.lr_scheduler`` (lr is read from ``param_groups`` every
step), ``zero_grad``, step hooks, and ``state_dict()`` in torch's layout, which torch.optim loads
(and the other way round).

What it refuses, with a clear error: CUDA (or any non-CPU) tensors, sparse gradients,
non-contiguous parameters, ``capturable=True`` and ``differentiable=True``. ``foreach`` and
``fused`` are accepted and ignored: there is one implementation, fused. torch stays an optional
dependency (``pip install 'adaptopt[torch]'``).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from . import _core, _rules, _storage
from ._group import freeze

__all__ = [s.name for s in _rules.SPECS]

_IGNORED = {"foreach": None, "fused": None}
_REFUSED = ("capturable", "differentiable")


def _numpy(t: torch.Tensor) -> np.ndarray:
    """A zero-copy NumPy view of a CPU tensor (bfloat16 through ml_dtypes)."""
    t = t.detach()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(_storage.BFLOAT16)
    return t.numpy()


def _tensor(a: np.ndarray) -> torch.Tensor:
    """A zero-copy tensor of a NumPy array (bfloat16 too)."""
    if a.dtype == _storage.BFLOAT16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def _check_param(p: torch.Tensor, where: str) -> None:
    if p.device.type != "cpu":
        raise ValueError(f"{where}: adaptopt.torch runs on CPU tensors, got a tensor on {p.device}")
    if p.is_sparse or p.layout != torch.strided:
        raise ValueError(f"{where}: sparse or non-strided parameters are not supported")
    if not p.is_contiguous():
        raise ValueError(f"{where}: parameters must be contiguous (updated in place through a view)")
    if p.dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        raise TypeError(f"{where}: dtype {p.dtype} is not supported (float32, float64, float16, bfloat16)")


class _Binding:
    """The native side of one param group: the parameters' views, the step counters and rule
    state (the state's 'step' and e.g. 'mu_product' tensors are views into them, advanced by the
    native step), the native Group and the last hyperparameters."""

    __slots__ = ("params", "ptrs", "states", "steps", "rule_state", "native", "native_storage", "key", "built",
                 "storage")

    def __init__(self, params: List[torch.Tensor]):
        self.params = params
        self.ptrs: tuple = ()
        self.states: tuple = ()
        self.steps = np.zeros(len(params), np.int64)
        self.rule_state: Optional[np.ndarray] = None
        self.native: Any = None
        self.native_storage: Any = None  # the storage the native group was built with
        self.key: Optional[tuple] = None
        self.built: Any = None
        self.storage: Any = None


class _Optimizer(torch.optim.Optimizer):
    """Shared machinery of adaptopt.torch's classes; each sets ``_spec``."""

    _spec: _rules.Spec

    def __init__(self, params: Any, defaults: Dict[str, Any]):
        for k in _REFUSED:
            if defaults.get(k):
                raise ValueError(f"{k}=True is not supported by adaptopt.torch (CPU tensors, one fused step)")
        super().__init__(params, defaults)
        self._bindings: Dict[int, _Binding] = {}
        self.register_load_state_dict_pre_hook(self._keep_state_dtypes)
        self.register_load_state_dict_post_hook(self._restore_state_dtypes)
        for gi, group in enumerate(self.param_groups):
            for j, p in enumerate(group["params"]):
                _check_param(p, f"param_groups[{gi}]['params'][{j}]")
            if self._spec.eager_state:  # torch's Adagrad creates its state at construction
                self._prepare(gi, group, eager=True)

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        super().add_param_group(param_group)
        if hasattr(self, "_bindings"):
            gi = len(self.param_groups) - 1
            for j, p in enumerate(self.param_groups[gi]["params"]):
                _check_param(p, f"param_groups[{gi}]['params'][{j}]")
            if self._spec.eager_state:
                self._prepare(gi, self.param_groups[gi], eager=True)

    # -- state ---------------------------------------------------------------------------
    def _new_slot(self, p: torch.Tensor, storage: Any, built: Any, s: int) -> Any:
        buf = _storage.new_buffer(_numpy(p), storage, built.slot_init[s], self._spec.unsigned_slots[s])
        return tuple(_tensor(x) for x in buf) if isinstance(buf, tuple) else _tensor(buf)

    def _prepare(self, gi: int, group: Dict[str, Any], eager: bool = False) -> _Binding:
        """The group's binding, rebuilt when params, their storage or their state changed, with
        the state every param that has a gradient needs (created as torch does, lazily)."""
        spec = self._spec
        params = group["params"]
        b = self._bindings.get(gi)
        if b is None or len(b.params) != len(params) or any(x is not y for x, y in zip(b.params, params)):
            b = self._bindings[gi] = _Binding(list(params))
        hyper = {k: group[k] for k in spec.keys if k in group}
        hyper.update({k: group.get(k, v) for k, v in _storage.DEFAULTS.items()})
        key = tuple(freeze(v) for v in hyper.values())
        if key != b.key:
            try:
                built = spec.build({**spec.defaults, **hyper})
                storage = _storage.storage_of(hyper)
                _storage.check_params(storage, [_numpy(p) for p in params], 0)
            except (TypeError, ValueError) as e:
                raise type(e)(f"param_groups[{gi}]: {e}") from None
            if b.storage is not None and storage != b.storage and any(self.state.get(p) for p in params):
                raise ValueError(f"param_groups[{gi}]: the storage options cannot change once the group has state")
            b.key, b.built, b.storage = key, built, storage
        changed = False
        for j, p in enumerate(params):
            if not (eager or p.grad is not None):
                continue  # (no state entry: torch creates state only for params with gradients)
            st = self.state[p]
            if "step" not in st:
                st["step"] = torch.zeros((), dtype=torch.float32)
                for name, init in zip(spec.state_names, spec.state_init):
                    st[name] = torch.tensor(init, dtype=torch.float64)
            for s, (name, need) in enumerate(zip(spec.slots, b.built.needed)):
                if need and name not in st:
                    x = self._new_slot(p, b.storage, b.built, s)
                    if isinstance(x, tuple):
                        st[name], st[f"{name}_absmax"] = x
                    else:
                        st[name] = x
                    changed = True
            if b.storage.mode == _storage.MASTER and "master" not in st:
                st["master"] = p.detach().to(torch.float32)
                changed = True
        ptrs = tuple(p.data_ptr() for p in params)
        states = tuple(tuple(id(v) for v in self.state[p].values()) if p in self.state else () for p in params)
        if changed or b.native is None or ptrs != b.ptrs or states != b.states or b.storage != b.native_storage:
            self._bind(b)
            b.ptrs = ptrs
            b.states = tuple(tuple(id(v) for v in self.state[p].values()) if p in self.state else () for p in params)
        return b

    def _bind(self, b: _Binding) -> None:
        """A native Group over the params and their state; the 'step' entries become views of
        the binding's int64 counters, which the native step advances."""
        spec = self._spec
        bufs, masters = [], []
        n = len(b.params)
        b.steps = np.zeros(n, np.int64)
        b.rule_state = np.tile(np.asarray(spec.state_init, np.float64), (n, 1)) if spec.state_names else None
        for j, p in enumerate(b.params):
            st = self.state.get(p, {})
            if "step" in st:
                b.steps[j] = int(st["step"].item())
            st_view = torch.from_numpy(b.steps[j:j + 1]).view(())
            if st:
                st["step"] = st_view
            for k, name in enumerate(spec.state_names):
                if name in st:
                    b.rule_state[j, k] = float(st[name].item())  # type: ignore[index]
                    st[name] = torch.from_numpy(b.rule_state[j, k:k + 1]).view(())  # type: ignore[index]
            row = []
            for name in spec.slots:
                x = st.get(name)
                if x is None:
                    row.append(None)
                elif f"{name}_absmax" in st:
                    row.append((_numpy(x), _numpy(st[f"{name}_absmax"])))
                else:
                    row.append(_numpy(x))
            bufs.append(row)
            masters.append(_numpy(st["master"]) if "master" in st else None)
        stg = b.storage
        b.native = _core.Group(spec.id, [_numpy(p) for p in b.params], bufs, b.steps, b.rule_state, "params", 0,
                               None, None, stg.state, stg.mode, masters if stg.mode == _storage.MASTER else None,
                               stg.seed)
        b.native_storage = stg

    # -- stepping --------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], Any]] = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        natives, hypers, grads = [], [], []
        for gi, group in enumerate(self.param_groups):
            b = self._prepare(gi, group)
            for j, p in enumerate(group["params"]):
                g = p.grad
                if g is None:
                    grads.append(None)
                    continue
                if g.is_sparse or g.layout != torch.strided:
                    raise ValueError(f"param_groups[{gi}]['params'][{j}].grad: sparse gradients are not supported")
                if g.device.type != "cpu" or not g.is_contiguous():
                    raise ValueError(f"param_groups[{gi}]['params'][{j}].grad: expected a contiguous CPU tensor")
                grads.append(_numpy(g))
            natives.append(b.native)
            hypers.append(b.built.hyper)
        _core.multi_step(natives, hypers, grads)
        return loss

    # -- state dicts ---------------------------------------------------------------------------
    @staticmethod
    def _keep_state_dtypes(optimizer: "_Optimizer", state_dict: Dict[str, Any]) -> Dict[str, Any]:
        """torch's load casts every state tensor but 'step' to its param's floating dtype (codes
        and a float32 master included): take them out before it runs; the post-hook puts them
        back, checked and converted to the group's storage."""
        kept, state = {}, {}
        for pid, entry in state_dict["state"].items():
            kept[pid] = {k: v for k, v in entry.items() if k != "step" and isinstance(v, torch.Tensor)}
            state[pid] = {k: v for k, v in entry.items() if k not in kept[pid]}
        ids = [pid for g in state_dict["param_groups"] for pid in g["params"]]
        optimizer._loading = (kept, ids)
        return {**state_dict, "state": state}

    @staticmethod
    def _restore_state_dtypes(optimizer: "_Optimizer") -> None:
        kept, ids = optimizer.__dict__.pop("_loading")
        spec = optimizer._spec
        params = [(gi, p) for gi, g in enumerate(optimizer.param_groups) for p in g["params"]]
        for pid, tensors in kept.items():
            gi, p = params[ids.index(pid)]
            group = optimizer.param_groups[gi]
            storage = _storage.storage_of({k: group.get(k, v) for k, v in _storage.DEFAULTS.items()})
            entry = {k: _numpy(v.contiguous()) for k, v in tensors.items()}
            st = optimizer.state[p]
            pn = _numpy(p)
            for s, name in enumerate(spec.slots):
                buf = _storage.load(f"state_dict: state[{pid!r}]", name, entry, pn, storage,
                                    spec.unsigned_slots[s])
                if isinstance(buf, tuple):
                    st[name], st[f"{name}_absmax"] = (_tensor(x) for x in buf)
                elif buf is not None:
                    st[name] = _tensor(buf)
            for name in spec.state_names:
                if name in tensors:
                    st[name] = tensors[name].to(torch.float64, copy=True)
            if "step" in st:  # torch's load shares it with the source dict: our own copy
                st["step"] = st["step"].clone()
            if "master" in entry and storage.mode == _storage.MASTER:
                st["master"] = _tensor(np.array(entry["master"], np.float32))
        for p, st in optimizer.state.items():  # params without kept tensors too
            if "step" in st and isinstance(st["step"], torch.Tensor):
                st["step"] = st["step"].clone()
        optimizer._bindings.clear()  # rebuilt (and 'step' re-linked) at the next step


def _make(spec: _rules.Spec) -> type:
    """The torch.optim-compatible class of ``spec``: torch's signature (positional arguments in
    torch's order), then adaptopt's own keys and the storage options as keywords."""
    torch_cls = getattr(torch.optim, spec.name, None)
    theirs = list(inspect.signature(torch_cls).parameters.values())[1:] if torch_cls else []
    names = {p.name for p in theirs}
    extra = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=spec.defaults[k])
             for k in spec.keys if k not in names and k not in spec.fixed]
    extra += [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in _storage.DEFAULTS.items()]
    if not theirs:
        theirs = [inspect.Parameter(k.name, inspect.Parameter.KEYWORD_ONLY if k.keyword_only else
                                    inspect.Parameter.POSITIONAL_OR_KEYWORD, default=k.default)
                  for k in spec.keys.values() if k.name not in spec.fixed]
    positional = [p for p in theirs if p.kind is p.POSITIONAL_OR_KEYWORD]
    keyword = [p for p in theirs if p.kind is not p.POSITIONAL_OR_KEYWORD]
    sig = inspect.Signature([inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD), *positional,
                             *keyword, *extra])

    def __init__(self: _Optimizer, *args: Any, **kwargs: Any) -> None:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        a = dict(bound.arguments)
        params = a.pop("params")
        defaults = {**{k: v for k, v in a.items()}, **spec.fixed}
        for k, v in _IGNORED.items():
            defaults.setdefault(k, v)
        _Optimizer.__init__(self, params, defaults)

    __init__.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *sig.parameters.values()])
    doc = (f"torch.optim.{spec.name} with adaptopt's fused kernels (CPU tensors). {spec.doc} "
           "See adaptopt.torch for what is supported and refused.")
    return type(spec.name, (_Optimizer,), {"_spec": spec, "__init__": __init__, "__doc__": doc,
                                          "__module__": __name__})


for _spec in _rules.SPECS:
    globals()[_spec.name] = _make(_spec)
del _spec
