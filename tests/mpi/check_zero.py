"""The checks of adaptopt.distributed, run on every rank under mpiexec:

    mpiexec -n 3 python tests/mpi/check_zero.py            # every check
    mpiexec -n 2 python tests/mpi/check_zero.py save DIR   # a checkpoint (and the run's data) in DIR
    mpiexec -n 3 python tests/mpi/check_zero.py resume DIR # load it at another world size, continue

Each distributed optimizer is compared with one process (adaptopt's own optimizer) stepping the
mean of the ranks' gradients. The gradients are multiples of 1/32 (their sums are exact in every
dtype, whatever MPI's reduction order) and the kernels scale the sum by 1/P as NumPy scales the
reference's mean, so without clipping both sides feed the kernels the same bits: params and state
must then be bit-identical (a stronger check than the float tolerance the design asks for); with
clipping or stochastic rounding they are compared to tolerance. 16-bit params are the exception
when P is not a power of two: the reference's mean is a 16-bit array (rounded), the kernels scale
the 16-bit sum in float32 (not rounded again); those are compared to 16-bit tolerance.

A failing check prints its traceback and aborts every rank (no rank is left in a collective);
success prints one line per check from rank 0 and "ALL OK".
"""

from __future__ import annotations

import copy
import os
import sys
import traceback

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import adaptopt as ao
import numpy as np
from adaptopt import _rules, _storage, schedules
from adaptopt.distributed import ZeroRedundancyOptimizer
from adaptopt.optim import Optimizer
from mpi4py import MPI
from support.compare import assert_bitwise_equal, assert_close
from support.configs import RICH

COMM = MPI.COMM_WORLD
RANK, P = COMM.Get_rank(), COMM.Get_size()
ao.set_num_threads(1)

# Sizes that cross buckets (bucket_bytes=512 below), a zero-size param, tails.
SHAPES = [(13, 7), (5,), (0, 3), (130,), (4, 33)]
SHAPES2 = [(17,), (3, 3)]
BF16 = _storage.BFLOAT16
EXACT16 = P & (P - 1) == 0  # 1/P a power of two: the 16-bit mean is exact on both sides


def grads_of(step, rank, shapes, dtype, seed=0):
    """Rank ``rank``'s gradients at ``step``: multiples of 1/32 in [-2, 2]."""
    rng = np.random.default_rng((seed, step, rank))
    return [(rng.integers(-64, 65, s) / 32.0).astype(dtype) for s in shapes]


def mean_grads(step, shapes, dtype, seed=0):
    """The mean over the ranks: the exact sum in the dtype, times 1/P in the math dtype (float32
    for 16-bit, then rounded to 16 bits: exact when P is a power of two)."""
    every = [grads_of(step, r, shapes, dtype, seed) for r in range(P)]
    out = []
    for i in range(len(shapes)):
        s = np.sum([e[i].astype(np.float64) for e in every], axis=0).astype(dtype)
        md = _storage.math_dtype(s)
        out.append(np.multiply(s, md.type(1.0 / P), dtype=md, casting="unsafe").astype(dtype)
                   if P > 1 else s)
    return out


