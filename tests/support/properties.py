"""The hypothesis machinery both property files share: profiles and the examples budget,
strategies of whole problems (any rule, its options, layouts, runtime settings, a change of
hyperparameters mid-run), runs of adaptopt and of the reference with the conditioning term,
the functional forms on caller-owned guarded state, and isolated subprocesses.

Profiles: "dev" (random) and "ci" (derandomized). CI=true selects "ci"; HYPOTHESIS_PROFILE
overrides. Neither keeps an example database (a failure prints its reproduce_failure blob).
ADAPTOPT_PROPERTY_SCALE=N runs N times as many examples.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap

import adaptopt
import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from reference import STEP_FUNCTIONS, RefOptimizer, initial_state

from support.arrays import check_guards, guarded
from support.compare import (
    SENSITIVITY_RUNS,
    UNIT_ROUNDOFF,
    Jiggle,
    assert_bitwise_equal,
    assert_close,
    assert_close_cond,
)
from support.configs import BOOL, FUNCTIONAL, HYPER, logu
from support.functional import function_of, functional_kwargs
from support.rules import NAMES, optimizer_class

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

# ADAPTOPT_PROPERTY_SCALE=20 multiplies every max_examples, for an occasional deep run.
SCALE = float(os.environ.get("ADAPTOPT_PROPERTY_SCALE", "1"))


def examples(n):
    return settings(max_examples=max(1, int(n * SCALE)))


ISAS = adaptopt.available_isas()
_core = adaptopt._core
EXC = (TypeError, ValueError)
TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ================================================================ strategies

# Small sizes often (every tail of 4/8/16 lanes), up to a few thousand.
SIZE = st.one_of(st.integers(0, 40), st.integers(0, 3000))
OFFSET = st.integers(0, 16)  # elements: every misalignment mod 64 bytes for both dtypes
DTYPE = st.sampled_from([np.float32, np.float64])
THRESHOLD = st.sampled_from([None, 1, 7, 100, 1000])  # None: the library default
RULE = st.sampled_from(NAMES)


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
    """A complete random valid optimizer run. ``change``: before step k, the last group's lr
    (("lr", value)) or all its hyperparameters (("hyper", dict): options switched on or off
    mid-run, buffers created then) are replaced. ``resume_at``: see ``trajectory``."""
    name = draw(RULE)
    hyper = draw(HYPER[name])
    lay = draw(layouts(max_tensors=max_tensors, min_size=min_size))
    split = draw(st.integers(0, len(lay) - 1))  # > 0: tensors [split:] form a second group
    group2 = draw(HYPER[name]) if split else None
    change = draw(st.one_of(
        st.none(),
        st.tuples(st.integers(1, 3), st.just("lr"), logu(1e-4, 0.1)),
        st.tuples(st.integers(1, 3), st.just("hyper"), HYPER[name]),
    ))
    return dict(
        name=name,
        hyper=hyper,
        layout=lay,
        split=split,
        group2=group2,
        steps=draw(st.integers(1, 4)),
        seed=draw(st.integers(0, 2**32 - 1)),
        none_prob=draw(st.sampled_from([0.0, 0.0, 0.3])),
        change=change,
        # before step k: state_dict() -> a new optimizer over copies of the params -> load
        resume_at=draw(st.one_of(st.none(), st.integers(1, 3))),
        isa=draw(st.sampled_from(ISAS)),
        threads=draw(st.integers(1, 3)),
        threshold=draw(THRESHOLD),
    )


def apply_change(prob, k, param_groups, jiggle=None):
    """Applies the problem's mid-run change before step k, if it is due."""
    change = prob["change"]
    if not change or change[0] != k:
        return
    value = change[2] if jiggle is None else (
        jiggle.value(change[2]) if change[1] == "lr" else jiggle.hyper(change[2]))
    if change[1] == "lr":
        param_groups[-1]["lr"] = value
    else:
        param_groups[-1].update(value)


# ================================================================ runtime settings


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


# ================================================================ runs


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


def trajectory(prob, grads_seq, runtime, resume=False):
    """Runs the adaptopt optimizer; returns (params, state_dict copy, optimizer). With
    ``resume``, before step ``prob["resume_at"]`` the run continues in a new optimizer over
    guarded copies of the params, which loads a deep copy of the old one's state_dict (so its
    param groups' hyperparameters, changed or not, come from the state_dict)."""
    values = make_values(np.random.default_rng(prob["seed"]), prob["layout"])
    params, groups = build_groups(values, prob)
    with runtime:
        opt = optimizer_class(prob["name"])(groups, **prob["hyper"])
        for k, grads in enumerate(grads_seq):
            if resume and k == prob["resume_at"]:
                sd = copy.deepcopy(opt.state_dict())
                params, groups = build_groups([p.copy() for p in params], prob)
                opt = optimizer_class(prob["name"])(groups, **prob["hyper"])
                opt.load_state_dict(sd)
            apply_change(prob, k, opt.param_groups)
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
                    st_[k] = j.array(v)

    jiggle_all()  # Adagrad's eager state
    for k, grads in enumerate(grads_seq):
        apply_change(prob, k, ref.param_groups, j)
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


