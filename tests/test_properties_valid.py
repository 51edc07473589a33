"""Property-based tests (hypothesis), valid inputs.

Random rules of the registry with random valid hyperparameters (every option, including a
change of lr or of all options mid-run, and a state_dict round trip mid-run), random sizes (every tail length), misaligned views into
larger guarded buffers, both dtypes, every ISA, 1-3 threads with random parallel thresholds: the
result matches the float64 reference, is bit-identical to the single-threaded run of the same
ISA, and nothing outside the views is touched. The functional forms likewise on caller-owned
misaligned state, and step numbers up to 2**64.

Profiles and ADAPTOPT_PROPERTY_SCALE: see support/properties.py.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given
from support.arrays import check_guards
from support.compare import assert_bitwise_equal, assert_close_cond
from support.configs import FUNCTIONAL, RICH
from support.properties import (
    Runtime,
    compare_with_reference,
    examples,
    functional_arrays,
    functional_problems,
    functional_reference,
    functional_setup,
    make_grads,
    problems,
    reference_run,
    report,
    run_isolated,
    sensitivities,
    trajectory,
)
from support.rules import NAMES, by_name

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


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
    if prob["resume_at"] is not None and prob["resume_at"] < prob["steps"]:
        resumed_params, resumed_state, _ = trajectory(
            prob, grads_seq, Runtime(prob["isa"], 1, None), resume=True
        )
        assert_bitwise_equal(
            (resumed_params, resumed_state["state"]),
            (serial_params, serial_state["state"]),
            f"state_dict round trip before step {prob['resume_at']} vs an uninterrupted run",
        )


# -------------------------------------------------------------- functional, caller-owned state


@examples(120)
@given(prob=functional_problems())
def test_functional_matches_reference_on_misaligned_state(prob):
    fn, params, grads, states, kwargs, ref_states, values = functional_setup(prob)
    serial = copy.deepcopy((params, states))
    with Runtime(prob["isa"], 1, None):
        fn(serial[0], grads, **serial[1], **kwargs)
    with Runtime(prob["isa"], prob["threads"], prob["threshold"]):
        fn(params, grads, **states, **kwargs)
    assert_bitwise_equal((params, states), serial, "threaded vs serial")
    result = functional_reference(prob, values, grads, ref_states)
    base = functional_arrays(result)
    sens = sensitivities(
        prob,
        lambda j: functional_arrays(functional_reference(prob, values, grads, ref_states, j)),
        base,
    )
    index = {id(a): k for k, a in enumerate(base)}
    want_params, want_states = result
    for i, (p, w) in enumerate(zip(params, want_params)):
        assert_close_cond(p, w, sens[p.dtype][index[id(w)]], f"params[{i}]")
    spec = FUNCTIONAL[prob["name"]]
    for arg, key in spec.slots.items():
        for i, buf in enumerate(states[arg] or []):
            w = want_states[i][key]
            assert_close_cond(buf, w, sens[buf.dtype][index[id(w)]], f"{arg}[{i}]")
    for arg, key in spec.scalars.items():
        for i, value in enumerate(states[arg]):
            w = want_states[i][key]
            k = next(k for k, a in enumerate(base) if a is w)
            assert_close_cond(value, w, sens[params[i].dtype][k], f"{arg}[{i}]")
    for what, arrays in (("params", params), ("grads", grads), *states.items()):
        for i, a in enumerate(arrays if isinstance(arrays, list) else [arrays] if arrays is not None else []):
            check_guards(a, f"{what}[{i}]")


# The configuration each rule is run with at huge step numbers (RICH unless listed).
HUGE_STEP_HYPER = {
    "Adagrad": dict(lr_decay=1e-20),
    "Adam": dict(weight_decay=0.01),
    "AdamW": dict(weight_decay=0.01),
}


@by_name
def test_functional_huge_step_numbers(name):
    """Every int >= 1 is a 'valid' step for the Python check. For steps 2**53, 2**63 - 1, 2**63
    and 2**64, either the step is refused with TypeError/ValueError (nothing written), or the
    update matches the reference (beta**step is 0 for such steps). Runs in a subprocess: a
    signed overflow in the native step counter is UB, which a UBSan build turns into an
    abort."""
    code = f"""
        import numpy as np
        from reference import STEP_FUNCTIONS
        from support.functional import functional_step, new_state
        name, hyper = {name!r}, {HUGE_STEP_HYPER.get(name, RICH[name])!r}
        VALUES = dict(square_avg=0.5, grad_avg=0.1, exp_avg_sq=0.5, max_exp_avg_sq=0.75,
                      exp_inf=0.5, mu_product=0.5)
        for step in (2**53, 2**63 - 1, 2**63, 2**64):
            p, g = np.linspace(-1, 1, 11), np.linspace(0.5, -2, 11)
            state = new_state(name, hyper, [p])
            for key, value in state.items():
                if isinstance(value, list):
                    value[0][...] = VALUES.get(key, 0.25)
                else:
                    value[...] = VALUES.get(key, 0.25)
            before = [p.copy()] + [np.array(v[0] if isinstance(v, list) else v, copy=True)
                                   for v in state.values()]
            try:
                functional_step(name, [p], [g], state, hyper, step)
            except (TypeError, ValueError) as e:
                after = [p] + [v[0] if isinstance(v, list) else v for v in state.values()]
                for a, b in zip(after, before):
                    assert a.tobytes() == b.tobytes(), "changed although the call raised"
                print("REFUSED", step, type(e).__name__, e)
                continue
            except BaseException as e:
                print("WRONG EXCEPTION", step, type(e).__name__, e)
                raise SystemExit(3)
            q = before[0].copy()
            ref = {{"step": step - 1}}
            for key, b in zip(state, before[1:]):
                ref[key] = float(b[0]) if b.ndim == 1 and key == "mu_product" else b.copy()
            STEP_FUNCTIONS[name](q, g, ref, **hyper)
            np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-13, err_msg=f"step={{step}}")
            print("MATCHED", step)
    """
    out = run_isolated(code)
    assert out.returncode == 0, f"{name}: {report(out)}"


def test_state_dict_step_near_int64_max():
    """A checkpoint's step counter close to 2**63 loads; stepping past it must not overflow
    the native int64 counter (UB) but either refuse or keep counting. Every rule, in one
    subprocess."""
    code = f"""
        import copy
        import numpy as np, adaptopt
        from support.configs import RICH
        for name in {NAMES!r}:
            p = np.ones(8)
            opt = getattr(adaptopt, name)([p], **RICH[name])
            opt.step([np.full(8, 0.25)])
            sd = copy.deepcopy(opt.state_dict())
            start = 2**63 - 1024          # exactly representable as a float, so it is accepted
            sd["state"][0]["step"] = start
            opt.load_state_dict(sd)
            g = np.full(8, 0.5)
            for k in range(1030):
                before = p.copy()
                try:
                    opt.step([g])
                except (TypeError, ValueError, OverflowError) as e:
                    assert p.tobytes() == before.tobytes(), name
                    print(name, "REFUSED at", k, type(e).__name__, e)
                    break
                s = opt.state_dict()["state"][0]["step"]
                assert s == start + k + 1, f"{{name}}: step counter {{s}} after {{k + 1}} steps"
                assert np.isfinite(p).all(), f"{{name}}: non-finite params after {{k + 1}} steps: {{p}}"
            else:
                print(name, "COUNTED", s)
    """
    out = run_isolated(code)
    assert out.returncode == 0, report(out)
