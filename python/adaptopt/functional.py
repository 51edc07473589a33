"""In-place functional updates for users who keep their own state arrays.

One function per rule, named after it (``adam_``, ``rmsprop_``, ...: ``__all__`` lists them),
generated from the rule specs: each updates ``params`` and
the state lists in place, in one native call over all tensors, with the same kernels and checks
as the optimizer classes. The state lists come in slot order, named after torch's state keys
(``exp_avgs``, ``exp_avg_sqs``, ...); a list the options do not need may be None. Rules with a
per-parameter scalar state take it as a float64 array of one value per parameter, updated in
place (named like the state key with an ``s``, starting at the rule's initial value). Hyperparameters are keyword-only, with the
classes' names and defaults; a pair such as ``betas`` is given as ``beta1`` and ``beta2``.
``step`` is the 1-based number of this update; it is required where the update depends on it.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from . import _core, _rules

__all__ = [s.functional for s in _rules.SPECS if s.functional]


def _keyword_names(spec: _rules.Spec) -> Dict[str, Any]:
    """The functional form's hyperparameter keywords and defaults: a key spreading into several
    native fields (betas) becomes one keyword per field (beta1, beta2)."""
    out: Dict[str, Any] = {}
    for name, key in spec.keys.items():
        if key.fields:
            out.update(zip(key.fields, key.default))
        else:
            out[name] = key.default
    return out


def _make(spec: _rules.Spec) -> Callable[..., None]:
    name = spec.functional
    slot_args = spec.state_args
    state_args = tuple(f"{s}s" for s in spec.state_names)
    optional = {a for a, need in zip(slot_args, spec.build(spec.defaults).needed) if not need}
    keywords = _keyword_names(spec)

    def update(params: Sequence[np.ndarray], grads: Sequence[np.ndarray], *lists: Any, step: Optional[int] = None,
               **hyper: Any) -> None:
        unknown = set(hyper) - set(keywords)
        if unknown:
            raise TypeError(f"{name}() got unexpected keyword arguments {sorted(unknown)}")
        group = {**keywords, **hyper}
        for key_name, key in spec.keys.items():
            if key.fields:
                group[key_name] = tuple(group.pop(f) for f in key.fields)
        built = spec.build(group)
        if step is None:
            if spec.step_used(built.values):
                raise TypeError(f"{name}() missing the keyword argument 'step' (the 1-based number of this update)")
            step = 1
        step = _rules.check_step(step)
        _run(name, spec, params, grads, lists, built, step, slot_args, state_args)

    params_sig = [inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD),
                  inspect.Parameter("grads", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params_sig += [inspect.Parameter(a, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                     default=None if a in optional else inspect.Parameter.empty)
                   for a in (*slot_args, *state_args)]
    params_sig.append(inspect.Parameter("step", inspect.Parameter.KEYWORD_ONLY, default=None))
    params_sig += [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in keywords.items()]
    signature = inspect.Signature(params_sig)

    def fn(*args: Any, **kwargs: Any) -> None:
        bound = signature.bind(*args, **kwargs)
        a = bound.arguments
        lists = [a.get(x) for x in (*slot_args, *state_args)]
        hyper = {k: v for k, v in a.items() if k in keywords}
        update(a["params"], a["grads"], *lists, step=a.get("step"), **hyper)

    fn.__name__ = fn.__qualname__ = name
    fn.__signature__ = signature  # type: ignore[attr-defined]
    fn.__doc__ = (f"One {spec.name} step in place over every tensor (see the module docstring). "
                  f"{spec.doc}")
    fn.__module__ = __name__
    return fn


def _run(name: str, spec: _rules.Spec, params: Any, grads: Any, lists: Sequence[Any], built: _rules.Built,
         step: int, slot_args: Sequence[str], state_args: Sequence[str]) -> None:
    if isinstance(params, np.ndarray) or isinstance(grads, np.ndarray):
        raise TypeError("params and grads must be sequences of arrays, not a single ndarray")
    params, grads = list(params), list(grads)
    n = len(params)
    if len(grads) != n:
        raise ValueError(f"grads: expected {n} arrays (one per parameter), got {len(grads)}")
    columns: List[List[Any]] = []
    for arg, arrays, need in zip(slot_args, lists, built.needed):
        if arrays is None:
            if need:
                raise ValueError(f"{arg}: required by these hyperparameters")
            columns.append([None] * n)
            continue
        arrays = list(arrays)
        if len(arrays) != n:
            raise ValueError(f"{arg}: expected {n} arrays (one per parameter), got {len(arrays)}")
        columns.append(arrays)
    rule_state = None
    if state_args:
        given = lists[len(slot_args):]
        if any(x is None for x in given):
            raise ValueError(f"{', '.join(state_args)}: required (float64 arrays, one value per parameter)")
        cols = []
        for arg, x in zip(state_args, given):
            if not isinstance(x, np.ndarray) or x.dtype != np.float64 or x.shape != (n,) or not x.flags.writeable:
                raise ValueError(f"{arg}: expected a writeable float64 array of shape ({n},)")
            cols.append(x)
        arrays = [*params, *grads, *(x for col in columns for x in col if x is not None), *cols]
        try:
            overlap = _core.find_overlap(arrays)
        except (TypeError, ValueError):  # a bad array: the native step names it
            overlap = None
        if overlap is not None and overlap[1] >= len(arrays) - len(cols):
            raise ValueError(f"{state_args[overlap[1] - (len(arrays) - len(cols))]}: overlaps another array "
                             "of this call in memory (it is written)")
        rule_state = np.stack(cols, axis=1)  # written back below once the step has run
    states = [list(row) for row in zip(*columns)] if n else []
    steps = np.full(n, step - 1, dtype=np.int64)
    # A buffer is new at step 1 (SGD's momentum buffer then starts as a copy of the gradient).
    fresh = [sum(1 << s for s, need in enumerate(built.needed) if need) if step == 1 else 0] * n
    group = _core.Group(spec.id, params, states, steps, rule_state, "params", 0, list(slot_args), fresh)
    _core.multi_step([group], [built.hyper], grads)
    if rule_state is not None:
        for k, x in enumerate(given):
            x[...] = rule_state[:, k]


for _spec in _rules.SPECS:
    if _spec.functional:
        globals()[_spec.functional] = _make(_spec)
del _spec


def __getattr__(name: str) -> Callable[..., None]:  # for type checkers: the generated functions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
