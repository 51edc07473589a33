"""Learning-rate schedules: callables of the step count returning the learning rate.

Pass one as ``lr`` (to the constructor or in a param group): the optimizer evaluates it once
per step, in Python, at the number of steps already applied (0 for the first step). The step
count is the schedule's only state; it is saved by ``state_dict()`` and checkpoints. Any
callable ``f(step) -> float`` works; the built-in ones can also be saved in a checkpoint.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Sequence

__all__ = ["Schedule", "constant", "step_decay", "exponential_decay", "cosine", "chain", "from_dict"]


class Schedule:
    """Base class: ``schedule(step) -> lr``; ``to_dict()`` describes it for checkpoints."""

    kind = ""

    def __init__(self, **params: Any):
        self.params = params

    def __call__(self, step: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_dict(self) -> Dict[str, Any]:
        return {"schedule": self.kind, **{k: (v.to_dict() if isinstance(v, Schedule) else v)
                                          for k, v in self.params.items()}}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.kind}({args})"


def _positive(name: str, v: float, allow_zero: bool = False) -> float:
    v = float(v)
    if not (v >= 0 if allow_zero else v > 0) or math.isinf(v):
        raise ValueError(f"Invalid {name}: {name}={v!r}")
    return v


class constant(Schedule):
    """lr at every step."""

    kind = "constant"

    def __init__(self, lr: float):
        super().__init__(lr=_positive("lr", lr, allow_zero=True))

    def __call__(self, step: int) -> float:
        return self.params["lr"]


class step_decay(Schedule):
    """lr * gamma ** (step // step_size) (torch's StepLR)."""

    kind = "step_decay"

    def __init__(self, lr: float, step_size: int, gamma: float = 0.1):
        if int(step_size) != step_size or step_size < 1:
            raise ValueError(f"Invalid step_size: step_size={step_size!r} (a positive integer)")
        super().__init__(lr=_positive("lr", lr, allow_zero=True), step_size=int(step_size),
                         gamma=_positive("gamma", gamma, allow_zero=True))

    def __call__(self, step: int) -> float:
        p = self.params
        return p["lr"] * p["gamma"] ** (step // p["step_size"])


class exponential_decay(Schedule):
    """lr * gamma ** step (torch's ExponentialLR)."""

    kind = "exponential_decay"

    def __init__(self, lr: float, gamma: float):
        super().__init__(lr=_positive("lr", lr, allow_zero=True), gamma=_positive("gamma", gamma, allow_zero=True))

    def __call__(self, step: int) -> float:
        try:
            return self.params["lr"] * self.params["gamma"] ** step
        except OverflowError:
            raise ValueError(f"{self!r}: lr * gamma**{step} is too large for a float") from None


class cosine(Schedule):
    """Linear warm-up from 0 over ``warmup`` steps, then cosine annealing from lr to ``min_lr``
    over ``total`` steps (counted after the warm-up); ``min_lr`` afterwards."""

    kind = "cosine"

    def __init__(self, lr: float, total: int, warmup: int = 0, min_lr: float = 0.0):
        if int(total) != total or total < 1:
            raise ValueError(f"Invalid total: total={total!r} (a positive integer)")
        if int(warmup) != warmup or warmup < 0:
            raise ValueError(f"Invalid warmup: warmup={warmup!r} (a non-negative integer)")
        lr, min_lr = _positive("lr", lr, allow_zero=True), _positive("min_lr", min_lr, allow_zero=True)
        if min_lr > lr:
            raise ValueError(f"Invalid min_lr: min_lr={min_lr!r} exceeds lr={lr!r}")
        super().__init__(lr=lr, total=int(total), warmup=int(warmup), min_lr=min_lr)

    def __call__(self, step: int) -> float:
        p = self.params
        if step < p["warmup"]:
            return p["lr"] * (step + 1) / p["warmup"]
        t = min(step - p["warmup"], p["total"])
        return p["min_lr"] + 0.5 * (p["lr"] - p["min_lr"]) * (1.0 + math.cos(math.pi * t / p["total"]))


class chain(Schedule):
    """Runs ``schedules[0]`` until ``milestones[0]``, then ``schedules[1]`` (with its step count
    restarted at 0) until ``milestones[1]``, and so on (torch's SequentialLR)."""

    kind = "chain"

    def __init__(self, schedules: Sequence[Callable[[int], float]], milestones: Sequence[int]):
        schedules, milestones = list(schedules), [int(m) for m in milestones]
        if len(milestones) != len(schedules) - 1:
            raise ValueError("chain: need exactly one milestone between each pair of schedules")
        if any(b <= a for a, b in zip([0] + milestones, milestones)):
            raise ValueError(f"chain: milestones must be positive and increasing, got {milestones}")
        super().__init__(schedules=schedules, milestones=milestones)

    def __call__(self, step: int) -> float:
        start = 0
        for sched, m in zip(self.params["schedules"], self.params["milestones"]):
            if step < m:
                return sched(step - start)
            start = m
        return self.params["schedules"][-1](step - start)

    def to_dict(self) -> Dict[str, Any]:
        scheds = [s.to_dict() if isinstance(s, Schedule) else None for s in self.params["schedules"]]
        if None in scheds:
            raise TypeError("chain: only built-in schedules can be saved")
        return {"schedule": self.kind, "schedules": scheds, "milestones": self.params["milestones"]}


_KINDS = {c.kind: c for c in (constant, step_decay, exponential_decay, cosine)}


def to_saved(s: Schedule) -> Dict[str, Any]:
    """``s.to_dict()`` for a checkpoint; only built-in schedules (exactly those classes, and
    chains of them) can be saved: a subclass would reload as its base class, and a schedule of
    your own could not be rebuilt at all. TypeError otherwise."""
    if type(s) is chain:
        for sub in s.params["schedules"]:
            if not isinstance(sub, Schedule):
                raise TypeError(f"chain: only built-in schedules can be saved in a checkpoint, got {sub!r}")
            to_saved(sub)
    elif type(s) not in _KINDS.values():
        raise TypeError(f"lr schedule {s!r} of class {type(s).__name__} cannot be saved in a checkpoint: only "
                        f"the built-in schedules ({', '.join(sorted([*_KINDS, 'chain']))}) can be rebuilt "
                        "when it is loaded; save with a built-in schedule or a number as lr")
    return s.to_dict()


def from_dict(d: Dict[str, Any]) -> Schedule:
    """Rebuilds a built-in schedule from its ``to_dict()``."""
    d = dict(d)
    kind = d.pop("schedule", None)
    if kind == "chain":
        return chain([from_dict(s) for s in d["schedules"]], d["milestones"])
    if kind not in _KINDS:
        raise ValueError(f"unknown schedule {kind!r}")
    return _KINDS[kind](**d)
