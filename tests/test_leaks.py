"""Leaks: resident memory stays flat over 100 000 steps, the bindings keep no stray Python
references (after good steps and after errors), no gc-tracked objects pile up, and a deleted
optimizer releases its arrays."""

from __future__ import annotations

import gc
import os
import sys
import weakref

import adaptopt
import adaptopt.functional as F
import numpy as np
import pytest
from support.configs import RICH
from support.rules import NAMES, optimizer_class

PAGE = os.sysconf("SC_PAGE_SIZE")
MiB = 1 << 20


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def _under_asan():
    with open("/proc/self/maps") as f:
        return "libasan" in f.read()


ASAN = _under_asan()


def small_problem(name, seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(10).astype(np.float32), rng.standard_normal(3), np.zeros(())]
    grads = [np.array(rng.standard_normal(p.shape) * 1e-3, dtype=p.dtype) for p in params]
    return params, grads, optimizer_class(name)(params, **RICH[name])


def _measure_rss_growth(work, warmup, reps):
    for _ in range(warmup):
        work()
    gc.collect()
    before = rss_bytes()
    for _ in range(reps):
        work()
    gc.collect()
    return rss_bytes() - before


def _rss_check(growth, what):
    limit = 2 * MiB
    assert growth < limit, f"RSS grew by {growth / MiB:.2f} MiB over {what}"


# ---------------------------------------------------------------- resident memory

# Under AddressSanitizer freed blocks sit in a quarantine (hundreds of MiB by default) before
# reuse, so RSS grows by design; .ci/sanitize.sh runs this file with the quarantine off.
rss = pytest.mark.skipif(
    ASAN and "quarantine_size_mb=0" not in os.environ.get("ASAN_OPTIONS", ""),
    reason="RSS is not meaningful under ASan with its quarantine on (run with "
    "ASAN_OPTIONS=quarantine_size_mb=0)",
)


@rss
@pytest.mark.parametrize("name", NAMES)
def test_rss_flat_over_100k_steps(name):
    params, grads, opt = small_problem(name)
    growth = _measure_rss_growth(lambda: opt.step(grads), warmup=5_000, reps=100_000)
    _rss_check(growth, f"100000 {name} steps")
    assert np.isfinite(params[0]).all()


@rss
def test_rss_flat_over_failing_steps():
    _, grads, opt = small_problem("Adam")
    bad = [grads[0], grads[1].astype(np.float32), grads[2]]  # dtype mismatch in grads[1]

    def fail():
        try:
            opt.step(bad)
        except TypeError:
            pass
        else:
            raise AssertionError("the bad step did not raise")

    growth = _measure_rss_growth(fail, warmup=2_000, reps=30_000)
    _rss_check(growth, "30000 failing steps")


@rss
def test_rss_flat_over_functional_calls_and_new_optimizers():
    p = [np.zeros(17, np.float32), np.zeros(5)]
    g = [np.ones(17, np.float32), np.ones(5)]
    m = [np.zeros_like(a) for a in p]
    v = [np.zeros_like(a) for a in p]
    k = [0]

    def work():
        k[0] += 1
        F.adam_(p, g, m, v, step=k[0])
        opt = adaptopt.RMSprop(p, momentum=0.9, centered=True)
        opt.step(g)

    growth = _measure_rss_growth(work, warmup=1_000, reps=20_000)
    _rss_check(growth, "20000 functional calls and optimizer lifetimes")


# ---------------------------------------------------------------- Python references


def _refcounts(arrays):
    return [sys.getrefcount(a) for a in arrays]


def _state_arrays(opt):
    return [
        v for entry in opt.state_dict()["state"].values() for v in entry.values()
        if isinstance(v, np.ndarray)
    ]


def _bad_step_cases(params, grads, opt):
    """Calls that must raise, each exercising a different error path of the bindings."""
    state = _state_arrays(opt)
    strided = np.zeros(20, np.float32)[::2]
    return [
        ("dtype", lambda: opt.step([grads[0], grads[1].astype(np.float32), grads[2]]), TypeError),
        ("shape", lambda: opt.step([np.zeros(11, np.float32), grads[1], grads[2]]), ValueError),
        ("strided", lambda: opt.step([strided, grads[1], grads[2]]), ValueError),
        ("alias_param", lambda: opt.step([params[0], grads[1], grads[2]]), ValueError),
        ("alias_state", lambda: opt.step([state[0], grads[1], grads[2]]), ValueError),
        ("not_array", lambda: opt.step([grads[0], [0.0] * 3, grads[2]]), TypeError),
        ("count", lambda: opt.step(grads[:2]), ValueError),
    ]


