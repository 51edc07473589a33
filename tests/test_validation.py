"""Bad inputs: each raises the documented exception naming the argument, and writes nothing."""

import copy
import inspect
import math

import numpy as np
import pytest
from support.arrays import random_arrays, random_grads
from support.compare import assert_bitwise_equal, assert_unchanged, snapshot
from support.configs import INVALID, RICH, TORCH_DESC
from support.pair import Pair
from support.rules import NAMES, by_name, optimizer_class

NAN = math.nan


def _buffers(*objs):
    """What to snapshot: the whole underlying buffer of a view, not only the view."""
    out = []
    for obj in objs:
        if isinstance(obj, np.ndarray) and obj.base is not None:
            obj = obj.base
        out.append(obj)
    return out


def _read_only():
    a = np.arange(6, dtype=np.float32)
    a.flags.writeable = False
    return a


# ---------------------------------------------------------------- bad params

PARAM_CASES = {
    **{
        f"dtype-{np.dtype(dt).name}": (
            lambda dt=dt: np.ones(6, dt),
            TypeError,
            r"params\[0\].*dtype",
        )
        for dt in (np.uint16, np.int32, np.int64, np.complex64, np.bool_)
    },
    "non_contiguous": (lambda: np.arange(12.0)[::2], ValueError, r"params\[0\].*contiguous"),
    "negative_stride": (lambda: np.arange(6.0)[::-1], ValueError, r"params\[0\].*contiguous"),
    "fortran_order": (
        lambda: np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        ValueError,
        r"params\[0\].*contiguous",
    ),
    "read_only": (_read_only, ValueError, r"params\[0\].*(read-only|writeable)"),
    "python_list": (lambda: [1.0, 2.0, 3.0], TypeError, r"params\[0\]"),
}


@by_name
@pytest.mark.parametrize("case", list(PARAM_CASES))
def test_bad_param(name, case):
    build, exc, pattern = PARAM_CASES[case]
    bad = build()
    good = np.arange(6, dtype=np.float32).reshape(2, 3)
    bad_grad = np.ones(np.shape(bad), bad.dtype if isinstance(bad, np.ndarray) else np.float64)
    grads = [bad_grad, np.ones((2, 3), np.float32)]
    buffers = _buffers(bad, good, *grads)
    before = snapshot(arrays=buffers)
    with pytest.raises(exc, match=pattern):
        # Whether the check happens at construction or at the step, nothing may be written.
        optimizer_class(name)([bad, good], **RICH[name]).step(grads)
    assert_unchanged(before, arrays=buffers)


# ---------------------------------------------------------------- bad grads

GRAD_CASES = {
    "shape_transposed": (
        np.float32,
        lambda: np.ones((3, 2), np.float32),
        ValueError,
        r"grads\[1\].*shape",
    ),
    "shape_other_size": (
        np.float32,
        lambda: np.ones(7, np.float32),
        ValueError,
        r"grads\[1\].*shape",
    ),
    "dtype_f64_for_f32": (
        np.float32,
        lambda: np.ones((2, 3), np.float64),
        TypeError,
        r"grads\[1\].*dtype",
    ),
    "dtype_f32_for_f64": (
        np.float64,
        lambda: np.ones((2, 3), np.float32),
        TypeError,
        r"grads\[1\].*dtype",
    ),
    "dtype_int": (np.float32, lambda: np.ones((2, 3), np.int32), TypeError, r"grads\[1\].*dtype"),
    "non_contiguous": (
        np.float32,
        lambda: np.ones((2, 6), np.float32)[:, ::2],
        ValueError,
        r"grads\[1\].*contiguous",
    ),
}


def _two_group_optimizer(name, dtype1, hyper):
    """params[0] (float64, (5,)) in group 0 and params[1] ((2, 3)) in group 1, one step done."""
    rng = np.random.default_rng(0)
    p0 = random_arrays(rng, [(5,)], np.float64)[0]
    p1 = random_arrays(rng, [(2, 3)], dtype1)[0]
    opt = optimizer_class(name)([{"params": [p0]}, {"params": [p1], "lr": 0.02}], **hyper)
    opt.step(random_grads(rng, [p0, p1]))
    return opt, [p0, p1], random_grads(rng, [p0, p1])