def init_params(shapes, dtype, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


class Case:
    """A distributed optimizer and its single-process reference over the same initial params."""

    def __init__(self, cls, groups_kw, dtype, *, shapes=(SHAPES,), zero_kw=None, flat=False, **kw):
        self.cls, self.dtype, self.shapes = cls, np.dtype(dtype), [list(s) for s in shapes]
        self.init = [init_params(s, dtype, seed=1 + g) for g, s in enumerate(self.shapes)]
        if flat:
            self.params = []
            for g, s in enumerate(self.shapes):
                views = ZeroRedundancyOptimizer.flat_params(s, dtype, state_dtype=kw.get("state_dtype"),
                                                             bucket_bytes=(zero_kw or {}).get("bucket_bytes", 512))
                for v, x in zip(views, self.init[g]):
                    v[...] = x
                self.params.append(views)
        else:
            self.params = [[x.copy() for x in g] for g in self.init]
        self.ref_params = [[x.copy() for x in g] for g in self.init]
        groups = [{"params": ps, **gk} for ps, gk in zip(self.params, groups_kw)]
        ref_groups = [{"params": ps, **gk} for ps, gk in zip(self.ref_params, groups_kw)]
        zk = {"bucket_bytes": 512, **(zero_kw or {})}
        self.opt = ZeroRedundancyOptimizer(groups, cls, COMM, **zk, **kw)
        self.ref = cls(ref_groups, **{k: v for k, v in zk.items() if k != "bucket_bytes"}, **kw)
        self.t = 0

    def all_shapes(self):
        return [s for g in self.shapes for s in g]

    def grads(self, t, rank):
        return grads_of(t, rank, self.all_shapes(), self.dtype)

    def step(self, mine=None, mean=None, none=()):
        self.t += 1
        mine = self.grads(self.t, RANK) if mine is None else mine
        mean = mean_grads(self.t, self.all_shapes(), self.dtype) if mean is None else mean
        for i in none:
            mine[i] = mean[i] = None
        self.opt.step(mine)
        self.ref.step(mean)

    def check(self, exact=True, state=True, what=""):
        loose = self.dtype.itemsize == 2 and not EXACT16
        exact = exact and not loose
        flat_p = [p for g in self.params for p in g]
        flat_r = [p for g in self.ref_params for p in g]
        for i, (a, b) in enumerate(zip(flat_p, flat_r)):
            if exact:
                assert_bitwise_equal(a, b, f"{what} params[{i}]")
            elif loose:
                assert_close16(a, b, f"{what} params[{i}]")
            else:
                assert_close(as_float(a), b.astype(np.float64), err_msg=f"{what} params[{i}]")
        assert self.opt._step_count == self.ref._step_count, (self.opt._step_count, self.ref._step_count)
        assert self.opt.skipped_steps == self.ref.skipped_steps
        if state:
            check_pieces(self.opt, self.ref, exact, what, loose)


def assert_close16(a, b, what):
    """To 16-bit tolerance (a few bfloat16 ulps of values ~1)."""
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=3e-2, atol=3e-2,
                               err_msg=what)


def as_float(a):
    """float32 or float64 (tolerances follow the dtype; 16-bit values are compared as float32)."""
    a = np.asarray(a)
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float32)


