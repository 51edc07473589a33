"""Hostile use, round two: atomic steps and loads under asynchronous exceptions (a real SIGINT),
aliasing of state buffers, hyperparameters changed in place or of odd types, garbage
collection through native objects, schedules in checkpoints, crafted checkpoints, huge step
counts and the smaller edge cases of issue 10. Each test failed before its fix."""

import gc
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import weakref
import zipfile

import adaptopt
import numpy as np
import pytest
from adaptopt import schedules


def _bitwise(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# ---------------------------------------------------------------- 1. atomic under SIGINT

INTERRUPTED_STEP = r"""
import os, signal, sys, threading, time
import numpy as np
import adaptopt
n, at = int(sys.argv[1]), float(sys.argv[2])
g = np.full(n, 0.5, np.float32)
probe = adaptopt.Adam([np.zeros(n, np.float32)])
t0 = time.perf_counter(); probe.step([g]); first = time.perf_counter() - t0  # a first step's length
del probe
p = np.zeros(n, np.float32)
opt = adaptopt.Adam([p], lr=1e-3)
sent = threading.Event()
def fire():
    os.kill(os.getpid(), signal.SIGINT)
    sent.set()
threading.Timer(at * first, fire).start()
outcome = "completed"
try:
    opt.step([g])
except KeyboardInterrupt:
    outcome = "interrupted"
try:  # a signal sent after the step lands here
    sent.wait(60)
    time.sleep(0.05)
except KeyboardInterrupt:
    pass
changed = bool(p[0] != 0)
sd = opt.state_dict()
state = sd["state"].get(0, {})
consistent = (changed and state.get("step") == 1 and "exp_avg" in state and "exp_avg_sq" in state
              and sd["adaptopt"]["step_count"] == 1) or (not changed and not state and sd["adaptopt"]["step_count"] == 0)
opt.load_state_dict(sd)  # the optimizer's own state dict loads
opt.step([g])
ref_p = np.zeros(4, np.float32); ref = adaptopt.Adam([ref_p], lr=1e-3)
for _ in range(2 if changed else 1):
    ref.step([np.full(4, 0.5, np.float32)])
continues = bool(p[0] == ref_p[0])  # moments were kept, not restarted
print(outcome, changed, consistent, continues)
"""


def test_sigint_during_a_step_leaves_none_or_all_of_it():
    """A real SIGINT arrives while the native step runs (a first step, which also creates the
    state): the step happens completely (params, state buffers, step counters, schedule count)
    or not at all, and the optimizer continues from there. An interrupt raised by step() after
    the params changed means the signal arrived during the native call: the window that lost the
    new state before; at least one of the runs must hit it."""
    hits, outcomes = 0, []
    for at in (0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.95):
        r = subprocess.run([sys.executable, "-c", INTERRUPTED_STEP, str(30_000_000), str(at)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        outcome, changed, consistent, continues = r.stdout.split()
        assert consistent == "True" and continues == "True", (at, r.stdout)
        hits += outcome == "interrupted" and changed == "True"
        outcomes.append((at, outcome, changed))
    assert hits >= 1, f"no signal arrived during a native step: the test proved nothing ({outcomes})"


INTERRUPTED_LOAD = r"""
import os, signal, sys, threading, time
import numpy as np
import adaptopt
n, path, at = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
p = np.ones(n, np.float32)
opt = adaptopt.Adam([p])
opt.step([np.full(n, 0.5, np.float32)])
opt.save(path)
saved_p = p.copy(); saved_m = opt.state[0]["exp_avg"].copy()
opt.step([np.full(n, 0.25, np.float32)])
t0 = time.perf_counter(); opt.load(path); length = time.perf_counter() - t0
opt.step([np.full(n, 0.25, np.float32)])  # back to the later state
later_p = p.copy(); later_m = opt.state[0]["exp_avg"].copy()
sent = threading.Event()
def fire():
    os.kill(os.getpid(), signal.SIGINT)
    sent.set()
threading.Timer(at * length, fire).start()
try:
    opt.load(path)
    outcome = "completed"
except KeyboardInterrupt:
    outcome = "interrupted"
try:  # a signal sent after the load lands here
    sent.wait(60)
    time.sleep(0.05)
except KeyboardInterrupt:
    pass
m = opt.state[0]["exp_avg"]
old = np.array_equal(p, later_p) and np.array_equal(m, later_m) and opt.state[0]["step"] == 2
new = np.array_equal(p, saved_p) and np.array_equal(m, saved_m) and opt.state[0]["step"] == 1
print(outcome, old, new)
"""


@pytest.mark.parametrize("at", [0.5, 0.97])
def test_sigint_during_load_leaves_state_and_params_together(tmp_path, at):
    r = subprocess.run([sys.executable, "-c", INTERRUPTED_LOAD, str(20_000_000), str(tmp_path / "c.npz"), str(at)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    outcome, old, new = r.stdout.split()
    assert (old, new) in (("True", "False"), ("False", "True")), r.stdout


# ---------------------------------------------------------------- 2. aliasing


def test_param_aliasing_a_state_buffer_is_refused():
    p = np.zeros(10, np.float32)
    opt = adaptopt.Adam([p])
    opt.step([np.ones(10, np.float32)])
    m = opt.state[0]["exp_avg"]
    for alias in (m, m[2:5]):
        with pytest.raises(ValueError, match=r"state\[0\]\['exp_avg'\].*overlap"):
            opt.add_param_group({"params": [alias]})
    assert len(opt.param_groups) == 1


def test_eager_state_cannot_be_aliased_either():
    p = np.zeros(10, np.float32)
    opt = adaptopt.Adagrad([p])  # state exists from construction
    with pytest.raises(ValueError, match="overlap"):
        opt.add_param_group({"params": [opt.state[0]["sum"]]})


# ---------------------------------------------------------------- 3./4. hyperparameters


@pytest.mark.parametrize("container", [list, np.array])
def test_betas_changed_in_place_are_seen(container):
    """A pair given at construction is stored as a tuple (as torch does); a list or array put in
    the group later and changed in place is seen at the next step."""
    def run(beta1_after):
        p = np.zeros(5, np.float64)
        opt = adaptopt.Adam([p], lr=0.1)
        opt.param_groups[0]["betas"] = container([0.9, 0.999])
        opt.step([np.ones(5)])
        if beta1_after is not None:
            opt.param_groups[0]["betas"][0] = beta1_after
        opt.step([np.full(5, -2.0)])
        return p

    changed, unchanged = run(0.0), run(None)
    assert not np.array_equal(changed, unchanged)
    p = np.zeros(5, np.float64)
    ref = adaptopt.Adam([p], betas=(0.9, 0.999), lr=0.1)
    ref.step([np.ones(5)])
    ref.param_groups[0]["betas"] = (0.0, 0.999)
    ref.step([np.full(5, -2.0)])
    assert _bitwise(changed, p)


def test_invalid_value_set_in_place_is_refused():
    p = np.zeros(5, np.float32)
    opt = adaptopt.Adam([p])
    opt.param_groups[0]["betas"] = [0.9, 0.999]
    opt.step([np.ones(5, np.float32)])
    opt.param_groups[0]["betas"][1] = 1.5
    before = p.copy()
    with pytest.raises(ValueError, match=r"param_groups\[0\].*betas\[1\]"):
        opt.step([np.ones(5, np.float32)])
    assert _bitwise(p, before)


def test_numpy_scalars_and_arrays_as_hyperparameters():
    p = np.zeros(5, np.float32)
    opt = adaptopt.Adam([p], lr=np.float32(1e-2), betas=np.array([0.9, 0.99]), amsgrad=np.bool_(True),
                        eps=np.float64(1e-8))
    opt.step([np.ones(5, np.float32)])
    opt.param_groups[0]["weight_decay"] = np.float16(0.5)
    opt.step([np.ones(5, np.float32)])
    assert "max_exp_avg_sq" in opt.state[0]


def test_deleted_key_names_the_group_and_key():
    opt = adaptopt.RMSprop([{"params": [np.zeros(3)]}, {"params": [np.zeros(3)]}])
    del opt.param_groups[1]["alpha"]
    with pytest.raises(ValueError, match=r"param_groups\[1\].*'alpha'"):
        opt.step([np.ones(3), np.ones(3)])


# ---------------------------------------------------------------- 5. garbage collection


class Tagged(np.ndarray):
    """An ndarray that can carry attributes: a cycle through a param."""


def test_reference_cycle_through_a_param_is_collected():
    gc.collect()
    p = np.zeros(1000, np.float32).view(Tagged)
    opt = adaptopt.Adam([p])
    opt.step([np.ones(1000, np.float32)])
    p.owner = opt  # param -> optimizer -> group binding -> native group -> param
    ref = weakref.ref(opt)
    del p, opt
    gc.collect()
    assert ref() is None


# ---------------------------------------------------------------- 6. schedules


class MySchedule(schedules.Schedule):
    kind = "mine"

    def __call__(self, step):
        return 1e-3


class Halved(schedules.constant):
    def __call__(self, step):
        return super().__call__(step) / 2


@pytest.mark.parametrize("lr", [MySchedule(), Halved(1e-2), schedules.chain([Halved(1e-2), schedules.constant(1e-3)], [3])])
def test_schedules_that_cannot_round_trip_are_refused_at_save(tmp_path, lr):
    opt = adaptopt.SGD([np.zeros(3)], lr=lr)
    opt.step([np.ones(3)])
    with pytest.raises(TypeError, match="cannot be saved in a checkpoint"):
        opt.save(tmp_path / "c.npz")
    assert not list(tmp_path.iterdir())


def test_builtin_schedules_round_trip(tmp_path):
    sched = schedules.chain([schedules.cosine(1e-2, total=5, warmup=2), schedules.exponential_decay(1e-3, 0.9)], [7])
    p = np.zeros(3)
    opt = adaptopt.SGD([p], lr=sched)
    for _ in range(4):
        opt.step([np.ones(3)])
    opt.save(tmp_path / "c.npz")
    other = adaptopt.SGD([np.zeros(3)], lr=0.5)
    other.load(tmp_path / "c.npz")
    assert other.param_groups[0]["lr"] == sched and type(other.param_groups[0]["lr"]) is schedules.chain


def test_exponential_decay_overflow_is_a_clear_error():
    with pytest.raises(ValueError, match="too large"):
        schedules.exponential_decay(1.0, 10.0)(10**6)


# ---------------------------------------------------------------- 7./8. crafted checkpoints


def _saved(tmp_path, **hyper):
    p = np.zeros(1000, np.float32)
    opt = adaptopt.Adam([p], **hyper)
    opt.step([np.ones(1000, np.float32)])
    path = tmp_path / "c.npz"
    opt.save(path)
    return opt, p, path


def _rewrite(path, out, replace):
    """Copies the .npz at ``path`` to ``out`` with members replaced: {name: bytes or None}."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            data = replace.get(name, src.read(name))
            if data is not None:
                dst.writestr(name, data)
        for name, data in replace.items():
            if name not in src.namelist() and data is not None:
                dst.writestr(name, data)


def _npy_header(shape, dtype="<f4"):
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


def test_crafted_huge_array_is_refused_before_allocating(tmp_path):
    opt, p, path = _saved(tmp_path)
    crafted = tmp_path / "crafted.npz"
    # 1 MB of data, a header announcing 1 GiB.
    _rewrite(path, crafted, {"param/0.npy": _npy_header((1 << 28,)) + bytes(1 << 20)})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match="param 0"):
        opt.load(crafted)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 200 * 1024


def _meta(path):
    with np.load(path) as z:
        return json.loads(z["meta"].tobytes())


MUTATIONS = {
    "state not a dict": lambda m: m.update(state=5),
    "keys not a list": lambda m: m["state"]["0"].update(keys=7),
    "bad key name": lambda m: m["state"]["0"].update(keys=["no_such_slot"]),
    "groups not a list": lambda m: m.update(param_groups="x"),
    "group without params": lambda m: m["param_groups"][0].pop("params"),
    "lr a dict of nothing": lambda m: m["param_groups"][0].update(lr={}),
    "lr schedule unknown": lambda m: m["param_groups"][0].update(lr={"schedule": "nope"}),
    "lr schedule bad args": lambda m: m["param_groups"][0].update(lr={"schedule": "constant", "x": 1}),
    "step a string": lambda m: m["state"]["0"]["scalars"].update(step="1"),
    "step negative": lambda m: m["state"]["0"]["scalars"].update(step=-1),
    "num_params a list": lambda m: m.update(num_params=[1]),
    "index not a number": lambda m: m["state"].update({"x": m["state"]["0"]}),
    "index out of range": lambda m: m["state"].update({"5": m["state"]["0"]}),
    "meta a list": lambda m: m.clear(),
    "adaptopt counts bad": lambda m: m.update(adaptopt={"step_count": "many"}),
    "betas wrong length": lambda m: m["param_groups"][0].update(betas=[0.9]),
    "dtype mismatch": None,
}


@pytest.mark.parametrize("what", list(MUTATIONS))
def test_crafted_checkpoints_raise_value_error_and_change_nothing(tmp_path, what):
    opt, p, path = _saved(tmp_path)
    crafted = tmp_path / "crafted.npz"
    if MUTATIONS[what] is None:
        _rewrite(path, crafted, {"state/0/exp_avg.npy": _npy_header((1000,), "<f8") + bytes(8000)})
    else:
        meta = _meta(path)
        MUTATIONS[what](meta)
        data = json.dumps(meta if meta else []).encode()
        buf = np.frombuffer(data, dtype=np.uint8)
        import io

        f = io.BytesIO()
        np.lib.format.write_array(f, buf)
        _rewrite(path, crafted, {"meta.npy": f.getvalue()})
    before = (p.copy(), {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in opt.state[0].items()})
    with pytest.raises(ValueError):
        opt.load(crafted)
    assert _bitwise(p, before[0])
    for k, v in before[1].items():
        got = opt.state[0][k]
        assert _bitwise(got, v) if isinstance(v, np.ndarray) else got == v


def test_truncated_and_garbage_files_raise_value_error(tmp_path):
    opt, p, path = _saved(tmp_path)
    data = path.read_bytes()
    for i, blob in enumerate([data[: len(data) // 2], b"PK\x03\x04" + os.urandom(500), b""]):
        bad = tmp_path / f"bad{i}.npz"
        bad.write_bytes(blob)
        with pytest.raises(ValueError):
            opt.load(bad)
    with pytest.raises(FileNotFoundError):
        opt.load(tmp_path / "missing.npz")


def test_long_checkpoint_name(tmp_path):
    opt, p, _ = _saved(tmp_path)
    path = tmp_path / ("c" * 250 + ".npz")
    opt.save(path)
    opt.load(path)


# ---------------------------------------------------------------- 9. huge step counts


@pytest.mark.parametrize("step", [2**53 + 1, 2**62 + 3])
def test_step_counts_above_2_53_round_trip(tmp_path, step):
    opt = adaptopt.Adam([np.zeros(4)])
    sd = {"state": {0: {"step": step, "exp_avg": np.zeros(4), "exp_avg_sq": np.zeros(4)}},
          "param_groups": opt.state_dict()["param_groups"]}
    opt.load_state_dict(sd)
    assert opt.state[0]["step"] == step
    fresh = adaptopt.Adam([np.zeros(4)])
    fresh.load_state_dict(opt.state_dict())
    assert fresh.state[0]["step"] == step
    opt.save(tmp_path / "c.npz")
    fresh.load(tmp_path / "c.npz")
    assert fresh.state[0]["step"] == step


# ---------------------------------------------------------------- 10./11. smaller ones


def test_sgd_momentum_switched_on_later_starts_from_the_gradient():
    p = np.zeros(4)
    opt = adaptopt.SGD([p], lr=0.1, dampening=0.5)
    opt.step([np.ones(4)])
    opt.param_groups[0]["momentum"] = 0.9
    opt.step([np.full(4, 2.0)])
    assert np.array_equal(opt.state[0]["momentum_buffer"], np.full(4, 2.0))  # torch: clone(g)


@pytest.mark.parametrize("mode", ["lazy", "dense"])
def test_plain_tuple_gradient_is_refused(mode):
    p = np.zeros((3, 2), np.float32)
    opt = adaptopt.Adam([p], sparse_mode=mode)
    with pytest.raises(TypeError, match=r"grads\[0\]: expected a numpy.ndarray, got tuple"):
        opt.step([(np.array([1]), np.ones((1, 2), np.float32))])
    assert not p.any()


def test_sparse_rows_from_an_empty_list():
    p = np.ones((3, 2), np.float32)
    g = adaptopt.SparseRows([], np.zeros((0, 2), np.float32))
    adaptopt.Adam([p]).step([g])
    assert np.array_equal(p, np.ones((3, 2), np.float32))


def test_torch_sgd_state_dict_without_step_loads():
    p = np.zeros(3)
    opt = adaptopt.SGD([p], lr=0.1, momentum=0.9)
    sd = {"state": {0: {"momentum_buffer": np.ones(3)}},
          "param_groups": [{"lr": 0.1, "momentum": 0.9, "dampening": 0, "weight_decay": 0, "nesterov": False,
                            "maximize": False, "foreach": None, "differentiable": False, "fused": None,
                            "params": [0]}]}
    opt.load_state_dict(sd)
    opt.step([np.zeros(3)])
    assert np.allclose(opt.state[0]["momentum_buffer"], 0.9)  # the loaded buffer continued


def test_add_param_group_and_step_from_two_threads():
    p = np.zeros(50_000, np.float32)
    opt = adaptopt.Adam([p])
    errors = []

    def stepper():
        try:
            for _ in range(200):
                n = len(opt.param_groups)
                opt.step([np.ones(50_000, np.float32)] + [None] * (n - 1) if n == 1 else
                         [np.ones(50_000, np.float32)] + [None] * (sum(len(g["params"]) for g in opt.param_groups) - 1))
        except ValueError as e:  # the group count changed between reading it and stepping
            if "expected" not in str(e):
                errors.append(e)

    t = threading.Thread(target=stepper)
    t.start()
    for _ in range(20):
        opt.add_param_group({"params": [np.zeros(10, np.float32)]})
        time.sleep(0.001)
    t.join()
    assert not errors
    assert len(opt.param_groups) == 21 and opt._nparams == 21


def test_bench_without_psutil_names_the_extra(tmp_path):
    code = ("import sys; sys.modules['psutil'] = None\n"
            "from adaptopt.bench import cli\n"
            "sys.exit(cli.main(['--quick']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "adaptopt[bench]" in r.stderr, r.stderr
