"""State export and load planning, as pure functions of the group bindings: what
``state_dict()`` returns and, for ``load_state_dict()``, the new groups and bindings to commit
(built and validated completely before anything changes)."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np

from . import _storage
from ._group import GroupBinding
from ._rules import MAX_STEP, Spec


def export_state(bindings: Sequence[GroupBinding], dequantize: bool = False) -> Dict[int, Dict[str, Any]]:
    """Per-parameter state keyed by the parameter's index, torch's key names and order (the
    arrays are live; with ``dequantize``, new float32 arrays under torch's keys only). A
    parameter with no step and no buffer has no entry, as in torch."""
    out: Dict[int, Dict[str, Any]] = {}
    for b in bindings:
        spec = b.spec
        for j in range(len(b.params)):
            bufs = b.bufs[j]
            if b.steps[j] > 0 or any(x is not None for x in bufs) or b.masters[j] is not None:
                entry: Dict[str, Any] = {"step": int(b.steps[j])}
                if b.rule_state is not None:
                    entry.update(zip(spec.state_names, map(float, b.rule_state[j])))
                for name, x, uns in zip(spec.slots, bufs, spec.unsigned_slots):
                    if x is None:
                        continue
                    if dequantize and (isinstance(x, tuple) or x.dtype != b.params[j].dtype):
                        entry[name] = _storage.dequantize(x, uns)
                    else:
                        entry.update(_storage.export(name, x))
                if b.masters[j] is not None and not dequantize:
                    entry["master"] = b.masters[j]
                out[b.first + j] = entry
    return out


def export_groups(param_groups: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    groups, i = [], 0
    for group in param_groups:
        g = {k: v for k, v in group.items() if k != "params"}
        g["params"] = list(range(i, i + len(group["params"])))
        i += len(group["params"])
        groups.append(g)
    return groups


def _step_value(where: str, value: Any) -> int:
    """A saved step count: a non-negative integer (int, NumPy integer, integral float or 0-d
    array of one, as torch saves a float tensor)."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{where}: expected a non-negative integer, got {value!r}")
    if isinstance(value, (int, np.integer)):
        v = int(value)
    else:
        a = np.asarray(value)
        if a.shape != () or a.dtype.kind not in "iuf" or not np.isfinite(a) or float(a) != int(a):
            raise ValueError(f"{where}: expected a non-negative integer, got {value!r}")
        v = int(a)
    if not 0 <= v <= MAX_STEP:
        raise ValueError(f"{where}: expected a non-negative integer, got {value!r}")
    return v


