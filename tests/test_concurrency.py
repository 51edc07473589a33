"""Concurrency: Python threads, shared optimizers, the GIL, and fork().

- One Python thread per job (every rule, and a few more configurations) stepping its own
  optimizer at the same time gives bit-identical results to the same work done serially (the
  kernels run without the GIL; one step at a time uses the thread pool, the others run their
  chunks on their own thread).
- Two threads stepping one optimizer serialize: the result is exactly 2N sequential steps.
- A forked child (os.fork and multiprocessing's "fork" start method) can step after the
  parent has used the thread pool: no hang, same numbers as the parent, and the child steps
  with 2 threads again (its pool starts fresh workers).
- Python code racing a step (mutating the grads list) cannot make the kernel touch freed
  memory.
"""

from __future__ import annotations

import copy
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import adaptopt
import numpy as np
import pytest
from reference import RefOptimizer
from support.arrays import place
from support.compare import assert_bitwise_equal, assert_close
from support.configs import RICH
from support.rules import NAMES, optimizer_class

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
STEPS = 4

# name, hyperparameters, dtype, size, seed: every rule with its RICH configuration, then a few
# others. The jobs of the first SHARED rules (same shapes and dtype) share their gradient arrays.
_LATER = {"Adadelta": (np.float64, 250_001)}  # not sharing: its own dtype and size
JOBS = [(n, RICH[n], *_LATER.get(n, (np.float32, 400_000)), k) for k, n in enumerate(NAMES)] + [
    ("RMSprop", dict(centered=True, eps_in_sqrt=True), np.float64, 1_000_003, 100),
    ("Adam", dict(weight_decay=0.1, decoupled_weight_decay=True), np.float32, 777_777, 101),
    ("Adagrad", dict(lr_decay=0.01), np.float64, 123_457, 102),
    ("SGD", dict(momentum=0.9, dampening=0.2), np.float64, 300_001, 103),
]
SHARED = [k for k, job in enumerate(JOBS) if job[2:4] == (np.float32, 400_000)]


