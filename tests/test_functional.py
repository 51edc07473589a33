"""adaptopt.functional: the same kernels as the classes, on caller-owned state arrays."""

import adaptopt
import adaptopt.functional as F
import numpy as np
import pytest
from _util import (
    assert_bitwise_equal,
    assert_unchanged,
    config_id,
    expected_state_keys,
    optimizer_class,
    place,
    random_arrays,
    random_grads,
    snapshot,
)

# functional list argument -> state_dict key, in the order the functions take them.
STATE_ARGS = {
    "RMSprop": {
        "square_avgs": "square_avg",
        "momentum_buffers": "momentum_buffer",
        "grad_avgs": "grad_avg",
    },
    "Adagrad": {"state_sums": "sum"},
    "Adadelta": {"square_avgs": "square_avg", "acc_deltas": "acc_delta"},
    "Adam": {
        "exp_avgs": "exp_avg",
        "exp_avg_sqs": "exp_avg_sq",
        "max_exp_avg_sqs": "max_exp_avg_sq",
    },
}
STATE_ARGS["AdamW"] = STATE_ARGS["Adam"]

CONFIGS = [
    ("RMSprop", {}),
    ("RMSprop", dict(momentum=0.9, centered=True, nesterov=True, weight_decay=0.1, maximize=True)),
    ("RMSprop", dict(centered=True, eps_in_sqrt=True, alpha=0.9, lr=3e-3)),
    ("RMSprop", dict(momentum=0.5, eps_in_sqrt=True, eps=1e-6)),
    ("Adagrad", {}),
    (
        "Adagrad",
        dict(lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.1, maximize=True),
    ),
    ("Adadelta", {}),
    ("Adadelta", dict(lr=0.5, rho=0.95, weight_decay=0.1, maximize=True)),
    ("Adam", {}),
    ("Adam", dict(amsgrad=True, weight_decay=0.1, maximize=True, betas=(0.8, 0.99))),
    ("Adam", dict(weight_decay=0.1, decoupled_weight_decay=True, lr=1e-2)),
    ("AdamW", {}),
    ("AdamW", dict(amsgrad=True, weight_decay=0.05)),
]


def new_state(name, hyper, params):
    """Fresh state lists, keyed by state_dict key, as the class would create them."""
    fill = hyper.get("initial_accumulator_value", 0.0) if name == "Adagrad" else 0.0
    return {
        key: [np.full_like(p, fill) for p in params]
        for key in expected_state_keys(name, hyper) - {"step"}
    }


def functional_step(name, params, grads, state, hyper, step):
    """One adaptopt.functional call equivalent to one optimizer step (``step`` is 1-based)."""
    hyper = dict(hyper)
    lists = [state.get(key) for key in STATE_ARGS[name].values()]
    if name == "RMSprop":
        F.rmsprop_(params, grads, *lists, **hyper)
    elif name == "Adagrad":
        hyper.pop("initial_accumulator_value", None)
        F.adagrad_(params, grads, *lists, step=step, **hyper)
    elif name == "Adadelta":
        F.adadelta_(params, grads, *lists, **hyper)
    else:
        if name == "AdamW":
            hyper.setdefault("weight_decay", 1e-2)
            hyper["decoupled_weight_decay"] = True
        beta1, beta2 = hyper.pop("betas", (0.9, 0.999))
        F.adam_(params, grads, *lists, step=step, beta1=beta1, beta2=beta2, **hyper)


def _params(rng):
    return [
        *random_arrays(rng, [(5,), (3, 7), ()], np.float32),
        *random_arrays(rng, [(33,), (0,)], np.float64),
    ]


