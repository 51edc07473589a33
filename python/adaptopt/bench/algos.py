"""The benchmarked configurations: every variant of every rule spec in ``adaptopt._rules``
(a rule added there is benchmarked with no edit here). The same ``kwargs`` construct the
adaptopt class, the torch.optim class of the same name and the NumPy peer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from adaptopt import _rules
from adaptopt._rules import Spec, Variant

QUICK = ("rmsprop", "adagrad", "adam")  # --quick's configurations


@dataclass(frozen=True)
class Algo:
    spec: Spec
    variant: Variant
    n_state: int  # state buffers per parameter: the step reads 2 + n_state, writes 1 + n_state

    @classmethod
    def of(cls, spec: Spec, variant: Variant) -> Algo:
        built = spec.build({**spec.defaults, **variant.kwargs})
        return cls(spec, variant, sum(built.needed))

    @property
    def algo(self) -> str:
        """The rule's name in lower case: rmsprop, adamw, sgd, ..."""
        return self.spec.name.lower()

    @property
    def name(self) -> str:
        """``algo`` for the plain variant, else ``algo-variant``: rmsprop-momentum."""
        return self.algo if self.variant.name == "plain" else f"{self.algo}-{self.variant.name}"

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.variant.kwargs)

    def uses(self) -> list[str]:
        """The keys this configuration sets away from the rule's defaults (flags turned on)."""
        defaults: Mapping[str, Any] = self.spec.defaults
        return [k for k, v in self.variant.kwargs.items() if k not in defaults or v != defaults[k]]

    def make(self, params: list[np.ndarray], **options: Any) -> Any:
        """The adaptopt optimizer over ``params`` (``options``: max_grad_norm, track_stats, ...)."""
        from adaptopt.optim import Optimizer

        return Optimizer._classes[self.spec.name](params, **self.variant.kwargs, **options)

    def stepper(self, params: list[np.ndarray], grads: list[np.ndarray],
                options: Mapping[str, Any] | None = None) -> Callable[[], None]:
        """One adaptopt step over ``params`` per call (the measured implementation);
        ``options``: the storage's (state_dtype, stochastic_rounding, ...)."""
        opt = self.make(params, **(options or {}))
        return lambda: opt.step(grads)


def configurations() -> tuple[Algo, ...]:
    """Every spec's every variant, in ``_rules.SPECS`` order (read at call time)."""
    out = tuple(Algo.of(spec, v) for spec in _rules.SPECS for v in spec.variants)
    names = [a.name for a in out]
    if len(set(names)) != len(names):
        raise AssertionError(f"two benchmark configurations share a name: {names}")
    return out


def by_name() -> dict[str, Algo]:
    return {a.name: a for a in configurations()}
