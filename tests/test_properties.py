"""Property-based tests (hypothesis).

Valid inputs: random sizes (every tail length), misaligned views into larger guarded buffers,
random valid hyperparameters of every optimizer and option, both dtypes, every ISA, 1-3 threads
with random parallel thresholds: the result matches the float64 reference, is bit-identical to
the single-threaded run of the same ISA, and nothing outside the views is touched.

Invalid inputs (dtypes, byte order, shapes, strides, alignment, read-only, aliasing, counts,
hyperparameters that are NaN/negative/out of range/of the wrong type): TypeError or ValueError,
no buffer changed, no crash, and the next valid step is unaffected.

Profiles: "dev" (random) and "ci" (derandomized). CI=true selects "ci"; HYPOTHESIS_PROFILE
overrides. Neither keeps an example database (a failure prints its reproduce_failure blob).
ADAPTOPT_PROPERTY_SCALE=N runs N times as many examples.
"""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
import textwrap

import adaptopt
import adaptopt.functional as F
import numpy as np
import pytest
from _util import (
    OPTIMIZERS,
    assert_bitwise_equal,
    assert_close,
    assert_unchanged,
    optimizer_class,
    snapshot,
    tolerance,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import STEP_FUNCTIONS, RefOptimizer

settings.register_profile(
    "dev",
    deadline=None,
    database=None,
    print_blob=True,
    # conftest's autouse fixture only restores the ISA / thread count after the whole test.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile("ci", parent=settings.get_profile("dev"), derandomize=True)
settings.load_profile(
    os.environ.get(
        "HYPOTHESIS_PROFILE",
        "ci" if os.environ.get("CI", "").lower() in ("1", "true", "yes") else "dev",
    )
)

# ADAPTOPT_PROPERTY_SCALE=20 multiplies every max_examples below, for an occasional deep run.
SCALE = float(os.environ.get("ADAPTOPT_PROPERTY_SCALE", "1"))


def examples(n):
    return settings(max_examples=max(1, int(n * SCALE)))


ISAS = adaptopt.available_isas()
_core = adaptopt._core
GUARD = 19  # elements of sentinel after each view
SENTINEL = -7.25  # exactly representable in both dtypes
EXC = (TypeError, ValueError)
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


# ================================================================ strategies: valid inputs


def logu(lo, hi):
    """Log-uniform floats in [lo, hi]."""
    return st.floats(math.log10(lo), math.log10(hi)).map(lambda e: float(10.0**e))


def maybe_zero(s):
    return st.one_of(st.just(0.0), s)


BOOL = st.booleans()
WD = maybe_zero(st.floats(0.0, 0.5))


@st.composite
def rmsprop_hyper(draw):
    centered = draw(BOOL)
    momentum = draw(maybe_zero(st.floats(0.0, 0.95)))
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
    )


@st.composite
def adadelta_hyper(draw):
    return dict(
        lr=draw(maybe_zero(st.floats(0.01, 2.0))),
        rho=draw(st.floats(0.0, 0.99)),
        eps=draw(logu(1e-8, 1e-2)),
        weight_decay=draw(WD),
        maximize=draw(BOOL),
    )


@st.composite
def adam_hyper(draw, decoupled_key=True):
    h = dict(
        lr=draw(maybe_zero(logu(1e-4, 0.1))),
        betas=(draw(st.floats(0.0, 0.99)), draw(st.floats(0.0, 0.9999))),
        eps=draw(logu(1e-10, 1e-3)),
        weight_decay=draw(WD),
        amsgrad=draw(BOOL),
        maximize=draw(BOOL),
    )
    if decoupled_key:
        h["decoupled_weight_decay"] = draw(BOOL)
    return h


HYPER = {
    "RMSprop": rmsprop_hyper(),
    "Adagrad": adagrad_hyper(),
    "Adadelta": adadelta_hyper(),
    "Adam": adam_hyper(),
    "AdamW": adam_hyper(decoupled_key=False),
}

# Small sizes often (every tail of 4/8/16 lanes), up to a few thousand.
SIZE = st.one_of(st.integers(0, 40), st.integers(0, 3000))
OFFSET = st.integers(0, 16)  # elements: every misalignment mod 64 bytes for both dtypes
DTYPE = st.sampled_from([np.float32, np.float64])
THRESHOLD = st.sampled_from([None, 1, 7, 100, 1000])  # None: the library default


@st.composite
def layouts(draw, min_tensors=1, max_tensors=3, min_size=0):
    """[(shape, dtype, offset)] for each tensor."""
    out = []
    for _ in range(draw(st.integers(min_tensors, max_tensors))):
        n = draw(SIZE.filter(lambda v: v >= min_size))
        shape = (n,)
        if n % 3 == 0 and n and draw(BOOL):
            shape = (3, n // 3)
        elif n == 1 and draw(BOOL):
            shape = ()
        out.append((shape, np.dtype(draw(DTYPE)), draw(OFFSET)))
    return out


@st.composite
def problems(draw, min_size=0, max_tensors=3):
    """A complete random valid optimizer run."""
    name = draw(st.sampled_from(OPTIMIZERS))
    hyper = draw(HYPER[name])
    lay = draw(layouts(max_tensors=max_tensors, min_size=min_size))
    split = draw(st.integers(0, len(lay) - 1))  # > 0: tensors [split:] form a second group
    group2 = None
    if split:
        group2 = draw(HYPER[name])
        # The reference creates Adagrad's state with the constructor's value for every group.
        group2.pop("initial_accumulator_value", None)
    return dict(
        name=name,
        hyper=hyper,
        layout=lay,
        split=split,
        group2=group2,
        steps=draw(st.integers(1, 4)),
        seed=draw(st.integers(0, 2**32 - 1)),
        none_prob=draw(st.sampled_from([0.0, 0.0, 0.3])),
        lr_change=draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), logu(1e-4, 0.1)))),
        isa=draw(st.sampled_from(ISAS)),
        threads=draw(st.integers(1, 3)),
        threshold=draw(THRESHOLD),
    )


