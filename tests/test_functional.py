"""adaptopt.functional: the same kernels as the classes, on caller-owned state arrays, for every
rule of the registry (AdamW through adam_ with decoupled weight decay)."""

import adaptopt
import adaptopt.functional as F
import numpy as np
import pytest
from support.arrays import place, random_arrays, random_grads
from support.compare import assert_bitwise_equal, assert_unchanged, snapshot
from support.configs import FUNCTIONAL, FUNCTIONAL_CONFIGS
from support.functional import functional_step, new_state
from support.rules import NAMES, SPEC, config_id, optimizer_class

CONFIGS = [(name, hyper) for name in NAMES for hyper in FUNCTIONAL_CONFIGS[name]]


def _params(rng):
    return [
        *random_arrays(rng, [(5,), (3, 7), ()], np.float32),
        *random_arrays(rng, [(33,), (0,)], np.float64),
    ]


@pytest.mark.parametrize(("name", "hyper"), CONFIGS, ids=[config_id(n, h) for n, h in CONFIGS])
@pytest.mark.parametrize("misaligned", [False, True], ids=["aligned", "misaligned"])
def test_matches_class_bit_for_bit(name, hyper, misaligned, isa):
    """Same results as the class; with ``misaligned``, the functional side's params, grads and
    state start one element past a 64-byte boundary (the class's are aligned). Per-parameter
    scalars (NAdam's mu_products) are equal to the class's state too."""
    rng = np.random.default_rng(0)
    class_params = _params(rng)
    fn_params = [place(p, misaligned) for p in class_params]
    opt = optimizer_class(name)(class_params, **hyper)
    state = {
        k: [place(a, misaligned) for a in v] if isinstance(v, list) else v
        for k, v in new_state(name, hyper, fn_params).items()
    }
    for step in range(1, 21):
        grads = random_grads(rng, class_params)
        opt.step(grads)
        functional_step(name, fn_params, [place(g, misaligned) for g in grads], state, hyper, step)
    assert_bitwise_equal(fn_params, class_params, "params")
    class_state = opt.state_dict()["state"]
    assert set(state) | {"step"} == set(class_state[0]), "the functional form keeps other state"
    for key, arrays in state.items():
        for i, value in enumerate(arrays):
            want = class_state[i][key]
            if isinstance(want, float):
                assert value == want, f"{key}[{i}]: {value!r} vs {want!r}"
            else:
                assert_bitwise_equal(value, want, f"state[{i}][{key!r}]")


@pytest.mark.parametrize("name", [n for n in NAMES if SPEC[n].functional])
def test_defaults_match_class_defaults(name):
    """Called with no hyperparameters, the functions use the documented (= class) defaults."""
    rng = np.random.default_rng(1)
    class_params = _params(rng)
    fn_params = [p.copy() for p in class_params]
    opt = optimizer_class(name)(class_params)
    state = new_state(name, {}, fn_params)
    spec = FUNCTIONAL[name]
    for step in (1, 2):
        grads = random_grads(rng, class_params)
        opt.step(grads)
        lists = [state.get(k) for k in spec.slots.values()] + [state[k] for k in spec.scalars.values()]
        getattr(F, spec.fn)(fn_params, grads, *lists, step=step)
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
    ("SGD", dict(momentum=0.9), "momentum_buffers", 0, "dtype"),
    ("SGD", dict(momentum=0.9), "momentum_buffers", 1, "shape"),
    ("SGD", dict(momentum=0.9), "momentum_buffers", None, "length"),
    ("NAdam", {}, "exp_avgs", 1, "dtype"),
    ("NAdam", {}, "exp_avg_sqs", 0, "shape"),
    ("NAdam", {}, "mu_products", None, "scalar_dtype"),
    ("NAdam", {}, "mu_products", None, "scalar_length"),
    ("RAdam", {}, "exp_avg_sqs", 1, "shape"),
    ("RAdam", {}, "exp_avgs", None, "length"),
    ("Adamax", {}, "exp_infs", 0, "dtype"),
    ("Adamax", {}, "exp_avgs", 1, "shape"),
]


def _corrupt(state, key, index, kind):
    if kind == "scalar_dtype":
        state[key] = state[key].astype(np.float32)
        return
    if kind == "scalar_length":
        state[key] = state[key][:-1]
        return
    arrays = state[key]
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
    spec = FUNCTIONAL[name]
    _corrupt(state, {**spec.slots, **spec.scalars}[arg], index, kind)
    buffers = [*params, *grads]
    for v in state.values():
        buffers += v if isinstance(v, list) else [v]
    before = snapshot(arrays=buffers)
    pattern = rf"{arg}\[{index}\]" if index is not None else rf"{arg}"
    with pytest.raises((ValueError, TypeError), match=pattern):
        functional_step(name, params, grads, state, hyper, 1)
    assert_unchanged(before, arrays=buffers)


def test_functional_module_is_exported():
    assert adaptopt.functional is F
    names = ("rmsprop_", "adagrad_", "adadelta_", "adam_", "sgd_", "nadam_", "radam_", "adamax_")
    for fn in names:
        assert callable(getattr(F, fn))
    assert set(F.__all__) == set(names)


@pytest.mark.parametrize("step", [1, 2])
def test_sgd_momentum_buffer_is_new_at_step_1(step):
    """sgd_ at step 1 starts the momentum buffer as a copy of the gradient (whatever the array
    held), as the class does for a new buffer; later steps use the array's contents."""
    p, g = [np.zeros(5)], [np.linspace(-1, 1, 5)]
    buf = [np.full(5, 7.0)]
    F.sgd_(p, g, buf, step=step, momentum=0.9, dampening=0.5, lr=0.1)
    want = g[0] if step == 1 else 0.9 * 7.0 + 0.5 * g[0]
    np.testing.assert_array_equal(buf[0], want)


SCALAR_RULES = [n for n in NAMES if FUNCTIONAL[n].scalars]


@pytest.mark.parametrize("target", ["param", "grad", "state"])
@pytest.mark.parametrize("name", SCALAR_RULES)
def test_per_parameter_scalars_may_not_alias_another_array(name, target):
    rng = np.random.default_rng(3)
    params = random_arrays(rng, [(6,)], np.float64)
    grads = random_grads(rng, params)
    state = new_state(name, {}, params)
    spec = FUNCTIONAL[name]
    key = next(iter(spec.scalars.values()))
    first_slot = state[next(iter(spec.slots.values()))]
    source = {"param": params[0], "grad": grads[0], "state": first_slot[0]}[target]
    state[key] = source[:1]  # float64, shape (1,), writeable: a valid array on its own
    arrays = [*params, *grads, *(a for v in state.values() for a in (v if isinstance(v, list) else [v]))]
    before = snapshot(arrays=arrays)
    with pytest.raises(ValueError, match=next(iter(spec.scalars))):
        functional_step(name, params, grads, state, {}, 1)
    assert_unchanged(before, arrays=arrays)
