"""What the tests enumerate, read from the rule registry (``adaptopt._rules.SPECS``): a spec
added there is run by every suite without touching them (``tests/test_support.py`` then asks
for its hand-written data in ``support.configs``)."""

from __future__ import annotations

import adaptopt
import numpy as np
import pytest
from adaptopt import _rules
from adaptopt.optim import Optimizer

from support.arrays import DTYPES

SPECS = _rules.SPECS
SPEC = {s.name: s for s in SPECS}
NAMES = tuple(SPEC)  # every optimizer class, in registry order

by_name = pytest.mark.parametrize("name", NAMES)
by_dtype = pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)


def optimizer_class(name):
    cls = Optimizer._classes[name]
    assert getattr(adaptopt, name) is cls, f"adaptopt.{name} is not the registered class"
    return cls


def has_key(name, key):
    """Whether the rule's constructor takes ``key`` (AdamW fixes decoupled_weight_decay)."""
    return key in SPEC[name].keys


def decoupled(name, hyper):
    """``hyper`` with decoupled weight decay switched on (AdamW: always on already)."""
    return {**hyper, "decoupled_weight_decay": True} if has_key(name, "decoupled_weight_decay") else dict(hyper)


def config_id(name, hyper):
    """Readable test id: ``Adam-amsgrad-weight_decay=0.1``."""
    parts = [name]
    for key, value in hyper.items():
        if value is True:
            parts.append(key)
        elif value is not False:
            parts.append(f"{key}={value}")
    return "-".join(parts)