def check_pieces(opt, ref, exact, what="", loose=False):
    """Every local piece's state equals the matching slice of the reference's state (``loose``:
    dequantized, to 16-bit tolerance)."""
    local, full = opt.optim.state_dict(dequantize=loose)["state"], ref.state_dict(dequantize=loose)["state"]
    seen = set()
    for j, pc in enumerate(opt.pieces):
        if pc.param is None:
            assert j not in local or not any(isinstance(v, np.ndarray) and v.size for v in local[j].values())
            continue
        if pc.param not in full:
            assert j not in local, f"{what}: piece {j} of param {pc.param} has state, the reference none"
            continue
        seen.add(pc.param)
        lay = opt.layouts[pc.group]
        a = pc.lo - lay.offsets[pc.param - lay.first]
        z = a + pc.hi - pc.lo
        mine, want = local[j], full[pc.param]
        assert set(mine) == set(want), f"{what}: piece {j} keys {sorted(mine)} vs {sorted(want)}"
        for k, v in want.items():
            if isinstance(v, np.ndarray):
                w = v[a // 256:-(-z // 256)] if k.endswith("_absmax") else v.reshape(-1)[a:z]
                if exact:
                    assert_bitwise_equal(mine[k], w, f"{what} state[{pc.param}][{k!r}][{a}:{z}]")
                elif loose:
                    assert_close16(mine[k], w, f"{what} state[{pc.param}][{k!r}]")
                else:
                    assert_close(as_float(mine[k]), np.asarray(w, np.float64),
                                 err_msg=f"{what} state[{pc.param}][{k!r}]")
            elif exact:
                assert mine[k] == v, f"{what} state[{pc.param}][{k!r}]: {mine[k]!r} vs {v!r}"
            else:
                assert abs(mine[k] - v) <= 1e-6 * max(1.0, abs(v)), (k, mine[k], v)
    # Every param with state has it on some rank.
    every = set().union(*COMM.allgather(seen))
    assert every == set(full), f"{what}: state of params {sorted(set(full) - every)} is on no rank"


CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def expect_error(exc, pattern, fn):
    """fn() must raise ``exc`` matching ``pattern`` on every rank."""
    try:
        fn()
    except exc as e:
        assert pattern in str(e), f"message {str(e)!r} lacks {pattern!r}"
        msgs = COMM.allgather(str(e))
        assert len(set(msgs)) == 1, f"ranks raised different messages: {msgs}"
        return
    raise AssertionError(f"{fn} did not raise {exc.__name__} on rank {RANK}")


# -- checks --------------------------------------------------------------------------------


@check
def every_rule_and_dtype():
    """Every rule, its default and its richest configuration, float32 and float64, two param
    groups (the second with its own lr and weight decay), params crossing buckets."""
    for spec in _rules.SPECS:
        cls = Optimizer._classes[spec.name]
        for hyper in ({}, RICH[spec.name]):
            for dtype in (np.float32, np.float64):
                second = {"lr": 0.5 * hyper.get("lr", spec.defaults["lr"]), "weight_decay": 0.05}
                c = Case(cls, [{}, second], dtype, shapes=(SHAPES, SHAPES2), **hyper)
                for _ in range(4):
                    c.step()
                c.check(what=f"{spec.name} {hyper} {np.dtype(dtype).name}")


@check
def zero_copy_views():
    """Params made by flat_params are used in place: nothing copied, the user's arrays are the
    flat buffer; gradients written into grad_buffers() need no copy either."""
    for dtype in (np.float32, np.float64):
        c = Case(ao.Adam, [{}], dtype, flat=True, amsgrad=True, weight_decay=0.1)
        assert not c.opt.copies_params
        for p, v in zip(c.params[0], c.opt.layouts[0].views):
            assert p.size == 0 or (np.shares_memory(p, c.opt.layouts[0].flat) and p.ctypes.data == v.ctypes.data)
        for _ in range(3):
            c.t += 1
            bufs = c.opt.grad_buffers()
            for b, g in zip(bufs, c.grads(c.t, RANK)):
                b[...] = g
            c.opt.step()
            c.ref.step(mean_grads(c.t, c.all_shapes(), c.dtype))
        c.check(what=f"flat {np.dtype(dtype).name}")
        # The same with the views passed explicitly, in one big bucket.
        d = Case(ao.RMSprop, [{}], dtype, flat=True, zero_kw={"bucket_bytes": 1 << 20}, momentum=0.9)
        assert not d.opt.copies_params and len(d.opt.layouts[0].buckets) == 1
        d.t += 1
        bufs = d.opt.grad_buffers()
        for b, g in zip(bufs, d.grads(d.t, RANK)):
            b[...] = g
        d.opt.step(bufs)
        d.ref.step(mean_grads(d.t, d.all_shapes(), d.dtype))
        d.check(what="flat, explicit views")


@check
def clipping_stats_schedule():
    """max_grad_norm (active), track_stats and an lr schedule, against one process."""
    for dtype in (np.float32, np.float64):
        lr = schedules.cosine(0.05, total=10, warmup=2)
        c = Case(ao.Adam, [{}, {"lr": 0.01}], dtype, shapes=(SHAPES, SHAPES2), lr=lr, max_grad_norm=1.0,
                 track_stats=True)
        for _ in range(4):
            c.step()
            assert abs(c.opt.last_grad_norm - c.ref.last_grad_norm) <= 1e-6 * c.ref.last_grad_norm
            assert c.ref.last_grad_norm > 1.0  # clipping is active
            for a, b in zip(c.opt.last_stats, c.ref.last_stats):
                assert a["elements"] == b["elements"], (a, b)
                for k in ("grad_norm", "update_rms", "lr_min", "lr_mean", "lr_max"):
                    assert abs(a[k] - b[k]) <= 1e-5 * max(1e-12, abs(b[k])), (k, a[k], b[k])
        c.check(exact=False, what=f"clip {np.dtype(dtype).name}")
        # Statistics without clipping: the kernels' own sums.
        d = Case(ao.SGD, [{}], dtype, lr=0.1, momentum=0.9, track_stats=True)
        d.step()
        for a, b in zip(d.opt.last_stats, d.ref.last_stats):
            for k in ("grad_norm", "update_rms", "lr_mean"):
                assert abs(a[k] - b[k]) <= 1e-5 * max(1e-12, abs(b[k])), (k, a[k], b[k])
        d.check()


@check
def skip_nonfinite_and_none_grads():
    """A NaN on one rank skips the step on every rank; a parameter without a gradient (None on
    every rank) is skipped as in one process."""
    c = Case(ao.Adam, [{}], np.float32, skip_nonfinite=True)
    c.step()
    mine = c.grads(c.t + 1, RANK)
    mean = mean_grads(c.t + 1, c.all_shapes(), c.dtype)
    if RANK == P - 1:
        mine[3][7] = np.nan
    mean[3][7] = np.nan
    c.step(mine, mean)
    assert c.opt.skipped_steps == 1 and c.opt.last_stats is None and not np.isfinite(c.opt.last_grad_norm)
    c.step(none=(0, 4))
    c.step()
    c.check(what="skip/None")


@check
def compact_storage():
    """bfloat16 and 8-bit state, and float16/bfloat16 params with master weights (gathered as
    16 bits); stochastic rounding to tolerance."""
    for kw in (dict(state_dtype="bfloat16"), dict(state_dtype="8bit")):
        c = Case(ao.Adam, [{}], np.float32, shapes=([(300,), (70, 9), (5,)],), weight_decay=0.1, **kw)
        for _ in range(3):
            c.step()
        c.check(what=str(kw))
    for dtype in (np.float16, BF16):
        c = Case(ao.AdamW, [{}], dtype, master_weights=True, lr=0.01)
        for _ in range(3):
            c.step()
        c.check(what=f"master {np.dtype(dtype).name}")
        c = Case(ao.SGD, [{}], dtype, stochastic_rounding=True, lr=0.01, momentum=0.9)
        for _ in range(3):
            c.step()
        for a, b in zip(c.params[0], c.ref_params[0]):  # other random bits: a few ulps apart
            np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), rtol=0.05, atol=0.05)


