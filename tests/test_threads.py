"""Thread count: results are bit-identical for any number of threads within one ISA (also the
per-group statistics and the clipping norm); the default count; threadpoolctl; steps
interleaved with NumPy matmuls from several Python threads. No timing assertions here: speed in
a training loop is measured by ``python -m adaptopt.bench --mode trainer-loop``."""

import copy
import ctypes
import os
import subprocess
import sys
import textwrap
import threading

import adaptopt
import numpy as np
import pytest
from support.arrays import place, random_arrays, random_grads
from support.compare import assert_bitwise_equal
from support.configs import RICH
from support.rules import by_name, optimizer_class

# Crosses any sensible threading threshold; odd sizes leave ragged chunks.
SHAPES = [(100_000,), (1_000_013,), (5,), (333, 101), ()]
STEPS = 3


def _trajectory(name, params0, grads, threads):
    adaptopt.set_num_threads(threads)
    assert adaptopt.get_num_threads() == threads
    params = [place(p, misaligned=p.ctypes.data % 64 != 0) for p in params0]
    opt = optimizer_class(name)(params, **RICH[name])
    for g in grads:
        opt.step(g)
    return params, opt.state_dict()


@pytest.fixture(scope="module")
def problem():
    """Mixed float32/float64 tensors, some not 64-byte aligned, and STEPS gradient lists (one with
    a NaN and an Inf)."""
    rng = np.random.default_rng(11)
    params = [
        *random_arrays(rng, SHAPES[:2], np.float32),
        *random_arrays(rng, SHAPES[2:3], np.float32, misaligned=True),
        *random_arrays(rng, SHAPES[3:], np.float64, misaligned=True),
    ]
    grads = [random_grads(rng, params, misaligned=(i % 2 == 1)) for i in range(STEPS)]
    grads[1][1][123_457] = np.nan
    grads[1][0][99_999] = np.inf
    return params, grads


@by_name
@pytest.mark.parametrize("threads", [2, 3, 4])
def test_bit_identical_across_thread_counts(name, threads, problem, isa):
    params0, grads = problem
    expected = _trajectory(name, params0, grads, 1)
    actual = _trajectory(name, params0, grads, threads)
    assert_bitwise_equal(actual, expected, f"{threads} threads vs 1")


@pytest.mark.parametrize("n", [1, 2, 3])
def test_set_get_num_threads(n):
    adaptopt.set_num_threads(n)
    assert adaptopt.get_num_threads() == n
    assert type(adaptopt.get_num_threads()) is int


def test_default_num_threads_is_positive():
    assert adaptopt.get_num_threads() >= 1


@pytest.mark.parametrize("bad", [0, -1])
def test_invalid_num_threads_value(bad):
    before = adaptopt.get_num_threads()
    with pytest.raises(ValueError, match=rf"{bad}"):
        adaptopt.set_num_threads(bad)
    assert adaptopt.get_num_threads() == before


@pytest.mark.parametrize("bad", [1.5, "2", None])
def test_invalid_num_threads_type(bad):
    before = adaptopt.get_num_threads()
    with pytest.raises(TypeError):
        adaptopt.set_num_threads(bad)
    assert adaptopt.get_num_threads() == before


