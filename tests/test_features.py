"""Trainer features: fused gradient clipping, the non-finite guard, sparse rows, lr schedules and
statistics, for every rule against a float64 reference, under every ISA; SGD's own checks."""

from __future__ import annotations

import copy
import math

import adaptopt
import numpy as np
import pytest
from reference import STEP_FUNCTIONS, RefOptimizer, clip_scale, defaults_of, initial_state
from support.arrays import DTYPES, random_arrays, random_grads
from support.compare import assert_bitwise_equal, assert_close, assert_unchanged, snapshot
from support.configs import OPTIONS, SPARSE, STATS
from support.pair import Pair
from support.rules import NAMES, by_dtype, config_id, has_key, optimizer_class

ALL = NAMES
SHAPES = [(37,), (5, 9), (1000,), (3,)]

# ------------------------------------------------------------------------------------------- SGD

# test_optimizers runs these on aligned arrays of every tail size; here misaligned.
SGD_CONFIGS = OPTIONS["SGD"]


@pytest.mark.parametrize("hyper", SGD_CONFIGS, ids=lambda h: ",".join(f"{k}={v}" for k, v in h.items()) or "default")
@by_dtype
def test_sgd_matches_reference(isa, hyper, dtype):
    rng = np.random.default_rng(1)
    pair = Pair("SGD", random_arrays(rng, SHAPES, dtype, misaligned=True), **hyper)
    for _ in range(50):
        pair.random_step(rng, misaligned=True)
    pair.check()


def test_sgd_state_and_validation():
    p = np.zeros(4)
    opt = adaptopt.SGD([p], lr=0.1)
    opt.step([np.ones(4)])
    assert set(opt.state[0]) == {"step"}  # no buffer without momentum, like torch
    with pytest.raises(ValueError, match="nesterov"):
        adaptopt.SGD([p], momentum=0.9, dampening=0.1, nesterov=True)
    with pytest.raises(ValueError, match="dampening="):
        adaptopt.SGD([p], dampening=1.5)
    with pytest.raises(ValueError, match="lr="):
        adaptopt.SGD([p], lr=-1)


# --------------------------------------------------------------------------------- clipping


def _clipped_reference(name, params, hyper, grads_seq, max_norm):
    ref = RefOptimizer(name, [p.copy() for p in params], **hyper)
    norms = []
    for grads in grads_seq:
        scale, norm = clip_scale(grads, max_norm)
        norms.append(norm)
        ref.step([np.asarray(g, np.float64) * scale for g in grads])
    return ref, norms


@pytest.mark.parametrize("name", ALL)
@by_dtype
def test_clipping_matches_reference(isa, name, dtype):
    rng = np.random.default_rng(2)
    params = random_arrays(rng, SHAPES, dtype)
    grads_seq = [[g * rng.uniform(0.01, 1.0) for g in random_grads(rng, params)] for _ in range(30)]
    max_norm = 5.0
    ref, norms = _clipped_reference(name, params, {}, grads_seq, max_norm)
    opt = optimizer_class(name)(params, max_grad_norm=max_norm)
    for grads, norm in zip(grads_seq, norms):
        opt.step(grads)
        assert opt.last_grad_norm == pytest.approx(norm, rel=1e-12)
    for p, r in zip(params, ref.params):
        assert_close(p, r)
    assert any(n > max_norm for n in norms) and any(n < max_norm for n in norms)


def test_clipping_norm_is_identical_for_every_thread_count(isa):
    rng = np.random.default_rng(3)
    base = random_arrays(rng, [(300_001,), (70_000,), (5,)], np.float32)
    grads = random_grads(rng, base)
    results = []
    for threads in (1, 2, 3, 4):
        adaptopt.set_num_threads(threads)
        params = [p.copy() for p in base]
        opt = adaptopt.Adam(params, max_grad_norm=1.0)
        opt.step(grads)
        results.append((opt.last_grad_norm, params))
    for norm, params in results[1:]:
        assert norm == results[0][0]
        assert_bitwise_equal(params, results[0][1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_native_grad_scale_equals_prescaled_gradients(isa, dtype):
    """multi_step's grad_scale (adaptopt.distributed's 1/P) multiplies the gradients inside the
    kernels, on top of the clipping coefficient; the norm and statistics see them as given."""
    rng = np.random.default_rng(4)
    base = random_arrays(rng, SHAPES, dtype)
    grads = random_grads(rng, base)
    scale = 1.0 / 3.0
    want = [p.copy() for p in base]
    ref = adaptopt.Adam(want, weight_decay=0.1, amsgrad=True)
    ref.step([np.multiply(g, dtype(scale), dtype=dtype) for g in grads])
    got = [p.copy() for p in base]
    opt = adaptopt.Adam(got, weight_decay=0.1, amsgrad=True)
    b = opt._bindings[0]
    _, _, native = b.missing_state(grads)
    hyper = b.hyper(0, opt.param_groups[0], opt._resolved).hyper
    norm, _, stats = adaptopt._core.multi_step([native], [hyper], grads, -1.0, False, True, True, None, None, scale)
    assert_bitwise_equal(got, want)
    assert norm == pytest.approx(math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads)))
    assert stats[0].grad_sq == pytest.approx(norm * norm, rel=1e-5)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="grad_scale"):
            adaptopt._core.multi_step([native], [hyper], grads, -1.0, False, False, False, None, None, bad)


