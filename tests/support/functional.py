"""Calling the functional forms like the classes: keyword conversion, fresh state lists, one
call equivalent to one optimizer step (from the hand-written signatures in support.configs)."""

from __future__ import annotations

import adaptopt.functional as F
import numpy as np
from reference import defaults_of, initial_state

from support.configs import FUNCTIONAL, PAIRS


def function_of(name):
    return getattr(F, FUNCTIONAL[name].fn)


def functional_kwargs(name, hyper):
    """Optimizer-style hyperparameters -> the functional keyword arguments: every key of the
    class (its defaults filled in: AdamW's weight decay differs from adam_'s), pairs spread
    into their two keywords, the keys the form fixes (AdamW's decoupled weight decay) set."""
    kw = {**defaults_of(name), **hyper, **FUNCTIONAL[name].fixed}
    for pair, (a, b) in PAIRS.items():
        if pair in kw:
            kw[a], kw[b] = kw.pop(pair)
    return kw


def new_state(name, hyper, params):
    """Fresh state, keyed by state_dict key, as the class creates it (from the reference):
    lists of arrays for the buffers the options need, float64 arrays of one value per param
    for the per-parameter scalars."""
    spec = FUNCTIONAL[name]
    fresh = [initial_state(name, p, **hyper) for p in params]
    out = {}
    for key in spec.slots.values():
        if fresh and key in fresh[0]:
            out[key] = [f[key].astype(p.dtype) for p, f in zip(params, fresh)]
    for key in spec.scalars.values():
        out[key] = np.array([f[key] for f in fresh], dtype=np.float64)
    return out


def functional_step(name, params, grads, state, hyper, step):
    """One functional call equivalent to one optimizer step (``step`` is 1-based); ``state``
    maps state_dict keys to lists of arrays (float64 arrays for per-parameter scalars)."""
    spec = FUNCTIONAL[name]
    lists = [state.get(key) for key in spec.slots.values()]
    lists += [state[key] for key in spec.scalars.values()]
    kw = functional_kwargs(name, hyper)
    function_of(name)(params, grads, *lists, step=step, **kw)
