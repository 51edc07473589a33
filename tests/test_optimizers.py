"""Numerics: every optimizer and option against the float64 NumPy reference, under every ISA."""

import itertools

import numpy as np
import pytest
from _util import (
    EDGE_SIZES,
    RICH,
    Pair,
    by_dtype,
    by_name,
    config_id,
    random_arrays,
    random_grads,
)
from reference import STEP_FUNCTIONS, RefOptimizer

STEPS = 60


def _rmsprop_configs():
    core = [
        dict(momentum=m, centered=c, nesterov=n, eps_in_sqrt=e)
        for m, c, n, e in itertools.product((0.0, 0.9), (False, True), (False, True), (False, True))
        if m > 0 or not n
    ]
    # Every core combination with weight decay and maximize both off and both on ...
    configs = [
        {**c, **extra} for c in core for extra in ({}, dict(weight_decay=0.1, maximize=True))
    ]
    # ... and each of them alone, on the plainest and the richest core combination.
    for c in (core[0], core[-1]):
        configs += [{**c, "weight_decay": 0.1}, {**c, "maximize": True}]
    return configs


CONFIGS = (
    [("RMSprop", c) for c in _rmsprop_configs()]
    + [
        ("Adagrad", dict(lr_decay=d, weight_decay=w, initial_accumulator_value=a, maximize=m))
        for d, w, a, m in itertools.product((0.0, 0.01), (0.0, 0.1), (0.0, 0.1), (False, True))
    ]
    + [
        ("Adadelta", dict(lr=lr, weight_decay=w, maximize=m))
        for lr, w, m in itertools.product((1.0, 0.5), (0.0, 0.1), (False, True))
    ]
    + [
        ("Adam", dict(amsgrad=a, weight_decay=w, decoupled_weight_decay=d, maximize=m))
        for a, w, d, m in itertools.product((False, True), (0.0, 0.1), (False, True), (False, True))
    ]
    + [
        ("AdamW", {}),
        ("AdamW", dict(amsgrad=True)),
        ("AdamW", dict(weight_decay=0.1, maximize=True)),
    ]
)


def run(pair, steps, seed=1, misaligned=False):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        pair.random_step(rng, misaligned)
    pair.check()


# ---------------------------------------------------------------- the reference itself


@by_name
def test_reference_first_step_closed_form(name):
    """Sanity check of reference.py: the first update has a simple closed form."""
    rng = np.random.default_rng(0)
    p0, g = rng.standard_normal(50), rng.standard_normal(50)
    p = p0.copy()
    STEP_FUNCTIONS[name](p, g, {})
    if name == "RMSprop":  # v = (1 - alpha) g^2
        expected = p0 - 1e-2 * g / (np.sqrt(0.01) * np.abs(g) + 1e-8)
    elif name == "Adagrad":  # sum = g^2
        expected = p0 - 1e-2 * g / (np.abs(g) + 1e-10)
    elif name == "Adadelta":  # delta = sqrt(eps) / sqrt((1 - rho) g^2 + eps) g
        expected = p0 - np.sqrt(1e-6) / np.sqrt(0.1 * g * g + 1e-6) * g
    elif name == "Adam":  # bias-corrected moments are g and g^2
        expected = p0 - 1e-3 * g / (np.abs(g) + 1e-8)
    else:  # AdamW: decay first, then the Adam step
        expected = p0 * (1 - 1e-3 * 1e-2) - 1e-3 * g / (np.abs(g) + 1e-8)
    np.testing.assert_allclose(p, expected, rtol=1e-14, atol=1e-15)


# ---------------------------------------------------------------- options x dtypes x ISAs


@pytest.mark.parametrize(("name", "hyper"), CONFIGS, ids=[config_id(n, h) for n, h in CONFIGS])
@by_dtype
def test_options(name, hyper, dtype, isa):
    """Every option combination, on tensors of every tail size, for STEPS steps."""
    rng = np.random.default_rng(0)
    params = random_arrays(rng, [(n,) for n in EDGE_SIZES], dtype)
    run(Pair(name, params, **hyper), STEPS)


# (size, misaligned): an empty array has no alignment to vary.
SIZE_LAYOUTS = [(n, m) for n in EDGE_SIZES for m in (False, True) if n or not m]


@by_name
@pytest.mark.parametrize(
    ("size", "misaligned"),
    SIZE_LAYOUTS,
    ids=[f"{n}-{'misaligned' if m else 'aligned'}" for n, m in SIZE_LAYOUTS],
)
@by_dtype
def test_sizes(name, size, misaligned, dtype, isa):
    """One tensor per optimizer; params and grads 64-byte aligned or offset by one element."""
    rng = np.random.default_rng(size)
    params = random_arrays(rng, [(size,)], dtype, misaligned)
    run(Pair(name, params, **RICH[name]), STEPS, misaligned=misaligned)


@by_name
@by_dtype
def test_large(name, dtype, isa):
    rng = np.random.default_rng(7)
    params = random_arrays(rng, [(1_000_003,)], dtype)
    run(Pair(name, params, **RICH[name]), steps=3)


SHAPES = [(), (1,), (3, 4), (2, 3, 5), (0,), (7,), (2, 0, 3), (17, 9), (1, 1, 33)]


@by_name
@by_dtype
def test_many_shapes(name, dtype, isa):
    """Several tensors of mixed sizes and ranks (including 0-d and empty) in one optimizer."""
    rng = np.random.default_rng(3)
    run(Pair(name, random_arrays(rng, SHAPES, dtype), **RICH[name]), STEPS)