def _initial(job):
    _, _, dtype, size, seed = job
    rng = np.random.default_rng(seed)
    # Two tensors per optimizer, the second one misaligned.
    return [
        place(rng.standard_normal(size).astype(dtype)),
        place(rng.standard_normal(size // 3 + 5).astype(dtype), misaligned=True),
    ]


@pytest.fixture(scope="module")
def shared_grads():
    """STEPS gradient lists per job; the SHARED jobs (same shapes and dtype) use the same arrays."""
    out = []
    for k, job in enumerate(JOBS):
        if k in SHARED[1:]:
            out.append(out[SHARED[0]])
            continue
        rng = np.random.default_rng(100 + k)
        params = _initial(job)
        grads = [
            [place(rng.standard_normal(p.shape).astype(p.dtype)) for p in params]
            for _ in range(STEPS)
        ]
        for gs in grads:
            for g in gs:
                g.flags.writeable = False  # shared across threads: read only
        out.append(grads)
    return out


def _run_job(job, grads, barrier=None):
    name, hyper = job[0], job[1]
    params = _initial(job)
    opt = optimizer_class(name)(params, **hyper)
    if barrier is not None:
        barrier.wait()
    for g in grads:
        opt.step(g)
    return params, copy.deepcopy(opt.state_dict())


def _in_threads(fn, n):
    """Runs fn(i) in n threads; returns the results, re-raising the first exception."""
    results, errors = [None] * n, []

    def target(i):
        try:
            results[i] = fn(i)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
        assert not t.is_alive(), "a thread did not finish (deadlock?)"
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("threads", [1, 2])
def test_many_threads_with_their_own_optimizers_match_serial(threads, shared_grads, isa):
    adaptopt.set_num_threads(threads)
    serial = [_run_job(job, grads) for job, grads in zip(JOBS, shared_grads)]
    barrier = threading.Barrier(len(JOBS))
    for _ in range(2):
        parallel = _in_threads(lambda i: _run_job(JOBS[i], shared_grads[i], barrier), len(JOBS))
        for i, (got, want) in enumerate(zip(parallel, serial)):
            assert_bitwise_equal(got, want, f"thread {i} ({JOBS[i][0]}) vs serial")


def test_gil_is_released_while_the_kernel_runs():
    """A pure-Python thread keeps running while another thread is inside a long step: the
    longest pause it sees is far shorter than one step."""
    adaptopt.set_num_threads(1)
    n = 8_000_000
    p = np.zeros(n, np.float32)
    g = np.full(n, 0.5, np.float32)
    opt = adaptopt.Adam([p], amsgrad=True)
    opt.step([g])
    while True:
        t0 = time.perf_counter()
        opt.step([g])
        step_time = time.perf_counter() - t0
        if step_time >= 0.04 or n >= 64_000_000:
            break
        n *= 2
        p = np.zeros(n, np.float32)
        g = np.full(n, 0.5, np.float32)
        opt = adaptopt.Adam([p], amsgrad=True)
        opt.step([g])
    stamps, stop = [], threading.Event()

    def heartbeat():
        while not stop.is_set():
            stamps.append(time.perf_counter())
            sum(range(200))  # Python work: needs the GIL

    hb = threading.Thread(target=heartbeat)
    hb.start()
    try:
        time.sleep(0.02)
        windows = []
        for _ in range(5):
            t0 = time.perf_counter()
            opt.step([g])
            windows.append((t0, time.perf_counter()))
    finally:
        stop.set()
        hb.join()
    s = np.array(stamps)
    blocked = []  # per step: the longest stretch without a heartbeat, as a share of the step
    for lo, hi in windows:
        inside = s[(s >= lo) & (s <= hi)]
        edges = np.concatenate([[lo], inside, [hi]])
        blocked.append(float(np.max(np.diff(edges))) / (hi - lo))
    # The median ignores one step during which the OS happened to deschedule the heartbeat.
    assert np.median(blocked) < 0.5, (
        f"a Python thread was blocked for {np.round(np.array(blocked) * 100)}% of each "
        f"{step_time * 1e3:.0f} ms step: the GIL is not released around the kernel"
    )


# ---------------------------------------------------------------- one optimizer, two threads


@pytest.mark.parametrize("name", NAMES)
def test_two_threads_stepping_one_optimizer_serialize(name, isa):
    """Every step is applied whole: N steps from each of two threads (same gradient arrays)
    leave exactly the state of 2N sequential steps, bit for bit."""
    adaptopt.set_num_threads(2)
    rng = np.random.default_rng(21)
    init = [rng.standard_normal(300_001).astype(np.float32), rng.standard_normal(77)]
    grads = [rng.standard_normal(300_001).astype(np.float32), rng.standard_normal(77)]
    N = 25

    def build():
        params = [place(a) for a in init]
        return params, optimizer_class(name)(params, **RICH[name])

    seq_params, seq_opt = build()
    for _ in range(2 * N):
        seq_opt.step(grads)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # interleave the Python parts of step() as much as possible
    try:
        params, opt = build()
        barrier = threading.Barrier(2)

        def worker(_):
            barrier.wait()
            for _ in range(N):
                opt.step(grads)

        _in_threads(worker, 2)
    finally:
        sys.setswitchinterval(old)
    assert_bitwise_equal(
        (params, copy.deepcopy(opt.state_dict())),
        (seq_params, copy.deepcopy(seq_opt.state_dict())),
        "two threads x N steps vs 2N sequential steps",
    )


def test_global_settings_changed_while_other_threads_step():
    """set_isa / set_num_threads from one thread while others step: no crash, and every step
    still matches the reference (each step runs whole under one ISA)."""
    isas = adaptopt.available_isas()
    rng = np.random.default_rng(5)
    done = threading.Event()

    def toggler():
        k = 0
        while not done.is_set():
            adaptopt.set_isa(isas[k % len(isas)])
            adaptopt.set_num_threads(1 + k % 3)
            k += 1
            time.sleep(0.0005)

    problems = []
    for i, name in enumerate(NAMES):
        params = [rng.standard_normal(200_003), rng.standard_normal(1_001).astype(np.float32)]
        grads = [[rng.standard_normal(p.shape).astype(p.dtype) for p in params] for _ in range(10)]
        problems.append((name, params, grads))
    refs = []
    for name, params, grads in problems:
        ref = RefOptimizer(name, [p.copy() for p in params], **RICH[name])
        for g in grads:
            ref.step(g)
        refs.append(ref)

    t = threading.Thread(target=toggler)
    t.start()
    try:

        def worker(i):
            name, params, grads = problems[i]
            opt = optimizer_class(name)(params, **RICH[name])
            for g in grads:
                opt.step(g)
            return params

        results = _in_threads(worker, len(problems))
    finally:
        done.set()
        t.join()
    for (name, _, _), got, ref in zip(problems, results, refs):
        for j, (p, r) in enumerate(zip(got, ref.params)):
            assert_close(p, r, err_msg=f"{name} params[{j}]")


# ---------------------------------------------------------------- Python code racing a step


def _report(rc, out, err):
    """Exit status, stdout and the interesting part of stderr (a sanitizer report's start)."""
    starts = [
        i for i in (err.find("ERROR: AddressSanitizer"), err.find("runtime error:")) if i >= 0
    ]
    err = err[max(0, min(starts) - 300) :][:8000] if starts else err[-6000:]
    return f"rc={rc} (-11: SIGSEGV, -6: abort, None: timeout)\nstdout:\n{out}\nstderr:\n{err}"


def _run_script(code, timeout=120):
    """Runs ``code`` in a fresh interpreter in its own session (so that a hung grandchild can
    be killed too); returns (returncode, stdout, stderr); returncode None on timeout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([TESTS_DIR, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the process group this test created
        out, err = proc.communicate()
        return None, out, err


def test_grads_list_mutated_during_a_step_is_memory_safe():
    """The step releases the GIL while it reads the gradients; another thread that drops the
    only reference to a gradient (``grads[0] = None``) in that window must not make the
    kernel read freed memory. The native call has to hold its own references."""
    code = """
        import threading, time
        import numpy as np, adaptopt
        adaptopt.set_num_threads(1)
        n = 16_000_000
        p = np.zeros(n, np.float32)
        opt = adaptopt.RMSprop([p])
        g = np.ones(n, np.float32)
        opt.step([g]); t0 = time.perf_counter(); opt.step([g]); dt = time.perf_counter() - t0
        del g
        p[:] = 0
        opt = adaptopt.RMSprop([p])
        for k in range(6):
            grads = [np.ones(n, np.float32)]   # the list holds the only reference
            go = threading.Event()
            def drop():
                go.wait()
                time.sleep(dt / 3)
                grads[0] = None                # frees the array (munmap) mid-step
            t = threading.Thread(target=drop); t.start()
            go.set()
            opt.step(grads)
            t.join()
        steps = opt.state_dict()["state"][0]["step"]
        q = np.zeros(n, np.float32)
        ref = adaptopt.RMSprop([q])
        for _ in range(steps):
            ref.step([np.ones(n, np.float32)])
        assert p.tobytes() == q.tobytes(), "params differ from %d clean steps" % steps
        print("OK", steps, "of 6 steps applied")
    """
    rc, out, err = _run_script(code)
    assert rc == 0, _report(rc, out, err)


# ---------------------------------------------------------------- fork


FORK_SCRIPT = """
    import os, sys, time, pickle
    import numpy as np, adaptopt

    def problem():
        rng = np.random.default_rng(3)
        params = [rng.standard_normal(1_000_003).astype(np.float32), rng.standard_normal(4099)]
        grads = [[rng.standard_normal(p.shape).astype(p.dtype) for p in params] for _ in range(3)]
        return params, grads

    def run(opt_params=None, opt=None):
        params, grads = problem()
        if opt is None:
            opt = adaptopt.Adam(params, amsgrad=True, weight_decay=0.1)
        else:
            params = opt_params
        for g in grads:
            opt.step(g)
        return params

    # The parent uses the thread pool first: a large step with 2 threads.
    adaptopt.set_num_threads(2)
    warm = [np.zeros(4_000_000, np.float32)]
    adaptopt.RMSprop(warm).step([np.ones(4_000_000, np.float32)])
    # An optimizer that exists before the fork and is stepped on both sides.
    inherited_params, _ = problem()
    inherited = adaptopt.Adam(inherited_params, amsgrad=True, weight_decay=0.1)

    import tempfile
    fd, result_path = tempfile.mkstemp(suffix=".pickle")
    os.close(fd)
    pid = os.fork()
    if pid == 0:                                   # child
        try:
            from test_threads import pool_stats, worker_took_chunks
            threads = adaptopt.get_num_threads()    # inherited: 2, not a 1-thread fallback
            before = pool_stats()
            fresh = run()
            inh = run(inherited_params, inherited)
            # The child's own workers run chunks (its pool started them after the fork).
            took = worker_took_chunks(lambda: adaptopt.RMSprop(warm).step([np.ones(4_000_000, np.float32)]), before)
            workers = pool_stats()["workers"]
            with open(result_path, "wb") as f:
                pickle.dump((fresh, inh, threads, workers, took), f)
            os._exit(0)
        except BaseException as e:
            sys.stderr.write("child failed: %r\\n" % (e,))
            os._exit(3)
    deadline = time.monotonic() + {timeout}
    while True:                                     # waitpid with a deadline
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            print("CHILD HUNG")
            sys.exit(2)
        time.sleep(0.05)
    with open(result_path, "rb") as f:
        data = f.read()
    os.unlink(result_path)
    if os.waitstatus_to_exitcode(status) != 0:
        print("CHILD EXIT", os.waitstatus_to_exitcode(status))
        sys.exit(3)
    fresh, inh, child_threads, child_workers, took = pickle.loads(data)
    want_fresh = run()
    want_inh = run(inherited_params, inherited)   # the parent's copy steps the same way
    for a, b in zip(fresh + inh, want_fresh + want_inh):
        assert a.tobytes() == b.tobytes(), "child and parent results differ"
    print("OK child_threads=%d child_workers=%d worker_chunks=%s" % (child_threads, child_workers, took))
"""


def test_os_fork_child_steps_with_threads_without_hanging():
    rc, out, err = _run_script(FORK_SCRIPT.replace("{timeout}", "60"), timeout=120)
    assert rc == 0, _report(rc, out, err)
    assert "OK child_threads=2 child_workers=1 worker_chunks=True" in out, out


def _fork_problem():
    rng = np.random.default_rng(9)
    params = [rng.standard_normal(1_000_003).astype(np.float32), rng.standard_normal(999)]
    grads = [[rng.standard_normal(p.shape).astype(p.dtype) for p in params] for _ in range(3)]
    return params, grads


def _fork_worker(seed):
    """A large RMSprop run (on the thread pool); in the parent and in forked children."""
    params, grads = _fork_problem()
    params[0] += np.float32(seed)
    opt = adaptopt.RMSprop(params, **RICH["RMSprop"])
    for g in grads:
        opt.step(g)
    return params


def _fork_child(seed):
    """Runs in a forked child: the run, then the child's thread count, its workers, and whether
    they ran chunks of its steps."""
    from test_threads import pool_stats, worker_took_chunks

    before = pool_stats()
    params = _fork_worker(seed)
    p = np.zeros(2_000_000, np.float32)
    took = worker_took_chunks(lambda: adaptopt.Adam([p]).step([np.ones_like(p)]), before)
    return params, adaptopt.get_num_threads(), pool_stats()["workers"], took


def _fork_process_target(queue):
    queue.put(_fork_child(0))


@pytest.fixture
def pool_in_use():
    """The parent has used the thread pool (a large multi-threaded step)."""
    adaptopt.set_num_threads(2)
    p = np.zeros(4_000_000, np.float32)
    adaptopt.Adam([p]).step([np.ones_like(p)])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads, Python >= 3.12
def test_multiprocessing_fork_pool_steps_without_hanging(pool_in_use):
    ctx = mp.get_context("fork")
    pool = ctx.Pool(2)
    try:
        got = pool.map_async(_fork_child, [0, 1, 2]).get(timeout=60)
    except mp.TimeoutError:
        pytest.fail("a forked pool worker hung while stepping (thread pool after fork?)")
    finally:
        pool.terminate()
        pool.join()
    for seed, (params, threads, workers, took) in enumerate(got):
        assert_bitwise_equal(params, _fork_worker(seed), f"worker {seed} vs parent")
        assert (threads, workers, took) == (2, 1, True), f"worker {seed}: 2 threads, 1 worker that ran chunks"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_multiprocessing_fork_process_steps_without_hanging(pool_in_use):
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_fork_process_target, args=(queue,))
    proc.start()
    try:
        got = queue.get(timeout=60)
    except Exception:  # noqa: BLE001 - queue.Empty on timeout
        got = None
    proc.join(timeout=10)
    if proc.is_alive():
        proc.kill()
        proc.join()
    assert got is not None, "the forked process did not deliver its result (hung?)"
    assert proc.exitcode == 0
    params, threads, workers, took = got
    assert_bitwise_equal(params, _fork_worker(0), "forked process vs parent")
    assert (threads, workers, took) == (2, 1, True)