def _default_threads(env_value, pre_import=""):
    """adaptopt.get_num_threads() in a fresh interpreter with OMP_NUM_THREADS=env_value (None:
    unset), after running ``pre_import``."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if env_value is not None:
        env["OMP_NUM_THREADS"] = env_value
    code = f"{pre_import}\nimport adaptopt; print(adaptopt.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())


@pytest.mark.parametrize("omp, want", [("1", 1), ("2", 2), ("3", 3), ("3,2", 3), (" 2", 2)])
def test_omp_num_threads_sets_default(omp, want):
    assert _default_threads(omp) == want


@pytest.mark.parametrize("omp", [None, "", "0", "-2", "abc"])
def test_default_is_the_affinity_mask(omp):
    """Without a usable OMP_NUM_THREADS: the CPUs this process may run on."""
    assert _default_threads(omp) == len(os.sched_getaffinity(0))


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs to restrict")
def test_default_follows_a_restricted_affinity_mask():
    one = min(os.sched_getaffinity(0))
    assert _default_threads(None, f"import os; os.sched_setaffinity(0, {{{one}}})") == 1


# ---------------------------------------------------------------- pool counters


def pool_stats():
    """The native pool's counters (ctypes: nothing in the Python API)."""
    lib = ctypes.CDLL(adaptopt._core.__file__)
    keys = ("workers", "sleeping", "jobs", "chunks_by_workers", "serial_fallbacks", "wait_ns",
            "long_waits", "stepped_aside", "moved_off", "wakes_skipped")
    out = (ctypes.c_longlong * len(keys))()
    lib.adaptopt_pool_stats(out)
    return dict(zip(keys, out))


def worker_took_chunks(step, before, limit=20.0):
    """Calls step() until the pool's workers have run a chunk since ``before`` (True), or for
    ``limit`` seconds (False)."""
    import time

    deadline = time.monotonic() + limit
    while pool_stats()["chunks_by_workers"] == before["chunks_by_workers"]:
        if time.monotonic() > deadline:
            return False
        step()
    return True


def test_large_steps_run_on_the_pool_and_workers_take_chunks():
    adaptopt.set_num_threads(2)
    p = np.zeros(2_000_000, np.float32)
    g = np.ones_like(p)
    opt = adaptopt.Adam([p])
    before = pool_stats()
    for _ in range(20):
        opt.step([g])
    after = pool_stats()
    assert after["workers"] >= 1
    assert after["jobs"] - before["jobs"] == 20
    # When a worker gets CPU time is up to the OS (the caller never waits for one that has not
    # started): step until one has taken a chunk, with a generous bound.
    assert worker_took_chunks(lambda: opt.step([g]), before)


def test_one_thread_does_not_use_the_pool():
    adaptopt.set_num_threads(1)
    p = np.zeros(2_000_000, np.float32)
    before = pool_stats()
    adaptopt.Adam([p], track_stats=True, max_grad_norm=1.0).step([np.ones_like(p)])
    assert pool_stats()["jobs"] == before["jobs"]