# Pairwise choices of param dtype x state_dtype x 16-bit mode (every pair of two of them
# appears), with the rule rotating: (rule, param dtype, state_dtype, mode, hyperparameters).
STORAGE_PAIRS = [
    (ao.Adam, np.float32, None, None, {}),
    (ao.AdamW, np.float32, "bfloat16", None, {}),
    (ao.RMSprop, np.float32, "8bit", None, {"momentum": 0.9}),
    (ao.Adam, np.float16, None, "master_weights", {}),
    (ao.SGD, np.float16, "bfloat16", "stochastic_rounding", {"momentum": 0.9}),
    (ao.AdamW, np.float16, "8bit", None, {}),
    (ao.RMSprop, np.float16, "bfloat16", "master_weights", {"momentum": 0.9}),
    (ao.Adam, np.float16, "8bit", "stochastic_rounding", {}),
    (ao.RMSprop, BF16, None, "stochastic_rounding", {}),
    (ao.Adam, BF16, "bfloat16", None, {"weight_decay": 0.1}),
    (ao.AdamW, BF16, "8bit", "master_weights", {}),
    (ao.SGD, BF16, None, None, {"momentum": 0.9}),
]


@check
def storage_pairs():
    """Compact storage through ZeRO: 16-bit params kept, reduced and gathered as 16 bits, the
    storage options passed to the local optimizer, state bytes per rank about 1/P of one
    process's (the pieces are the shards: a cache line or an 8-bit block of padding each)."""
    shapes = [(300,), (70, 9), (5,), (0,)]
    for cls, dtype, state_dtype, mode, hyper in STORAGE_PAIRS:
        what = f"{cls.__name__} {np.dtype(dtype).name} state_dtype={state_dtype} {mode}"
        kw = dict(hyper, lr=0.01)
        if state_dtype is not None:
            kw["state_dtype"] = state_dtype
        if mode is not None:
            kw[mode] = True
        c = Case(cls, [{}], dtype, shapes=(shapes,), **kw)
        lay = c.opt.layouts[0]
        assert lay.flat.dtype == dtype and lay.grad.dtype == dtype, what  # moved as 16 bits
        for g in c.opt.optim.param_groups:
            assert all(g[k] == c.ref.param_groups[0][k] for k in _storage.KEYS), what
        for _ in range(3):
            c.step()
        if mode == "stochastic_rounding":  # other random bits: a few ulps apart
            for i, (a, b) in enumerate(zip(c.params[0], c.ref_params[0])):
                assert_close16(a, b, f"{what} params[{i}]")
            check_pieces(c.opt, c.ref, False, what, loose=True)
        else:
            c.check(what=what)
        mine = sum(v.nbytes for e in c.opt.optim.state_dict()["state"].values()
                   for v in e.values() if isinstance(v, np.ndarray))
        total = sum(v.nbytes for e in c.ref.state_dict()["state"].values()
                    for v in e.values() if isinstance(v, np.ndarray))
        every = COMM.allgather(mine)
        assert sum(every) >= total, (what, every, total)
        pad = 4 * 2 * 256 * 4  # at most a padded block per param and slot
        assert max(every) <= total / P + pad, (what, every, total)