# ================================================================ helpers


class Runtime:
    """Forces an ISA, a thread count and a parallel threshold; restores them on exit."""

    def __init__(self, isa=None, threads=None, threshold=None):
        self.want = (isa, threads, threshold)

    def __enter__(self):
        self.saved = (adaptopt.isa(), adaptopt.get_num_threads(), _core.parallel_threshold())
        isa, threads, threshold = self.want
        if isa is not None:
            adaptopt.set_isa(isa)
        if threads is not None:
            adaptopt.set_num_threads(threads)
        if threshold is not None:
            _core.set_parallel_threshold(threshold)
        return self

    def __exit__(self, *exc):
        isa, threads, threshold = self.saved
        adaptopt.set_isa(isa)
        adaptopt.set_num_threads(threads)
        _core.set_parallel_threshold(threshold)


def guarded(values, offset):
    """A copy of ``values`` placed ``offset`` elements into a larger buffer filled with a
    sentinel (so misaligned and with neighbours that must never be written). Returns the view,
    which is C-contiguous and whose ``.base`` chain ends at the whole buffer."""
    values = np.asarray(values)
    n = values.size
    base = np.full(offset + n + GUARD, SENTINEL, dtype=values.dtype)
    view = base[offset : offset + n].reshape(values.shape)
    view[...] = values
    assert view.flags.c_contiguous and view.flags.writeable
    return view


def root(a):
    while isinstance(a, np.ndarray) and a.base is not None:
        a = a.base
    return a


def check_guards(view, what):
    """Everything in the underlying buffer outside ``view`` still holds the sentinel."""
    base = root(view)
    start = view.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    assert start % view.itemsize == 0
    start //= view.itemsize
    outside = np.ones(base.size, bool)
    outside[start : start + view.size] = False
    assert np.all(base[outside] == SENTINEL), f"{what}: memory outside the array was written"


def make_values(rng, layout):
    return [np.asarray(rng.standard_normal(shape)).astype(dt) for shape, dt, _ in layout]


def make_grads(rng, layout, none_prob):
    grads = []
    for shape, dt, _ in layout:
        g = np.asarray(rng.standard_normal(shape)).astype(dt)
        off = int(rng.integers(0, 17))
        grads.append(None if rng.random() < none_prob else guarded(g, off))
    return grads


def build_groups(values, prob):
    params = [guarded(v, off) for v, (_, _, off) in zip(values, prob["layout"])]
    split = prob["split"]
    if not split:
        return params, params
    return params, [{"params": params[:split]}, {"params": params[split:], **prob["group2"]}]