@pytest.mark.parametrize(("name", "hyper"), CONFIGS, ids=[config_id(n, h) for n, h in CONFIGS])
@pytest.mark.parametrize("misaligned", [False, True], ids=["aligned", "misaligned"])
def test_matches_class_bit_for_bit(name, hyper, misaligned, isa):
    """Same results as the class; with ``misaligned``, the functional side's params, grads and
    state start one element past a 64-byte boundary (the class's are aligned)."""
    rng = np.random.default_rng(0)
    class_params = _params(rng)
    fn_params = [place(p, misaligned) for p in class_params]
    opt = optimizer_class(name)(class_params, **hyper)
    state = {
        k: [place(a, misaligned) for a in v] for k, v in new_state(name, hyper, fn_params).items()
    }
    for step in range(1, 21):
        grads = random_grads(rng, class_params)
        opt.step(grads)
        functional_step(name, fn_params, [place(g, misaligned) for g in grads], state, hyper, step)
    assert_bitwise_equal(fn_params, class_params, "params")
    class_state = opt.state_dict()["state"]
    for key, arrays in state.items():
        for i, array in enumerate(arrays):
            assert_bitwise_equal(array, class_state[i][key], f"state[{i}][{key!r}]")


@pytest.mark.parametrize("name", ["RMSprop", "Adagrad", "Adadelta", "Adam"])
def test_defaults_match_class_defaults(name):
    """Called with no hyperparameters, the functions use the documented (= class) defaults."""
    rng = np.random.default_rng(1)
    class_params = _params(rng)
    fn_params = [p.copy() for p in class_params]
    opt = optimizer_class(name)(class_params)
    state = new_state(name, {}, fn_params)
    for step in (1, 2):
        grads = random_grads(rng, class_params)
        opt.step(grads)
        functional_step(name, fn_params, grads, state, {}, step)
    assert_bitwise_equal(fn_params, class_params, "params")


# (optimizer, hyper, functional argument, index, corruption)
ERROR_CASES = [
    ("RMSprop", {}, "square_avgs", 0, "dtype"),
    ("RMSprop", {}, "square_avgs", 1, "shape"),
    ("RMSprop", {}, "square_avgs", None, "length"),
    ("RMSprop", dict(momentum=0.9), "momentum_buffers", 1, "shape"),
    ("RMSprop", dict(centered=True), "grad_avgs", 0, "dtype"),
    ("Adagrad", {}, "state_sums", 0, "dtype"),
    ("Adagrad", {}, "state_sums", 1, "shape"),
    ("Adadelta", {}, "acc_deltas", 1, "shape"),
    ("Adadelta", {}, "square_avgs", 0, "dtype"),
    ("Adam", {}, "exp_avg_sqs", 1, "dtype"),
    ("Adam", {}, "exp_avgs", 0, "shape"),
    ("Adam", dict(amsgrad=True), "max_exp_avg_sqs", 0, "shape"),
    ("Adam", dict(amsgrad=True), "max_exp_avg_sqs", None, "length"),
]


def _corrupt(arrays, index, kind):
    if kind == "length":
        arrays.pop()
        return
    a = arrays[index]
    if kind == "dtype":
        arrays[index] = a.astype(np.float64 if a.dtype == np.float32 else np.float32)
    else:
        arrays[index] = np.zeros(a.shape[::-1] if a.ndim > 1 else (a.size + 1,), a.dtype)


@pytest.mark.parametrize(
    ("name", "hyper", "arg", "index", "kind"),
    ERROR_CASES,
    ids=[f"{n}-{a}[{i}]-{k}" for n, _, a, i, k in ERROR_CASES],
)
def test_bad_state_array(name, hyper, arg, index, kind):
    rng = np.random.default_rng(2)
    params = [*random_arrays(rng, [(6,)], np.float32), *random_arrays(rng, [(2, 3)], np.float64)]
    grads = random_grads(rng, params)
    state = new_state(name, hyper, params)
    _corrupt(state[STATE_ARGS[name][arg]], index, kind)
    buffers = [*params, *grads, *(a for arrays in state.values() for a in arrays)]
    before = snapshot(arrays=buffers)
    pattern = rf"{arg}\[{index}\]" if index is not None else rf"{arg}"
    with pytest.raises((ValueError, TypeError), match=pattern):
        functional_step(name, params, grads, state, hyper, 1)
    assert_unchanged(before, arrays=buffers)


def test_functional_module_is_exported():
    assert adaptopt.functional is F
    for fn in ("rmsprop_", "adagrad_", "adadelta_", "adam_"):
        assert callable(getattr(F, fn))