@check
def mixed_dtypes_and_strided_grads():
    """A float32 and a float64 group in one optimizer; 16-bit params rounded to nearest;
    gradients passed as strided (non-contiguous) arrays are copied correctly."""
    init32, init64 = init_params(SHAPES, np.float32), init_params(SHAPES2, np.float64, seed=5)
    ps = [[x.copy() for x in init32], [x.copy() for x in init64]]
    rs = [[x.copy() for x in init32], [x.copy() for x in init64]]
    opt = ZeroRedundancyOptimizer([{"params": ps[0]}, {"params": ps[1], "lr": 0.01}], ao.RMSprop, COMM,
                                  bucket_bytes=512, momentum=0.9, centered=True)
    ref = ao.RMSprop([{"params": rs[0]}, {"params": rs[1], "lr": 0.01}], momentum=0.9, centered=True)
    for t in range(1, 4):
        mine = grads_of(t, RANK, SHAPES, np.float32) + grads_of(t, RANK, SHAPES2, np.float64)
        mean = mean_grads(t, SHAPES, np.float32) + mean_grads(t, SHAPES2, np.float64)
        strided = []
        for g in mine:  # the same values, through a view with a stride of 2 along the last axis
            wide = np.zeros(g.shape[:-1] + (2 * g.shape[-1],), g.dtype) if g.ndim else g.copy()
            if g.ndim:
                wide[..., ::2] = g
                g = wide[..., ::2]
            strided.append(g)
        opt.step(strided)
        ref.step(mean)
    for a, b in zip(ps[0] + ps[1], rs[0] + rs[1]):
        assert_bitwise_equal(a, b, "mixed dtypes")
    check_pieces(opt, ref, True, "mixed dtypes")
    for dtype in (np.float16, BF16):
        c = Case(ao.Adam, [{}], dtype, lr=0.01)
        for _ in range(3):
            c.step()
        c.check(what=f"rounded {np.dtype(dtype).name}")


@check
def add_group():
    c = Case(ao.Adagrad, [{}], np.float64, lr=0.1)
    c.step()
    extra = init_params([(9,), (40,)], np.float64, seed=7)
    c.opt.add_param_group({"params": [x.copy() for x in extra], "lr": 0.2})
    c.ref.add_param_group({"params": [x.copy() for x in extra], "lr": 0.2})
    c.params.append(c.opt.param_groups[1]["params"])
    c.ref_params.append(c.ref.param_groups[1]["params"])
    c.shapes.append([(9,), (40,)])
    c.step()
    c.step()
    c.check(what="add_param_group")


