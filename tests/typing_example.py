"""Typed use of adaptopt's public API. tests/test_typing.py runs mypy --strict on this file (it
must pass: the package ships py.typed and _core.pyi) and also runs it, so it stays real code."""

from __future__ import annotations

from typing import Any

import adaptopt
import numpy as np
import numpy.typing as npt
from adaptopt import functional as F

Array32 = npt.NDArray[np.float32]
Array64 = npt.NDArray[np.float64]


def optimizers(w: Array32, b: Array32) -> list[adaptopt.Optimizer]:
    return [
        adaptopt.RMSprop([w, b], lr=1e-3, momentum=0.9, centered=True),
        adaptopt.Adagrad([w, b], lr_decay=1e-3, initial_accumulator_value=0.1),
        adaptopt.Adadelta([{"params": [w]}, {"params": [b], "lr": 0.5}], rho=0.95),
        adaptopt.Adam([w, b], betas=(0.9, 0.99), amsgrad=True, maximize=False),
        adaptopt.AdamW([w, b], lr=1e-3, weight_decay=1e-2),
    ]


def class_api() -> float:
    rng = np.random.default_rng(0)
    w: Array32 = rng.standard_normal(37).astype(np.float32)
    b: Array32 = np.zeros(5, dtype=np.float32)
    grads: list[Array32 | None] = [np.ones_like(w), None]  # None: b is skipped
    total = 0.0
    for opt in optimizers(w, b):
        opt.step(grads)
        sd: dict[str, Any] = opt.state_dict()
        opt.load_state_dict(sd)
        steps: int = opt.state[0]["step"]
        lr: float = opt.param_groups[0]["lr"]
        total += steps * lr
    return total + float(w.sum())


def functional_api() -> Array64:
    n = 16
    p: list[Array64] = [np.zeros(n)]
    g: list[Array64] = [np.ones(n)]

    def zeros() -> list[Array64]:
        return [np.zeros(n)]

    F.rmsprop_(p, g, zeros(), zeros(), momentum=0.9, lr=1e-2)
    F.adagrad_(p, g, zeros(), step=1, lr_decay=0.0)
    F.adadelta_(p, g, zeros(), zeros(), rho=0.9)
    F.adam_(p, g, zeros(), zeros(), zeros(), step=1, beta1=0.9, beta2=0.999, amsgrad=True)
    return p[0]


def runtime_api() -> str:
    name: str = adaptopt.isa()
    isas: list[str] = adaptopt.available_isas()
    adaptopt.set_isa(isas[0])
    adaptopt.set_isa(name)
    threads: int = adaptopt.get_num_threads()
    adaptopt.set_num_threads(threads)
    version: str = adaptopt.__version__
    return f"adaptopt {version}: {name} of {isas}, {threads} threads"


def main() -> None:
    class_api()
    functional_api()
    print(runtime_api())


if __name__ == "__main__":
    main()