def test_one_cpu_two_threads_workers_step_aside():
    """A process restricted to one CPU with 2 threads: the worker always finds itself on the
    caller's CPU, steps aside (nowhere to move) and stops being woken for a while; the results
    are those of one thread."""
    code = textwrap.dedent("""
        import os, sys, time
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        import numpy as np, adaptopt
        sys.path.insert(0, sys.argv[1])
        from test_threads import pool_stats
        rng = np.random.default_rng(4)
        init = [rng.standard_normal(300_001).astype(np.float32), rng.standard_normal(70_003)]
        grads = [rng.standard_normal(a.shape).astype(a.dtype) for a in init]
        out = []
        for threads in (1, 2):
            adaptopt.set_num_threads(threads)
            params = [a.copy() for a in init]
            opt = adaptopt.Adam(params, amsgrad=True, track_stats=True)
            for _ in range(5):
                opt.step(grads)
            out.append((params, opt.last_stats))
        assert all(a.tobytes() == b.tobytes() for a, b in zip(out[0][0], out[1][0]))
        assert out[0][1] == out[1][1]
        deadline = time.monotonic() + 20
        while pool_stats()["stepped_aside"] == 0 and time.monotonic() < deadline:
            opt.step(grads)
        s = pool_stats()
        for _ in range(10):
            opt.step(grads)
        t = pool_stats()
        assert s["stepped_aside"] > 0, s
        assert s["moved_off"] == 0 and s["chunks_by_workers"] == 0, s
        assert t["wakes_skipped"] > s["wakes_skipped"], (s, t)
        print("OK")
    """)
    out = subprocess.run([sys.executable, "-c", code, os.path.dirname(os.path.abspath(__file__))],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout + out.stderr


# ---------------------------------------------------------------- threadpoolctl


def test_threadpoolctl_lists_adaptopt():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    adaptopt.set_num_threads(3)
    info = [d for d in threadpoolctl.threadpool_info() if d["internal_api"] == "adaptopt"]
    assert len(info) == 1, threadpoolctl.threadpool_info()
    assert info[0]["user_api"] == "adaptopt"
    assert info[0]["num_threads"] == 3
    assert info[0]["version"] == adaptopt.__version__
    assert os.path.samefile(info[0]["filepath"], adaptopt._core.__file__)


def test_threadpool_limits_limits_adaptopt_and_restores():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    adaptopt.set_num_threads(2)
    p = np.zeros(2_000_000, np.float32)
    opt = adaptopt.Adam([p])
    with threadpoolctl.threadpool_limits(1):
        assert adaptopt.get_num_threads() == 1
        before = pool_stats()
        opt.step([np.ones_like(p)])
        assert pool_stats()["jobs"] == before["jobs"], "a step used the pool inside limits(1)"
    assert adaptopt.get_num_threads() == 2
    with threadpoolctl.threadpool_limits(limits=3, user_api="adaptopt"):
        assert adaptopt.get_num_threads() == 3
    assert adaptopt.get_num_threads() == 2
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        assert adaptopt.get_num_threads() == 2  # another library's limit leaves adaptopt alone
    controller = threadpoolctl.ThreadpoolController()
    with controller.limit(limits=1, user_api="adaptopt"):
        assert adaptopt.get_num_threads() == 1
    assert adaptopt.get_num_threads() == 2


def test_registering_twice_keeps_one_controller():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from adaptopt import _threadpool

    assert _threadpool.register()
    info = [d for d in threadpoolctl.threadpool_info() if d["internal_api"] == "adaptopt"]
    assert len(info) == 1


# ---------------------------------------------------------------- statistics and norms


def _stats_run(params0, grads, threads):
    """Two groups, clipping and statistics on: params, state, every step's norm and stats."""
    adaptopt.set_num_threads(threads)
    params = [place(p, misaligned=p.ctypes.data % 64 != 0) for p in params0]
    groups = [{"params": params[:3]}, {"params": params[3:], "lr": 0.01, "weight_decay": 0.1}]
    opt = adaptopt.Adam(groups, track_stats=True, max_grad_norm=50.0, lr=0.1)
    norms, stats = [], []
    for g in grads:
        opt.step(g)
        norms.append(opt.last_grad_norm)
        stats.append(copy.deepcopy(opt.last_stats))
    return params, opt.state_dict(), norms, stats


@pytest.fixture(scope="module")
def finite_problem():
    """Like ``problem`` without the NaN/Inf (so the norm and statistics are finite), plus a
    large tensor whose chunks cross tensor boundaries."""
    rng = np.random.default_rng(12)
    params = [
        *random_arrays(rng, [(300_001,), (77,)], np.float32),
        *random_arrays(rng, [(1_000_013,)], np.float32, misaligned=True),
        *random_arrays(rng, [(4097,), (333, 101), ()], np.float64, misaligned=True),
    ]
    grads = [random_grads(rng, params, misaligned=(i % 2 == 0)) for i in range(STEPS)]
    return params, grads


@pytest.mark.parametrize("threads", [2, 3, 4])
def test_stats_and_norms_bit_identical_across_thread_counts(threads, finite_problem, isa):
    params0, grads = finite_problem
    expected = _stats_run(params0, grads, 1)
    actual = _stats_run(params0, grads, threads)
    assert all(n is not None and np.isfinite(n) for n in expected[2])
    assert expected[2][0] > 50.0, "the clipping must be active"
    assert_bitwise_equal(actual, expected, f"{threads} threads vs 1 (params, state, norms, stats)")


def test_stats_bit_identical_with_a_tiny_parallel_threshold(finite_problem, isa):
    """Threads for every step, and the pool busy with one step while another Python thread
    steps (it then runs its chunks itself): still the same bits."""
    params0, grads = finite_problem
    expected = _stats_run(params0, grads, 1)
    old = adaptopt._core.parallel_threshold()
    adaptopt._core.set_parallel_threshold(1)
    try:
        results = [None, None]

        def run(i):
            results[i] = _stats_run(params0, grads, 4)

        ts = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout=300)
            assert not t.is_alive()
    finally:
        adaptopt._core.set_parallel_threshold(old)
    for r in results:
        assert_bitwise_equal(r, expected, "threshold 1, 4 threads, two callers")