def test_clipping_options_are_validated():
    p = np.zeros(3)
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="max_grad_norm="):
            adaptopt.RMSprop([p], max_grad_norm=bad)
    with pytest.raises(TypeError, match="max_grad_norm"):
        adaptopt.RMSprop([p], max_grad_norm="1")
    opt = adaptopt.RMSprop([p])
    opt.step([np.ones(3)])
    assert opt.last_grad_norm is None  # not computed unless clipping or the guard is on
    with pytest.raises(TypeError, match="unexpected keyword"):
        adaptopt.RMSprop([p], max_norm=1.0)


# ------------------------------------------------------------------------ non-finite guard


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_step_is_skipped_whole(isa, name, bad):
    rng = np.random.default_rng(4)
    params = random_arrays(rng, SHAPES, np.float32)
    hyper = {"momentum": 0.9} if has_key(name, "momentum") else {}
    guarded = optimizer_class(name)([p.copy() for p in params], skip_nonfinite=True, **hyper)
    plain = optimizer_class(name)([p.copy() for p in params], **hyper)
    gp, pp = guarded.param_groups[0]["params"], plain.param_groups[0]["params"]
    for step in range(6):
        grads = random_grads(rng, params)
        if step in (0, 3):  # a poisoned step, also as the very first one (no state yet)
            poisoned = [g.copy() for g in grads]
            poisoned[-1][1] = bad
            before = snapshot(None, gp), copy.deepcopy(guarded.state_dict()["state"])
            guarded.step(poisoned)
            assert_unchanged(before[0], None, gp)
            assert_bitwise_equal(guarded.state_dict()["state"], before[1])
            assert not math.isfinite(guarded.last_grad_norm)
        guarded.step(grads)
        plain.step(grads)
    assert guarded.skipped_steps == 2
    assert_bitwise_equal(gp, pp)
    sd_g, sd_p = guarded.state_dict(), plain.state_dict()
    assert_bitwise_equal(sd_g["state"], sd_p["state"])


# ------------------------------------------------------------------------------ sparse rows


def _coalesce(indices, values):
    uniq = sorted(set(indices))
    out = np.zeros((len(uniq), values.shape[1]))
    for i, v in zip(indices, values):
        out[uniq.index(i)] += v
    return uniq, out


def _lazy_reference(name, table, state, step, indices, values, hyper):
    """Applies the dense rule to the listed rows only, with the parameter's step count; a
    per-parameter scalar (NAdam's mu_product) advances once per step, as for a dense step."""
    fn = STEP_FUNCTIONS[name]
    scalars = {k: v for k, v in state.items() if not isinstance(v, np.ndarray)}
    for r, v in zip(*_coalesce(indices, values)):
        row = {k: a[r] for k, a in state.items() if isinstance(a, np.ndarray)}
        row.update(scalars, step=step)
        fn(table[r], v, row, **hyper)
        updated = {k: row[k] for k in scalars}
    state.update(updated)


def _initial_state(name, shape, hyper):
    """The reference's fresh state of a parameter of this shape (buffers and scalars)."""
    state = initial_state(name, np.zeros(shape), **hyper)
    del state["step"]
    return state


SPARSE_HYPER = SPARSE


@pytest.mark.parametrize("name", ALL)
@by_dtype
def test_sparse_rows_lazy_match_row_reference(isa, name, dtype):
    rng = np.random.default_rng(5)
    hyper = SPARSE_HYPER[name]
    table = rng.standard_normal((50, 13)).astype(dtype)
    ref_table = table.astype(np.float64)
    ref_state = _initial_state(name, table.shape, hyper)
    opt = optimizer_class(name)([table], **hyper)
    for step in range(20):
        indices = list(rng.integers(0, 50, size=8))  # with duplicates, unsorted
        values = rng.standard_normal((8, 13)).astype(dtype)
        untouched = np.setdiff1d(np.arange(50), indices)
        before = table[untouched].copy()
        opt.step([adaptopt.SparseRows(indices, values)])
        assert_bitwise_equal(table[untouched], before)
        _lazy_reference(name, ref_table, ref_state, step, indices, values.astype(np.float64), hyper)
    assert_close(table, ref_table)
    state = opt.state[0]
    assert set(state) == {"step", *ref_state}
    for k, v in ref_state.items():
        assert_close(state[k], v, err_msg=k)