def trajectory(prob, grads_seq, runtime):
    """Runs the adaptopt optimizer; returns (params, state_dict copy, optimizer)."""
    values = make_values(np.random.default_rng(prob["seed"]), prob["layout"])
    params, groups = build_groups(values, prob)
    with runtime:
        opt = optimizer_class(prob["name"])(groups, **prob["hyper"])
        for k, grads in enumerate(grads_seq):
            if prob["lr_change"] and prob["lr_change"][0] == k:
                opt.param_groups[-1]["lr"] = prob["lr_change"][1]
            before = [None if g is None else g.copy() for g in grads]
            opt.step(grads)
            assert_bitwise_equal(list(grads), before, "grads (must be read only)")
    for i, p in enumerate(params):
        check_guards(p, f"params[{i}]")
    for k, grads in enumerate(grads_seq):
        for i, g in enumerate(grads):
            if g is not None:
                check_guards(g, f"step {k}: grads[{i}]")
    return params, copy.deepcopy(opt.state_dict()), opt


# A float32 kernel cannot beat the conditioning of the update: where it cancels (g + wd * p
# near 0 with a tiny eps, a centered variance v - avg^2 near 0, ...) rounding errors grow far
# beyond rtol. The reference is therefore run again with every input, hyperparameter and stored
# state value jiggled by about one unit roundoff of the dtype (a float64 stand-in for rounding
# to that dtype); SLACK times the spread of those runs is added to the tolerance element by
# element. Well-conditioned elements keep the plain tolerance.
UNIT_ROUNDOFF = {np.dtype(np.float32): 2.0**-24, np.dtype(np.float64): 2.0**-53}
SENSITIVITY_RUNS = 2
SLACK = 16.0


class Jiggle:
    """Relative perturbations uniform in [-u, u]."""

    def __init__(self, u, seed):
        self.u, self.rng = u, np.random.default_rng(seed)

    def array(self, a):
        a *= 1.0 + self.u * self.rng.uniform(-1.0, 1.0, np.shape(a))
        return a

    def value(self, v):
        if isinstance(v, bool) or not isinstance(v, (int, float, tuple)):
            return v
        if isinstance(v, tuple):
            return tuple(self.value(x) for x in v)
        return v * (1.0 + self.u * self.rng.uniform(-1.0, 1.0))

    def hyper(self, h):
        return None if h is None else {k: self.value(v) for k, v in h.items()}


def reference_run(prob, grads_seq, jiggle=None):
    values = [
        np.array(v, dtype=np.float64)
        for v in make_values(np.random.default_rng(prob["seed"]), prob["layout"])
    ]
    j = jiggle or Jiggle(0.0, 0)
    values = [j.array(v) for v in values]
    hyper, group2 = j.hyper(prob["hyper"]), j.hyper(prob["group2"])
    split = prob["split"]
    groups = (
        values
        if not split
        else [
            {"params": values[:split]},
            {"params": values[split:], **group2},
        ]
    )
    ref = RefOptimizer(prob["name"], groups, **hyper)

    def jiggle_all():
        for p in ref.params:
            j.array(p)
        for st_ in ref.state:
            for k, v in st_.items():
                if k != "step":
                    j.array(v)

    jiggle_all()  # Adagrad's eager state
    for k, grads in enumerate(grads_seq):
        if prob["lr_change"] and prob["lr_change"][0] == k:
            ref.param_groups[-1]["lr"] = j.value(prob["lr_change"][1])
        ref.step([None if g is None else j.array(np.array(g, dtype=np.float64)) for g in grads])
        jiggle_all()
    return ref


def sensitivities(prob, run, ref_arrays):
    """{dtype: per-array max |perturbed - ref|} for the dtypes in the layout; ``run(jiggle)``
    returns the arrays of one perturbed reference run, in the order of ``ref_arrays``."""
    out = {}
    for dt in {dt for _, dt, _ in prob["layout"]}:
        spread = [np.zeros(np.shape(a)) for a in ref_arrays]
        for k in range(SENSITIVITY_RUNS):
            pert = run(Jiggle(UNIT_ROUNDOFF[dt], prob["seed"] + 7 + k))
            for s_, a, b in zip(spread, pert, ref_arrays):
                with np.errstate(invalid="ignore"):
                    d = np.nan_to_num(np.abs(np.asarray(a) - np.asarray(b)), nan=0.0)
                np.maximum(s_, d, out=s_)
        out[dt] = spread
    return out


