"""The benchmarked algorithms and the peers they are compared with (used by adaptopt.bench).

One table row per benchmarked configuration: its adaptopt class and keyword arguments (the same
keywords construct the torch.optim peer and parameterise the NumPy peer) and its state count.
A peer is an object with ``make(algo, params, grads) -> step`` (a no-argument callable that does
one update of every parameter, allocating its state lazily like the real thing).
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np

import adaptopt

# --------------------------------------------------------------------------------------------
# Hand-written NumPy updates: the straightforward in-place ufunc chain a user would write.
# ``s`` is the list of state arrays (n_state of them, zeros at first), ``t`` the 1-based step.


def numpy_rmsprop(p, g, s, t, *, lr=1e-2, alpha=0.99, eps=1e-8, momentum=0.0, centered=False,
                  nesterov=False):
    v = s[0]
    v *= alpha
    v += (1 - alpha) * g * g
    if centered:
        ga = s[-1]
        ga *= alpha
        ga += (1 - alpha) * g
        denom = np.sqrt(v - ga * ga)
    else:
        denom = np.sqrt(v)
    denom += eps
    if momentum:
        buf = s[1]
        buf *= momentum
        u = g / denom
        buf += u
        p -= lr * (momentum * buf + u) if nesterov else lr * buf
    else:
        p -= lr * g / denom


def numpy_adagrad(p, g, s, t, *, lr=1e-2, eps=1e-10):
    acc = s[0]
    acc += g * g
    p -= lr * g / (np.sqrt(acc) + eps)


def numpy_adadelta(p, g, s, t, *, lr=1.0, rho=0.9, eps=1e-6):
    v, u = s
    v *= rho
    v += (1 - rho) * g * g
    delta = np.sqrt(u + eps) / np.sqrt(v + eps) * g
    u *= rho
    u += (1 - rho) * delta * delta
    p -= lr * delta


def numpy_adam(p, g, s, t, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
               amsgrad=False, decoupled_weight_decay=False):
    b1, b2 = betas
    m, v = s[0], s[1]
    if weight_decay and decoupled_weight_decay:
        p *= 1 - lr * weight_decay
    elif weight_decay:
        g = g + weight_decay * p
    m *= b1
    m += (1 - b1) * g
    v *= b2
    v += (1 - b2) * g * g
    if amsgrad:
        np.maximum(s[2], v, out=s[2])
        v = s[2]
    bc1, bc2 = 1 - b1**t, 1 - b2**t
    p -= (lr / bc1) * m / (np.sqrt(v / bc2) + eps)


# --------------------------------------------------------------------------------------------
# The algorithm table.

_BASE = {  # base algorithm -> (adaptopt / torch.optim class name, NumPy update)
    "rmsprop": ("RMSprop", numpy_rmsprop),
    "adagrad": ("Adagrad", numpy_adagrad),
    "adadelta": ("Adadelta", numpy_adadelta),
    "adam": ("Adam", numpy_adam),
    "adamw": ("AdamW", functools.partial(numpy_adam, decoupled_weight_decay=True)),
}

_TORCH_LACKS = {"nesterov", "eps_in_sqrt"}  # adaptopt options torch.optim does not have


@dataclass(frozen=True)
class Algo:
    """One benchmarked configuration. ``kwargs`` are passed to the adaptopt class, to the
    torch.optim class of the same name and to the NumPy update."""

    algo: str  # base algorithm: rmsprop, adagrad, adadelta, adam, adamw
    variant: str  # plain, momentum, centered, nesterov, amsgrad
    n_state: int  # state buffers per parameter: the step reads 2 + n_state, writes 1 + n_state
    kwargs: Dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.algo if self.variant == "plain" else f"{self.algo}-{self.variant}"

    @property
    def class_name(self) -> str:
        return _BASE[self.algo][0]

    @property
    def numpy_update(self) -> Callable:
        return functools.partial(_BASE[self.algo][1], **self.kwargs)

    @property
    def torch_has_variant(self) -> bool:
        return not (_TORCH_LACKS & {k for k, v in self.kwargs.items() if v})

    def make(self, params: List[np.ndarray]):
        """The adaptopt optimizer over ``params``."""
        return getattr(adaptopt, self.class_name)(params, **self.kwargs)


def adaptopt_step(algo: Algo, params, grads) -> Callable[[], None]:
    """One adaptopt step of ``algo`` over ``params`` (the measured implementation)."""
    opt = algo.make(params)
    return lambda: opt.step(grads)


ALGOS = [
    Algo("rmsprop", "plain", 1),
    Algo("rmsprop", "momentum", 2, dict(momentum=0.9)),
    Algo("rmsprop", "centered", 2, dict(centered=True)),
    Algo("rmsprop", "nesterov", 2, dict(momentum=0.9, nesterov=True)),
    Algo("adagrad", "plain", 1),
    Algo("adadelta", "plain", 2),
    Algo("adam", "plain", 2),
    Algo("adam", "amsgrad", 3, dict(amsgrad=True)),
    Algo("adamw", "plain", 2, dict(weight_decay=1e-2)),
]
ALGO_BY_NAME = {a.name: a for a in ALGOS}


# --------------------------------------------------------------------------------------------
# Peers.


class NumpyPeer:
    """Hand-written in-place NumPy (single-threaded: NumPy ufuncs do not use threads)."""

    name = "numpy"
    threaded = False
    temporaries = 3  # arrays of n that the ufunc chain allocates at once, at most (estimate)

    def supports(self, algo: Algo) -> Optional[str]:
        return None

    def make(self, algo: Algo, params, grads) -> Callable[[], None]:
        update = algo.numpy_update
        states = [[np.zeros_like(p) for _ in range(algo.n_state)] for p in params]
        t = 0

        def step():
            nonlocal t
            t += 1
            for p, g, s in zip(params, grads, states):
                update(p, g, s, t)

        return step


class TorchPeer:
    """torch.optim with one implementation forced: for-loop, foreach or fused. Parameters are
    ``torch.from_numpy`` views of the same arrays (no copies); ``.grad`` is set once."""

    threaded = True

    def __init__(self, mode: str, temporaries: int):
        self.mode = mode  # "forloop", "foreach" or "fused"
        self.name = f"torch-{mode}"
        self.temporaries = temporaries

    @staticmethod
    @functools.lru_cache(maxsize=None)
    def _fused_on_cpu(class_name: str) -> bool:
        import torch

        cls = getattr(torch.optim, class_name)
        if "fused" not in inspect.signature(cls).parameters:
            return False
        t = torch.zeros(4)
        t.grad = torch.ones(4)
        try:
            cls([t], fused=True).step()
        except (RuntimeError, ValueError, NotImplementedError):
            return False
        return True

    def supports(self, algo: Algo) -> Optional[str]:
        """None if this peer can run ``algo``, else why not."""
        if not algo.torch_has_variant:
            return f"torch.optim.{algo.class_name} has no {algo.variant} option"
        if self.mode == "fused" and not self._fused_on_cpu(algo.class_name):
            return f"torch.optim.{algo.class_name} has no fused CPU implementation"
        return None

    def make(self, algo: Algo, params, grads) -> Callable[[], None]:
        import torch

        tensors = [torch.from_numpy(p) for p in params]
        for t, g in zip(tensors, grads):
            t.grad = torch.from_numpy(g)
        impl = {"forloop": dict(foreach=False), "foreach": dict(foreach=True),
                "fused": dict(fused=True)}[self.mode]
        opt = getattr(torch.optim, algo.class_name)(tensors, **algo.kwargs, **impl)
        return opt.step


def torch_version() -> Optional[str]:
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def make_peers(with_torch: bool) -> list:
    peers: list = [NumpyPeer()]
    if with_torch and torch_version() is not None:
        peers += [TorchPeer("forloop", 2), TorchPeer("foreach", 3), TorchPeer("fused", 0)]
    return peers
