"""What adaptopt is compared with, on the same arrays. A peer has ``supports(algo)`` (None, or
why it cannot run that configuration) and ``make(algo, params, grads) -> step``, a no-argument
callable doing one update of every parameter, allocating its state lazily like the real thing.

* ``numpy``: the rule spec's NumPy form (``spec.numpy_stepper``: the in-place ufunc chain a user
  would write) applied per tensor. Single-threaded: measured once per configuration, size and
  dtype, reported at every thread count.
* ``torch-forloop`` / ``torch-foreach`` / ``torch-fused``: the torch.optim class of the spec's
  name with ``foreach=False`` / ``foreach=True`` / ``fused=True`` over ``torch.from_numpy`` views
  of the same arrays. Run where torch has the class and the configuration uses no key the spec
  lists in ``torch_lacks``; fused only where torch has a fused CPU implementation.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import numpy as np

from .algos import Algo
from .measure import torch_version

PEER_ORDER = ("numpy", "torch-forloop", "torch-foreach", "torch-fused")


class NumpyPeer:
    name = "numpy"
    threaded = False  # NumPy ufuncs use one thread
    temporaries = 3  # arrays of n that the ufunc chain allocates at once, at most (estimate)

    def supports(self, algo: Algo) -> str | None:
        return None

    def make(self, algo: Algo, params: list[np.ndarray], grads: list[np.ndarray]) -> Callable[[], None]:
        update = algo.spec.numpy_stepper(algo.variant.kwargs)
        states: list[dict[str, Any]] = [{} for _ in params]

        def step() -> None:
            for p, g, s in zip(params, grads, states):
                update(p, g, s)

        return step


class TorchPeer:
    """torch.optim with one implementation forced. ``.grad`` is set once, as a view too."""

    threaded = True  # torch.set_num_threads = the point's thread count

    def __init__(self, mode: str, temporaries: int):
        self.mode = mode
        self.name = f"torch-{mode}"
        self.temporaries = temporaries

    @staticmethod
    def _class(algo: Algo) -> Any:
        import torch

        return getattr(torch.optim, algo.spec.name, None)

    @staticmethod
    @functools.cache
    def _fused_on_cpu(class_name: str, kwargs: tuple[tuple[str, Any], ...]) -> bool:
        import torch

        cls = getattr(torch.optim, class_name)
        if "fused" not in inspect.signature(cls).parameters:
            return False
        t = torch.zeros(4)
        t.grad = torch.ones(4)
        try:
            cls([t], **dict(kwargs), fused=True).step()
        except (RuntimeError, ValueError, NotImplementedError):
            return False
        return True

    def supports(self, algo: Algo) -> str | None:
        cls_name = algo.spec.name
        if self._class(algo) is None:
            return f"torch.optim has no {cls_name}"
        lacks = [k for k in algo.uses() if k in algo.spec.torch_lacks]
        if lacks:
            return f"torch.optim.{cls_name} has no {', '.join(lacks)} option"
        if self.mode == "fused" and not self._fused_on_cpu(cls_name, tuple(sorted(algo.variant.kwargs.items()))):
            return f"torch.optim.{cls_name} has no fused CPU implementation"
        return None

    def make(self, algo: Algo, params: list[np.ndarray], grads: list[np.ndarray]) -> Callable[[], None]:
        import torch

        tensors = [torch.from_numpy(p) for p in params]
        for t, g in zip(tensors, grads):
            t.grad = torch.from_numpy(g)
        impl = {"forloop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[self.mode]
        opt = self._class(algo)(tensors, **algo.variant.kwargs, **impl)
        return opt.step


def make_peers(with_torch: bool) -> list:
    peers: list = [NumpyPeer()]
    if with_torch and torch_version() is not None:
        peers += [TorchPeer("forloop", 2), TorchPeer("foreach", 3), TorchPeer("fused", 0)]
    return peers