def _ref_arrays(ref):
    """Params, then every state value (arrays and per-parameter floats), in a fixed order."""
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

    def check(got, want, dt, what, k):
        if sens is None:
            assert_close(got, want, err_msg=what)
        else:
            assert_close_cond(got, want, sens[np.dtype(dt)][k], what)

    k = 0
    for i, (p, r) in enumerate(zip(params, ref.params)):
        check(p, r, p.dtype, f"params[{i}] (dtype {p.dtype}, shape {p.shape})", k)
        k += 1
    for i, ref_state in enumerate(ref.state):
        keys = sorted(key for key in ref_state if key != "step")
        if not ref_state or (ref_state.get("step") == 0 and i not in state):
            k += len(keys)
            continue
        assert i in state, f"no state for params[{i}]"
        assert set(state[i]) == set(ref_state), (
            f"state[{i}] keys {sorted(state[i])}, want {sorted(ref_state)}")
        assert state[i]["step"] == ref_state["step"], (
            f"state[{i}]['step'] = {state[i]['step']}, want {ref_state['step']}")
        for key in keys:
            check(state[i][key], ref_state[key], params[i].dtype, f"state[{i}][{key!r}]", k)
            k += 1


# ================================================================ the functional forms


@st.composite
def functional_problems(draw, min_size=0):
    name = draw(RULE)
    return dict(
        name=name,
        hyper=draw(HYPER[name]),
        layout=draw(layouts(min_size=min_size)),
        step=draw(st.one_of(st.integers(1, 5), st.integers(1, 10**6))),
        seed=draw(st.integers(0, 2**32 - 1)),
        isa=draw(st.sampled_from(ISAS)),
        threads=draw(st.integers(1, 3)),
        threshold=draw(THRESHOLD),
        state_offsets=draw(st.lists(OFFSET, min_size=12, max_size=12)),
    )


def random_state_value(rng, key, shape, others, hyper, step):
    """A valid state value (non-negative where the update takes its square root; a grad_avg
    consistent with square_avg, so that the centered variance stays >= 0)."""
    u = np.asarray(rng.uniform(0.0, 1.0, shape))
    if key in ("square_avg", "sum", "acc_delta", "exp_avg_sq", "exp_inf"):
        return u
    if key == "grad_avg":  # |grad_avg| <= sqrt(square_avg * bias correction so far) / 2
        bc = 1 - hyper["alpha"] ** (step - 1) if hyper.get("bias_correction") else 1.0
        return np.sqrt(others["square_avg"] * bc) * np.asarray(rng.uniform(-0.5, 0.5, shape))
    if key == "max_exp_avg_sq":
        return others["exp_avg_sq"] + u
    return np.asarray(rng.standard_normal(shape))


def functional_setup(prob):
    """Guarded params, grads and state lists (misaligned views), the keyword arguments, and the
    float64 reference state. Returns (fn, params, grads, states, kwargs, ref_states, values);
    ``states`` maps the functional argument names to lists (None when the options do not need
    the buffer) or, for per-parameter scalars, to a guarded float64 array."""
    name, hyper = prob["name"], prob["hyper"]
    spec = FUNCTIONAL[name]
    full = functional_kwargs(name, hyper)
    rng = np.random.default_rng(prob["seed"])
    values = make_values(rng, prob["layout"])
    params = [guarded(v, off) for v, (_, _, off) in zip(values, prob["layout"])]
    grads = [
        guarded(g, (off + 3) % 17)
        for g, (_, _, off) in zip(make_values(rng, prob["layout"]), prob["layout"])
    ]
    states = {arg: None for arg in spec.slots}
    ref_states = [{"step": prob["step"] - 1} for _ in params]
    for t, (shape, dt, _) in enumerate(prob["layout"]):
        needed = initial_state(name, np.zeros(shape), **hyper)
        others = {}
        for s, (arg, key) in enumerate(spec.slots.items()):
            if key not in needed:
                continue
            v = random_state_value(rng, key, shape, others, {**hyper, **full}, prob["step"])
            v = np.asarray(v).astype(dt)
            others[key] = v.astype(np.float64)
            ref_states[t][key] = v.astype(np.float64)
            if states[arg] is None:
                states[arg] = []
            off = prob["state_offsets"][(3 * t + s) % 9]
            states[arg].append(guarded(v, off))
    for s, (arg, key) in enumerate(spec.scalars.items()):
        v = rng.uniform(0.01, 1.0, len(params))
        for t in range(len(params)):
            ref_states[t][key] = float(v[t])
        states[arg] = guarded(v, prob["state_offsets"][9 + s])
    kwargs = dict(functional_kwargs(name, hyper), step=prob["step"])
    return function_of(name), params, grads, states, kwargs, ref_states, values


def functional_reference(prob, values, grads, ref_states, jiggle=None):
    """One reference step; returns (params, states), both float64 (inputs left untouched). A
    buffer is new at step 1 (the functional forms' rule): SGD's momentum buffer then starts as
    a copy of the gradient, whatever the array held."""
    j = jiggle or Jiggle(0.0, 0)
    out = [j.array(np.array(v, dtype=np.float64)) for v in values]
    states = [
        {k: (v if k == "step" else j.array(np.array(v, dtype=np.float64)) if isinstance(v, np.ndarray)
             else j.value(v)) for k, v in s.items()}
        for s in ref_states
    ]
    if prob["step"] == 1 and prob["name"] == "SGD":
        for s in states:
            s.pop("momentum_buffer", None)
    hyper = j.hyper(prob["hyper"])
    for p, g, s in zip(out, grads, states):
        STEP_FUNCTIONS[prob["name"]](p, j.array(np.array(g, dtype=np.float64)), s, **hyper)
    return out, states


def functional_arrays(result):
    params, states = result
    return params + [v for s in states for k, v in sorted(s.items()) if k != "step"]


# ================================================================ subprocesses


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
