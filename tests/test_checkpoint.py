"""Crash-safe checkpoints: atomic replace, SIGKILL while saving, corrupt files, and a resumed run
that continues bit-identically in another process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import adaptopt
import numpy as np
import pytest
from support.configs import CHECKPOINT as CONFIGS

# A training "script" that runs steps [start, stop) from an optional checkpoint and saves one.
# Gradients depend only on the step index, so every process sees the same sequence.
SCRIPT = textwrap.dedent("""
    import sys, numpy as np, adaptopt
    name, start, stop, src, dst = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    kwargs = eval(sys.argv[6])
    params = [np.zeros((37, 5), np.float32), np.zeros(1001, np.float64)]
    opt = getattr(adaptopt, name)(params, **kwargs)
    if src != "-":
        opt.load(src)
    for t in range(start, stop):
        rng = np.random.default_rng(t)
        opt.step([rng.standard_normal(p.shape).astype(p.dtype) for p in params])
    opt.save(dst)
""")


def _run(tmp_path, *args):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    subprocess.run([sys.executable, str(script), *map(str, args)], check=True, timeout=120)


def _load_arrays(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_resume_across_processes_is_bit_identical(tmp_path, name):
    kw = repr(CONFIGS[name])
    _run(tmp_path, name, 0, 12, "-", tmp_path / "straight.npz", kw)
    _run(tmp_path, name, 0, 5, "-", tmp_path / "k.npz", kw)
    _run(tmp_path, name, 5, 12, tmp_path / "k.npz", tmp_path / "resumed.npz", kw)
    straight, resumed = _load_arrays(tmp_path / "straight.npz"), _load_arrays(tmp_path / "resumed.npz")
    assert straight.keys() == resumed.keys()
    for k in straight:
        assert straight[k].tobytes() == resumed[k].tobytes(), k


def _opt(seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(100).astype(np.float32), rng.standard_normal((3, 4))]
    opt = adaptopt.Adam(params, amsgrad=True)
    opt.step([np.ones_like(p) for p in params])
    return params, opt


def _snapshot(params, opt):
    sd = opt.state_dict()
    return ([p.copy() for p in params],
            {i: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in e.items()}
             for i, e in sd["state"].items()},
            [dict(g, params=list(g["params"])) for g in sd["param_groups"]])


def _assert_same(a, b):
    (pa, sa, ga), (pb, sb, gb) = a, b
    assert all(x.tobytes() == y.tobytes() for x, y in zip(pa, pb))
    assert sa.keys() == sb.keys() and ga == gb
    for i in sa:
        for k in sa[i]:
            assert np.asarray(sa[i][k]).tobytes() == np.asarray(sb[i][k]).tobytes()


def test_save_load_round_trip_restores_params_and_state(tmp_path):
    params, opt = _opt()
    opt.save(tmp_path / "c.npz")
    before = _snapshot(params, opt)
    opt.step([np.full_like(p, 3.0) for p in params])
    opt.param_groups[0]["lr"] = 0.5
    opt.load(tmp_path / "c.npz")
    _assert_same(before, _snapshot(params, opt))
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_include_params_false_leaves_params_alone(tmp_path):
    params, opt = _opt()
    opt.save(tmp_path / "c.npz", include_params=False)
    opt.step([np.ones_like(p) for p in params])
    after = [p.copy() for p in params]
    opt.load(tmp_path / "c.npz")
    assert all(a.tobytes() == p.tobytes() for a, p in zip(after, params))
    assert opt.state[0]["step"] == 1


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage"])
def test_damaged_checkpoint_raises_and_changes_nothing(tmp_path, damage):
    params, opt = _opt()
    path = tmp_path / "c.npz"
    opt.save(path)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":  # inside the first array's payload: caught by the zip CRC
        i = data.index(b"state/0/exp_avg") + 200
        path.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(b"not a checkpoint at all" * 10)
    opt.step([np.ones_like(p) for p in params])
    before = _snapshot(params, opt)
    with pytest.raises(ValueError, match="checkpoint"):
        opt.load(path)
    _assert_same(before, _snapshot(params, opt))


def test_checkpoint_of_another_optimizer_is_refused(tmp_path):
    params, opt = _opt()
    opt.save(tmp_path / "c.npz")
    other = adaptopt.RMSprop([p.copy() for p in params])
    with pytest.raises(ValueError, match="Adam"):
        other.load(tmp_path / "c.npz")


def test_checkpoint_with_other_shapes_is_refused(tmp_path):
    _, opt = _opt()
    opt.save(tmp_path / "c.npz")
    other = adaptopt.Adam([np.zeros(99, np.float32), np.zeros((3, 4))], amsgrad=True)
    with pytest.raises(ValueError, match="param 0"):
        other.load(tmp_path / "c.npz")


KILL_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, adaptopt
    path = sys.argv[1]
    params = [np.zeros(2_000_000, np.float32)]
    opt = adaptopt.Adam(params)
    g = [np.ones(2_000_000, np.float32)]
    while True:
        opt.step(g)
        opt.save(path)
        print(opt.state[0]["step"], flush=True)
""")


def test_sigkill_while_saving_leaves_a_loadable_checkpoint(tmp_path):
    script, path = tmp_path / "saver.py", tmp_path / "c.npz"
    script.write_text(KILL_SCRIPT)
    rng = np.random.default_rng(0)
    for trial in range(5):
        proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
        try:
            proc.stdout.readline()  # at least one complete checkpoint exists
            time.sleep(float(rng.uniform(0.0, 0.3)))  # then kill at a random point of a later save
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            proc.stdout.close()
        opt = adaptopt.Adam([np.zeros(2_000_000, np.float32)])
        opt.load(path)
        step = opt.state[0]["step"]
        assert step >= 1
        # The checkpoint is a consistent one: exp_avg after `step` steps of g = 1 from zero.
        expected = np.float32(1.0)
        m = np.float32(0.0)
        for _ in range(step):
            m = m + np.float32(0.1) * (expected - m)
        assert np.allclose(opt.state[0]["exp_avg"], m, rtol=1e-5), trial