def assert_close_cond(actual, want, sens, err_msg):
    """_util.assert_close's tolerance plus SLACK * sens per element (see Jiggle)."""
    actual = np.asarray(actual)
    want = np.asarray(want, dtype=np.float64)
    rtol, atol = tolerance(actual.dtype)
    finite = np.isfinite(want)
    scale = max(1.0, float(np.max(np.abs(want[finite]), initial=0.0)))
    a = actual.astype(np.float64)
    with np.errstate(invalid="ignore"):
        bound = rtol * np.abs(want) + atol * scale + SLACK * sens
        ok = np.where(
            finite, np.abs(a - want) <= bound, (a == want) | (np.isnan(a) & np.isnan(want))
        )
    if not np.all(ok):
        bad = np.flatnonzero(~ok.reshape(-1))
        i = bad[np.argmax(np.abs(a - want).reshape(-1)[bad])] if finite.any() else bad[0]
        raise AssertionError(
            f"{err_msg}: {bad.size} of {ok.size} elements outside tolerance; worst at flat "
            f"index {i}: got {a.reshape(-1)[i]!r}, want {want.reshape(-1)[i]!r}, allowed "
            f"+-{np.broadcast_to(bound, a.shape).reshape(-1)[i]:.3g} (conditioning part "
            f"{SLACK * np.broadcast_to(sens, a.shape).reshape(-1)[i]:.3g})"
        )


def _ref_arrays(ref):
    """Params, then every state array, of a RefOptimizer, in a fixed order."""
    out = list(ref.params)
    for st_ in ref.state:
        out += [v for k, v in sorted(st_.items()) if k != "step"]
    return out


def compare_with_reference(params, state, ref, prob=None, grads_seq=None):
    """Params and state against the reference; with ``prob`` the tolerance includes the
    conditioning term (the reference is re-run perturbed)."""
    sens = None
    if prob is not None:
        base = _ref_arrays(ref)
        sens = sensitivities(prob, lambda j: _ref_arrays(reference_run(prob, grads_seq, j)), base)
        index = {id(a): k for k, a in enumerate(base)}

    def check(got, want, dt, what):
        if sens is None:
            assert_close(got, want, err_msg=what)
        else:
            assert_close_cond(got, want, sens[np.dtype(dt)][index[id(want)]], what)

    for i, (p, r) in enumerate(zip(params, ref.params)):
        check(p, r, p.dtype, f"params[{i}] (dtype {p.dtype}, shape {p.shape})")
    for i, ref_state in enumerate(ref.state):
        if not ref_state or (ref_state.get("step") == 0 and i not in state):
            continue
        assert i in state, f"no state for params[{i}]"
        for key, want in ref_state.items():
            assert key in state[i], f"state[{i}] has no {key!r}"
            if key == "step":
                assert state[i][key] == want, f"state[{i}]['step'] = {state[i][key]}, want {want}"
            else:
                check(state[i][key], want, params[i].dtype, f"state[{i}][{key!r}]")


# ================================================================ valid inputs


@examples(150)
@given(prob=problems())
def test_matches_reference_and_thread_count_invariant(prob):
    rng = np.random.default_rng(prob["seed"] + 1)
    grads_seq = [make_grads(rng, prob["layout"], prob["none_prob"]) for _ in range(prob["steps"])]
    serial_params, serial_state, _ = trajectory(prob, grads_seq, Runtime(prob["isa"], 1, None))
    params, state, _ = trajectory(
        prob, grads_seq, Runtime(prob["isa"], prob["threads"], prob["threshold"])
    )
    assert_bitwise_equal(
        (params, state),
        (serial_params, serial_state),
        f"{prob['threads']} threads (threshold {prob['threshold']}) vs 1 thread",
    )
    compare_with_reference(params, state["state"], reference_run(prob, grads_seq), prob, grads_seq)


# -------------------------------------------------------------- functional, caller-owned state

FUNCTIONAL = {  # name -> (function, [(argument, reference state key)], takes step)
    "RMSprop": (
        F.rmsprop_,
        [
            ("square_avgs", "square_avg"),
            ("momentum_buffers", "momentum_buffer"),
            ("grad_avgs", "grad_avg"),
        ],
        False,
    ),
    "Adagrad": (F.adagrad_, [("state_sums", "sum")], True),
    "Adadelta": (F.adadelta_, [("square_avgs", "square_avg"), ("acc_deltas", "acc_delta")], False),
    "Adam": (
        F.adam_,
        [
            ("exp_avgs", "exp_avg"),
            ("exp_avg_sqs", "exp_avg_sq"),
            ("max_exp_avg_sqs", "max_exp_avg_sq"),
        ],
        True,
    ),
}


def functional_kwargs(name, hyper):
    """Optimizer-style hyperparameters -> the functional keyword arguments."""
    kw = dict(hyper)
    if name in ("Adam", "AdamW"):
        kw["beta1"], kw["beta2"] = kw.pop("betas")
        if name == "AdamW":
            kw["decoupled_weight_decay"] = True
    kw.pop("initial_accumulator_value", None)
    return kw