# ---------------------------------------------------------------- a host that uses BLAS


def _matmul_and_step_loop(seed, threads, rounds=6):
    """A small training-loop stand-in: a NumPy matmul (OpenBLAS's threads), then a step."""
    adaptopt.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((256, 256)).astype(np.float32)
    x = rng.standard_normal((128, 256)).astype(np.float32)
    params = [rng.standard_normal(200_003).astype(np.float32), w.copy()]
    opt = adaptopt.Adam(params, amsgrad=True, track_stats=True, max_grad_norm=10.0)
    norms = []
    for _ in range(rounds):
        h = x @ params[1]
        g_w = (x.T @ h) * np.float32(1e-3)
        g_p = np.resize(h.ravel(), params[0].shape) * np.float32(1e-3)
        opt.step([g_p, g_w])
        norms.append((opt.last_grad_norm, copy.deepcopy(opt.last_stats)))
    return params, opt.state_dict(), norms


def test_steps_interleaved_with_matmuls_from_several_threads():
    serial = [_matmul_and_step_loop(seed, 1) for seed in range(4)]
    results = [None] * 4
    errors = []

    def worker(i):
        try:
            results[i] = _matmul_and_step_loop(i, 2)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=300)
        assert not t.is_alive(), "a thread did not finish (deadlock?)"
    if errors:
        raise errors[0]
    for i, (got, want) in enumerate(zip(results, serial)):
        assert_bitwise_equal(got, want, f"thread {i} vs serial")


# ---------------------------------------------------------------- compact storage


STORAGE = [  # pairwise over the storage axes, each with several chunks per tensor
    ("Adam", "bfloat16", dict(state_dtype="8bit", stochastic_rounding=True, seed=5)),
    ("RMSprop", "float16", dict(master_weights=True, state_dtype="bfloat16", momentum=0.9)),
    ("Adagrad", "float32", dict(state_dtype="8bit")),
    ("Adadelta", "bfloat16", dict(master_weights=True, state_dtype="8bit")),
]


@pytest.mark.parametrize("name, dtype, options", STORAGE, ids=[s[0] + "-" + s[1] for s in STORAGE])
def test_compact_storage_bit_identical_across_thread_counts(name, dtype, options, isa):
    """Chunks never split an 8-bit state block (one scale per 256 elements) and the random bits
    of stochastic rounding are keyed by element, so 1, 2 and 3 threads agree bit for bit, also
    with tensors whose sizes are not multiples of a block."""
    import ml_dtypes  # noqa: F401  (registers bfloat16)

    dt = np.dtype(dtype)
    rng = np.random.default_rng(13)
    shapes = [(3 * 4096 + 300,), (777,), (4096 + 129,)]
    params0 = [rng.standard_normal(s).astype(np.float32).astype(dt) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32).astype(dt) for s in shapes] for _ in range(STEPS)]
    old = adaptopt._core.parallel_threshold()
    adaptopt._core.set_parallel_threshold(1)
    try:
        runs = []
        for threads in (1, 2, 3):
            adaptopt.set_num_threads(threads)
            params = [p.copy() for p in params0]
            opt = optimizer_class(name)(params, **options)
            for g in grads:
                opt.step(g)
            runs.append(([p.view(np.uint8) for p in params], opt.state_dict()))
    finally:
        adaptopt._core.set_parallel_threshold(old)
    for threads, run in zip((2, 3), runs[1:]):
        assert_bitwise_equal(run, runs[0], f"{threads} threads vs 1")