def plan_load(spec: Spec, state_dict: Dict[str, Any], param_groups: Sequence[Dict[str, Any]],
              bindings: Sequence[GroupBinding], prepare: Callable[[Dict[str, Any]], Dict[str, Any]],
              resolve: Callable[[Dict[str, Any]], Dict[str, Any]]) -> Tuple[List[Dict[str, Any]], List[GroupBinding], Tuple[int, int]]:
    """Validates ``state_dict`` against the optimizer and returns (new group dicts, new bindings
    with copies of the saved arrays, (step_count, skipped_steps)). Raises TypeError or
    ValueError on any mismatch; nothing is changed here."""
    if not isinstance(state_dict, dict):
        raise TypeError(f"state_dict: expected a dict, got {type(state_dict).__name__}")
    if "state" not in state_dict or "param_groups" not in state_dict:
        raise ValueError("state_dict: expected the keys 'state' and 'param_groups'")
    saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
    if not isinstance(saved_groups, (list, tuple)) or not isinstance(saved_state, dict):
        raise TypeError("state_dict: 'param_groups' must be a list and 'state' a dict")
    if len(saved_groups) != len(param_groups):
        raise ValueError(f"state_dict: has {len(saved_groups)} param groups, the optimizer has {len(param_groups)}")
    index_of: Dict[Any, Tuple[int, int]] = {}
    new_groups: List[Dict[str, Any]] = []
    new_bindings: List[GroupBinding] = []
    for gi, (saved, group, b) in enumerate(zip(saved_groups, param_groups, bindings)):
        if not isinstance(saved, dict) or "params" not in saved:
            raise ValueError(f"state_dict: param_groups[{gi}] must be a dict with 'params'")
        ids = list(saved["params"])
        if len(ids) != len(b.params):
            raise ValueError(f"state_dict: param_groups[{gi}] has {len(ids)} params, the optimizer's "
                             f"group has {len(b.params)}")
        g = prepare({**{k: v for k, v in saved.items() if k != "params"}, "params": group["params"]})
        try:
            storage = _storage.storage_of(g)
            _storage.check_params(storage, b.params, b.first)
        except (TypeError, ValueError) as e:
            raise type(e)(f"state_dict: param_groups[{gi}]: {e}") from None
        nb = GroupBinding(spec, b.params, group["params"], b.first, storage)
        try:
            nb.built = spec.build(resolve(g))
        except (TypeError, ValueError) as e:
            raise type(e)(f"state_dict: param_groups[{gi}]: {e}") from None
        for j, pid in enumerate(ids):
            if pid in index_of:
                raise ValueError(f"state_dict: parameter id {pid!r} appears twice")
            index_of[pid] = (gi, j)
        new_groups.append(g)
        new_bindings.append(nb)
    for pid, entry in saved_state.items():
        if pid not in index_of:
            raise ValueError(f"state_dict: state for parameter id {pid!r}, which no param group lists")
        gi, j = index_of[pid]
        _load_entry(spec, new_bindings[gi], j, pid, entry)
    for nb in new_bindings:
        nb.init_eager()
        nb.native = nb.bind()
    extra = state_dict.get("adaptopt", {})
    counts = (extra.get("step_count", 0), extra.get("skipped_steps", 0)) if isinstance(extra, dict) else None
    if counts is None or not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 0
                                 for c in counts):
        raise ValueError(f"state_dict: 'adaptopt' must hold non-negative step_count and skipped_steps, got {extra!r}")
    return new_groups, new_bindings, (int(counts[0]), int(counts[1]))


def _load_entry(spec: Spec, b: GroupBinding, j: int, pid: Any, entry: Any) -> None:
    where = f"state_dict: state[{pid!r}]"
    if not isinstance(entry, dict):
        raise TypeError(f"{where}: expected a dict, got {type(entry).__name__}")
    scaled = {f"{name}_absmax" for name in spec.slots}
    unknown = set(entry) - {"step", "master", *spec.state_names, *spec.slots, *scaled}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(map(str, unknown))}")
    if "step" in entry:
        b.steps[j] = _step_value(f"{where}['step']", entry["step"])
    elif spec.torch_saves_step:
        raise ValueError(f"{where}: missing 'step'")
    for k, name in enumerate(spec.state_names):
        if name not in entry and b.steps[j] > 0:
            raise ValueError(f"{where}: missing {name!r}, which a parameter that has stepped carries")
        if name in entry:
            v = np.asarray(entry[name])
            if v.shape != () or v.dtype.kind not in "iuf":
                raise ValueError(f"{where}[{name!r}]: expected a real number, got {entry[name]!r}")
            assert b.rule_state is not None
            b.rule_state[j, k] = float(v)
    p = b.params[j]
    assert b.built is not None
    for s, name in enumerate(spec.slots):
        buf = _storage.load(where, name, entry, p, b.storage, spec.unsigned_slots[s])
        if buf is None and b.built.needed[s]:
            raise ValueError(f"{where}: missing {name!r}, which these hyperparameters need")
        b.bufs[j][s] = buf
    if "master" in entry and b.storage.mode == _storage.MASTER:
        m = np.asarray(entry["master"])
        if m.dtype != np.float32 or m.shape != p.shape:
            raise ValueError(f"{where}['master']: expected float32 of the parameter's shape {p.shape}, "
                             f"got {m.dtype}{m.shape}")
        b.masters[j] = np.array(m, order="C", copy=True)