@by_name
def test_mixed_dtypes(name, isa):
    rng = np.random.default_rng(4)
    params = [
        *random_arrays(rng, [(5,), (33,)], np.float32),
        *random_arrays(rng, [(17,), (2, 3)], np.float64),
        *random_arrays(rng, [(9,)], np.float32),
    ]
    run(Pair(name, params, **RICH[name]), STEPS)


GROUPS = {
    "RMSprop": [
        dict(lr=1e-2, momentum=0.9, centered=True),
        dict(lr=3e-3, alpha=0.9, weight_decay=0.1, eps_in_sqrt=True),
        dict(lr=2e-2, momentum=0.5, nesterov=True, maximize=True, eps=1e-6),
    ],
    "Adagrad": [
        dict(lr=5e-2, lr_decay=0.01),
        dict(lr=1e-2, weight_decay=0.1, eps=1e-6, maximize=True),
    ],
    "Adadelta": [dict(lr=1.0, rho=0.9), dict(lr=0.5, rho=0.95, eps=1e-5, weight_decay=0.1)],
    "Adam": [
        dict(lr=1e-3),
        dict(lr=3e-3, betas=(0.8, 0.99), amsgrad=True, weight_decay=0.1),
        dict(lr=1e-2, weight_decay=0.05, decoupled_weight_decay=True, maximize=True),
    ],
    "AdamW": [dict(lr=1e-3), dict(lr=5e-3, weight_decay=0.1, amsgrad=True, eps=1e-6)],
}


@by_name
@by_dtype
def test_param_groups(name, dtype, isa):
    """Groups with different hyperparameters in one optimizer; group-less keys use the defaults
    passed to the constructor."""
    rng = np.random.default_rng(5)
    shapes = [(7,), (3, 5), (33,)]
    groups = [{"params": random_arrays(rng, shapes, dtype), **g} for g in GROUPS[name]]
    constructor = dict(initial_accumulator_value=0.1) if name == "Adagrad" else dict(eps=1e-7)
    run(Pair(name, groups, **constructor), STEPS)


@by_name
@by_dtype
def test_lr_change_takes_effect_next_step(name, dtype, isa):
    rng = np.random.default_rng(6)
    groups = [
        {"params": random_arrays(rng, [(19,), (4, 4)], dtype)},
        {"params": random_arrays(rng, [(8,)], dtype)},
    ]
    pair = Pair(name, groups, **RICH[name])
    for _ in range(20):
        pair.random_step(rng)
    old = pair.opt.param_groups[0]["lr"]
    pair.set_hyper(0, "lr", old * 0.3)
    pair.random_step(rng)
    pair.check()
    for _ in range(20):
        pair.random_step(rng)
    pair.check()


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the reference's NaN/Inf
@by_name
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@by_dtype
def test_nonfinite_gradient_stays_local(name, bad, dtype, isa):
    """A NaN/Inf in one gradient element only affects that element (of params and state)."""
    rng = np.random.default_rng(8)
    params = random_arrays(rng, [(37,), (20,)], dtype)
    pair = Pair(name, params, **RICH[name])
    for step in range(30):
        grads = random_grads(rng, params)
        if step == 5:
            grads[0][11] = bad
        pair.step(grads)
    pair.check()  # equal_nan: the same elements are non-finite as in the reference
    others = np.arange(37) != 11
    assert np.isfinite(params[0][others]).all()
    assert np.isfinite(params[1]).all()
    assert not np.isfinite(params[0][11])


def test_reference_optimizer_handles_groups_like_the_step_functions():
    """RefOptimizer (used above) applies the group settings to the right tensors."""
    rng = np.random.default_rng(9)
    a, b = rng.standard_normal(5), rng.standard_normal(5)
    ref = RefOptimizer("Adam", [{"params": [a]}, {"params": [b], "lr": 0.5}], amsgrad=True)
    ga, gb = rng.standard_normal(5), rng.standard_normal(5)
    ref.step([ga, gb])
    ea, eb, sa, sb = a.copy(), b.copy(), {}, {}
    STEP_FUNCTIONS["Adam"](ea, ga, sa, amsgrad=True)
    STEP_FUNCTIONS["Adam"](eb, gb, sb, amsgrad=True, lr=0.5)
    np.testing.assert_array_equal(ref.params[0], ea)
    np.testing.assert_array_equal(ref.params[1], eb)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@by_name
@by_dtype
def test_nonfinite_param_without_weight_decay(name, dtype, isa):
    """With weight_decay=0 the decay term is skipped, not computed as 0 * p: an Inf param stays
    Inf instead of turning into NaN (0 * Inf)."""
    rng = np.random.default_rng(10)
    params = random_arrays(rng, [(21,)], dtype)
    params[0][[3, 17]] = [np.inf, -np.inf]
    hyper = {"weight_decay": 0.0} if name != "AdamW" else {}
    pair = Pair(name, params, **hyper)
    for _ in range(5):
        pair.random_step(rng)
    pair.check()


@by_name
def test_read_only_grads_are_accepted(name, isa):
    rng = np.random.default_rng(12)
    params = random_arrays(rng, [(13,), (2, 5)], np.float32)
    pair = Pair(name, params, **RICH[name])
    for _ in range(5):
        grads = random_grads(rng, params)
        for g in grads:
            g.flags.writeable = False
        pair.step(grads)
    pair.check()