@check
def collective_errors():
    """Bad input on one rank: the same error on every rank, nothing modified anywhere."""
    c = Case(ao.Adam, [{}], np.float32, max_grad_norm=5.0)
    c.step()
    before = copy.deepcopy(c.opt.optim.state_dict()), [p.copy() for p in c.params[0]]
    last = P - 1

    def bad_shape():
        g = c.grads(99, RANK)
        if RANK == last:
            g[1] = np.zeros(6, np.float32)
        c.opt.step(g)
    expect_error(ValueError, "grads[1]: shape (6,) does not match", bad_shape)
    if P > 1:
        expect_error(ValueError, f"rank {last}:", bad_shape)

    def bad_dtype():
        g = c.grads(99, RANK)
        if RANK == last:
            g[0] = g[0].astype(np.float64)
        c.opt.step(g)
    expect_error(TypeError, "does not match the parameter's float32", bad_dtype)

    def short():
        g = c.grads(99, RANK)
        c.opt.step(g[:-1] if RANK == last else g)
    expect_error(ValueError, "grads: expected 5 arrays", short)

    def bad_lr():
        if RANK == last:
            c.opt.param_groups[0]["lr"] = -1.0
        try:
            c.opt.step(c.grads(99, RANK))
        finally:
            c.opt.param_groups[0]["lr"] = 1e-3
    expect_error(ValueError, "Invalid learning rate", bad_lr)

    if P > 1:
        def disagree_lr():
            if RANK == 0:
                c.opt.param_groups[0]["lr"] = 2e-3
            try:
                c.opt.step(c.grads(99, RANK))
            finally:
                c.opt.param_groups[0]["lr"] = 1e-3
        expect_error(ValueError, "disagree", disagree_lr)

        def disagree_none():
            g = c.grads(99, RANK)
            if RANK == 0:
                g[3] = None
            c.opt.step(g)
        expect_error(ValueError, "disagree", disagree_none)

    def failing_schedule():  # any exception, not only TypeError and ValueError
        def lr(step):
            if RANK == last:
                raise ZeroDivisionError("schedule failed")
            return 1e-3
        c.opt.param_groups[0]["lr"] = lr
        try:
            c.opt.step(c.grads(99, RANK))
        finally:
            c.opt.param_groups[0]["lr"] = 1e-3
    expect_error(ZeroDivisionError, "schedule failed", failing_schedule)

    def sparse():
        g = c.grads(99, RANK)
        if RANK == last:
            g[0] = ao.SparseRows([0], np.ones((1, 7), np.float32))
        c.opt.step(g)
    expect_error(TypeError, "sparse rows are not supported", sparse)

    assert_bitwise_equal(c.opt.optim.state_dict(), before[0], "state after refused steps")
    assert_bitwise_equal(list(c.params[0]), before[1], "params after refused steps")
    c.step()
    c.check(exact=False, what="after refused steps")

    def bad_construct():
        ps = init_params(SHAPES, np.float32)
        if RANK == last:
            ps[1] = ps[1].astype(np.int32)
        ZeroRedundancyOptimizer(ps, ao.Adam, COMM)
    expect_error(TypeError, "params[1]: dtype int32", bad_construct)

    def bad_construct_lr():
        ZeroRedundancyOptimizer(init_params(SHAPES, np.float32), ao.Adam, COMM, lr=-1.0 if RANK == last else 1e-3)
    expect_error(ValueError, "Invalid learning rate", bad_construct_lr)


