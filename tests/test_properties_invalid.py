"""Property-based tests (hypothesis), invalid inputs.

Bad arrays (dtypes, byte order, shapes, strides, alignment, read-only, aliasing, counts) as
params, grads or functional state, and hyperparameters that are NaN, negative, out of range, of
the wrong type or refused together, for every rule of the registry: TypeError or ValueError, no
buffer changed, no crash, and the next valid step is unaffected.

Profiles and ADAPTOPT_PROPERTY_SCALE: see support/properties.py.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.arrays import guarded, root
from support.compare import assert_bitwise_equal, assert_unchanged, snapshot
from support.configs import FUNCTIONAL, HYPER, PAIRS, invalid_hyper
from support.functional import function_of, functional_kwargs, functional_step, new_state
from support.properties import (
    EXC,
    RULE,
    Runtime,
    build_groups,
    compare_with_reference,
    examples,
    functional_problems,
    functional_setup,
    layouts,
    make_grads,
    make_values,
    problems,
    reference_run,
    report,
    run_isolated,
)
from support.rules import by_name, optimizer_class

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def other_float(dt):
    return np.dtype(np.float64 if np.dtype(dt) == np.float32 else np.float32)


def bad_array(draw, shape, dtype, kind, allow_other_float=True):
    """An array that is invalid as a buffer of this shape/dtype in the way ``kind`` says.
    ``allow_other_float``: the other supported float types count as wrong (not for a param)."""
    n = int(np.prod(shape, dtype=np.int64))
    if kind == "dtype":
        dt = draw(
            st.sampled_from(
                ([np.float16] if allow_other_float else [])  # a float16 param is valid
                + [
                    np.int32,
                    np.int64,
                    np.uint8,
                    np.complex64,
                    np.complex128,
                    np.bool_,
                    np.longdouble,
                ]
                + (["other"] if allow_other_float else [])
            )
        )
        dt = other_float(dtype) if dt == "other" else np.dtype(dt)
        return np.ones(shape, dt)
    if kind == "byteswapped":
        a = np.ones(shape, np.dtype(dtype).newbyteorder())
        assert not a.dtype.isnative
        return a
    if kind == "shape":
        options = [(n + 1,), (1, n), (n, 1), (n + 2, 1)]
        if n >= 1:
            options.append((n - 1,))
        if n == 1:
            options.append(())
        options = [s for s in options if s != tuple(shape)]
        return np.ones(draw(st.sampled_from(options)), dtype)
    if kind == "strided":  # needs >= 2 elements: numpy calls any 0/1-element array contiguous
        how = draw(st.sampled_from(["every_other", "reversed", "column"]))
        if how == "every_other":
            a = np.ones(2 * n, dtype)[::2].reshape(shape)
        elif how == "reversed":
            a = np.ones(n, dtype)[::-1].reshape(shape)
        else:
            a = np.ones((n, 2), dtype)[:, 0].reshape(shape)
        assert not a.flags.c_contiguous
        return a
    if kind == "unaligned":
        itemsize = np.dtype(dtype).itemsize
        raw = np.zeros(n * itemsize + itemsize, np.uint8)
        off = draw(st.integers(1, itemsize - 1))
        a = raw[off : off + n * itemsize].view(dtype).reshape(shape)
        assert not a.flags.aligned
        return a
    if kind == "read_only":
        a = np.ones(shape, dtype)
        a.flags.writeable = False
        return a
    if kind == "not_array":
        which = draw(st.sampled_from(["list", "float", "str", "memoryview", "dict", "object"]))
        return {
            "list": lambda: [1.0] * n,
            "float": lambda: 1.0,
            "str": lambda: "grad",
            "memoryview": lambda: memoryview(np.ones(max(n, 1), dtype)),
            "dict": lambda: {"data": 1},
            "object": object,
        }[which]()
    raise AssertionError(kind)


ARRAY_KINDS_FOR = {
    # kinds that must be refused for a buffer the step only reads (a gradient) ...
    "read": ["dtype", "byteswapped", "shape", "strided", "unaligned", "not_array"],
    # ... and for one it writes (read-only is fine for a gradient, not for a param/state).
    "write": ["dtype", "byteswapped", "strided", "unaligned", "not_array", "read_only"],
}


def valid_kind(kind, n):
    if kind == "strided":
        return n >= 2
    if kind == "unaligned":
        return n >= 1
    return True


def all_buffers(opt, *arrays):
    """Whole underlying buffers of every array involved, for snapshots."""
    out = []
    for a in arrays:
        if isinstance(a, np.ndarray):
            out.append(root(a))
    if opt is not None:
        for entry in opt.state_dict()["state"].values():
            out += [root(v) for v in entry.values() if isinstance(v, np.ndarray)]
    return out


def expect_refused(call, opt, arrays):
    """``call()`` raises TypeError/ValueError and changes no buffer and no optimizer state
    (``param_groups`` are left out: the tests put the invalid values there themselves)."""
    buffers = all_buffers(opt, *arrays)
    state = (lambda: copy.deepcopy(opt.state_dict()["state"])) if opt is not None else dict
    before = (state(), snapshot(arrays=buffers))
    with pytest.raises(EXC):
        call()
    assert_bitwise_equal(state(), before[0], "optimizer state")
    assert_unchanged(before[1], arrays=buffers)


# ================================================================ params and grads


@st.composite
def bad_grad_cases(draw):
    prob = draw(problems(max_tensors=3))
    prob["none_prob"] = 0.0
    prob["change"] = None
    kind = draw(
        st.sampled_from(
            ARRAY_KINDS_FOR["read"] + ["alias_param", "alias_state", "count", "not_sequence"]
        )
    )
    index = draw(st.integers(0, len(prob["layout"]) - 1))
    shape, dtype, _ = prob["layout"][index]
    n = int(np.prod(shape, dtype=np.int64))
    if kind in ARRAY_KINDS_FOR["read"]:
        if not valid_kind(kind, n):
            kind = "dtype"
        payload = bad_array(draw, shape, dtype, kind)
    elif kind == "count":
        payload = draw(st.sampled_from([-1, 1]))
    elif kind == "not_sequence":
        payload = draw(st.sampled_from(["ndarray", 5, None, 1.5]))
    else:
        payload = draw(st.sampled_from(["whole", "view"]))
    return prob, kind, index, payload


def with_bad_grad(opt, params, grads, kind, index, payload):
    grads = list(grads)
    if kind in ARRAY_KINDS_FOR["read"]:
        grads[index] = payload
    elif kind == "count":
        grads = grads + [grads[0]] if payload > 0 else grads[:-1]
    elif kind == "not_sequence":
        return grads[index] if payload == "ndarray" else payload
    elif kind == "alias_param":
        p = params[index]
        grads[index] = p if payload == "whole" else p.reshape(-1)[:].reshape(p.shape)
    elif kind == "alias_state":
        state = opt.state_dict()["state"].get(index)
        bufs = [v for v in (state or {}).values() if isinstance(v, np.ndarray)]
        if not bufs or bufs[0].size == 0:  # nothing to alias: alias the param instead
            grads[index] = params[index]
        else:
            grads[index] = bufs[0] if payload == "whole" else bufs[-1][...]
    return grads


@examples(120)
@given(case=bad_grad_cases())
def test_invalid_gradient_is_refused_and_writes_nothing(case):
    prob, kind, index, payload = case
    n_index = int(np.prod(prob["layout"][index][0], dtype=np.int64))
    if kind in ("alias_param", "alias_state") and n_index == 0:
        kind, payload = "count", 1  # an empty array overlaps nothing
    rng = np.random.default_rng(prob["seed"] + 1)
    grads_seq = [make_grads(rng, prob["layout"], 0.0) for _ in range(2)]
    with Runtime(prob["isa"], prob["threads"], prob["threshold"]):
        values = make_values(np.random.default_rng(prob["seed"]), prob["layout"])
        params, groups = build_groups(values, prob)
        opt = optimizer_class(prob["name"])(groups, **prob["hyper"])
        opt.step(grads_seq[0])
        bad = with_bad_grad(opt, params, grads_seq[1], kind, index, payload)
        expect_refused(
            lambda: opt.step(bad),
            opt,
            [*params, *grads_seq[1], *(bad if isinstance(bad, list) else [])],
        )
        opt.step(grads_seq[1])  # the refused call left nothing half-done
    state = copy.deepcopy(opt.state_dict())
    prob = dict(prob, steps=2)
    compare_with_reference(params, state["state"], reference_run(prob, grads_seq), prob, grads_seq)


@st.composite
def bad_param_cases(draw):
    name = draw(RULE)
    lay = draw(layouts(min_size=0, max_tensors=3))
    index = draw(st.integers(0, len(lay) - 1))
    kind = draw(st.sampled_from(ARRAY_KINDS_FOR["write"] + ["overlap", "duplicate"]))
    return name, draw(HYPER[name]), lay, index, kind


@examples(80)
@given(case=bad_param_cases(), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_invalid_param_is_refused_and_writes_nothing(case, seed, data):
    name, hyper, lay, index, kind = case
    draw = data.draw
    rng = np.random.default_rng(seed)
    params = [guarded(v, off) for v, (_, _, off) in zip(make_values(rng, lay), lay)]
    shape, dtype, _ = lay[index]
    n = int(np.prod(shape, dtype=np.int64))
    if kind in ("overlap", "duplicate") and n == 0:
        kind = "dtype"  # an empty array shares no memory with anything
    if kind == "overlap":  # a view sharing (part of) the memory of params[index]
        k = draw(st.integers(0, n - 1))
        params.append(params[index].reshape(-1)[k:])
    elif kind == "duplicate":
        params.append(params[index])
    else:
        if not valid_kind(kind, n):
            kind = "dtype"
        params[index] = bad_array(draw, shape, dtype, kind, allow_other_float=False)
    grads = [
        np.ones(
            np.shape(p),
            p.dtype
            if isinstance(p, np.ndarray) and p.dtype.kind == "f" and p.dtype.isnative
            else np.float64,
        )
        for p in params
    ]

    def call():
        opt = optimizer_class(name)(params, **hyper)
        opt.step(grads)  # in case the check were deferred to the first step

    expect_refused(call, None, [*params, *grads])


# ================================================================ hyperparameters


@st.composite
def bad_hyper_cases(draw):
    prob = draw(problems(max_tensors=2))
    prob["none_prob"] = 0.0
    prob["change"] = None
    bad, key = draw(invalid_hyper(prob["name"]))
    group = draw(st.integers(0, 1 if prob["split"] else 0))
    return prob, bad, key, group


@examples(150)
@given(case=bad_hyper_cases())
def test_invalid_hyperparameter_is_refused_and_writes_nothing(case):
    prob, bad, _, group = case
    name = prob["name"]
    rng = np.random.default_rng(prob["seed"] + 1)
    grads_seq = [make_grads(rng, prob["layout"], 0.0) for _ in range(2)]
    values = make_values(np.random.default_rng(prob["seed"]), prob["layout"])

    # 1. At construction.
    params, groups = build_groups(values, prob)
    expect_refused(lambda: optimizer_class(name)(groups, **{**prob["hyper"], **bad}), None, params)

    # 2. Set later in a param group: refused at step(), nothing written, and once the value is
    # repaired the next step is a normal one. (Values only read when a buffer is created, such
    # as initial_accumulator_value, are validated like the others.)
    with Runtime(prob["isa"], prob["threads"], prob["threshold"]):
        params, groups = build_groups(values, prob)
        opt = optimizer_class(name)(groups, **prob["hyper"])
        opt.step(grads_seq[0])
        saved = {k: opt.param_groups[group][k] for k in bad}
        if all(_equal(bad[k], saved[k]) for k in bad):
            return  # an invalid value == the current one: see test_invalid_value_equal_to_...
        opt.param_groups[group].update(bad)
        expect_refused(lambda: opt.step(grads_seq[1]), opt, [*params, *grads_seq[1]])
        opt.param_groups[group].update(saved)
        opt.step(grads_seq[1])
    prob = dict(prob, steps=2)
    state = copy.deepcopy(opt.state_dict())["state"]
    compare_with_reference(params, state, reference_run(prob, grads_seq), prob, grads_seq)


def _equal(a, b):
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - e.g. an array of several elements
        return False


EQUAL_BUT_INVALID = [
    # (optimizer, valid value at construction, invalid value that compares equal to it)
    ("Adam", {"decoupled_weight_decay": True}, {"decoupled_weight_decay": np.float64(1.0)}),
    ("RMSprop", {"centered": True}, {"centered": 1.0}),
    ("RMSprop", {"weight_decay": 0.0}, {"weight_decay": False}),
    ("Adagrad", {"lr": 1.0}, {"lr": True}),
    ("Adadelta", {"lr": 0.5}, {"lr": np.array([0.5])}),
    ("AdamW", {"eps": 1e-8}, {"eps": np.array(1e-8)}),
    ("RMSprop", {"bias_correction": True}, {"bias_correction": 1.0}),
    ("RMSprop", {"initial_scale": 0.0}, {"initial_scale": False}),
    ("SGD", {"momentum": 1.0}, {"momentum": True}),
    ("NAdam", {"decoupled_weight_decay": True}, {"decoupled_weight_decay": np.float64(1.0)}),
    ("NAdam", {"momentum_decay": 0.5}, {"momentum_decay": np.array([0.5])}),
    ("RAdam", {"eps_root": 0.0}, {"eps_root": False}),
    ("Adamax", {"betas": (0.5, 0.9)}, {"betas": (np.array([0.5]), 0.9)}),
]


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    EQUAL_BUT_INVALID,
    ids=[f"{n}-{next(iter(b))}={next(iter(b.values()))!r}" for n, _, b in EQUAL_BUT_INVALID],
)
def test_invalid_value_equal_to_the_current_one_is_still_refused(name, good, bad):
    """The constructor refuses these values (wrong type); set later in a param group they must
    be refused at step() too, even though they compare equal to the validated value (the
    step's cache of validated hyperparameters must not be keyed on == alone)."""
    p = np.ones(5, np.float32)
    with pytest.raises(EXC):
        optimizer_class(name)([np.ones(5, np.float32)], **bad)
    opt = optimizer_class(name)([p], **good)
    g = [np.full(5, 0.5, np.float32)]
    opt.step(g)
    opt.param_groups[0].update(bad)
    expect_refused(lambda: opt.step(g), opt, [p, *g])


@by_name
@pytest.mark.parametrize("value", [10**400, -(10**400)], ids=["1e400", "-1e400"])
def test_hyperparameter_int_too_large_for_a_double(name, value):
    """An int that no double can hold is an invalid hyperparameter like any other: TypeError or
    ValueError naming it (not an OverflowError from float()), at construction and in the
    functional layer."""
    p = np.ones(5, np.float32)
    with pytest.raises(EXC, match="lr"):
        optimizer_class(name)([p], lr=value)
    state = new_state(name, {}, [p])
    with pytest.raises(EXC, match="lr"):
        functional_step(name, [p], [np.ones(5, np.float32)], state, {"lr": value}, 1)
    assert_bitwise_equal(p, np.ones(5, np.float32))


# ================================================================ functional forms

BAD_STEP = st.one_of(
    st.integers(max_value=0),
    st.sampled_from([1.0, 1.5, "1", None, True, [1]]),
    st.sampled_from([np.float64(2.0)]),
)


@st.composite
def bad_functional_cases(draw):
    prob = draw(functional_problems())
    name = prob["name"]
    spec = FUNCTIONAL[name]
    what = draw(
        st.sampled_from(["hyper", "step", "state", "missing_state", "state_count", "state_alias",
                         "scalars"])
    )
    if what == "step" and not spec.needs_step({**prob["hyper"]}):
        what = "hyper"
    if what == "scalars" and not spec.scalars:
        what = "state"
    t = draw(st.integers(0, len(prob["layout"]) - 1))
    detail = None
    if what == "hyper":
        bad, _ = draw(invalid_hyper(name))
        for pair, fields in PAIRS.items():
            if pair in bad:
                b = bad.pop(pair)
                if isinstance(b, tuple) and len(b) == 2:
                    bad.update(zip(fields, b))
                else:  # a malformed pair as the first keyword (0.9 alone would be valid there)
                    bad[fields[0]] = [b] if isinstance(b, float) else b
        detail = bad
    elif what == "step":
        detail = draw(BAD_STEP)
    elif what == "state":
        shape, dtype, _ = prob["layout"][t]
        kind = draw(
            st.sampled_from(
                ["dtype", "byteswapped", "shape", "strided", "unaligned", "not_array", "read_only"]
            )
        )
        n = int(np.prod(shape, dtype=np.int64))
        if not valid_kind(kind, n):
            kind = "dtype"
        detail = bad_array(draw, shape, dtype, kind)
    elif what == "scalars":
        detail = draw(st.sampled_from(["dtype", "byteswapped", "shape", "2d", "read_only", "list",
                                        "missing"]))
    elif what == "state_count":
        detail = draw(st.sampled_from([-1, 1]))
    elif what == "state_alias":
        detail = draw(st.sampled_from(["param", "grad", "other_state"]))
    return prob, what, t, detail, draw(st.data())


def _bad_scalars(a, kind):
    """A per-parameter scalar array (float64, one value per parameter) spoilt as ``kind`` says.
    (A strided view is fine: the values are copied in and written back.)"""
    if kind == "dtype":
        return a.astype(np.float32)
    if kind == "shape":
        return np.concatenate([a, [0.5]])
    if kind == "read_only":
        b = a.copy()
        b.flags.writeable = False
        return b
    if kind == "list":
        return [float(x) for x in a]
    if kind == "byteswapped":
        return a.astype(a.dtype.newbyteorder())
    if kind == "2d":
        return a.reshape(-1, 1)
    return None  # missing


@examples(120)
@given(case=bad_functional_cases())
def test_functional_invalid_input_is_refused_and_writes_nothing(case):
    prob, what, t, detail, data = case
    fn, params, grads, states, kwargs, _, _ = functional_setup(prob)
    spec = FUNCTIONAL[prob["name"]]
    states = {k: (list(v) if isinstance(v, list) else v) for k, v in states.items()}
    present = [a for a in spec.slots if states[a] is not None]
    arg = data.draw(st.sampled_from(present)) if present else None
    n_t = params[t].size
    if arg is None and what in ("state", "missing_state", "state_count", "state_alias"):
        what, detail = "hyper", {"lr": math.nan}  # these options need no buffer (SGD)
    if what == "hyper":
        kwargs.update(detail)
    elif what == "step":
        kwargs["step"] = detail
    elif what == "state":
        states[arg][t] = detail
    elif what == "scalars":
        scalar_arg = data.draw(st.sampled_from(sorted(spec.scalars)))
        states[scalar_arg] = _bad_scalars(states[scalar_arg], detail)
    elif what == "missing_state":
        states[arg] = None
    elif what == "state_count":
        states[arg] = states[arg] + [states[arg][0]] if detail > 0 else states[arg][:-1]
    elif what == "state_alias":
        if n_t == 0:
            states[arg] = None  # an empty array overlaps nothing: test a missing list instead
        elif detail == "param":
            states[arg][t] = params[t]
        elif detail == "grad":  # a gradient may not share memory with a written buffer
            grads = list(grads)
            grads[t] = states[arg][t]
        else:
            others = [a for a in present if a != arg]
            if others:
                states[arg][t] = states[others[0]][t]
            else:
                states[arg][t] = params[t]
    arrays = [*params, *grads]
    for v in states.values():
        if isinstance(v, np.ndarray):
            arrays.append(v)
        elif v:
            arrays += [a for a in v if isinstance(a, np.ndarray)]
    with Runtime(prob["isa"], prob["threads"], prob["threshold"]):
        expect_refused(lambda: fn(params, grads, **states, **kwargs), None, arrays)


@by_name
def test_functional_missing_step_is_refused_where_the_update_needs_it(name):
    """step is required where the update depends on it (TypeError, nothing written), and may
    be left out elsewhere."""
    spec = FUNCTIONAL[name]
    p = [np.ones(5)]
    hyper = {"momentum": 0.9} if name == "SGD" else {"bias_correction": True} if name == "RMSprop" else {}
    state = new_state(name, hyper, p)
    lists = [state.get(key) for key in spec.slots.values()] + [state[k] for k in spec.scalars.values()]
    arrays = [*p] + [a for v in state.values() for a in (v if isinstance(v, list) else [v])]

    def call():
        function_of(name)(p, [np.ones(5)], *lists, **functional_kwargs(name, hyper))

    if spec.needs_step(hyper):
        expect_refused(call, None, arrays)
    else:
        call()


# ================================================================ buffers changed after construction


@by_name
@pytest.mark.parametrize("which", ["param", "state"])
def test_buffer_made_read_only_after_construction_is_not_written(name, which):
    """Writeability is part of the buffer contract: an array whose writeable flag was cleared
    after the optimizer was built must not be written behind the flag's back."""
    rng = np.random.default_rng(0)
    params = [guarded(v, 1) for v in (rng.standard_normal(37), rng.standard_normal(5))]
    grads = [[guarded(rng.standard_normal(p.shape), 2) for p in params] for _ in range(2)]
    opt = optimizer_class(name)(params, **({"momentum": 0.9} if name == "SGD" else {}))
    opt.step(grads[0])
    if which == "param":
        params[0].flags.writeable = False
    else:
        entry = opt.state_dict()["state"][0]
        next(v for v in entry.values() if isinstance(v, np.ndarray)).flags.writeable = False
    expect_refused(lambda: opt.step(grads[1]), opt, [*params, *grads[1]])


def test_param_dtype_reinterpreted_after_construction():
    """``p.dtype = np.float64`` on a float32 param halves its shape without changing its
    bytes. The step must refuse (or at least not read past the gradient): the gradient check
    compares against the param's *current* shape but the kernel uses the element count and
    dtype cached at construction. Runs in a subprocess (an out-of-bounds read can crash)."""
    code = """
        import numpy as np, adaptopt
        n = 1 << 16
        p = np.zeros(2 * n, np.float32)
        opt = adaptopt.Adagrad([p], lr=1.0)
        p.dtype = np.float64                  # same bytes, now shape (n,)
        g = np.ones(n, np.float32)            # 4n bytes; the kernel would read 8n
        before = p.tobytes()
        try:
            opt.step([g])
        except (TypeError, ValueError) as e:
            assert p.tobytes() == before
            print("REFUSED", type(e).__name__, e)
            raise SystemExit(0)
        print("ACCEPTED: a float32 gradient of", g.nbytes, "bytes for a param of", p.nbytes,
              "bytes; float32 view of the param after the step:", p.view(np.float32)[n - 2:n + 2])
        raise SystemExit(1)
    """
    out = run_isolated(code)
    assert out.returncode == 0, report(out)

