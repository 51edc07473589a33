"""adaptopt.distributed: the layout (in this process, one rank) and the checks of
tests/mpi/check_zero.py under ``mpiexec -n 1..4`` (each distributed optimizer against one process
stepping the mean gradient; every rule, float32 and float64), plus checkpoints saved with 2 ranks
resumed with 3 and with 1. Skipped when mpi4py or mpiexec is missing
(``pip install ".[mpi]"`` brings both)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("mpi4py")

import adaptopt as ao
from adaptopt import distributed as dist

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "mpi", "check_zero.py")
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
needs_mpiexec = pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not found (pip install mpich)")


def run_mpi(n, *args, timeout=600):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run([MPIEXEC, "-n", str(n), sys.executable, DRIVER, *args], check=False,
                          capture_output=True,
                          text=True, timeout=timeout, env=env)
    assert proc.returncode == 0 and "ALL OK" in proc.stdout, (
        f"mpiexec -n {n} {' '.join(args)}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


@needs_mpiexec
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_checks_under_mpiexec(n):
    out = run_mpi(n)
    for name in ("every_rule_and_dtype", "storage_pairs", "collective_errors", "checkpoint_round_trip"):
        assert f"ok {name} (P={n})" in out


@needs_mpiexec
def test_checkpoint_saved_with_2_ranks_resumes_with_3_and_1(tmp_path):
    run_mpi(2, "save", str(tmp_path))
    run_mpi(3, "resume", str(tmp_path))
    run_mpi(1, "resume", str(tmp_path))


# -- the layout, in this process ----------------------------------------------------------

@pytest.mark.parametrize("nranks", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("end", [1, 15, 16, 17, 1000, 4099, 100_003])
@pytest.mark.parametrize("align", [16, 256])
@pytest.mark.parametrize("bucket_elems", [1, 64, 1000, 1 << 20])
def test_buckets_cover_the_buffer_in_equal_aligned_shards(nranks, end, align, bucket_elems):
    length = dist._padded_length(end, nranks, align, bucket_elems)
    buckets = dist._buckets(end, length, nranks, align, bucket_elems)
    covered = []
    for b in buckets:
        assert b.shard % align == 0 and b.start % align == 0 and b.equal
        for r in range(nranks):
            covered.append(b.owned(r))
    spans = sorted(covered)
    assert spans[0][0] == 0 and spans[-1][1] >= end
    assert all(a[1] == c[0] for a, c in zip(spans, spans[1:]))  # contiguous, no overlap
    # Each rank owns at most 1/P of the padded buffer, and the padding is small.
    assert length - end < len(buckets) * nranks * align
    if len(buckets) == 1:
        owned = [sum(b.counts[r] for b in buckets) for r in range(nranks)]
        assert max(owned) <= -(-end // (nranks * align)) * align


def test_truncated_last_bucket_when_a_user_buffer_is_short():
    b = dist._buckets(100, 100, 3, 16, 1 << 20)
    assert len(b) == 1 and b[0].counts == [48, 48, 4] and not b[0].equal


def test_flat_params_are_adopted_and_separate_arrays_are_copied():
    from mpi4py import MPI

    shapes = [(3, 5), (0,), (7,), (40,)]
    views = dist.ZeroRedundancyOptimizer.flat_params(shapes, np.float32, comm=MPI.COMM_SELF)
    for v in views:
        v[...] = 1.0
    opt = dist.ZeroRedundancyOptimizer(views, ao.Adam, MPI.COMM_SELF, lr=0.1)
    assert not opt.copies_params
    opt.step([np.ones(s, np.float32) for s in shapes])
    assert all(np.all(v < 1.0) for v in views if v.size)
    arrays = [np.ones(s, np.float32) for s in shapes]
    opt2 = dist.ZeroRedundancyOptimizer(arrays, ao.Adam, MPI.COMM_SELF, lr=0.1)
    assert opt2.copies_params
    opt2.step([np.ones(s, np.float32) for s in shapes])
    for a, v in zip(arrays, views):
        np.testing.assert_array_equal(a, v)
    # State per rank: for one rank, the whole state; pieces are 1-D views of the flat buffer.
    assert sum(pc.hi - pc.lo for pc in opt.pieces) == sum(int(np.prod(s)) for s in shapes)


def test_views_of_a_shared_buffer_in_two_groups_are_not_adopted():
    from mpi4py import MPI

    buf = np.zeros(256, np.float32)
    g1, g2 = buf[:10], buf[10:26]
    opt = dist.ZeroRedundancyOptimizer([{"params": [g1]}, {"params": [g2]}], ao.SGD, MPI.COMM_SELF,
                                       lr=0.1, bucket_bytes=1 << 20)
    # The first group's padded buffer would cover the second group's param: it is copied.
    assert opt.layouts[0].copies and not opt.layouts[1].copies
    opt.step([np.ones(10, np.float32), np.ones(16, np.float32)])
    np.testing.assert_allclose(buf[:26], -0.1)
    assert not buf[26:].any()


@needs_mpiexec
def test_mpi_example_follows_the_single_process_curve():
    pytest.importorskip("sklearn")
    script = os.path.join(HERE, "..", "examples", "mpi_mlp.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run([MPIEXEC, "-n", "2", sys.executable, script, "--tiny"], check=False,
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "largest difference between the curves" in proc.stdout


@needs_mpiexec
def test_bench_mode_runs_under_mpiexec(tmp_path):
    out = tmp_path / "mpi.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "adaptopt.bench.mpi", "--sizes", "1e4",
                           "--reps", "1", "--json", str(out)], check=False, capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import json

    doc = json.loads(out.read_text())
    (r,) = doc["results"]
    assert r["ranks"] == 2 and r["state_fraction_max"] <= r["state_target"]
    assert {"step", "reduce_scatter", "all_gather", "single"} <= set(r["median_s"])