@pytest.mark.parametrize("name", NAMES)
def test_refcounts_unchanged_by_steps_and_errors(name):
    params, grads, opt = small_problem(name)
    opt.step(grads)  # creates the state
    opt.step(grads)  # plans the steady-state step (the plan holds one reference to each param)
    state = _state_arrays(opt)
    watched = [*params, *grads, *state]
    cases = _bad_step_cases(params, grads, opt)
    before = _refcounts(watched)
    for _ in range(5_000):
        opt.step(grads)
    assert _refcounts(watched) == before, "a successful step changed reference counts"
    for what, call, exc in cases:
        for _ in range(500):
            try:
                call()
            except exc:
                pass
            else:
                raise AssertionError(f"{what}: did not raise {exc.__name__}")
        assert _refcounts(watched) == before, f"failing step ({what}) changed reference counts"


def test_refcounts_unchanged_by_invalid_hyperparameters():
    params, grads, opt = small_problem("RMSprop")
    opt.step(grads)
    opt.step(grads)  # the steady state: a plan holds one reference to each param
    watched = [*params, *grads, *_state_arrays(opt)]
    before = _refcounts(watched)
    for bad in (float("nan"), -1.0, "x"):
        opt.param_groups[0]["lr"] = bad
        for _ in range(500):
            with pytest.raises((TypeError, ValueError)):
                opt.step(grads)
    opt.param_groups[0]["lr"] = 1e-2
    opt.step(grads)
    assert _refcounts(watched) == before


def test_refcounts_unchanged_by_functional_calls_and_failures():
    """The functional layer builds a native group per call; a constructor that fails halfway
    (bad buffer for the second tensor) must drop the references it already took."""
    p = [np.zeros(9, np.float32), np.zeros(4)]
    g = [np.ones(9, np.float32), np.ones(4)]
    m = [np.zeros_like(a) for a in p]
    v = [np.zeros_like(a) for a in p]
    bad_v = [v[0], np.zeros(4, np.float32)]  # wrong dtype for the second tensor
    ro = np.zeros(4)
    ro.flags.writeable = False
    watched = [*p, *g, *m, *v, bad_v[1], ro]
    before = _refcounts(watched)
    for k in range(1, 2_001):
        F.adam_(p, g, m, v, step=k)
    assert _refcounts(watched) == before
    for call, exc in [
        (lambda: F.adam_(p, g, m, bad_v, step=1), TypeError),
        (lambda: F.adam_(p, g, m, [v[0], ro], step=1), ValueError),
        (lambda: F.adam_(p, g, m, [v[0], p[1]], step=1), ValueError),
        (lambda: F.adam_(p, [g[0], m[1]], m, v, step=1), ValueError),
        (lambda: F.adam_(p, g, m, v, step=0), ValueError),
        (lambda: F.rmsprop_(p, g, m, lr=float("nan")), ValueError),
        (lambda: F.rmsprop_(p, g, m, momentum=0.9), ValueError),  # momentum_buffers missing
    ]:
        for _ in range(500):
            with pytest.raises(exc):
                call()
    assert _refcounts(watched) == before


@pytest.mark.parametrize("name", NAMES)
def test_gc_object_count_flat_over_10k_steps(name):
    _, grads, opt = small_problem(name)
    for _ in range(100):
        opt.step(grads)
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(10_000):
        opt.step(grads)
    gc.collect()
    growth = len(gc.get_objects()) - before
    assert growth < 50, f"{growth} more gc-tracked objects after 10000 steps"


def test_gc_object_count_flat_over_10k_failing_steps():
    _, grads, opt = small_problem("Adam")
    opt.step(grads)
    bad = [grads[0], np.zeros(3, np.float32), grads[2]]

    def fail():
        try:
            opt.step(bad)
        except TypeError:
            pass

    for _ in range(100):
        fail()
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(10_000):
        fail()
    gc.collect()
    growth = len(gc.get_objects()) - before
    assert growth < 50, f"{growth} more gc-tracked objects after 10000 failing steps"


# ---------------------------------------------------------------- lifetimes


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("after", ["steps", "failed_step", "state_dict_round_trip"])
def test_deleted_optimizer_releases_its_arrays(name, after):
    params, grads, opt = small_problem(name)
    for _ in range(3):
        opt.step(grads)
    if after == "failed_step":
        try:
            opt.step([grads[0], np.zeros(3, np.float32), grads[2]])
        except TypeError:
            pass
    elif after == "state_dict_round_trip":
        sd = opt.state_dict()
        opt.load_state_dict(sd)
        del sd
    refs = [weakref.ref(a) for a in [*params, *_state_arrays(opt)]]
    opt_ref = weakref.ref(opt)
    del opt, params
    gc.collect()
    assert opt_ref() is None, "the optimizer is still alive"
    alive = [i for i, r in enumerate(refs) if r() is not None]
    assert not alive, f"arrays {alive} (params then state) outlive the optimizer"


def test_functional_call_keeps_no_reference():
    p = [np.zeros(9, np.float32)]
    s = [np.zeros(9, np.float32)]
    g = [np.ones(9, np.float32)]
    F.adagrad_(p, g, s, step=1)
    try:
        F.adagrad_(p, [np.ones(9)], s, step=2)  # dtype mismatch
    except TypeError:
        pass
    refs = [weakref.ref(a) for a in (*p, *s, *g)]
    del p, s, g
    gc.collect()
    assert all(r() is None for r in refs)
