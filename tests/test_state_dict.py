"""state_dict layout, checkpoint round trips and load_state_dict validation, for every rule."""

import copy

import numpy as np
import pytest
from reference import RefOptimizer, defaults_of, state_keys
from support.arrays import clone_groups, random_arrays, random_grads
from support.compare import assert_bitwise_equal, assert_close, assert_unchanged, snapshot
from support.configs import RICH, STATE_CONFIGS
from support.rules import NAMES, SPEC, by_name, config_id, optimizer_class

# The hyperparameters each optimizer's param groups must carry (PyTorch's names + extensions).
GROUP_KEYS = {name: set(defaults_of(name)) for name in NAMES}

STATE_CASES = [(name, hyper) for name in NAMES for hyper in STATE_CONFIGS[name]]
# Rules with a per-parameter scalar in their state (NAdam's mu_product).
WITH_SCALARS = [name for name in NAMES if SPEC[name].state_names]


def expected_state_keys(name, hyper):
    """The per-parameter state keys adaptopt must expose (the reference's, = PyTorch's names)."""
    return state_keys(name, **hyper)


def make_groups(rng):
    """Two groups, mixed shapes (incl. 0-d) and dtypes."""
    return [
        {
            "params": [
                *random_arrays(rng, [(5,), (2, 3)], np.float32),
                *random_arrays(rng, [()], np.float64),
            ]
        },
        {"params": random_arrays(rng, [(17,), (3, 1, 4)], np.float64), "lr": 0.003},
    ]


def _plain(value):
    return (
        value is None
        or isinstance(value, (bool, int, float, str))
        or (isinstance(value, (tuple, list)) and all(_plain(v) for v in value))
    )


@pytest.mark.parametrize(
    ("name", "hyper"), STATE_CASES, ids=[config_id(n, h) for n, h in STATE_CASES]
)
def test_layout(name, hyper):
    rng = np.random.default_rng(0)
    groups = make_groups(rng)
    params = [p for g in groups for p in g["params"]]
    opt = optimizer_class(name)(groups, **hyper)
    opt.step(random_grads(rng, params))
    opt.step(random_grads(rng, params))
    sd = opt.state_dict()

    # torch's two keys, plus adaptopt's optimizer-wide counters (torch ignores extra keys)
    assert set(sd) == {"state", "param_groups", "adaptopt"}
    assert sd["adaptopt"] == {"step_count": 2, "skipped_steps": 0}
    assert isinstance(sd["param_groups"], list) and len(sd["param_groups"]) == 2
    assert sd["param_groups"][0]["params"] == [0, 1, 2]
    assert sd["param_groups"][1]["params"] == [3, 4]
    wanted = {**defaults_of(name), **hyper}
    for gi, group in enumerate(sd["param_groups"]):
        assert GROUP_KEYS[name] <= set(group), f"group {gi} lacks {GROUP_KEYS[name] - set(group)}"
        for key, value in group.items():
            assert _plain(value), f"group {gi}[{key!r}] = {value!r} is not a plain Python value"
        expected = {**wanted, "lr": 0.003} if gi == 1 else wanted
        for key in GROUP_KEYS[name]:
            got = tuple(group[key]) if key == "betas" else group[key]
            assert got == expected[key], (
                f"group {gi}[{key!r}] = {got!r}, expected {expected[key]!r}"
            )

    assert set(sd["state"]) == set(range(len(params)))
    for i, p in enumerate(params):
        state = sd["state"][i]
        assert set(state) == expected_state_keys(name, hyper), f"state[{i}]"
        assert type(state["step"]) is int and state["step"] == 2
        for key, value in state.items():
            if key in SPEC[name].state_names:  # a per-parameter scalar: a Python float
                assert type(value) is float, f"state[{i}][{key!r}] is {type(value)}"
            elif key != "step":
                assert isinstance(value, np.ndarray), f"state[{i}][{key!r}] is {type(value)}"
                assert value.dtype == p.dtype and value.shape == p.shape, f"state[{i}][{key!r}]"


@pytest.mark.parametrize("iav", [0.0, 0.25])
def test_adagrad_state_created_at_construction(iav):
    """As in torch, with step 0 and sum = initial_accumulator_value."""
    rng = np.random.default_rng(1)
    params = [
        *random_arrays(rng, [(3,), (2, 2)], np.float32),
        *random_arrays(rng, [()], np.float64),
    ]
    opt = optimizer_class("Adagrad")(params, initial_accumulator_value=iav)
    state = opt.state_dict()["state"]
    assert set(state) == {0, 1, 2}
    for i, p in enumerate(params):
        assert set(state[i]) == {"step", "sum"}
        assert type(state[i]["step"]) is int and state[i]["step"] == 0
        assert_bitwise_equal(state[i]["sum"], np.full_like(p, iav), f"state[{i}]['sum']")


def _run(opt, params, grads_list):
    for grads in grads_list:
        opt.step(grads)


