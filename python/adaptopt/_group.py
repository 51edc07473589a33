"""The binding of one param group to the native core: its parameter arrays, state buffers, step
counters and per-parameter rule state, the native Group over them, the cache of the last
validated hyperparameters, and the state buffers a step creates lazily (kept only once the step
has succeeded)."""

from __future__ import annotations

import operator
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import _core, _storage
from ._rules import Built, Spec
from ._storage import Buffer, Storage

Buffers = List[List[Optional[Buffer]]]


def freeze(value: Any) -> Any:
    """A comparable snapshot of a hyperparameter value and its type: containers become tuples,
    so a list changed in place compares unequal to its snapshot."""
    if isinstance(value, (list, tuple)):
        return type(value), tuple(freeze(v) for v in value)
    if isinstance(value, np.ndarray):
        return np.ndarray, value.dtype.str, value.shape, value.tobytes()
    return type(value), value


class GroupBinding:
    __slots__ = ("spec", "storage", "storage_key", "params", "param_list", "first", "bufs", "masters", "steps", "rule_state",
                 "native", "key", "built", "complete")

    def __init__(self, spec: Spec, params: List[np.ndarray], param_list: list, first: int, storage: Storage):
        self.spec = spec
        self.storage = storage
        self.storage_key: Optional[tuple] = None  # the group's raw storage options last checked
        self.params = list(params)  # the arrays, to detect replaced entries
        self.param_list = param_list  # the group dict's own list object
        self.first = first  # index of the group's first param among all the optimizer's params
        self.bufs: Buffers = [[None] * len(spec.slots) for _ in params]
        self.masters: List[Optional[np.ndarray]] = [None] * len(params)  # master_weights: float32 copies
        self.steps = np.zeros(len(params), dtype=np.int64)
        self.rule_state: Optional[np.ndarray] = (
            np.tile(np.asarray(spec.state_init, np.float64), (len(params), 1)) if spec.state_names else None)
        self.native: Any = None  # _core.Group over the arrays above
        self.key: Optional[tuple] = None
        self.built: Optional[Built] = None
        self.complete = False  # every param has every slot the current hyperparameters need

    def bind(self, bufs: Optional[Buffers] = None, fresh: Optional[List[int]] = None,
             masters: Optional[List[Optional[np.ndarray]]] = None) -> Any:
        """A native Group over the params, ``bufs`` and ``masters`` (default: the current ones)."""
        st = self.storage
        return _core.Group(self.spec.id, self.params, self.bufs if bufs is None else bufs, self.steps,
                           self.rule_state, "params", self.first, None, fresh, st.state, st.mode,
                           (self.masters if masters is None else masters) if st.mode == _storage.MASTER else None,
                           st.seed)

    def has_state(self) -> bool:
        return bool(self.steps.any()) or any(b is not None for bufs in self.bufs for b in bufs) or \
            any(m is not None for m in self.masters)

    def check_params(self, gi: int, group: Dict[str, Any]) -> None:
        ps = group["params"]
        if ps is not self.param_list or len(ps) != len(self.params) or not all(map(operator.is_, ps, self.params)):
            raise ValueError(f"param_groups[{gi}]['params'] was changed after construction; "
                             "use add_param_group() to add parameters")

    def hyper(self, gi: int, group: Dict[str, Any], resolve: Callable[[Dict[str, Any]], Dict[str, Any]]) -> Built:
        """The validated hyperparameters of ``group``, rebuilt only when a value changed."""
        group = resolve(group)
        try:
            key = tuple(freeze(group[k]) for k in self.spec.keys)
        except KeyError as e:
            raise ValueError(f"param_groups[{gi}]: missing hyperparameter {e.args[0]!r}") from None
        if key != self.key or self.built is None:
            try:
                built = self.spec.build(group)
            except (TypeError, ValueError) as e:
                self.key = None
                raise type(e)(f"param_groups[{gi}]: {e}") from None
            self.key, self.built, self.complete = key, built, False
        return self.built

    def new_buffer(self, j: int, s: int) -> Buffer:
        assert self.built is not None
        return _storage.new_buffer(self.params[j], self.storage, self.built.slot_init[s],
                                   self.spec.unsigned_slots[s])

    def init_eager(self) -> None:
        """Creates every slot now when the rule's state exists from construction (Adagrad)."""
        if self.spec.eager_state and self.built is not None:
            for j in range(len(self.params)):
                for s, need in enumerate(self.built.needed):
                    if need and self.bufs[j][s] is None:
                        self.bufs[j][s] = self.new_buffer(j, s)
            self.complete = False

    def missing_state(self, grads: Sequence[Any]) -> Optional[Tuple[Buffers, List[Optional[np.ndarray]], Any]]:
        """(new buffer lists, new masters, native Group over them) when a param with a gradient
        lacks a slot (or master copy) the current options need, else None (and the group is
        marked complete once every param has had a gradient). Existing buffers are shared."""
        assert self.built is not None
        new: Optional[Buffers] = None
        masters = self.masters
        fresh = [0] * len(self.params)
        want_master = self.storage.mode == _storage.MASTER
        for j, p in enumerate(self.params):
            if grads[j] is None:
                continue
            for s, need in enumerate(self.built.needed):
                if need and self.bufs[j][s] is None:
                    if new is None:
                        new = [list(b) for b in self.bufs]
                    new[j][s] = self.new_buffer(j, s)
                    fresh[j] |= 1 << s
            if want_master and masters[j] is None:
                if masters is self.masters:
                    masters = list(masters)
                masters[j] = _storage.new_master(p)
        if new is None and masters is self.masters:
            if all(g is not None for g in grads):
                self.complete = True
            return None
        bufs = self.bufs if new is None else new
        return bufs, masters, self.bind(bufs, fresh, masters)
