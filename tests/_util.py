"""Helpers shared by the adaptopt tests."""

from __future__ import annotations

import copy

import adaptopt
import numpy as np
import pytest
from reference import RefOptimizer

OPTIMIZERS = ("RMSprop", "Adagrad", "Adadelta", "Adam", "AdamW")
DTYPES = (np.float32, np.float64)
LANES = (4, 8, 16)
# Sizes that hit every vector-tail case for 4, 8 and 16 lanes.
EDGE_SIZES = sorted({0, 1} | {n for v in LANES for n in (v - 1, v, v + 1, 3 * v + 5)})

by_name = pytest.mark.parametrize("name", OPTIMIZERS)
by_dtype = pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)

# One configuration per optimizer that switches on most of its options at once.
RICH = {
    "RMSprop": dict(momentum=0.9, centered=True, nesterov=True, weight_decay=0.1),
    "Adagrad": dict(lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.1),
    "Adadelta": dict(weight_decay=0.1, lr=0.5),
    "Adam": dict(amsgrad=True, weight_decay=0.1),
    "AdamW": dict(amsgrad=True),
}


def optimizer_class(name):
    return getattr(adaptopt, name)


def expected_state_keys(name, hyper):
    """The per-parameter state keys adaptopt must expose (PyTorch's names)."""
    if name == "RMSprop":
        keys = {"step", "square_avg"}
        if hyper.get("momentum", 0) > 0:
            keys.add("momentum_buffer")
        if hyper.get("centered", False):
            keys.add("grad_avg")
        return keys
    if name == "Adagrad":
        return {"step", "sum"}
    if name == "Adadelta":
        return {"step", "square_avg", "acc_delta"}
    keys = {"step", "exp_avg", "exp_avg_sq"}
    if hyper.get("amsgrad", False):
        keys.add("max_exp_avg_sq")
    return keys


def config_id(name, hyper):
    """Readable test id: ``Adam-amsgrad-weight_decay=0.1``."""
    parts = [name]
    for key, value in hyper.items():
        if value is True:
            parts.append(key)
        elif value is not False:
            parts.append(f"{key}={value}")
    return "-".join(parts)


# ---------------------------------------------------------------- array construction


def aligned_empty(shape, dtype, offset_bytes=0, alignment=64):
    """A C-contiguous array whose data starts ``offset_bytes`` past an ``alignment`` boundary."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + offset_bytes + alignment, dtype=np.uint8)
    start = (-raw.ctypes.data) % alignment + offset_bytes
    out = raw[start : start + nbytes].view(dtype).reshape(shape)
    assert nbytes == 0 or out.ctypes.data % alignment == offset_bytes % alignment
    return out


def place(values, misaligned=False):
    """Copy ``values`` into a fresh 64-byte-aligned buffer, or one offset by one element."""
    values = np.asarray(values)
    offset = values.dtype.itemsize if misaligned else 0
    out = aligned_empty(values.shape, values.dtype, offset)
    out[...] = values
    return out


def random_arrays(rng, shapes, dtype, misaligned=False):
    """N(0, 1) arrays (generated in float64, then rounded to ``dtype``)."""
    return [
        place(np.asarray(rng.standard_normal(shape)).astype(dtype), misaligned) for shape in shapes
    ]


def random_grads(rng, params, misaligned=False):
    """Fresh N(0, 1) gradients matching each param's shape and dtype."""
    return [
        place(np.asarray(rng.standard_normal(p.shape)).astype(p.dtype), misaligned) for p in params
    ]


def flat_params(params_or_groups):
    if params_or_groups and isinstance(params_or_groups[0], dict):
        return [p for group in params_or_groups for p in group["params"]]
    return list(params_or_groups)


def copy_groups(params_or_groups):
    """A structural copy (new dicts and lists, same arrays), so nothing is shared between two
    optimizers' group dicts."""
    if params_or_groups and isinstance(params_or_groups[0], dict):
        return [{**g, "params": list(g["params"])} for g in params_or_groups]
    return list(params_or_groups)


def clone_groups(params_or_groups):
    """Like copy_groups, but with copied arrays."""
    out = copy_groups(params_or_groups)
    if out and isinstance(out[0], dict):
        for g in out:
            g["params"] = [p.copy() for p in g["params"]]
        return out
    return [p.copy() for p in out]


# ---------------------------------------------------------------- comparisons


def tolerance(dtype):
    """(rtol, atol relative to the magnitude of the compared array)."""
    return (1e-5, 1e-6) if np.dtype(dtype) == np.float32 else (1e-12, 1e-13)


def assert_close(actual, expected, err_msg=""):
    """Compare an adaptopt array with its float64 reference.

    atol is scaled by max(1, max|expected|): a momentum buffer of size ~100 carries absolute
    rounding errors ~100x those of a value ~1, and per-element cancellation (e.g. a buffer that
    passes near 0) must not turn that into a false failure. NaN/Inf must match position for
    position.
    """
    actual = np.asarray(actual)
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


# ---------------------------------------------------------------- adaptopt vs reference


class Pair:
    """An adaptopt optimizer and its float64 reference, fed the same gradients."""

    def __init__(self, name, params_or_groups, **hyper):
        self.name = name
        self.params = flat_params(params_or_groups)
        self.ref = RefOptimizer(name, copy_groups(params_or_groups), **hyper)
        self.opt = optimizer_class(name)(copy_groups(params_or_groups), **hyper)

    def step(self, grads):
        before = [None if g is None else g.copy() for g in grads]
        self.opt.step(grads)
        assert_bitwise_equal(list(grads), before, "grads (must be read only)")
        self.ref.step(grads)

    def random_step(self, rng, misaligned=False):
        grads = random_grads(rng, self.params, misaligned)
        self.step(grads)
        return grads

    def set_hyper(self, group, key, value):
        self.opt.param_groups[group][key] = value
        self.ref.param_groups[group][key] = value

    def check(self, states=True):
        for i, (p, r) in enumerate(zip(self.params, self.ref.params)):
            assert_close(p, r, err_msg=f"params[{i}] (dtype {p.dtype}, shape {p.shape})")
        if not states:
            return
        state = self.opt.state_dict()["state"]
        for i, ref_state in enumerate(self.ref.state):
            if not ref_state:
                continue
            assert i in state, f"no state for params[{i}]"
            for key, want in ref_state.items():
                assert key in state[i], f"state[{i}] has no {key!r}"
                got = state[i][key]
                if key == "step":
                    assert got == want, f"state[{i}]['step'] = {got}, expected {want}"
                else:
                    assert_close(got, want, err_msg=f"state[{i}][{key!r}]")