def needed_slots(name, hyper):
    if name == "RMSprop":
        return [True, hyper["momentum"] > 0, hyper["centered"]]
    if name in ("Adam", "AdamW"):
        return [True, True, hyper["amsgrad"]]
    return [True] * len(FUNCTIONAL[name][1])


def initial_state(rng, name, key, shape, dtype, others):
    """A valid state value (non-negative where the update takes its square root)."""
    u = np.asarray(rng.uniform(0.0, 1.0, shape))
    if key in ("square_avg", "sum", "acc_delta", "exp_avg_sq"):
        v = u
    elif key == "grad_avg":  # |grad_avg| <= sqrt(square_avg) / 2 keeps the variance positive
        v = np.sqrt(others["square_avg"]) * np.asarray(rng.uniform(-0.5, 0.5, shape))
    elif key == "max_exp_avg_sq":
        v = others["exp_avg_sq"] + u
    else:
        v = np.asarray(rng.standard_normal(shape))
    return np.asarray(v).astype(dtype)


@st.composite
def functional_problems(draw, min_size=0):
    name = draw(st.sampled_from(OPTIMIZERS))
    return dict(
        name=name,
        hyper=draw(HYPER[name]),
        layout=draw(layouts(min_size=min_size)),
        step=draw(st.one_of(st.integers(1, 5), st.integers(1, 10**6))),
        seed=draw(st.integers(0, 2**32 - 1)),
        isa=draw(st.sampled_from(ISAS)),
        threads=draw(st.integers(1, 3)),
        threshold=draw(THRESHOLD),
        state_offsets=draw(st.lists(OFFSET, min_size=9, max_size=9)),
    )


def functional_setup(prob):
    """Guarded params, grads and state lists (misaligned views), and float64 reference state."""
    name, hyper = prob["name"], prob["hyper"]
    fn, slots, takes_step = FUNCTIONAL["Adam" if name == "AdamW" else name]
    rng = np.random.default_rng(prob["seed"])
    values = make_values(rng, prob["layout"])
    params = [guarded(v, off) for v, (_, _, off) in zip(values, prob["layout"])]
    grads = [
        guarded(g, (off + 3) % 17)
        for g, (_, _, off) in zip(make_values(rng, prob["layout"]), prob["layout"])
    ]
    need = needed_slots(name, hyper)
    states = {arg: None for arg, _ in slots}
    ref_states = [{"step": prob["step"] - 1} for _ in params]
    for t, (shape, dt, _) in enumerate(prob["layout"]):
        others = {}
        for s, (arg, key) in enumerate(slots):
            if not need[s]:
                continue
            v = initial_state(rng, name, key, shape, dt, others)
            others[key] = v.astype(np.float64)
            ref_states[t][key] = v.astype(np.float64)
            if states[arg] is None:
                states[arg] = []
            off = prob["state_offsets"][(3 * t + s) % 9]
            states[arg].append(guarded(v, off))
    kwargs = functional_kwargs(name, hyper)
    if takes_step:
        kwargs["step"] = prob["step"]
    return fn, params, grads, states, kwargs, ref_states, values


def functional_reference(prob, values, grads, ref_states, jiggle=None):
    """One reference step; returns (params, states), both float64 (inputs left untouched)."""
    j = jiggle or Jiggle(0.0, 0)
    out = [j.array(np.array(v, dtype=np.float64)) for v in values]
    states = [
        {k: (v if k == "step" else j.array(np.array(v, dtype=np.float64))) for k, v in s.items()}
        for s in ref_states
    ]
    hyper = j.hyper(prob["hyper"])
    for p, g, s in zip(out, grads, states):
        STEP_FUNCTIONS[prob["name"]](p, j.array(np.array(g, dtype=np.float64)), s, **hyper)
    return out, states


def _functional_arrays(result):
    params, states = result
    return params + [v for s in states for k, v in sorted(s.items()) if k != "step"]