@check
def checkpoint_round_trip():
    """save/load at this world size, into and from one process's optimizer; a load that fails
    on one rank changes nothing on any rank."""
    path = COMM.bcast(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"zero-ckpt-{os.getpid()}.npz")
                      if RANK == 0 else None)
    for kw in (dict(), dict(state_dtype="8bit")):
        c = Case(ao.NAdam, [{}, {"lr": 1e-3}], np.float32, shapes=([(300,), (9, 40)], SHAPES2), **kw)
        c.step()
        c.step()
        c.opt.save(path)
        # The file is the one a single process writes: one process loads it and agrees.
        single = ao.NAdam([{"params": [x.copy() for x in g], **gk} for g, gk in
                           zip(c.init, ({}, {"lr": 1e-3}))], **kw)
        single.load(path)
        assert_bitwise_equal(single.state_dict(), c.ref.state_dict(), "single-process load")
        # A fresh distributed optimizer loads it and continues like the reference.
        d = Case(ao.NAdam, [{}, {"lr": 1e-3}], np.float32, shapes=([(300,), (9, 40)], SHAPES2), **kw)
        d.opt.load(path)
        d.ref = c.ref
        d.ref_params = c.ref_params
        d.t = c.t
        d.step()
        d.check(what=f"resumed {kw}")
        # A single-process checkpoint loads into the distributed optimizer.
        COMM.Barrier()
        if RANK == 0:
            c.ref.save(path)
        COMM.Barrier()
        e = Case(ao.NAdam, [{}, {"lr": 1e-3}], np.float32, shapes=([(300,), (9, 40)], SHAPES2), **kw)
        e.opt.load(path)
        e.ref, e.ref_params, e.t = c.ref, c.ref_params, d.t
        e.check(what="loaded from one process")
    # A path that is no path on one rank: every rank raises before anything is gathered.
    expect_error(TypeError, "", lambda: e.opt.save(None if RANK == P - 1 else path))
    if RANK == 0:  # rank 0 had opened its temporary file: removed
        assert not [f for f in os.listdir(os.path.dirname(path)) if f.startswith(f".{os.path.basename(path)}")]
    # A missing file on one rank: every rank raises, nothing changes.
    before = copy.deepcopy(e.opt.optim.state_dict())
    bad = path if RANK != P - 1 else path + ".missing"
    expect_error(FileNotFoundError, "", lambda: e.opt.load(bad))
    assert_bitwise_equal(e.opt.optim.state_dict(), before, "state after a refused load")
    COMM.Barrier()
    if RANK == 0:
        os.unlink(path)


# -- cross-size checkpoints ----------------------------------------------------------------

RESHARD_GROUPS = ({}, {"lr": 2e-3, "weight_decay": 0.1})


def reshard_case():
    return Case(ao.Adam, RESHARD_GROUPS, np.float32, shapes=(SHAPES, SHAPES2), amsgrad=True)


def save_mode(directory):
    c = reshard_case()
    for _ in range(3):
        c.step()
    c.opt.save(os.path.join(directory, "zero.npz"))
    if RANK == 0:
        c.ref.save(os.path.join(directory, "ref.npz"))
    COMM.Barrier()


def resume_mode(directory):
    """Loads the checkpoint saved at another world size and continues; the reference resumes
    from the single-process checkpoint of the same run. (The mean gradients differ with the
    world size, but both sides use this run's.)"""
    c = reshard_case()
    c.opt.load(os.path.join(directory, "zero.npz"))
    c.ref.load(os.path.join(directory, "ref.npz"))
    c.t = 3
    c.check(what="after resharding load")
    for _ in range(2):
        c.step()
    c.check(what="resharded, 2 more steps")


def main(argv):
    mode = argv[1] if len(argv) > 1 else "all"
    try:
        if mode == "all":
            only = set(argv[2:])
            for fn in CHECKS:
                if only and fn.__name__ not in only:
                    continue
                fn()
                COMM.Barrier()
                if RANK == 0:
                    print(f"ok {fn.__name__} (P={P})", flush=True)
        elif mode == "save":
            save_mode(argv[2])
        elif mode == "resume":
            resume_mode(argv[2])
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    except BaseException:  # noqa: BLE001 - any failure must abort every rank
        sys.stdout.flush()
        sys.stderr.write(f"rank {RANK} of {P} failed:\n{traceback.format_exc()}")
        sys.stderr.flush()
        COMM.Abort(1)
    COMM.Barrier()
    if RANK == 0:
        print(f"ALL OK ({mode}, P={P})", flush=True)


if __name__ == "__main__":
    main(sys.argv)
