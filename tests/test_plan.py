"""The planned steady-state step (issue 12): one native call checked with pointer comparisons.
Every safety check still holds once the plan exists, and every change is seen."""

import adaptopt
import numpy as np
import pytest


def planned(name="Adam", **kw):
    params = [np.zeros(37, np.float32), np.zeros((3, 4))]
    grads = [np.full(37, 0.5, np.float32), np.full((3, 4), 0.25)]
    opt = getattr(adaptopt, name)(params, **kw)
    opt.step(grads)
    opt.step(grads)
    assert opt._plan is not None, "no plan after two steps"
    return params, grads, opt


def snap(opt, params):
    return [p.copy() for p in params], {i: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
                                        for i, s in opt.state.items()}


def unchanged(before, opt, params):
    ps, st = before
    assert all(a.tobytes() == b.tobytes() for a, b in zip(ps, params))
    for i, s in st.items():
        for k, v in s.items():
            got = opt.state[i][k]
            assert (got.tobytes() == v.tobytes()) if isinstance(v, np.ndarray) else got == v, (i, k)


def test_planned_steps_equal_full_steps():
    params, grads, opt = planned()
    ref_params = [np.zeros(37, np.float32), np.zeros((3, 4))]
    ref = adaptopt.Adam(ref_params)
    ref.step(grads)
    ref.step(grads)
    for _ in range(5):
        opt.step(grads)
        ref._plan = None  # the reference never plans
        ref.step(grads)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(params, ref_params))


@pytest.mark.parametrize("change", ["lr", "betas", "storage", "params_entry", "params_list"])
def test_changes_are_seen(change):
    params, grads, opt = planned()
    g = opt.param_groups[0]
    if change == "lr":
        g["lr"] = 0.5
        opt.step(grads)
        assert opt._bindings[0].built.hyper.lr == 0.5
    elif change == "betas":
        g["betas"] = (0.0, 0.5)
        before = params[0].copy()
        opt.step(grads)
        assert not np.array_equal(before, params[0])
        assert opt._bindings[0].built.values["betas"] == (0.0, 0.5)
    elif change == "storage":
        g["state_dtype"] = "bfloat16"
        before = snap(opt, params)
        with pytest.raises(ValueError, match="cannot change once the group has state"):
            opt.step(grads)
        unchanged(before, opt, params)
    else:
        before = snap(opt, params)
        if change == "params_entry":
            g["params"][0] = np.zeros(37, np.float32)
        else:
            g["params"] = list(g["params"])
        with pytest.raises(ValueError, match="was changed after construction"):
            opt.step(grads)
        unchanged(before, opt, params)


@pytest.mark.parametrize("change", ["read_only_param", "param_dtype", "state_dtype", "grad_dtype", "grad_shape",
                                    "grad_aliases_state", "grad_count"])
def test_bad_buffers_still_raise_with_nothing_modified(change):
    params, grads, opt = planned()
    grads = list(grads)
    before = snap(opt, params)
    if change == "read_only_param":
        params[1].flags.writeable = False
    elif change == "param_dtype":
        params[0].dtype = np.int32  # reinterpreted in place
    elif change == "state_dtype":
        opt.state[1]["exp_avg"].dtype = np.int64
    elif change == "grad_dtype":
        grads[0] = grads[0].astype(np.float64)
    elif change == "grad_shape":
        grads[1] = np.zeros(12)
    elif change == "grad_aliases_state":
        grads[1] = opt.state[1]["exp_avg_sq"]
    else:
        grads = grads[:1]
    with pytest.raises((TypeError, ValueError)):
        opt.step(grads)
    if change == "read_only_param":
        params[1].flags.writeable = True
    elif change == "param_dtype":
        params[0].dtype = np.float32
    elif change == "state_dtype":
        opt.state[1]["exp_avg"].dtype = np.float64
    unchanged(before, opt, params)


def test_schedules_and_dense_sparse_mode_take_the_full_path():
    opt2 = adaptopt.Adam([np.zeros(4)], lr=adaptopt.schedules.constant(1e-2))
    opt2.step([np.ones(4)])
    opt2.step([np.ones(4)])
    assert opt2._plan is None  # a callable lr is evaluated each step
    opt3 = adaptopt.Adam([np.zeros(4)], sparse_mode="dense")
    opt3.step([np.ones(4)])
    opt3.step([np.ones(4)])
    assert opt3._plan is None