@examples(120)
@given(prob=functional_problems())
def test_functional_matches_reference_on_misaligned_state(prob):
    fn, params, grads, states, kwargs, ref_states, values = functional_setup(prob)
    serial = copy.deepcopy((params, states))
    with Runtime(prob["isa"], 1, None):
        fn(serial[0], grads, **{k: v for k, v in serial[1].items()}, **kwargs)
    with Runtime(prob["isa"], prob["threads"], prob["threshold"]):
        fn(params, grads, **states, **kwargs)
    assert_bitwise_equal((params, states), serial, "threaded vs serial")
    result = functional_reference(prob, values, grads, ref_states)
    base = _functional_arrays(result)
    sens = sensitivities(
        prob,
        lambda j: _functional_arrays(functional_reference(prob, values, grads, ref_states, j)),
        base,
    )
    index = {id(a): k for k, a in enumerate(base)}
    want_params, want_states = result
    for i, (p, w) in enumerate(zip(params, want_params)):
        assert_close_cond(p, w, sens[p.dtype][index[id(w)]], f"params[{i}]")
    slots = FUNCTIONAL["Adam" if prob["name"] == "AdamW" else prob["name"]][1]
    for arg, key in slots:
        for i, buf in enumerate(states[arg] or []):
            w = want_states[i][key]
            assert_close_cond(buf, w, sens[buf.dtype][index[id(w)]], f"{arg}[{i}]")
    for what, arrays in (("params", params), ("grads", grads), *states.items()):
        for i, a in enumerate(arrays or []):
            check_guards(a, f"{what}[{i}]")


@pytest.mark.parametrize("name", ["Adam", "AdamW", "Adagrad"])
@pytest.mark.parametrize("step", [2**53, 2**63 - 1, 2**63, 2**64])
def test_functional_huge_step_numbers(name, step):
    """Every int >= 1 is a 'valid' step for the Python check. Either the step is refused with
    TypeError/ValueError (nothing written), or the update matches the reference (beta**step
    is 0 for such steps). Runs in a subprocess: a signed overflow in the native step counter is
    UB, which a UBSan build turns into an abort."""
    code = f"""
        import numpy as np, adaptopt.functional as F
        from reference import STEP_FUNCTIONS
        name, step = {name!r}, {step}
        p, g = np.linspace(-1, 1, 11), np.linspace(0.5, -2, 11)
        states = [np.full(11, 0.25), np.full(11, 0.5)]
        before = [p.copy()] + [s.copy() for s in states]
        try:
            if name == "Adagrad":
                F.adagrad_([p], [g], [states[0]], step=step, lr_decay=1e-20)
            else:
                F.adam_([p], [g], [states[0]], [states[1]], step=step,
                        decoupled_weight_decay=name == "AdamW", weight_decay=0.01)
        except (TypeError, ValueError) as e:
            for a, b in zip([p] + states, before):
                assert a.tobytes() == b.tobytes(), "changed although the call raised"
            print("REFUSED", type(e).__name__, e)
            raise SystemExit(0)
        except BaseException as e:
            print("WRONG EXCEPTION", type(e).__name__, e)
            raise SystemExit(3)
        q = before[0].copy()
        if name == "Adagrad":
            ref = dict(step=step - 1, sum=before[1].copy())
            STEP_FUNCTIONS[name](q, g, ref, lr_decay=1e-20)
        else:
            ref = dict(step=step - 1, exp_avg=before[1].copy(), exp_avg_sq=before[2].copy())
            STEP_FUNCTIONS[name](q, g, ref, **({{}} if name == "AdamW" else
                                              dict(weight_decay=0.01)))
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-13, err_msg=f"step={{step}}")
        print("MATCHED")
    """
    out = run_isolated(code)
    assert out.returncode == 0, f"step={step}: {report(out)}"


def test_state_dict_step_near_int64_max():
    """A checkpoint's step counter close to 2**63 loads; stepping past it must not overflow
    the native int64 counter (UB) but either refuse or keep counting."""
    code = """
        import numpy as np, adaptopt
        p = np.ones(8)
        opt = adaptopt.Adam([p])
        sd = opt.state_dict()
        start = 2**63 - 1024              # exactly representable as a float, so it is accepted
        sd["state"] = {0: {"step": start, "exp_avg": np.zeros(8), "exp_avg_sq": np.zeros(8)}}
        opt.load_state_dict(sd)
        g = np.full(8, 0.5)
        for k in range(1030):
            before = p.copy()
            try:
                opt.step([g])
            except (TypeError, ValueError, OverflowError) as e:
                assert p.tobytes() == before.tobytes()
                print("REFUSED at", k, type(e).__name__, e)
                raise SystemExit(0)
            s = opt.state_dict()["state"][0]["step"]
            assert s == start + k + 1, f"step counter {s} after {k + 1} steps from {start}"
            assert np.isfinite(p).all(), f"non-finite params after {k + 1} steps: {p}"
        print("COUNTED", s)
    """
    out = run_isolated(code)
    assert out.returncode == 0, report(out)


