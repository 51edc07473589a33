"""Thread count: results are bit-identical for any number of threads within one ISA, for every
rule (its RICH configuration, per-parameter scalars such as NAdam's mu_product included)."""

import os
import subprocess
import sys

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


@pytest.mark.parametrize("omp", ["1", "2"])
def test_omp_num_threads_sets_default(omp):
    env = {**os.environ, "OMP_NUM_THREADS": omp}
    out = subprocess.run(
        [sys.executable, "-c", "import adaptopt; print(adaptopt.get_num_threads())"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == omp