def _grads_list(rng, params, steps, skip=None):
    out = [random_grads(rng, params) for _ in range(steps)]
    if skip is not None:  # (step, param index) whose grad is None: per-param step counts differ
        out[skip[0]][skip[1]] = None
    return out


@by_name
def test_round_trip_is_bit_identical(name, isa):
    rng = np.random.default_rng(2)
    groups = make_groups(rng)
    params = [p for g in groups for p in g["params"]]
    opt = optimizer_class(name)(groups, **RICH[name])
    before = _grads_list(rng, params, 7, skip=(3, 1))
    after = _grads_list(rng, params, 8)

    _run(opt, params, before)
    sd = copy.deepcopy(opt.state_dict())
    resumed_groups = clone_groups(groups)
    resumed_params = [p for g in resumed_groups for p in g["params"]]
    resumed = optimizer_class(name)(resumed_groups, **RICH[name])
    resumed.load_state_dict(sd)
    assert_bitwise_equal(resumed.state_dict(), opt.state_dict(), "state_dict after load")

    _run(opt, params, after)
    _run(resumed, resumed_params, after)
    assert_bitwise_equal(resumed_params, params, "params")
    assert_bitwise_equal(resumed.state_dict(), opt.state_dict(), "state_dict")


@by_name
def test_load_restores_group_hyperparameters(name):
    """As in PyTorch, the checkpoint's hyperparameters (e.g. a changed lr) replace the new ones."""
    rng = np.random.default_rng(3)
    groups = make_groups(rng)
    params = [p for g in groups for p in g["params"]]
    opt = optimizer_class(name)(groups, **RICH[name])
    opt.step(random_grads(rng, params))
    opt.param_groups[1]["lr"] = 0.0123
    sd = copy.deepcopy(opt.state_dict())

    resumed_groups = clone_groups(groups)
    resumed = optimizer_class(name)(resumed_groups, **RICH[name])
    resumed.load_state_dict(sd)
    assert resumed.param_groups[1]["lr"] == 0.0123
    grads = random_grads(rng, params)
    opt.step(grads)
    resumed.step(grads)
    assert_bitwise_equal([p for g in resumed_groups for p in g["params"]], params, "params")


@by_name
def test_load_copies_arrays(name):
    rng = np.random.default_rng(4)
    groups = make_groups(rng)
    params = [p for g in groups for p in g["params"]]
    opt = optimizer_class(name)(groups, **RICH[name])
    opt.step(random_grads(rng, params))
    sd = copy.deepcopy(opt.state_dict())
    expected = copy.deepcopy(sd)

    other = optimizer_class(name)(clone_groups(groups), **RICH[name])
    other.load_state_dict(sd)
    for state in sd["state"].values():
        for value in state.values():
            if isinstance(value, np.ndarray):
                value[...] = 12345.0
    assert_bitwise_equal(other.state_dict(), expected, "state_dict")


# ---------------------------------------------------------------- load_state_dict validation


def test_adagrad_honours_a_per_group_initial_accumulator_value():
    """Unlike torch (which uses the constructor's value for every group), each group's
    initial_accumulator_value is the value its sum starts at."""
    a, b, c = np.zeros(3), np.zeros(2), np.zeros(4)
    opt = optimizer_class("Adagrad")([{"params": [a]}, {"params": [b], "initial_accumulator_value": 0.5}],
                                     initial_accumulator_value=0.25)
    opt.add_param_group({"params": [c], "initial_accumulator_value": 2.0})
    state = opt.state_dict()["state"]
    for i, (p, want) in enumerate([(a, 0.25), (b, 0.5), (c, 2.0)]):
        assert_bitwise_equal(state[i]["sum"], np.full_like(p, want), f"state[{i}]['sum']")


@pytest.mark.parametrize("name", WITH_SCALARS)
def test_per_parameter_scalars_round_trip_and_are_used(name):
    """NAdam's mu_product: a float in the state dict that changes every step, restored by
    load_state_dict and used by the next step (compared with the reference started from the
    loaded state)."""
    rng = np.random.default_rng(12)
    params = random_arrays(rng, [(7,), (2, 3)], np.float64)
    opt = optimizer_class(name)(params, **RICH[name])
    for _ in range(4):
        opt.step(random_grads(rng, params))
    sd = copy.deepcopy(opt.state_dict())
    for key in SPEC[name].state_names:
        assert sd["state"][0][key] != 1.0, f"{key} did not change in 4 steps"
        sd["state"][0][key] = 0.5  # a different, valid value
    resumed_params = [p.copy() for p in params]
    resumed = optimizer_class(name)(resumed_params, **RICH[name])
    resumed.load_state_dict(sd)
    assert resumed.state_dict()["state"][0][SPEC[name].state_names[0]] == 0.5
    ref = RefOptimizer(name, [p.copy() for p in params], **RICH[name])
    ref.state = [copy.deepcopy(sd["state"][i]) for i in range(len(params))]
    grads = random_grads(rng, params)
    resumed.step(grads)
    ref.step(grads)
    for i, (p, r) in enumerate(zip(resumed_params, ref.params)):
        assert_close(p, r, err_msg=f"params[{i}]")
    for key in SPEC[name].state_names:
        assert_close(resumed.state_dict()["state"][0][key], ref.state[0][key], err_msg=key)


