"""adaptopt.monitor: what a logged step records, TensorBoard event files read back, CSV, and
statistics computed only on the steps that are logged."""

import csv
import struct

import adaptopt
import numpy as np
import pytest
from adaptopt import monitor, schedules


def _run(logger, opt, p, steps):
    rng = np.random.default_rng(0)
    for s in range(steps):
        opt.step([rng.standard_normal(p.shape).astype(p.dtype)])
        logger.log(loss=1.0 / (s + 1), accuracy=s / steps)


def read_events(path):
    """Scalars of a TensorBoard event file: TFRecord frames of Event protos."""
    from tensorboardX.proto import event_pb2

    out = {}
    with open(path, "rb") as f:
        data = f.read()
    i = 0
    while i < len(data):
        (n,) = struct.unpack("<Q", data[i:i + 8])
        ev = event_pb2.Event()
        ev.ParseFromString(data[i + 12:i + 12 + n])
        i += 12 + n + 4
        for v in ev.summary.value:
            out.setdefault(v.tag, []).append((ev.step, v.simple_value))
    return out


def test_tensorboard_event_file_reads_back(tmp_path):
    pytest.importorskip("tensorboardX")
    p = np.zeros(1000, np.float32)
    opt = adaptopt.Adam([p], lr=adaptopt.schedules.exponential_decay(1e-2, 0.9), max_grad_norm=100.0)
    logger = monitor.Logger(opt, every=5, logdir=str(tmp_path / "run"))
    _run(logger, opt, p, 12)
    logger.close()
    files = list((tmp_path / "run").glob("events.out.tfevents.*"))
    assert len(files) == 1
    ev = read_events(files[0])
    assert [s for s, _ in ev["loss"]] == [0, 5, 10]
    assert ev["loss"][1][1] == pytest.approx(1 / 6)
    assert [v for _, v in ev["group0/lr"]] == pytest.approx([1e-2, 1e-2 * 0.9**5, 1e-2 * 0.9**10])
    for k in monitor.STATS:
        assert len(ev[f"group0/{k}"]) == 3
    assert ev["group0/grad_norm"][0][1] == pytest.approx(ev["grad_norm"][0][1], rel=1e-5)
    assert ev["skipped_steps"][0][1] == 0


def test_csv_rows_and_statistics_only_on_logged_steps(tmp_path):
    p = np.zeros(100, np.float64)
    opt = adaptopt.RMSprop([{"params": [p]}, {"params": [np.zeros(3)], "lr": 0.5}], lr=1e-2)
    seen = []

    class Spy:
        def add_scalar(self, tag, value, step):
            seen.append((tag, step))

    logger = monitor.Logger(opt, every=3, writer=Spy(), csv=tmp_path / "run.csv")
    tracked = []
    rng = np.random.default_rng(1)
    for s in range(7):
        tracked.append(opt.track_stats)
        opt.step([rng.standard_normal(100), rng.standard_normal(3)])
        logger.log(loss=float(s))
    logger.close()
    assert tracked == [True, False, False, True, False, False, True]
    assert opt.track_stats is False
    with open(tmp_path / "run.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [0, 3, 6]
    assert float(rows[1]["loss"]) == 3.0 and float(rows[2]["group1/lr"]) == 0.5
    assert float(rows[0]["group1/update_rms"]) > 0 and "grad_norm" not in rows[0]  # no clipping: no global norm
    assert {t for t, s in seen if s == 3} >= {"loss", "group0/lr", "group0/lr_mean", "skipped_steps"}


def test_user_track_stats_is_kept_on(tmp_path):
    p = np.zeros(10)
    opt = adaptopt.Adam([p], track_stats=True)
    logger = monitor.Logger(opt, every=4)
    for _ in range(3):
        opt.step([np.ones(10)])
        logger.log()
        assert opt.track_stats
    logger.close()
    assert opt.track_stats


def test_bad_arguments():
    opt = adaptopt.Adam([np.zeros(3)])
    with pytest.raises(ValueError, match="every"):
        monitor.Logger(opt, every=0)
    with pytest.raises(TypeError, match="add_scalar"):
        monitor.Logger(opt, writer=object())
    logger = monitor.Logger(opt, every=1, csv=None)
    opt.step([np.ones(3)])
    assert logger.log(loss=1)["loss"] == 1.0


def test_schedule_value_of_the_logged_step():
    p = np.zeros(4)
    opt = adaptopt.SGD([p], lr=schedules.step_decay(1.0, step_size=2, gamma=0.5))
    logger = monitor.Logger(opt, every=1)
    lrs = []
    for _ in range(5):
        opt.step([np.ones(4)])
        lrs.append(logger.log()["group0/lr"])
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_example_writes_a_run_and_a_png(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    script = Path(__file__).resolve().parent.parent / "examples" / "monitor_run.py"
    r = subprocess.run([sys.executable, str(script), "--tiny", "--out", str(tmp_path), "--runs", str(tmp_path / "runs")],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "monitor_run.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(tmp_path / "runs" / "monitor_run.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 5 and "group0/lr_mean" in rows[0]
