"""Sparse-row gradients: :class:`SparseRows` and their dense equivalent."""

from __future__ import annotations

from typing import Any, List, Sequence

import numpy as np

__all__ = ["SparseRows"]


class SparseRows(tuple):
    """A gradient that touches only some rows of a 2-D parameter (an embedding table):
    ``values[j]`` is the gradient of row ``indices[j]``. Duplicate indices are summed here, once.

    With the optimizer's default ``sparse_mode="lazy"`` only the listed rows of the parameter
    and of its state change (TensorFlow's SparseApply kernels, torch's SparseAdam); the cost is
    proportional to the rows listed. ``sparse_mode="dense"`` gives exactly the result of the
    dense gradient with zeros elsewhere (at the cost of a dense step)."""

    __slots__ = ()

    def __new__(cls, indices, values):
        idx = np.asarray(indices)
        if idx.size == 0 and idx.dtype.kind == "f":  # [] becomes float64
            idx = idx.astype(np.int64)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"SparseRows: indices must be integers, got dtype {idx.dtype}")
        if idx.ndim != 1:
            raise ValueError(f"SparseRows: indices must be 1-D, got shape {idx.shape}")
        if not isinstance(values, np.ndarray):
            raise TypeError(f"SparseRows: values must be a numpy.ndarray, got {type(values).__name__}")
        if values.ndim != 2 or len(values) != len(idx):
            raise ValueError(f"SparseRows: values must have shape (len(indices), columns) = ({len(idx)}, ...), "
                             f"got {values.shape}")
        if idx.dtype.kind == "u" and len(idx) and idx.max() > np.iinfo(np.int64).max:
            raise ValueError(f"SparseRows: row index {idx.max()} is out of range")
        idx = idx.astype(np.int64, copy=False)
        if len(idx) > 1 and not np.all(idx[1:] > idx[:-1]):
            idx, inverse = np.unique(idx, return_inverse=True)
            summed = np.zeros((len(idx), values.shape[1]), dtype=values.dtype)
            np.add.at(summed, inverse, values)  # sums duplicates in their order of appearance
            values = summed
        return super().__new__(cls, (np.ascontiguousarray(idx), values))

    @property
    def indices(self) -> np.ndarray:
        return self[0]

    @property
    def values(self) -> np.ndarray:
        return self[1]

    def to_dense(self, shape, dtype) -> np.ndarray:
        out = np.zeros(shape, dtype=dtype)
        out[self.indices] = self.values
        return out


def densify(grads: Sequence[Any], params: Sequence[np.ndarray]) -> List[Any]:
    """``grads`` with every SparseRows replaced by its dense equivalent (checked first: a bad one
    raises naming its index, nothing is allocated for the others)."""
    out = list(grads)
    for i, g in enumerate(out):
        if isinstance(g, SparseRows):
            p = params[i]
            if g.values.dtype != p.dtype:
                raise TypeError(f"grads[{i}].values: dtype {g.values.dtype} does not match the "
                                f"parameter's {p.dtype} (no implicit casts)")
            if p.ndim != 2 or g.values.shape[1] != p.shape[1]:
                raise ValueError(f"grads[{i}]: sparse rows of width {g.values.shape[1]} do not fit "
                                 f"the parameter's shape {p.shape}")
            if len(g.indices) and (g.indices[0] < 0 or g.indices[-1] >= p.shape[0]):
                bad = g.indices[0] if g.indices[0] < 0 else g.indices[-1]
                raise ValueError(f"grads[{i}]: row index {bad} is out of range for {p.shape[0]} rows")
            out[i] = g.to_dense(p.shape, p.dtype)
    return out
