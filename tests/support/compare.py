"""Comparisons: tolerances against the float64 reference, bit equality of nested values,
snapshots, and the conditioning-aware tolerance of the property tests."""

from __future__ import annotations

import copy

import numpy as np


def tolerance(dtype):
    """(rtol, atol relative to the magnitude of the compared array)."""
    return (1e-5, 1e-6) if np.dtype(dtype) == np.float32 else (1e-12, 1e-13)


def assert_close(actual, expected, err_msg=""):
    """Compare an adaptopt array (or a per-parameter float such as NAdam's mu_product) with
    its float64 reference.

    atol is scaled by max(1, max|expected|): a momentum buffer of size ~100 carries absolute
    rounding errors ~100x those of a value ~1, and per-element cancellation (e.g. a buffer that
    passes near 0) must not turn that into a false failure. NaN/Inf must match position for
    position.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected, dtype=np.float64)
    rtol, atol = tolerance(actual.dtype)
    finite = np.isfinite(expected)
    scale = max(1.0, float(np.max(np.abs(expected[finite]), initial=0.0)))
    np.testing.assert_allclose(
        actual.astype(np.float64), expected, rtol=rtol, atol=atol * scale, err_msg=err_msg
    )


def assert_bitwise_equal(a, b, path="value"):
    """Recursive exact comparison of nested dicts/lists/tuples/arrays/scalars (NaN-safe)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), (
            f"{path}: {type(a)} vs {type(b)}"
        )
        assert a.dtype == b.dtype, f"{path}: dtype {a.dtype} vs {b.dtype}"
        assert a.shape == b.shape, f"{path}: shape {a.shape} vs {b.shape}"
        a_bytes = np.ascontiguousarray(a).tobytes()
        b_bytes = np.ascontiguousarray(b).tobytes()
        if a_bytes != b_bytes:
            diff = np.flatnonzero(
                np.ascontiguousarray(a).view(np.uint8).reshape(-1)
                != np.ascontiguousarray(b).view(np.uint8).reshape(-1)
            )
            first = diff[0] // a.dtype.itemsize
            raise AssertionError(
                f"{path}: {len(diff)} bytes differ; first at flat index {first}: "
                f"{a.reshape(-1)[first]!r} vs {b.reshape(-1)[first]!r}"
            )
    elif isinstance(a, dict):
        assert isinstance(b, dict), f"{path}: {type(a)} vs {type(b)}"
        assert set(a) == set(b), f"{path}: keys {sorted(map(str, a))} vs {sorted(map(str, b))}"
        for key in a:
            assert_bitwise_equal(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{path}: {a!r} vs {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_bitwise_equal(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        pass
    else:
        assert type(a) is type(b) and a == b, f"{path}: {a!r} vs {b!r}"


def snapshot(opt=None, arrays=()):
    """Deep copies of an optimizer's state_dict and of the given arrays."""
    return (
        copy.deepcopy(opt.state_dict()) if opt is not None else None,
        [np.array(a, copy=True) if isinstance(a, np.ndarray) else copy.deepcopy(a) for a in arrays],
    )


def assert_unchanged(before, opt=None, arrays=()):
    after = snapshot(opt, arrays)
    if opt is not None:
        assert_bitwise_equal(after[0], before[0], "state_dict")
    assert_bitwise_equal(after[1], before[1], "arrays")


# ---------------------------------------------------------------- conditioning
#
# A float32 kernel cannot beat the conditioning of the update: where it cancels (g + wd * p
# near 0 with a tiny eps, a centered variance v - avg^2 near 0, ...) rounding errors grow far
# beyond rtol. The property tests therefore run the reference again with every input,
# hyperparameter and stored state value jiggled by about one unit roundoff of the dtype (a
# float64 stand-in for rounding to that dtype); SLACK times the spread of those runs is added to
# the tolerance element by element. Well-conditioned elements keep the plain tolerance.

UNIT_ROUNDOFF = {np.dtype(np.float32): 2.0**-24, np.dtype(np.float64): 2.0**-53}
SENSITIVITY_RUNS = 2
SLACK = 16.0


class Jiggle:
    """Relative perturbations uniform in [-u, u]."""

    def __init__(self, u, seed):
        self.u, self.rng = u, np.random.default_rng(seed)

    def array(self, a):
        """Perturbs an array in place and returns it; a float (a per-parameter scalar of the
        state) is returned perturbed."""
        if not isinstance(a, np.ndarray):
            return self.value(a)
        a *= 1.0 + self.u * self.rng.uniform(-1.0, 1.0, np.shape(a))
        return a

    def value(self, v):
        if isinstance(v, bool) or not isinstance(v, (int, float, tuple)):
            return v
        if isinstance(v, tuple):
            return tuple(self.value(x) for x in v)
        return v * (1.0 + self.u * self.rng.uniform(-1.0, 1.0))

    def hyper(self, h):
        return None if h is None else {k: self.value(v) for k, v in h.items()}


def assert_close_cond(actual, want, sens, err_msg):
    """assert_close's tolerance plus SLACK * sens per element (see Jiggle)."""
    actual = np.asarray(actual)
    want = np.asarray(want, dtype=np.float64)
    rtol, atol = tolerance(actual.dtype)
    finite = np.isfinite(want)
    scale = max(1.0, float(np.max(np.abs(want[finite]), initial=0.0)))
    a = actual.astype(np.float64)
    with np.errstate(invalid="ignore"):
        bound = rtol * np.abs(want) + atol * scale + SLACK * sens
        ok = np.where(
            finite, np.abs(a - want) <= bound, (a == want) | (np.isnan(a) & np.isnan(want))
        )
    if not np.all(ok):
        bad = np.flatnonzero(~ok.reshape(-1))
        i = bad[np.argmax(np.abs(a - want).reshape(-1)[bad])] if finite.any() else bad[0]
        raise AssertionError(
            f"{err_msg}: {bad.size} of {ok.size} elements outside tolerance; worst at flat "
            f"index {i}: got {a.reshape(-1)[i]!r}, want {want.reshape(-1)[i]!r}, allowed "
            f"+-{np.broadcast_to(bound, a.shape).reshape(-1)[i]:.3g} (conditioning part "
            f"{SLACK * np.broadcast_to(sens, a.shape).reshape(-1)[i]:.3g})"
        )