@pytest.mark.parametrize("name", WITH_SCALARS)
def test_load_refuses_a_missing_per_parameter_scalar_mid_run(name):
    params = [np.ones(4)]
    opt = optimizer_class(name)(params)
    for _ in range(3):
        opt.step([np.full(4, 0.5)])
    sd = copy.deepcopy(opt.state_dict())
    for key in SPEC[name].state_names:
        del sd["state"][0][key]
    target = optimizer_class(name)([np.ones(4)])
    before = snapshot(target)
    with pytest.raises(ValueError, match=SPEC[name].state_names[0]):
        target.load_state_dict(sd)
    assert_unchanged(before, target)


def _first_array_key(name):
    return min(expected_state_keys(name, RICH[name]) - {"step", *SPEC[name].state_names})


def _mutate(case, name, sd):
    """Applies one corruption to a state_dict; returns the object to load."""
    key = _first_array_key(name)
    groups, state = sd["param_groups"], sd["state"]
    if case == "extra_group":
        groups.append(copy.deepcopy(groups[-1]))
    elif case == "missing_group":
        groups.pop()
    elif case == "fewer_params_in_group":
        groups[0]["params"].pop()
    elif case == "more_params_in_group":
        groups[1]["params"].append(5)
    elif case == "state_wrong_shape":
        state[0][key] = np.zeros(state[0][key].size + 1, state[0][key].dtype)
    elif case == "state_wrong_shape_same_size":
        state[1][key] = np.zeros((3, 2), state[1][key].dtype)  # params[1] is (2, 3)
    elif case == "state_wrong_dtype":
        state[0][key] = state[0][key].astype(np.float64)  # params[0] is float32
    elif case == "state_missing_key":
        del state[0][key]
    elif case == "state_index_out_of_range":
        state[len(state)] = copy.deepcopy(state[0])
    elif case == "state_not_dict":
        sd["state"] = [state[i] for i in sorted(state)]
    elif case == "not_a_dict":
        return list(sd.items())
    elif case == "missing_param_groups":
        del sd["param_groups"]
    elif case == "step_negative":
        state[0]["step"] = -1
    elif case == "step_not_integral":
        state[0]["step"] = 2.5
    elif case == "state_unknown_key":
        state[0]["not_a_state_key"] = np.zeros_like(state[0][key])
    elif case == "scalar_not_a_number":
        state[0][SPEC[name].state_names[0]] = "0.5"
    elif case == "scalar_array":
        state[0][SPEC[name].state_names[0]] = np.full(2, 0.5)
    return sd


LOAD_CASES = {
    "extra_group": ValueError,
    "missing_group": ValueError,
    "fewer_params_in_group": ValueError,
    "more_params_in_group": ValueError,
    "state_wrong_shape": ValueError,
    "state_wrong_shape_same_size": ValueError,
    "state_wrong_dtype": (TypeError, ValueError),
    "state_missing_key": ValueError,
    "state_index_out_of_range": ValueError,
    "state_not_dict": (TypeError, ValueError),
    "not_a_dict": (TypeError, ValueError),
    "missing_param_groups": (KeyError, ValueError),
    "step_negative": ValueError,
    "step_not_integral": ValueError,
    "state_unknown_key": ValueError,
    "scalar_not_a_number": (TypeError, ValueError),
    "scalar_array": (TypeError, ValueError),
}
LOAD = [(n, c) for n in NAMES for c in LOAD_CASES
        if not c.startswith("scalar_") or SPEC[n].state_names]


@pytest.mark.parametrize(("name", "case"), LOAD, ids=[f"{n}-{c}" for n, c in LOAD])
def test_load_state_dict_rejects(name, case):
    rng = np.random.default_rng(5)
    groups = make_groups(rng)
    params = [p for g in groups for p in g["params"]]
    opt = optimizer_class(name)(groups, **RICH[name])
    opt.step(random_grads(rng, params))
    bad = _mutate(case, name, copy.deepcopy(opt.state_dict()))

    target = optimizer_class(name)(clone_groups(groups), **RICH[name])
    target.step(random_grads(rng, params))
    target.param_groups[0]["lr"] = 0.0042
    before = snapshot(target)
    groups_before = copy.deepcopy(target.param_groups)
    with pytest.raises(LOAD_CASES[case]):
        target.load_state_dict(bad)
    assert_unchanged(before, target)
    assert_bitwise_equal(target.param_groups, groups_before, "param_groups")