def _sparse_and_dense_runs(make, shape, rows_per_step, seed, steps=10):
    """Steps make(params) with SparseRows and a twin with the equivalent dense gradient;
    returns both parameters."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape)
    b = a.copy()
    sparse, dense = make([a]), make([b])
    for _ in range(steps):
        idx = rng.integers(0, shape[0], size=rows_per_step)
        vals = rng.standard_normal((rows_per_step, shape[1]))
        g = np.zeros(shape)
        np.add.at(g, idx, vals)
        sparse.step([adaptopt.SparseRows(idx, vals)])
        dense.step([g])
    return a, b


@pytest.mark.parametrize("name", ALL)
def test_sparse_rows_dense_mode_equals_dense_gradient(isa, name):
    hyper = SPARSE_HYPER[name]
    # sparse_mode only affects SparseRows gradients: the dense twin may share the setting
    a, b = _sparse_and_dense_runs(lambda ps: optimizer_class(name)(ps, sparse_mode="dense", **hyper),
                                  (20, 6), 5, seed=6)
    assert_bitwise_equal(a, b)


def test_sparse_adagrad_lazy_equals_dense(isa):
    a, b = _sparse_and_dense_runs(lambda ps: adaptopt.Adagrad(ps, initial_accumulator_value=0.1),
                                  (30, 4), 6, seed=7)
    assert_close(a, b)


@pytest.mark.parametrize("mode", ["lazy", "dense"])
@pytest.mark.parametrize("case, exc, pattern", [
    ("out_of_range", ValueError, r"grads\[0\].*row index 10 is out of range"),
    ("negative", ValueError, r"grads\[0\].*row index -1 is out of range"),
    ("dtype", TypeError, r"grads\[0\]\.values.*dtype"),
    ("width", ValueError, r"grads\[0\]"),
])
def test_bad_sparse_rows_raise_and_change_nothing(mode, case, exc, pattern):
    table = np.ones((10, 3))
    opt = adaptopt.Adam([table], sparse_mode=mode)
    opt.step([np.ones((10, 3))])
    idx, vals = [1, 2], np.ones((2, 3))
    if case == "out_of_range":
        idx = [1, 10]
    elif case == "negative":
        idx = [-1, 2]
    elif case == "dtype":
        vals = np.ones((2, 3), np.float32)
    else:
        vals = np.ones((2, 4))
    before = snapshot(opt, [table])
    with pytest.raises(exc, match=pattern):
        opt.step([adaptopt.SparseRows(idx, vals)])
    assert_unchanged(before, opt, [table])


def test_sparse_rows_constructor_checks():
    with pytest.raises(TypeError, match="indices must be integers"):
        adaptopt.SparseRows([1.0, 2.0], np.ones((2, 3)))
    with pytest.raises(ValueError, match="values must have shape"):
        adaptopt.SparseRows([1, 2], np.ones((3, 3)))
    with pytest.raises(TypeError, match="values must be a numpy.ndarray"):
        adaptopt.SparseRows([1], [[1.0]])
    rows = adaptopt.SparseRows([4, 1, 4], np.array([[1.0], [2.0], [3.0]]))
    assert list(rows.indices) == [1, 4] and rows.values.ravel().tolist() == [2.0, 4.0]


def test_sparse_rows_on_a_1d_param_are_refused():
    opt = adaptopt.Adam([np.ones(10)])
    with pytest.raises(ValueError, match="2-D"):
        opt.step([adaptopt.SparseRows([1], np.ones((1, 1)))])


# -------------------------------------------------------------------------------- schedules

S = adaptopt.schedules


@pytest.mark.parametrize("sched, closed_form", [
    (S.constant(0.1), lambda t: 0.1),
    (S.step_decay(0.1, step_size=3, gamma=0.5), lambda t: 0.1 * 0.5 ** (t // 3)),
    (S.exponential_decay(0.1, gamma=0.9), lambda t: 0.1 * 0.9 ** t),
    (S.cosine(0.1, total=10), lambda t: 0.05 * (1 + math.cos(math.pi * min(t, 10) / 10))),
    (S.cosine(0.1, total=10, warmup=4, min_lr=0.01),
     lambda t: 0.1 * (t + 1) / 4 if t < 4 else 0.01 + 0.045 * (1 + math.cos(math.pi * min(t - 4, 10) / 10))),
    (S.chain([S.constant(0.01), S.exponential_decay(0.1, 0.5)], milestones=[3]),
     lambda t: 0.01 if t < 3 else 0.1 * 0.5 ** (t - 3)),
])
def test_schedules_match_closed_forms(sched, closed_form):
    for t in range(25):
        assert sched(t) == pytest.approx(closed_form(t), rel=1e-15, abs=1e-18)
    assert S.from_dict(sched.to_dict()) == sched


@pytest.mark.parametrize("name", ALL)
def test_scheduled_lr_equals_lr_set_by_hand(isa, name):
    sched = S.cosine(0.05, total=8, warmup=2, min_lr=0.001)
    rng = np.random.default_rng(8)
    params = random_arrays(rng, SHAPES, np.float64)
    a = optimizer_class(name)([p.copy() for p in params], lr=sched)
    b = optimizer_class(name)([p.copy() for p in params], lr=sched(0))
    for t in range(12):
        grads = random_grads(rng, params)
        b.param_groups[0]["lr"] = sched(t)
        a.step(grads)
        b.step(grads)
    assert_bitwise_equal(a.param_groups[0]["params"], b.param_groups[0]["params"])


def test_schedule_state_is_restored(isa, tmp_path):
    sched = S.step_decay(0.1, step_size=2, gamma=0.5)
    rng = np.random.default_rng(9)
    params = random_arrays(rng, SHAPES, np.float32)
    grads_seq = [random_grads(rng, params) for _ in range(9)]
    straight = adaptopt.RMSprop([p.copy() for p in params], lr=sched, momentum=0.9)
    for g in grads_seq:
        straight.step(g)
    first = adaptopt.RMSprop([p.copy() for p in params], lr=sched, momentum=0.9)
    for g in grads_seq[:5]:
        first.step(g)
    sd = copy.deepcopy(first.state_dict())
    first.save(tmp_path / "c.npz")
    for resume in ("state_dict", "checkpoint"):
        params2 = [p.copy() for p in first.param_groups[0]["params"]]
        second = adaptopt.RMSprop(params2, lr=sched, momentum=0.9)
        if resume == "state_dict":
            second.load_state_dict(sd)
        else:
            second.load(tmp_path / "c.npz")
        assert second.param_groups[0]["lr"] == sched
        for g in grads_seq[5:]:
            second.step(g)
        assert_bitwise_equal(params2, straight.param_groups[0]["params"])


def test_a_schedule_returning_an_invalid_lr_raises_and_changes_nothing():
    p = np.ones(3)
    opt = adaptopt.Adam([p], lr=lambda t: 0.1 if t < 1 else -1.0)
    opt.step([np.ones(3)])
    before = snapshot(opt, [p])
    with pytest.raises(ValueError, match="lr="):
        opt.step([np.ones(3)])
    assert_unchanged(before, opt, [p])


@pytest.mark.parametrize("dtype", DTYPES)
def test_functional_defaults_unchanged_by_features(dtype):
    # the classes and the functional layer still agree when no feature is used
    p = np.ones(5, dtype)
    adaptopt.functional.rmsprop_([p], [np.ones(5, dtype)], [np.zeros(5, dtype)])
    q = np.ones(5, dtype)
    adaptopt.RMSprop([q]).step([np.ones(5, dtype)])
    assert_bitwise_equal(p, q)


# ------------------------------------------------------------------------------- statistics


def _effective_lr(name, hyper, state, before, t):
    """The factor of g in the reference's update (for NAdam, of g and exp_avg together), from its
    state after the step."""
    h = {**defaults_of(name), **hyper}
    lr = h["lr"]
    if name == "RMSprop":
        v, eps = state["square_avg"], h["eps"]
        bc = 1 - h["alpha"] ** t if h["bias_correction"] else 1.0
        v = v / bc
        if h["centered"]:
            v = v - (state["grad_avg"] / bc) ** 2
        return lr / (np.sqrt(v + eps) if h["eps_in_sqrt"] else np.sqrt(v) + eps)
    if name == "Adagrad":
        clr = lr / (1 + (t - 1) * h["lr_decay"])
        return clr / (np.sqrt(state["sum"]) + h["eps"])
    if name == "Adadelta":
        eps = h["eps"]
        return lr * np.sqrt(before.get("acc_delta", 0.0) + eps) / np.sqrt(state["square_avg"] + eps)
    if name in ("Adam", "AdamW", "NAdam"):
        b1, b2 = h["betas"]
        vv = state["max_exp_avg_sq"] if h.get("amsgrad") else state["exp_avg_sq"]
        denom = np.sqrt(vv / (1 - b2 ** t) + h["eps_root"]) + h["eps"]
        if name != "NAdam":
            return (lr / (1 - b1 ** t)) / denom
        mu = [b1 * (1 - 0.5 * 0.96 ** (k * h["momentum_decay"])) for k in (t, t + 1)]
        prod = state["mu_product"]
        return (lr * (1 - mu[0]) / (1 - prod) + lr * mu[1] / (1 - prod * mu[1])) / denom
    if name == "RAdam":
        b1, b2 = h["betas"]
        bc2 = 1 - b2 ** t
        rho_inf = 2 / (1 - b2) - 1
        rho_t = rho_inf - 2 * t * b2 ** t / bc2
        if rho_t <= 5:
            return np.float64(lr / (1 - b1 ** t))
        rect = np.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
        adaptive = np.sqrt(bc2) / (np.sqrt(state["exp_avg_sq"] + h["eps_root"] * bc2) + h["eps"])
        return lr / (1 - b1 ** t) * adaptive * rect
    if name == "Adamax":
        return (lr / (1 - h["betas"][0] ** t)) / state["exp_inf"]
    return np.float64(lr)  # SGD


STATS_CONFIGS = [(name, hyper) for name in NAMES for hyper in STATS[name]]


@pytest.mark.parametrize("name, hyper", STATS_CONFIGS, ids=[config_id(n, h) for n, h in STATS_CONFIGS])
@by_dtype
def test_stats_match_reference(isa, name, hyper, dtype):
    rng = np.random.default_rng(10)
    n = 1003
    p = rng.standard_normal(n).astype(dtype)
    ref = RefOptimizer(name, [p.copy()], **hyper)
    opt = optimizer_class(name)([p], track_stats=True, **hyper)
    for t in range(1, 9):  # RAdam rectifies from t = 6
        g = rng.standard_normal(n).astype(dtype)
        old = ref.params[0].copy()
        before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in ref.state[0].items()}
        ref.step([g])
        opt.step([g])
        st = opt.last_stats[0]
        eff = _effective_lr(name, hyper, ref.state[0], before, t)
        rtol = 1e-4 if dtype == np.float32 else 1e-10
        assert st["elements"] == n
        assert st["grad_norm"] == pytest.approx(np.linalg.norm(g.astype(np.float64)), rel=rtol)
        assert st["update_rms"] == pytest.approx(np.sqrt(np.mean((ref.params[0] - old) ** 2)), rel=1e-3 if dtype == np.float32 else 1e-8)
        assert st["lr_mean"] == pytest.approx(np.mean(np.broadcast_to(eff, (n,))), rel=rtol)
        assert st["lr_min"] == pytest.approx(np.min(eff), rel=rtol)
        assert st["lr_max"] == pytest.approx(np.max(eff), rel=rtol)


def test_stats_are_per_group_and_thread_independent(isa):
    results = []
    for threads in (1, 2, 3):
        adaptopt.set_num_threads(threads)
        a, b = np.ones(200_000, np.float32), np.ones(50_001, np.float32)
        opt = adaptopt.RMSprop([{"params": [a]}, {"params": [b], "lr": 0.5}], track_stats=True)
        opt.step([np.full_like(a, 2.0), np.full_like(b, 3.0)])
        results.append(opt.last_stats)
    for st in results:
        assert st[0]["elements"] == 200_000 and st[1]["elements"] == 50_001
        assert st[0]["grad_norm"] == pytest.approx(2.0 * np.sqrt(200_000), rel=1e-6)
        assert st[1]["grad_norm"] == pytest.approx(3.0 * np.sqrt(50_001), rel=1e-6)
        assert st[1]["lr_min"] == st[1]["lr_max"] == pytest.approx(0.5 / (0.1 * 3.0 + 1e-8), rel=1e-6)
        for k in ("lr_min", "lr_max"):
            assert st[0][k] == results[0][0][k]
        assert st[0]["grad_norm"] == pytest.approx(results[0][0]["grad_norm"], rel=1e-12)


def test_stats_off_by_default_and_for_groups_without_grads():
    a, b = np.ones(3), np.ones(4)
    opt = adaptopt.Adam([{"params": [a]}, {"params": [b]}])
    opt.step([np.ones(3), np.ones(4)])
    assert opt.last_stats is None
    opt.track_stats = True
    opt.step([np.ones(3), None])
    assert opt.last_stats[0]["elements"] == 3 and opt.last_stats[1]["elements"] == 0