@by_name
@pytest.mark.parametrize("case", list(GRAD_CASES))
def test_bad_grad(name, case):
    """A bad grad for the second group's param leaves the first group untouched too."""
    dtype1, build, exc, pattern = GRAD_CASES[case]
    opt, params, grads = _two_group_optimizer(name, dtype1, RICH[name])
    grads[1] = build()
    buffers = _buffers(*params, *grads)
    before = snapshot(opt, buffers)
    with pytest.raises(exc, match=pattern):
        opt.step(grads)
    assert_unchanged(before, opt, buffers)


@by_name
@pytest.mark.parametrize("count", [0, 1, 3])
def test_wrong_number_of_grads(name, count):
    opt, params, grads = _two_group_optimizer(name, np.float32, RICH[name])
    grads = (grads + [np.ones(2)])[:count]
    before = snapshot(opt, params)
    with pytest.raises(ValueError, match=r"grads.*expected 2.*got"):
        opt.step(grads)
    assert_unchanged(before, opt, params)


# ---------------------------------------------------------------- overlap, empty, zero-size


def _overlap_case(case):
    b = np.arange(20.0)
    return {
        "same_array": [b, b],
        "overlapping_views": [b[0:10], b[5:15]],
        "view_of_reshaped": [b.reshape(4, 5), b[15:17]],
        "same_array_two_groups": [{"params": [b]}, {"params": [b], "lr": 0.5}],
        "view_in_other_group": [{"params": [b[:4]]}, {"params": [b[3:8]]}],
    }[case], b


@by_name
@pytest.mark.parametrize(
    "case",
    [
        "same_array",
        "overlapping_views",
        "view_of_reshaped",
        "same_array_two_groups",
        "view_in_other_group",
    ],
)
def test_overlapping_params_rejected(name, case):
    params, buffer = _overlap_case(case)
    before = snapshot(arrays=[buffer])
    with pytest.raises(ValueError, match=r"overlap"):
        optimizer_class(name)(params)
    assert_unchanged(before, arrays=[buffer])


@by_name
def test_adjacent_views_are_not_overlapping(name, isa):
    buffer = np.random.default_rng(1).standard_normal(20)
    pair = Pair(name, [buffer[0:10], buffer[10:20]], **RICH[name])
    rng = np.random.default_rng(2)
    for _ in range(10):
        pair.random_step(rng)
    pair.check()


@by_name
def test_empty_param_list(name):
    with pytest.raises(ValueError, match=r"empty"):
        optimizer_class(name)([])


@by_name
def test_zero_size_params_are_a_no_op(name, isa):
    params = [
        np.empty(0, np.float32),
        np.empty((3, 0), np.float64),
        np.empty((0, 2, 2), np.float32),
    ]
    opt = optimizer_class(name)(params, **RICH[name])
    for _ in range(2):
        opt.step([np.empty_like(p) for p in params])
    for i, p in enumerate(params):
        for value in opt.state_dict()["state"].get(i, {}).values():
            if isinstance(value, np.ndarray):
                assert value.shape == p.shape


# ---------------------------------------------------------------- None grads


@by_name
@pytest.mark.parametrize("when", ["first_step", "later_step"])
def test_none_grad_skips_parameter(name, when, isa):
    """As in torch: a skipped param, its state and its step count do not change."""
    rng = np.random.default_rng(3)
    params = [*random_arrays(rng, [(9,)], np.float64), *random_arrays(rng, [(4,)], np.float32)]
    pair = Pair(name, params, **RICH[name])
    if when == "later_step":
        pair.random_step(rng)
    grads = random_grads(rng, params)
    grads[1] = None
    before = snapshot(arrays=[params[1]])
    state_before = copy.deepcopy(pair.opt.state_dict()["state"].get(1))
    pair.step(grads)
    assert_unchanged(before, arrays=[params[1]])
    state = pair.opt.state_dict()["state"]
    if state_before is not None:
        assert_bitwise_equal(state[1], state_before, "state[1]")
    else:
        assert state.get(1, {}).get("step", 0) == 0
    assert state[0]["step"] == pair.ref.state[0]["step"]
    for _ in range(5):  # the step counts (Adam's bias correction, Adagrad's lr decay) now differ
        pair.random_step(rng)
    pair.check()


@by_name
def test_all_none_grads_change_nothing(name):
    rng = np.random.default_rng(4)
    params = random_arrays(rng, [(9,), (2, 2)], np.float32)
    opt = optimizer_class(name)(params, **RICH[name])
    opt.step(random_grads(rng, params))
    before = snapshot(opt, params)
    opt.step([None, None])
    assert_unchanged(before, opt, params)


# ---------------------------------------------------------------- hyperparameters


