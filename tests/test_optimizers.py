"""Numerics: every optimizer and option against the float64 NumPy reference, under every ISA."""

import numpy as np
import pytest
from reference import STEP_FUNCTIONS, RefOptimizer
from support.arrays import EDGE_SIZES, random_arrays, random_grads
from support.configs import GROUPS, OPTIONS, RICH
from support.pair import Pair
from support.rules import NAMES, by_dtype, by_name, config_id, decoupled, has_key

STEPS = 60

CONFIGS = [(name, hyper) for name in NAMES for hyper in OPTIONS[name]]


def run(pair, steps, seed=1, misaligned=False):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        pair.random_step(rng, misaligned)
    pair.check()


# ---------------------------------------------------------------- the reference itself


# The first update from fresh state with default hyperparameters, in closed form: the moments
# are g and g^2 after bias correction, a sum of squares is g^2, etc.
CLOSED_FORM = {
    "RMSprop": lambda p0, g: p0 - 1e-2 * g / (np.sqrt(0.01) * np.abs(g) + 1e-8),  # v = (1 - alpha) g^2
    "Adagrad": lambda p0, g: p0 - 1e-2 * g / (np.abs(g) + 1e-10),  # sum = g^2
    # delta = sqrt(eps) / sqrt((1 - rho) g^2 + eps) g
    "Adadelta": lambda p0, g: p0 - np.sqrt(1e-6) / np.sqrt(0.1 * g * g + 1e-6) * g,
    "Adam": lambda p0, g: p0 - 1e-3 * g / (np.abs(g) + 1e-8),
    # AdamW: decay first, then the Adam step
    "AdamW": lambda p0, g: p0 * (1 - 1e-3 * 1e-2) - 1e-3 * g / (np.abs(g) + 1e-8),
    "SGD": lambda p0, g: p0 - 1e-3 * g,
    # mu_1 = 0.9 (1 - 0.5 * 0.96^0.004), mu_2 likewise; m = 0.1 g; denom = |g| + eps
    "NAdam": lambda p0, g: p0 - 2e-3 * (
        (1 - _mu(1)) / (1 - _mu(1)) + _mu(2) * 0.1 / (1 - _mu(1) * _mu(2))
    ) * g / (np.abs(g) + 1e-8),
    "RAdam": lambda p0, g: p0 - 1e-3 * g,  # rho_1 = 1 < 5: bias-corrected momentum only
    "Adamax": lambda p0, g: p0 - 2e-3 * g / (np.abs(g) + 1e-8),  # exp_inf = |g| + eps
}


def _mu(t):
    return 0.9 * (1 - 0.5 * 0.96 ** (t * 4e-3))


@by_name
def test_reference_first_step_closed_form(name):
    """Sanity check of reference.py: the first update has a simple closed form."""
    rng = np.random.default_rng(0)
    p0, g = rng.standard_normal(50), rng.standard_normal(50)
    p = p0.copy()
    STEP_FUNCTIONS[name](p, g, {})
    np.testing.assert_allclose(p, CLOSED_FORM[name](p0, g), rtol=1e-14, atol=1e-15)


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


@by_name
@by_dtype
def test_param_groups(name, dtype, isa):
    """Groups with different hyperparameters in one optimizer; group-less keys use the defaults
    passed to the constructor."""
    rng = np.random.default_rng(5)
    shapes = [(7,), (3, 5), (33,)]
    groups = [{"params": random_arrays(rng, shapes, dtype), **g} for g in GROUPS[name]]
    if name == "Adagrad":
        constructor = dict(initial_accumulator_value=0.1)
    else:
        constructor = dict(eps=1e-7) if has_key(name, "eps") else dict(weight_decay=0.01)
    run(Pair(name, groups, **constructor), STEPS)


# RICH, and RICH with decoupled weight decay (whose factor 1 - lr * wd uses the new lr) for the
# rules where it is an option.
LR_CHANGE = [(n, "rich") for n in NAMES] + [
    (n, "decoupled") for n in NAMES if has_key(n, "decoupled_weight_decay")
]


@pytest.mark.parametrize(("name", "decay"), LR_CHANGE, ids=[f"{n}-{d}" for n, d in LR_CHANGE])
@by_dtype
def test_lr_change_takes_effect_next_step(name, decay, dtype, isa):
    rng = np.random.default_rng(6)
    groups = [
        {"params": random_arrays(rng, [(19,), (4, 4)], dtype)},
        {"params": random_arrays(rng, [(8,)], dtype)},
    ]
    hyper = decoupled(name, RICH[name]) if decay == "decoupled" else RICH[name]
    pair = Pair(name, groups, **hyper)
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


# ---------------------------------------------------------------- options changed mid-run

