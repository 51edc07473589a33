"""Array construction: aligned and misaligned buffers, guarded views, random data, groups."""

from __future__ import annotations

import numpy as np

DTYPES = (np.float32, np.float64)
LANES = (4, 8, 16)
# Sizes that hit every vector-tail case for 4, 8 and 16 lanes.
EDGE_SIZES = sorted({0, 1} | {n for v in LANES for n in (v - 1, v, v + 1, 3 * v + 5)})

GUARD = 19  # elements of sentinel after each guarded view
SENTINEL = -7.25  # exactly representable in both dtypes


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


# ---------------------------------------------------------------- guarded views


def guarded(values, offset):
    """A copy of ``values`` placed ``offset`` elements into a larger buffer filled with a
    sentinel (so misaligned and with neighbours that must never be written). Returns the view,
    which is C-contiguous and whose ``.base`` chain ends at the whole buffer."""
    values = np.asarray(values)
    n = values.size
    base = np.full(offset + n + GUARD, SENTINEL, dtype=values.dtype)
    view = base[offset : offset + n].reshape(values.shape)
    view[...] = values
    assert view.flags.c_contiguous and view.flags.writeable
    return view


def root(a):
    while isinstance(a, np.ndarray) and a.base is not None:
        a = a.base
    return a


def check_guards(view, what):
    """Everything in the underlying buffer outside ``view`` still holds the sentinel."""
    base = root(view)
    start = view.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    assert start % view.itemsize == 0
    start //= view.itemsize
    outside = np.ones(base.size, bool)
    outside[start : start + view.size] = False
    assert np.all(base[outside] == SENTINEL), f"{what}: memory outside the array was written"