def _desc(key):
    return TORCH_DESC[key].replace("[", r"\[").replace("]", r"\]")


def _hyper_cases():
    """(optimizer, hyperparameters, message pattern, torch's wording): every real-valued key of
    every rule, negative and NaN, and outside its range. The message names the key
    (``<key>=``) in torch's words (``Invalid <what>: <key>=``)."""
    neg_nan = (-1.0, -0.1, NAN)
    unit = (-0.1, 1.0, 1.5, NAN)  # outside [0, 1)
    closed_unit = (-0.1, 1.5, NAN)  # outside [0, 1]
    cases = []
    for name in NAMES:
        inv = INVALID[name]
        keys = {**{k: neg_nan for k in inv.nonneg}, **{k: unit for k in inv.unit},
                **{k: closed_unit for k in inv.closed_unit}}
        for key, values in keys.items():
            cases += [(name, {key: v}, rf"{key}=", rf"Invalid {_desc(key)}: {key}=") for v in values]
        for pair in inv.pairs:
            for i in (0, 1):
                item = rf"{pair}\[{i}\]"
                cases += [(name, {pair: (v, 0.999) if i == 0 else (0.9, v)}, r"betas",
                           rf"Invalid {_desc(f'{pair}[{i}]')}: {item}=") for v in unit]
    for name, hyper in [("RMSprop", {"nesterov": True, "momentum": 0.0}),
                        ("SGD", {"nesterov": True, "momentum": 0.0}),
                        ("SGD", {"nesterov": True, "momentum": 0.9, "dampening": 0.1})]:
        cases.append((name, hyper, r"nesterov", r"Invalid nesterov"))
    return cases


HYPER_CASES = _hyper_cases()
HYPER_IDS = [f"{n}-" + ",".join(f"{k}={v}" for k, v in h.items()) for n, h, _, _ in HYPER_CASES]
HYPER_PARAMS = [c[:3] for c in HYPER_CASES]


@pytest.mark.parametrize(("name", "hyper", "pattern"), HYPER_PARAMS, ids=HYPER_IDS)
def test_invalid_hyperparameter_at_construction(name, hyper, pattern):
    p = np.ones(5, np.float32)
    with pytest.raises(ValueError, match=pattern):
        optimizer_class(name)([p], **hyper)
    assert_bitwise_equal(p, np.ones(5, np.float32))


# Values only read when a buffer is created (initial_accumulator_value, initial_scale) are
# validated at step() like the others.
@pytest.mark.parametrize(("name", "hyper", "pattern"), HYPER_PARAMS, ids=HYPER_IDS)
@pytest.mark.parametrize("group", [0, 1])
def test_invalid_hyperparameter_set_later(name, hyper, pattern, group):
    """Validated again at step(): raises before any group is updated."""
    opt, params, grads = _two_group_optimizer(name, np.float32, {})
    for key, value in hyper.items():
        opt.param_groups[group][key] = value
    before = snapshot(opt, [*params, *grads])
    with pytest.raises(ValueError, match=pattern):
        opt.step(grads)
    assert_unchanged(before, opt, [*params, *grads])


WORDING = [pytest.param(n, h, w, id=i) for (n, h, _, w), i in zip(HYPER_CASES, HYPER_IDS)]


@pytest.mark.parametrize(("name", "hyper", "pattern"), WORDING)
def test_messages_use_torchs_wording(name, hyper, pattern):
    """torch's ``Invalid learning rate: ...``, with adaptopt's ``key=value`` after it."""
    with pytest.raises(ValueError, match=pattern):
        optimizer_class(name)([np.ones(5, np.float32)], **hyper)


@by_name
def test_constructor_positional_order_is_torchs(name):
    """The positional arguments of the class follow torch.optim's constructor (the keys torch
    has, in its order, before adaptopt's own), so a positional call ports unchanged."""
    torch = pytest.importorskip("torch")
    ours = [p.name for p in inspect.signature(optimizer_class(name)).parameters.values()
            if p.kind is p.POSITIONAL_OR_KEYWORD]
    theirs = [p.name for p in inspect.signature(getattr(torch.optim, name)).parameters.values()
              if p.kind is p.POSITIONAL_OR_KEYWORD]
    theirs = [k for k in theirs if k in ours or k == "params"]
    assert ours[: len(theirs)] == theirs


@by_name
def test_unknown_keyword_is_a_type_error(name):
    with pytest.raises(TypeError, match="unexpected keyword"):
        optimizer_class(name)([np.ones(3)], not_an_option=1.0)
