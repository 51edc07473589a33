"""Per-rule test data written by hand, keyed by spec name.

Everything here is an independent statement of what the tests expect (torch's and optax's
names, the options worth combining, the values that must be refused), so it is not derived from
``adaptopt._rules``. ``tests/test_support.py`` checks that every spec has its entry in every
table of ``PER_RULE`` and that the tables agree with the spec's keys: a new rule fails there
until its data is written.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from hypothesis import strategies as st

# ================================================================ configurations

# One configuration per optimizer that switches on most of its options at once.
RICH = {
    "RMSprop": dict(momentum=0.9, centered=True, nesterov=True, weight_decay=0.1,
                    initial_scale=0.5, bias_correction=True),
    "Adagrad": dict(lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.1),
    "Adadelta": dict(weight_decay=0.1, lr=0.5),
    "Adam": dict(amsgrad=True, weight_decay=0.1, eps_root=1e-3),
    "AdamW": dict(amsgrad=True, eps_root=1e-3),
    "SGD": dict(momentum=0.9, nesterov=True, weight_decay=0.1, lr=0.01),
    "NAdam": dict(weight_decay=0.1, momentum_decay=0.01, eps_root=1e-3, lr=0.01),
    "RAdam": dict(weight_decay=0.1, eps_root=1e-3, betas=(0.8, 0.99), lr=0.01),
    "Adamax": dict(weight_decay=0.1, betas=(0.8, 0.99), lr=0.01),
}


def _rmsprop_options():
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
    # optax's initial_scale and bias_correction, Keras's decoupled weight decay: each alone and
    # together, on the plainest and the richest core combination. (A centered bias-corrected
    # variance is exactly 0 at the first step unless square_avg starts above 0: initial_scale.)
    for c in (core[0], core[-1]):
        configs += [
            {**c, "initial_scale": 1.0},
            {**c, "bias_correction": True, **({"initial_scale": 0.1} if c["centered"] else {})},
            {**c, "initial_scale": 0.5, "bias_correction": True},
            {**c, "weight_decay": 0.1, "decoupled_weight_decay": True},
            {**c, "weight_decay": 0.1, "decoupled_weight_decay": True, "initial_scale": 0.5,
             "bias_correction": True, "maximize": True},
        ]
    configs.append(dict(momentum=0.9, bias_correction=True, alpha=0.9))
    return configs


OPTIONS = {
    "RMSprop": _rmsprop_options(),
    "Adagrad": [
        dict(lr_decay=d, weight_decay=w, initial_accumulator_value=a, maximize=m)
        for d, w, a, m in itertools.product((0.0, 0.01), (0.0, 0.1), (0.0, 0.1), (False, True))
    ] + [
        dict(weight_decay=0.1, decoupled_weight_decay=True),
        dict(lr_decay=0.01, weight_decay=0.1, decoupled_weight_decay=True,
             initial_accumulator_value=0.1, maximize=True),
    ],
    "Adadelta": [
        dict(lr=lr, weight_decay=w, maximize=m)
        for lr, w, m in itertools.product((1.0, 0.5), (0.0, 0.1), (False, True))
    ] + [
        dict(lr=0.5, weight_decay=0.1, decoupled_weight_decay=True),
        dict(weight_decay=0.1, decoupled_weight_decay=True, maximize=True),
    ],
    "Adam": [
        dict(amsgrad=a, weight_decay=w, decoupled_weight_decay=d, maximize=m)
        for a, w, d, m in itertools.product((False, True), (0.0, 0.1), (False, True), (False, True))
    ] + [
        dict(eps_root=1e-2),
        dict(eps_root=1e-8, amsgrad=True),
        dict(eps_root=1e-2, amsgrad=True, weight_decay=0.1, decoupled_weight_decay=True, maximize=True),
    ],
    "AdamW": [
        {},
        dict(amsgrad=True),
        dict(weight_decay=0.1, maximize=True),
        dict(eps_root=1e-2, amsgrad=True),
    ],
    "SGD": [
        dict(),
        dict(momentum=0.9),
        dict(momentum=0.9, dampening=0.3),
        dict(momentum=0.9, nesterov=True),
        dict(momentum=0.9, nesterov=True, weight_decay=0.1, maximize=True),
        dict(weight_decay=0.1),
        dict(lr=0.05, momentum=0.5, dampening=1.0, maximize=True),
        dict(lr=0.05, weight_decay=0.1, decoupled_weight_decay=True),
        dict(momentum=0.9, dampening=0.3, weight_decay=0.1, decoupled_weight_decay=True),
    ],
    "NAdam": [
        {},
        dict(weight_decay=0.1),
        dict(weight_decay=0.1, decoupled_weight_decay=True),
        dict(momentum_decay=0.0),
        dict(momentum_decay=0.05, betas=(0.8, 0.99), lr=0.01),
        dict(maximize=True, eps=1e-6),
        dict(eps_root=1e-2),
        dict(eps_root=1e-8, weight_decay=0.1, decoupled_weight_decay=True, maximize=True),
    ],
    "RAdam": [
        {},
        dict(weight_decay=0.1),
        dict(weight_decay=0.1, decoupled_weight_decay=True),
        dict(betas=(0.8, 0.99), lr=0.01),
        dict(betas=(0.9, 0.5)),  # rho_inf = 3: never rectified
        dict(maximize=True, eps=1e-6),
        dict(eps_root=1e-2),
        dict(eps_root=1e-8, betas=(0.8, 0.99), weight_decay=0.1, decoupled_weight_decay=True,
             maximize=True),
    ],
    "Adamax": [
        {},
        dict(weight_decay=0.1),
        dict(weight_decay=0.1, decoupled_weight_decay=True),
        dict(betas=(0.5, 0.9), lr=0.01, eps=1e-4),
        dict(maximize=True),
        dict(weight_decay=0.05, decoupled_weight_decay=True, maximize=True, betas=(0.8, 0.99)),
    ],
}

# Param groups with different hyperparameters in one optimizer.
GROUPS = {
    "RMSprop": [
        dict(lr=1e-2, momentum=0.9, centered=True),
        dict(lr=3e-3, alpha=0.9, weight_decay=0.1, eps_in_sqrt=True),
        dict(lr=2e-2, momentum=0.5, nesterov=True, maximize=True, eps=1e-6),
        dict(lr=5e-3, centered=True, initial_scale=1.0, bias_correction=True, weight_decay=0.05,
             decoupled_weight_decay=True),
    ],
    "Adagrad": [
        dict(lr=5e-2, lr_decay=0.01),
        dict(lr=1e-2, weight_decay=0.1, eps=1e-6, maximize=True),
        dict(lr=2e-2, weight_decay=0.05, decoupled_weight_decay=True, initial_accumulator_value=0.3),
    ],
    "Adadelta": [
        dict(lr=1.0, rho=0.9),
        dict(lr=0.5, rho=0.95, eps=1e-5, weight_decay=0.1),
        dict(lr=0.7, weight_decay=0.05, decoupled_weight_decay=True),
    ],
    "Adam": [
        dict(lr=1e-3),
        dict(lr=3e-3, betas=(0.8, 0.99), amsgrad=True, weight_decay=0.1),
        dict(lr=1e-2, weight_decay=0.05, decoupled_weight_decay=True, maximize=True),
        dict(lr=2e-3, eps_root=1e-3),
    ],
    "AdamW": [
        dict(lr=1e-3),
        dict(lr=5e-3, weight_decay=0.1, amsgrad=True, eps=1e-6),
        dict(lr=2e-3, eps_root=1e-3),
    ],
    "SGD": [
        dict(lr=0.05, momentum=0.9),
        dict(lr=0.01, weight_decay=0.1, nesterov=True, momentum=0.5),
        dict(lr=0.02, dampening=0.3, momentum=0.8, maximize=True),
        dict(lr=0.03, weight_decay=0.05, decoupled_weight_decay=True),
    ],
    "NAdam": [
        dict(lr=2e-3),
        dict(lr=5e-3, betas=(0.8, 0.99), weight_decay=0.1, momentum_decay=0.01),
        dict(lr=1e-2, weight_decay=0.05, decoupled_weight_decay=True, eps_root=1e-4, maximize=True),
    ],
    "RAdam": [
        dict(lr=1e-3),
        dict(lr=3e-3, betas=(0.8, 0.99), weight_decay=0.1),
        dict(lr=1e-2, weight_decay=0.05, decoupled_weight_decay=True, maximize=True, eps_root=1e-4),
    ],
    "Adamax": [
        dict(lr=2e-3),
        dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1, eps=1e-6),
        dict(lr=5e-3, weight_decay=0.05, decoupled_weight_decay=True, maximize=True),
    ],
}

# Configurations whose state layouts differ (every combination of optional buffers).
STATE_CONFIGS = {
    "RMSprop": [dict(momentum=m, centered=c) for m in (0.0, 0.9) for c in (False, True)]
    + [dict(initial_scale=1.0, bias_correction=True)],
    "Adagrad": [{}],
    "Adadelta": [{}],
    "Adam": [{}, dict(amsgrad=True)],
    "AdamW": [{}, dict(amsgrad=True)],
    "SGD": [{}, dict(momentum=0.9)],
    "NAdam": [{}],
    "RAdam": [{}],
    "Adamax": [{}],
}

# A configuration per rule for the cross-process checkpoint test.
CHECKPOINT = {
    "RMSprop": dict(momentum=0.9, centered=True),
    "Adagrad": dict(lr_decay=0.01),
    "Adadelta": dict(weight_decay=0.01),
    "Adam": dict(amsgrad=True, weight_decay=0.01),
    "AdamW": dict(),
    "SGD": dict(momentum=0.9, dampening=0.1),
    "NAdam": dict(weight_decay=0.01, decoupled_weight_decay=True),
    "RAdam": dict(betas=(0.9, 0.99)),
    "Adamax": dict(weight_decay=0.01),
}

# Sparse-row tests.
SPARSE = {
    "RMSprop": dict(momentum=0.9, centered=True),
    "Adagrad": dict(initial_accumulator_value=0.1),
    "Adadelta": dict(),
    "Adam": dict(amsgrad=True, weight_decay=0.1),
    "AdamW": dict(),
    "SGD": dict(momentum=0.9, lr=0.1),
    "NAdam": dict(momentum_decay=0.01),
    "RAdam": dict(betas=(0.9, 0.99)),
    "Adamax": dict(weight_decay=0.1),
}

# Per-group statistics (track_stats).
STATS = {
    "RMSprop": [{}, dict(centered=True, momentum=0.9), dict(eps_in_sqrt=True),
                dict(centered=True, bias_correction=True, initial_scale=0.5)],
    "Adagrad": [dict(lr_decay=0.1)],
    "Adadelta": [{}],
    "Adam": [dict(amsgrad=True), dict(eps_root=1e-3)],
    "AdamW": [{}],
    "SGD": [dict(momentum=0.9)],
    "NAdam": [dict(eps_root=1e-3)],
    "RAdam": [dict(betas=(0.9, 0.99), eps_root=1e-3)],
    "Adamax": [{}],
}

# Configurations run through the functional form and the class side by side.
FUNCTIONAL_CONFIGS = {
    "RMSprop": [
        {},
        dict(momentum=0.9, centered=True, nesterov=True, weight_decay=0.1, maximize=True),
        dict(centered=True, eps_in_sqrt=True, alpha=0.9, lr=3e-3),
        dict(momentum=0.5, eps_in_sqrt=True, eps=1e-6),
        dict(initial_scale=1.0, bias_correction=True, centered=True, weight_decay=0.1,
             decoupled_weight_decay=True),
    ],
    "Adagrad": [
        {},
        dict(lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.1, maximize=True),
        dict(weight_decay=0.1, decoupled_weight_decay=True, initial_accumulator_value=0.2),
    ],
    "Adadelta": [
        {},
        dict(lr=0.5, rho=0.95, weight_decay=0.1, maximize=True),
        dict(weight_decay=0.1, decoupled_weight_decay=True),
    ],
    "Adam": [
        {},
        dict(amsgrad=True, weight_decay=0.1, maximize=True, betas=(0.8, 0.99)),
        dict(weight_decay=0.1, decoupled_weight_decay=True, lr=1e-2),
        dict(eps_root=1e-3, amsgrad=True),
    ],
    "AdamW": [{}, dict(amsgrad=True, weight_decay=0.05), dict(eps_root=1e-3)],
    "SGD": [
        {},
        dict(momentum=0.9, dampening=0.2),
        dict(momentum=0.9, nesterov=True, weight_decay=0.1, maximize=True),
        dict(weight_decay=0.1, decoupled_weight_decay=True, lr=0.05),
    ],
    "NAdam": [
        {},
        dict(weight_decay=0.1, momentum_decay=0.01, maximize=True),
        dict(weight_decay=0.1, decoupled_weight_decay=True, eps_root=1e-3, betas=(0.8, 0.99)),
    ],
    "RAdam": [
        {},
        dict(weight_decay=0.1, betas=(0.8, 0.99), maximize=True),
        dict(weight_decay=0.1, decoupled_weight_decay=True, eps_root=1e-3),
    ],
    "Adamax": [
        {},
        dict(weight_decay=0.1, betas=(0.8, 0.99), maximize=True),
        dict(weight_decay=0.1, decoupled_weight_decay=True),
    ],
}


# ================================================================ the functional forms


class Functional:
    """A rule's functional form as documented: the function's name, its state-list arguments
    (in order) with the state_dict key each holds, the per-parameter scalar arguments (float64
    arrays) likewise, keys the form fixes, and whether ``step`` is required for a configuration
    (the update depends on it)."""

    def __init__(self, fn, slots, scalars=None, fixed=None, needs_step=lambda h: True):
        self.fn, self.slots, self.scalars = fn, dict(slots), dict(scalars or {})
        self.fixed, self.needs_step = dict(fixed or {}), needs_step


_ADAM_SLOTS = {"exp_avgs": "exp_avg", "exp_avg_sqs": "exp_avg_sq", "max_exp_avg_sqs": "max_exp_avg_sq"}
FUNCTIONAL = {
    "RMSprop": Functional(
        "rmsprop_",
        {"square_avgs": "square_avg", "momentum_buffers": "momentum_buffer", "grad_avgs": "grad_avg"},
        needs_step=lambda h: bool(h.get("bias_correction", False)),
    ),
    "Adagrad": Functional("adagrad_", {"state_sums": "sum"}),
    "Adadelta": Functional("adadelta_", {"square_avgs": "square_avg", "acc_deltas": "acc_delta"},
                           needs_step=lambda h: False),
    "Adam": Functional("adam_", _ADAM_SLOTS),
    "AdamW": Functional("adam_", _ADAM_SLOTS, fixed={"decoupled_weight_decay": True}),
    "SGD": Functional("sgd_", {"momentum_buffers": "momentum_buffer"},
                      needs_step=lambda h: h.get("momentum", 0.0) != 0),
    "NAdam": Functional("nadam_", {"exp_avgs": "exp_avg", "exp_avg_sqs": "exp_avg_sq"},
                        scalars={"mu_products": "mu_product"}),
    "RAdam": Functional("radam_", {"exp_avgs": "exp_avg", "exp_avg_sqs": "exp_avg_sq"}),
    "Adamax": Functional("adamax_", {"exp_avgs": "exp_avg", "exp_infs": "exp_inf"}),
}

# A key given as a pair in the classes is two keywords in the functional forms.
PAIRS = {"betas": ("beta1", "beta2")}


# ================================================================ valid hyperparameters


def logu(lo, hi):
    """Log-uniform floats in [lo, hi]."""
    return st.floats(math.log10(lo), math.log10(hi)).map(lambda e: float(10.0**e))


def maybe_zero(s):
    return st.one_of(st.just(0.0), s)


BOOL = st.booleans()
WD = maybe_zero(st.floats(0.0, 0.5))
EPS_ROOT = maybe_zero(logu(1e-12, 1e-2))


def _betas(draw):
    return (draw(st.floats(0.0, 0.99)), draw(st.floats(0.0, 0.9999)))


@st.composite
def rmsprop_hyper(draw):
    centered = draw(BOOL)
    momentum = draw(maybe_zero(st.floats(0.0, 0.95)))
    bias_correction = draw(BOOL)
    return dict(
        lr=draw(maybe_zero(logu(1e-4, 0.1))),
        # A centered variance v - avg^2 with alpha near 0 is pure cancellation: the comparison
        # with a float64 reference would measure conditioning, not correctness.
        alpha=draw(st.floats(0.5 if centered else 0.0, 0.999)),
        eps=draw(logu(1e-8, 1e-2)),
        weight_decay=draw(WD),
        momentum=momentum,
        centered=centered,
        nesterov=momentum > 0 and draw(BOOL),
        eps_in_sqrt=draw(BOOL),
        maximize=draw(BOOL),
        decoupled_weight_decay=draw(BOOL),
        # Centered and bias-corrected, the first step's variance is exactly 0 (pure cancellation)
        # unless square_avg starts above 0.
        initial_scale=draw(st.floats(0.1, 1.0) if centered and bias_correction
                           else maybe_zero(st.floats(0.0, 1.0))),
        bias_correction=bias_correction,
    )


@st.composite
def adagrad_hyper(draw):
    return dict(
        lr=draw(maybe_zero(logu(1e-4, 1.0))),
        lr_decay=draw(maybe_zero(st.floats(0.0, 0.5))),
        weight_decay=draw(WD),
        initial_accumulator_value=draw(maybe_zero(st.floats(0.0, 1.0))),
        eps=draw(logu(1e-10, 1e-3)),
        maximize=draw(BOOL),
        decoupled_weight_decay=draw(BOOL),
    )


@st.composite
def adadelta_hyper(draw):
    return dict(
        lr=draw(maybe_zero(st.floats(0.01, 2.0))),
        rho=draw(st.floats(0.0, 0.99)),
        eps=draw(logu(1e-8, 1e-2)),
        weight_decay=draw(WD),
        maximize=draw(BOOL),
        decoupled_weight_decay=draw(BOOL),
    )


@st.composite
def adam_hyper(draw, decoupled_key=True):
    h = dict(
        lr=draw(maybe_zero(logu(1e-4, 0.1))),
        betas=_betas(draw),
        eps=draw(logu(1e-10, 1e-3)),
        weight_decay=draw(WD),
        amsgrad=draw(BOOL),
        maximize=draw(BOOL),
        eps_root=draw(EPS_ROOT),
    )
    if decoupled_key:
        h["decoupled_weight_decay"] = draw(BOOL)
    return h


@st.composite
def sgd_hyper(draw):
    momentum = draw(maybe_zero(st.floats(0.0, 0.95)))
    nesterov = momentum > 0 and draw(BOOL)
    return dict(
        lr=draw(maybe_zero(logu(1e-4, 0.5))),
        momentum=momentum,
        dampening=0.0 if nesterov else draw(maybe_zero(st.floats(0.0, 1.0))),
        weight_decay=draw(WD),
        nesterov=nesterov,
        maximize=draw(BOOL),
        decoupled_weight_decay=draw(BOOL),
    )


@st.composite
def nadam_hyper(draw):
    return dict(
        lr=draw(maybe_zero(logu(1e-4, 0.1))),
        betas=_betas(draw),
        eps=draw(logu(1e-10, 1e-3)),
        weight_decay=draw(WD),
        momentum_decay=draw(maybe_zero(logu(1e-4, 0.1))),
        decoupled_weight_decay=draw(BOOL),
        maximize=draw(BOOL),
        eps_root=draw(EPS_ROOT),
    )


@st.composite
def radam_hyper(draw):
    return dict(
        lr=draw(maybe_zero(logu(1e-4, 0.1))),
        betas=_betas(draw),  # beta2 < 0.6: rho_t never exceeds 5 (the plain branch only)
        eps=draw(logu(1e-10, 1e-3)),
        weight_decay=draw(WD),
        decoupled_weight_decay=draw(BOOL),
        maximize=draw(BOOL),
        eps_root=draw(EPS_ROOT),
    )


@st.composite
def adamax_hyper(draw):
    return dict(
        lr=draw(maybe_zero(logu(1e-4, 0.1))),
        betas=_betas(draw),
        eps=draw(logu(1e-10, 1e-3)),
        weight_decay=draw(WD),
        maximize=draw(BOOL),
        decoupled_weight_decay=draw(BOOL),
    )


HYPER = {
    "RMSprop": rmsprop_hyper(),
    "Adagrad": adagrad_hyper(),
    "Adadelta": adadelta_hyper(),
    "Adam": adam_hyper(),
    "AdamW": adam_hyper(decoupled_key=False),
    "SGD": sgd_hyper(),
    "NAdam": nadam_hyper(),
    "RAdam": radam_hyper(),
    "Adamax": adamax_hyper(),
}


# ================================================================ invalid hyperparameters


class Invalid:
    """The keys of a rule by the values they accept: ``nonneg`` reals >= 0, ``unit`` reals in
    [0, 1), ``closed_unit`` reals in [0, 1], ``flags`` booleans, ``pairs`` pairs of unit reals;
    ``cross`` names the combinations of valid values that are refused together."""

    def __init__(self, nonneg, unit=(), closed_unit=(), flags=(), pairs=(), cross=()):
        self.nonneg, self.unit, self.closed_unit = list(nonneg), list(unit), list(closed_unit)
        self.flags, self.pairs, self.cross = list(flags), list(pairs), list(cross)

    def keys(self):
        return {*self.nonneg, *self.unit, *self.closed_unit, *self.flags, *self.pairs}


INVALID = {
    "RMSprop": Invalid(["lr", "eps", "weight_decay", "momentum", "initial_scale"], unit=["alpha"],
                       flags=["centered", "nesterov", "eps_in_sqrt", "maximize",
                              "decoupled_weight_decay", "bias_correction"],
                       cross=["nesterov_without_momentum"]),
    "Adagrad": Invalid(["lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"],
                       flags=["maximize", "decoupled_weight_decay"]),
    "Adadelta": Invalid(["lr", "eps", "weight_decay"], unit=["rho"],
                        flags=["maximize", "decoupled_weight_decay"]),
    "Adam": Invalid(["lr", "eps", "weight_decay", "eps_root"], pairs=["betas"],
                    flags=["amsgrad", "maximize", "decoupled_weight_decay"]),
    "AdamW": Invalid(["lr", "eps", "weight_decay", "eps_root"], pairs=["betas"],
                     flags=["amsgrad", "maximize"]),
    "SGD": Invalid(["lr", "momentum", "weight_decay"], closed_unit=["dampening"],
                   flags=["nesterov", "maximize", "decoupled_weight_decay"],
                   cross=["nesterov_without_momentum", "nesterov_with_dampening"]),
    "NAdam": Invalid(["lr", "eps", "weight_decay", "momentum_decay", "eps_root"], pairs=["betas"],
                     flags=["decoupled_weight_decay", "maximize"]),
    "RAdam": Invalid(["lr", "eps", "weight_decay", "eps_root"], pairs=["betas"],
                     flags=["decoupled_weight_decay", "maximize"]),
    "Adamax": Invalid(["lr", "eps", "weight_decay"], pairs=["betas"],
                      flags=["maximize", "decoupled_weight_decay"]),
}

# torch's description of each key in its ValueError ("Invalid learning rate: -1.0"); for
# adaptopt's own keys, the same pattern.
TORCH_DESC = {
    "lr": "learning rate",
    "eps": "epsilon value",
    "weight_decay": "weight_decay value",
    "momentum": "momentum value",
    "alpha": "alpha value",
    "rho": "rho value",
    "lr_decay": "lr_decay value",
    "initial_accumulator_value": "initial_accumulator_value value",
    "momentum_decay": "momentum_decay value",
    "betas[0]": "beta parameter at index 0",
    "betas[1]": "beta parameter at index 1",
    "dampening": "dampening value",
    "eps_root": "eps_root value",
    "initial_scale": "initial_scale value",
}

WRONG_TYPE = st.sampled_from(
    ["0.1", None, [0.1], (0.1,), complex(0.1, 0), b"1", {"lr": 0.1}, np.array([0.1]), True, False]
)
NEGATIVE = st.one_of(
    st.floats(max_value=-1e-300, allow_nan=False),  # includes -inf
    st.sampled_from([-1, -1.0, np.float32(-0.5), np.float64(-1e-9), -(10**30)]),
)
NAN = st.sampled_from([math.nan, -math.nan, np.float32("nan"), np.float64("nan")])
AT_LEAST_ONE = st.one_of(st.floats(min_value=1.0), st.sampled_from([1, 2, 10**30, np.float32(1.0)]))
ABOVE_ONE = st.one_of(st.floats(min_value=1.0, exclude_min=True),
                      st.sampled_from([2, 10**30, np.float32(1.5)]))
BAD_FLAG = st.sampled_from(["yes", None, 1.5, [True], b"", np.float64(1.0)])
BAD_PAIR = st.sampled_from([(0.9,), (0.9, 0.99, 0.999), "ab", 0.9, None, [], 7])


@st.composite
def invalid_hyper(draw, name):
    """(hyperparameters to merge into a valid configuration, the key they break)."""
    inv = INVALID[name]
    pair_items = [f"{p}{i}" for p in inv.pairs for i in (0, 1)]
    key = draw(st.sampled_from(sorted(inv.keys()) + pair_items + inv.cross))
    if key == "nesterov_without_momentum":
        return dict(nesterov=True, momentum=draw(st.sampled_from([0, 0.0, -0.0]))), key
    if key == "nesterov_with_dampening":
        return dict(nesterov=True, momentum=0.9, dampening=draw(st.floats(1e-3, 1.0))), key
    if key in inv.pairs:
        return {key: draw(BAD_PAIR)}, key
    if key in inv.flags:
        return {key: draw(BAD_FLAG)}, key
    if key in inv.nonneg:
        value = draw(st.one_of(NEGATIVE, NAN, WRONG_TYPE))
    elif key in inv.closed_unit:
        value = draw(st.one_of(NEGATIVE, NAN, ABOVE_ONE, WRONG_TYPE))
    else:  # unit, or one element of a pair
        value = draw(st.one_of(NEGATIVE, NAN, AT_LEAST_ONE, WRONG_TYPE))
    if key in pair_items:
        pair = [0.9, 0.999]
        pair[int(key[-1])] = value
        return {key[:-1]: tuple(pair)}, key
    return {key: value}, key


# Every per-rule table, for tests/test_support.py.
PER_RULE = {
    "RICH": RICH, "OPTIONS": OPTIONS, "GROUPS": GROUPS, "STATE_CONFIGS": STATE_CONFIGS,
    "CHECKPOINT": CHECKPOINT, "SPARSE": SPARSE, "STATS": STATS,
    "FUNCTIONAL_CONFIGS": FUNCTIONAL_CONFIGS, "FUNCTIONAL": FUNCTIONAL, "HYPER": HYPER,
    "INVALID": INVALID,
}
