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

These four run the plain storages (float32 or float64 everywhere) only: elsewhere they would not
do the same update. At the other storages (``storage.Storage``, e.g. bf16-sr-8bit):

* ``torch-fused-fp32``: torch's fused implementation on float32 copies of the point's params and
  grads (what one would run without compact storage);
* ``torch-fused-bf16``: torch's fused implementation on bfloat16 tensors that are views of the
  point's bfloat16 params and grads (its state is bfloat16 too, its rounding to nearest);
* ``bnb-8bit``: bitsandbytes' blockwise 8-bit optimizer (``bnb.optim.Adam8bit`` /
  ``AdamW8bit``, blocks of 256, its dynamic code) on views of the point's params, on CPU, at
  8-bit-state points; skipped with the reason (``unavailable()``) when bitsandbytes is missing
  or cannot step on CPU here.

Each peer has ``supports(algo, storage)`` and ``make(algo, params, grads, storage)``; storage
None means the plain storage of the arrays. ``extra_bytes(algo, storage)``: bytes per element
the peer allocates besides the point's params and grads (state, copies, temporaries; an
estimate for the memory rule).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import numpy as np

from .algos import Algo
from .measure import torch_version
from .storage import Storage

PEER_ORDER = ("numpy", "torch-forloop", "torch-foreach", "torch-fused", "torch-fused-fp32",
              "torch-fused-bf16", "bnb-8bit")
PLAIN_ONLY = "runs the float32/float64 storage only (its state is in the param dtype)"


def _plain(storage: Storage | None) -> bool:
    return storage is None or storage.plain


def _itemsize(algo: Algo, storage: Storage | None) -> int:
    return 4 if storage is None else storage.param_dtype.itemsize


def torch_view(a: np.ndarray) -> Any:
    """A torch tensor sharing ``a``'s memory (bfloat16 arrays through a uint16 view)."""
    import torch

    from adaptopt._storage import BFLOAT16

    if a.dtype == BFLOAT16:
        return torch.from_numpy(a.view(np.uint16)).view(torch.bfloat16)
    return torch.from_numpy(a)