def report(out):
    """Exit status, stdout and the interesting part of stderr (a sanitizer report's start)."""
    err = out.stderr
    starts = [
        i for i in (err.find("ERROR: AddressSanitizer"), err.find("runtime error:")) if i >= 0
    ]
    err = err[max(0, min(starts) - 300) :][:8000] if starts else err[-6000:]
    return f"rc={out.returncode}\nstdout:\n{out.stdout}\nstderr:\n{err}"


def run_isolated(code, timeout=120):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([TESTS_DIR, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# ================================================================ invalid inputs


def other_float(dt):
    return np.dtype(np.float64 if np.dtype(dt) == np.float32 else np.float32)


def bad_array(draw, shape, dtype, kind, allow_other_float=True):
    """An array that is invalid as a buffer of this shape/dtype in the way ``kind`` says.
    ``allow_other_float``: the other supported float type counts as wrong (not for a param)."""
    n = int(np.prod(shape, dtype=np.int64))
    if kind == "dtype":
        dt = draw(
            st.sampled_from(
                [
                    np.float16,
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
            out += [root(v) for k, v in entry.items() if k != "step"]
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


@st.composite
def bad_grad_cases(draw):
    prob = draw(problems(max_tensors=3))
    prob["none_prob"] = 0.0
    prob["lr_change"] = None
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
        bufs = [v for k, v in (state or {}).items() if k != "step"]
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
    name = draw(st.sampled_from(OPTIMIZERS))
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
    elif kind != "overlap":
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


# -------------------------------------------------------------- invalid hyperparameters

NONNEG = {
    "RMSprop": ["lr", "eps", "weight_decay", "momentum"],
    "Adagrad": ["lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"],
    "Adadelta": ["lr", "eps", "weight_decay"],
    "Adam": ["lr", "eps", "weight_decay"],
    "AdamW": ["lr", "eps", "weight_decay"],
}
UNIT = {
    "RMSprop": ["alpha"],
    "Adagrad": [],
    "Adadelta": ["rho"],
    "Adam": ["betas0", "betas1"],
    "AdamW": ["betas0", "betas1"],
}
FLAGS = {
    "RMSprop": ["centered", "nesterov", "eps_in_sqrt", "maximize"],
    "Adagrad": ["maximize"],
    "Adadelta": ["maximize"],
    "Adam": ["amsgrad", "maximize", "decoupled_weight_decay"],
    "AdamW": ["amsgrad", "maximize"],
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


@st.composite
def invalid_hyper(draw, name):
    """(hyperparameter dict to merge into a valid one, description)."""
    keys = (
        NONNEG[name]
        + UNIT[name]
        + FLAGS[name]
        + (["betas"] if name.startswith("Adam") else [])
        + (["nesterov_without_momentum"] if name == "RMSprop" else [])
    )
    key = draw(st.sampled_from(keys))
    if key == "nesterov_without_momentum":
        return dict(nesterov=True, momentum=draw(st.sampled_from([0, 0.0, -0.0]))), key
    if key == "betas":
        bad = draw(st.sampled_from([(0.9,), (0.9, 0.99, 0.999), "ab", 0.9, None, [], 7]))
        return dict(betas=bad), key
    if key in FLAGS[name]:
        return {key: draw(st.sampled_from(["yes", None, 1.5, [True], b"", np.float64(1.0)]))}, key
    if key in NONNEG[name]:
        value = draw(st.one_of(NEGATIVE, NAN, WRONG_TYPE))
    else:
        value = draw(st.one_of(NEGATIVE, NAN, AT_LEAST_ONE, WRONG_TYPE))
    if key.startswith("betas"):
        i = int(key[-1])
        betas = [0.9, 0.999]
        betas[i] = value
        return dict(betas=tuple(betas)), key
    return {key: value}, key


@st.composite
def bad_hyper_cases(draw):
    prob = draw(problems(max_tensors=2))
    prob["none_prob"] = 0.0
    prob["lr_change"] = None
    bad, key = draw(invalid_hyper(prob["name"]))
    group = draw(st.integers(0, 1 if prob["split"] else 0))
    return prob, bad, key, group


@examples(150)
@given(case=bad_hyper_cases())
def test_invalid_hyperparameter_is_refused_and_writes_nothing(case):
    prob, bad, key, group = case
    name = prob["name"]
    rng = np.random.default_rng(prob["seed"] + 1)
    grads_seq = [make_grads(rng, prob["layout"], 0.0) for _ in range(2)]
    values = make_values(np.random.default_rng(prob["seed"]), prob["layout"])

    # 1. At construction.
    params, groups = build_groups(values, prob)
    expect_refused(lambda: optimizer_class(name)(groups, **{**prob["hyper"], **bad}), None, params)

    # 2. Set later in a param group: refused at step(), nothing written, and once the value is
    # repaired the next step is a normal one. (initial_accumulator_value is only read when
    # the state is created, at construction, so a later change of it need not be checked.)
    if key == "initial_accumulator_value":
        return
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


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("value", [10**400, -(10**400)], ids=["1e400", "-1e400"])
def test_hyperparameter_int_too_large_for_a_double(name, value):
    """An int that no double can hold is an invalid hyperparameter like any other: TypeError or
    ValueError naming it (not an OverflowError from float()), at construction and in the
    functional layer."""
    p = np.ones(5, np.float32)
    with pytest.raises(EXC, match="lr"):
        optimizer_class(name)([p], lr=value)
    fn, slots, takes_step = FUNCTIONAL["Adam" if name == "AdamW" else name]
    states = {arg: [np.zeros(5, np.float32)] for arg, _ in slots[:2]}
    with pytest.raises(EXC, match="lr"):
        fn([p], [np.ones(5, np.float32)], **states, lr=value, **({"step": 1} if takes_step else {}))
    assert_bitwise_equal(p, np.ones(5, np.float32))


BAD_STEP = st.one_of(
    st.integers(max_value=0),
    st.sampled_from([1.0, 1.5, "1", None, True, [1]]),
    st.sampled_from([np.float64(2.0)]),
)


@st.composite
def bad_functional_cases(draw):
    prob = draw(functional_problems())
    name = prob["name"]
    slots = FUNCTIONAL["Adam" if name == "AdamW" else name][1]
    need = needed_slots(name, prob["hyper"])
    what = draw(
        st.sampled_from(["hyper", "step", "state", "missing_state", "state_count", "state_alias"])
    )
    if what == "step" and not FUNCTIONAL["Adam" if name == "AdamW" else name][2]:
        what = "hyper"
    arg = draw(st.sampled_from([a for (a, _), nd in zip(slots, need) if nd]))
    t = draw(st.integers(0, len(prob["layout"]) - 1))
    detail = None
    if what == "hyper":
        bad, _ = draw(invalid_hyper("Adam" if name == "AdamW" else name))
        if "betas" in bad:
            b = bad.pop("betas")
            if isinstance(b, tuple) and len(b) == 2:
                bad["beta1"], bad["beta2"] = b
            else:
                bad["beta1"] = b
        bad.pop("initial_accumulator_value", None)  # not a functional argument
        if not bad:
            bad = {"lr": math.nan}
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
    elif what == "state_count":
        detail = draw(st.sampled_from([-1, 1]))
    elif what == "state_alias":
        detail = draw(st.sampled_from(["param", "grad", "other_state"]))
    return prob, what, arg, t, detail


@examples(120)
@given(case=bad_functional_cases())
def test_functional_invalid_input_is_refused_and_writes_nothing(case):
    prob, what, arg, t, detail = case
    fn, params, grads, states, kwargs, _, _ = functional_setup(prob)
    states = {k: (None if v is None else list(v)) for k, v in states.items()}
    n_t = params[t].size
    if what == "hyper":
        kwargs.update(detail)
    elif what == "step":
        kwargs["step"] = detail
    elif what == "state":
        states[arg][t] = detail
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
            others = [a for a, v in states.items() if v is not None and a != arg]
            if others:
                states[arg][t] = states[others[0]][t]
            else:
                states[arg][t] = params[t]
    arrays = [*params, *grads] + [
        a for v in states.values() if v for a in v if isinstance(a, np.ndarray)
    ]
    with Runtime(prob["isa"], prob["threads"], prob["threshold"]):
        expect_refused(lambda: fn(params, grads, **states, **kwargs), None, arrays)


# -------------------------------------------------------------- buffers changed after construction


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("which", ["param", "state"])
def test_buffer_made_read_only_after_construction_is_not_written(name, which):
    """Writeability is part of the buffer contract: an array whose writeable flag was cleared
    after the optimizer was built must not be written behind the flag's back."""
    rng = np.random.default_rng(0)
    params = [guarded(v, 1) for v in (rng.standard_normal(37), rng.standard_normal(5))]
    grads = [[guarded(rng.standard_normal(p.shape), 2) for p in params] for _ in range(2)]
    opt = optimizer_class(name)(params)
    opt.step(grads[0])
    if which == "param":
        params[0].flags.writeable = False
    else:
        entry = opt.state_dict()["state"][0]
        next(v for k, v in entry.items() if k != "step").flags.writeable = False
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