# (optimizer, options at construction, options set in the group after 5 steps, then 5 more
# steps and 5 after switching back): buffers an option needs are created when it is switched
# on (SGD's momentum buffer as a copy of that step's gradient, as torch starts a missing one;
# the others at their starting value) and kept when it is switched off.
SWITCHES = [
    ("SGD", {}, dict(momentum=0.9, dampening=0.5)),
    ("SGD", {}, dict(momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("SGD", dict(momentum=0.9), dict(momentum=0.0)),
    ("RMSprop", {}, dict(momentum=0.9, centered=True)),
    ("RMSprop", {}, dict(bias_correction=True, initial_scale=1.0)),
    ("RMSprop", dict(centered=True, initial_scale=0.5), dict(bias_correction=True)),
    ("Adam", {}, dict(amsgrad=True, eps_root=1e-3)),
    ("AdamW", dict(amsgrad=True), dict(amsgrad=False, weight_decay=0.1)),
    ("Adagrad", dict(initial_accumulator_value=0.1), dict(initial_accumulator_value=5.0)),
    ("NAdam", {}, dict(decoupled_weight_decay=True, weight_decay=0.1, momentum_decay=0.02)),
    ("RAdam", dict(weight_decay=0.1), dict(decoupled_weight_decay=True, eps_root=1e-3)),
    ("Adamax", {}, dict(weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
    ("Adadelta", {}, dict(weight_decay=0.1, decoupled_weight_decay=True)),
]


@pytest.mark.parametrize(
    ("name", "start", "switch"), SWITCHES, ids=[config_id(n, s) for n, _, s in SWITCHES]
)
@by_dtype
def test_options_switched_mid_run(name, start, switch, dtype, isa):
    rng = np.random.default_rng(13)
    params = random_arrays(rng, [(19,), (4, 5), (1,)], dtype)
    pair = Pair(name, params, **start)
    for _ in range(5):
        pair.random_step(rng)
    before = {k: pair.opt.param_groups[0][k] for k in switch}
    for k, v in switch.items():
        pair.set_hyper(0, k, v)
    for _ in range(5):
        pair.random_step(rng)
    pair.check()
    for k, v in before.items():
        pair.set_hyper(0, k, v)
    for _ in range(5):
        pair.random_step(rng)
    pair.check()


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@by_dtype
def test_sgd_momentum_switched_on_later_starts_as_a_copy_of_the_gradient(weight_decay, dtype, isa):
    """torch.optim.SGD starts a missing momentum buffer as a clone of the (weight-decayed)
    gradient, with no dampening: also when momentum is switched on after the first step."""
    rng = np.random.default_rng(14)
    params = random_arrays(rng, [(37,), (3, 4)], dtype)
    pair = Pair("SGD", params, lr=0.05, weight_decay=weight_decay)
    pair.random_step(rng)
    assert set(pair.opt.state[0]) == {"step"}  # no buffer without momentum, like torch
    pair.set_hyper(0, "momentum", 0.9)
    pair.set_hyper(0, "dampening", 0.5)
    before = [p.copy() for p in params]
    grads = pair.random_step(rng)
    for i, (p0, g) in enumerate(zip(before, grads)):
        buf = pair.opt.state[i]["momentum_buffer"]
        if weight_decay == 0:
            np.testing.assert_array_equal(buf, g, err_msg=f"momentum_buffer[{i}]")
        else:  # g + wd * p rounded to the dtype, with or without a fused multiply-add
            g64, decay = g.astype(np.float64), weight_decay * p0.astype(np.float64)
            err = np.abs(buf - (g64 + decay))
            assert np.all(err <= 2 * np.finfo(dtype).eps * (np.abs(g64) + np.abs(decay))), i
    pair.check()
    for _ in range(3):  # from now on: buf = 0.9 buf + 0.5 g
        pair.random_step(rng)
    pair.check()


# Closed forms of the first update with adaptopt's options from other frameworks (optax,
# Keras 3), as a sanity check of reference.py.
OPTION_CLOSED_FORM = [
    # optax rmsprop(initial_scale=1, bias_correction=True), eps inside the sqrt:
    # nu_hat = (alpha * 1 + (1 - alpha) g^2) / (1 - alpha)
    ("RMSprop", dict(initial_scale=1.0, bias_correction=True, eps_in_sqrt=True),
     lambda p0, g: p0 - 1e-2 * g / np.sqrt((0.99 + 0.01 * g * g) / 0.01 + 1e-8)),
    # optax adam(eps_root): u = mu_hat / (sqrt(nu_hat + eps_root) + eps), mu_hat = g, nu_hat = g^2
    ("Adam", dict(eps_root=1e-3), lambda p0, g: p0 - 1e-3 * g / (np.sqrt(g * g + 1e-3) + 1e-8)),
    ("NAdam", dict(eps_root=1e-3, momentum_decay=0.0),  # mu = 0.45 for every t
     lambda p0, g: p0 - 2e-3 * (1 + 0.45 * 0.1 / (1 - 0.45 * 0.45)) * g / (np.sqrt(g * g + 1e-3) + 1e-8)),
    # Keras 3: p = p - p * wd * lr, then the update (which does not depend on p here)
    ("Adagrad", dict(weight_decay=0.1, decoupled_weight_decay=True),
     lambda p0, g: p0 - p0 * 0.1 * 1e-2 - 1e-2 * g / (np.abs(g) + 1e-10)),
    ("SGD", dict(weight_decay=0.1, decoupled_weight_decay=True, momentum=0.9, dampening=0.5),
     lambda p0, g: p0 - p0 * 0.1 * 1e-3 - 1e-3 * g),
    ("Adamax", dict(weight_decay=0.1, decoupled_weight_decay=True),
     lambda p0, g: p0 - p0 * 0.1 * 2e-3 - 2e-3 * g / (np.abs(g) + 1e-8)),
]


@pytest.mark.parametrize(
    ("name", "hyper", "closed_form"), OPTION_CLOSED_FORM,
    ids=[config_id(n, h) for n, h, _ in OPTION_CLOSED_FORM],
)
def test_reference_options_first_step_closed_form(name, hyper, closed_form):
    rng = np.random.default_rng(15)
    p0, g = rng.standard_normal(50), rng.standard_normal(50)
    p = p0.copy()
    STEP_FUNCTIONS[name](p, g, {}, **hyper)
    np.testing.assert_allclose(p, closed_form(p0, g), rtol=1e-14, atol=1e-15)