class NumpyPeer:
    name = "numpy"
    threaded = False  # NumPy ufuncs use one thread
    temporaries = 3  # arrays of n that the ufunc chain allocates at once, at most (estimate)

    def supports(self, algo: Algo, storage: Storage | None = None) -> str | None:
        return None if _plain(storage) else f"numpy {PLAIN_ONLY}"

    def extra_bytes(self, algo: Algo, storage: Storage | None = None) -> float:
        return (algo.n_state + self.temporaries) * _itemsize(algo, storage)

    def make(self, algo: Algo, params: list[np.ndarray], grads: list[np.ndarray],
             storage: Storage | None = None) -> Callable[[], None]:
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
    def _fused_on_cpu(class_name: str, kwargs: tuple[tuple[str, Any], ...], dtype: str = "float32") -> bool:
        import torch

        cls = getattr(torch.optim, class_name)
        if "fused" not in inspect.signature(cls).parameters:
            return False
        t = torch.zeros(4, dtype=getattr(torch, dtype))
        t.grad = torch.ones(4, dtype=t.dtype)
        try:
            cls([t], **dict(kwargs), fused=True).step()
        except (RuntimeError, ValueError, NotImplementedError):
            return False
        return True

    def supports(self, algo: Algo, storage: Storage | None = None) -> str | None:
        if not _plain(storage):
            return f"{self.name} {PLAIN_ONLY}"
        return self._torch_supports(algo)

    def _torch_supports(self, algo: Algo, dtype: str = "float32") -> str | None:
        cls_name = algo.spec.name
        if self._class(algo) is None:
            return f"torch.optim has no {cls_name}"
        lacks = [k for k in algo.uses() if k in algo.spec.torch_lacks]
        if lacks:
            return f"torch.optim.{cls_name} has no {', '.join(lacks)} option"
        if self.mode == "fused" and not self._fused_on_cpu(cls_name, tuple(sorted(algo.variant.kwargs.items())), dtype):
            return f"torch.optim.{cls_name} has no fused CPU implementation" + \
                ("" if dtype == "float32" else f" for {dtype}")
        return None

    def extra_bytes(self, algo: Algo, storage: Storage | None = None) -> float:
        return (algo.n_state + self.temporaries) * _itemsize(algo, storage)

    def make(self, algo: Algo, params: list[np.ndarray], grads: list[np.ndarray],
             storage: Storage | None = None) -> Callable[[], None]:
        import torch

        tensors = [torch.from_numpy(p) for p in params]
        for t, g in zip(tensors, grads):
            t.grad = torch.from_numpy(g)
        impl = {"forloop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[self.mode]
        opt = self._class(algo)(tensors, **algo.variant.kwargs, **impl)
        return opt.step


class TorchFusedAs(TorchPeer):
    """torch's fused implementation at a compact-storage point, in float32 (on copies of the
    params and grads) or in bfloat16 (on views of the point's bfloat16 arrays)."""

    def __init__(self, dtype: str):
        super().__init__("fused", 0)
        self.as_dtype = dtype  # "float32" or "bfloat16"
        self.name = "torch-fused-" + {"float32": "fp32", "bfloat16": "bf16"}[dtype]

    def supports(self, algo: Algo, storage: Storage | None = None) -> str | None:
        if _plain(storage):
            return f"{self.name} runs at compact-storage points (torch-fused is the peer here)"
        assert storage is not None
        if self.as_dtype == "bfloat16" and storage.param_dtype.name != "bfloat16":
            return f"{self.name} runs where the params are bfloat16"
        reason = self._torch_supports(algo, self.as_dtype)
        if reason is None and self.as_dtype == "bfloat16" and \
                not self._fused_bf16_agrees(algo.spec.name, tuple(sorted(algo.variant.kwargs.items()))):
            reason = (f"torch.optim.{algo.spec.name}(fused=True) on bfloat16 CPU tensors does not do "
                      "the for-loop implementation's update here (torch 2.13's fused SGD leaves the "
                      "vectorised part of a bfloat16 param unchanged)")
        return reason

    @staticmethod
    @functools.cache
    def _fused_bf16_agrees(class_name: str, kwargs: tuple[tuple[str, Any], ...]) -> bool:
        """Two steps of the fused implementation on a 4096-element bfloat16 param match the
        for-loop implementation's (to a bfloat16 rounding)."""
        import torch

        out = []
        for impl in ({"fused": True}, {"foreach": False}):
            t = torch.full((4096,), 0.05, dtype=torch.bfloat16)
            t.grad = torch.linspace(0.5, 1.5, 4096).to(torch.bfloat16)
            opt = getattr(torch.optim, class_name)([t], **dict(kwargs), **impl)
            opt.step()
            opt.step()
            out.append(t.float())
        return bool(torch.allclose(out[0], out[1], rtol=1e-2, atol=1e-4)) and \
            bool((out[0] != 0.05).all())

    def extra_bytes(self, algo: Algo, storage: Storage | None = None) -> float:
        if self.as_dtype == "float32":
            return (2 + algo.n_state) * 4  # copies of p and g, float32 state
        return algo.n_state * 2

    def make(self, algo: Algo, params: list[np.ndarray], grads: list[np.ndarray],
             storage: Storage | None = None) -> Callable[[], None]:
        import torch

        grads32 = []
        if self.as_dtype == "float32":
            tensors = [torch.from_numpy(p.astype(np.float32)) for p in params]
            grads32 = [g.astype(np.float32) for g in grads]
            for t, g in zip(tensors, grads32):
                t.grad = torch.from_numpy(g)
        else:
            tensors = [torch_view(p) for p in params]
            for t, g in zip(tensors, grads):
                t.grad = torch_view(g)
        opt = self._class(algo)(tensors, **algo.variant.kwargs, fused=True)

        def step() -> None:
            opt.step()

        if self.as_dtype == "float32":  # the float32 copies, for tests: a test writes each
            # step's gradient into step.grads and reads the params from step.tensors
            step.tensors = tensors  # type: ignore[attr-defined]
            step.grads = grads32  # type: ignore[attr-defined]
        return step


BNB_CLASSES = {"Adam": "Adam8bit", "AdamW": "AdamW8bit"}


@functools.cache
def bnb_status() -> tuple[Any, str | None]:
    """(the bitsandbytes module, None), or (None, why it cannot be a peer here)."""
    try:
        import contextlib
        import io

        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            import bitsandbytes as bnb
            import torch

            t = torch.zeros(512)
            t.grad = torch.ones(512)
            bnb.optim.Adam8bit([t], min_8bit_size=1).step()
    except ImportError as e:
        return None, f"bitsandbytes is not installed ({e}); pip install bitsandbytes"
    except Exception as e:  # noqa: BLE001 (any failure to step on CPU is a reason to skip)
        return None, f"bitsandbytes cannot step on CPU here: {type(e).__name__}: {e}"
    return bnb, None


class BnbPeer:
    """bitsandbytes' 8-bit Adam / AdamW on CPU over views of the point's params (8-bit state,
    blocks of 256, forced for every size with min_8bit_size=1)."""

    name = "bnb-8bit"
    threaded = True  # bitsandbytes' CPU path runs torch ops: torch.set_num_threads applies
    temporaries = 3

    def supports(self, algo: Algo, storage: Storage | None = None) -> str | None:
        if storage is None or storage.state_dtype != "8bit":
            return "bnb-8bit runs at 8-bit-state points"
        if algo.spec.name not in BNB_CLASSES or algo.uses():
            return f"bitsandbytes has no 8-bit {algo.name} here (only plain {', '.join(BNB_CLASSES)})"
        return None

    def unavailable(self) -> str | None:
        """Why this peer cannot run on this machine (recorded as a skip at each point it would
        run), or None."""
        return bnb_status()[1]

    def extra_bytes(self, algo: Algo, storage: Storage | None = None) -> float:
        return algo.n_state + self.temporaries * 4

    def make(self, algo: Algo, params: list[np.ndarray], grads: list[np.ndarray],
             storage: Storage | None = None) -> Callable[[], None]:
        bnb = bnb_status()[0]
        tensors = [torch_view(p) for p in params]
        for t, g in zip(tensors, grads):
            t.grad = torch_view(g)
        cls = getattr(bnb.optim, BNB_CLASSES[algo.spec.name])
        kw = {**algo.spec.defaults, **algo.variant.kwargs}
        opt = cls(tensors, **{k: kw[k] for k in ("lr", "betas", "eps", "weight_decay")}, min_8bit_size=1)
        return opt.step


def make_peers(with_torch: bool, with_bnb: bool = True) -> list:
    peers: list = [NumpyPeer()]
    if with_torch and torch_version() is not None:
        peers += [TorchPeer("forloop", 2), TorchPeer("foreach", 3), TorchPeer("fused", 0),
                  TorchFusedAs("float32"), TorchFusedAs("bfloat16")]
        if with_bnb:
            peers.append(BnbPeer())
    return peers
