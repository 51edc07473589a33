"""Hyperparameter validation shared by the optimizer classes and the functional layer.

Each builder takes a mapping of hyperparameters (a param group), checks every value with a
message that names the argument, and returns the native ``Hyper`` plus which state slots the
update reads and writes.
"""

from __future__ import annotations

import numbers
from typing import Any, Mapping, NamedTuple

from . import _core

RMSPROP, ADAGRAD, ADADELTA, ADAM, PROBE, SGD = 0, 1, 2, 3, 4, 5

CENTERED, NESTEROV, EPS_IN_SQRT, MAXIMIZE, AMSGRAD, DECOUPLED = (1 << i for i in range(6))

# State keys in native slot order (torch's names).
SLOTS = {
    RMSPROP: ("square_avg", "momentum_buffer", "grad_avg"),
    ADAGRAD: ("sum",),
    ADADELTA: ("square_avg", "acc_delta"),
    ADAM: ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
    SGD: ("momentum_buffer",),
}


class Built(NamedTuple):
    hyper: Any  # _core.Hyper
    needed: tuple  # bool per slot: does this configuration use the slot?


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}: {value!r}")
    try:
        return float(value)
    except OverflowError:  # an int no double can hold
        raise ValueError(f"Invalid {name}: {name}={value!r} (too large for a double)") from None


def _nonneg(desc: str, name: str, value: Any) -> float:
    v = _real(name, value)
    if not v >= 0.0:  # also rejects NaN
        raise ValueError(f"Invalid {desc}: {name}={value!r} (must be >= 0)")
    return v


def _unit(desc: str, name: str, value: Any) -> float:
    v = _real(name, value)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"Invalid {desc}: {name}={value!r} (must be in [0, 1))")
    return v


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, numbers.Integral)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}: {value!r}")
    return bool(value)


def _flags(**named: bool) -> int:
    bits = {"centered": CENTERED, "nesterov": NESTEROV, "eps_in_sqrt": EPS_IN_SQRT,
            "maximize": MAXIMIZE, "amsgrad": AMSGRAD, "decoupled_weight_decay": DECOUPLED}
    return sum(bits[k] for k, on in named.items() if on)


def rmsprop(g: Mapping[str, Any]) -> Built:
    lr = _nonneg("learning rate", "lr", g["lr"])
    alpha = _unit("alpha value", "alpha", g["alpha"])
    eps = _nonneg("epsilon value", "eps", g["eps"])
    wd = _nonneg("weight_decay value", "weight_decay", g["weight_decay"])
    momentum = _nonneg("momentum value", "momentum", g["momentum"])
    centered = _flag("centered", g["centered"])
    nesterov = _flag("nesterov", g["nesterov"])
    if nesterov and momentum <= 0:
        raise ValueError(f"Invalid nesterov: nesterov=True requires momentum > 0 (momentum={g['momentum']!r})")
    flags = _flags(centered=centered, nesterov=nesterov,
                   eps_in_sqrt=_flag("eps_in_sqrt", g["eps_in_sqrt"]),
                   maximize=_flag("maximize", g["maximize"]))
    h = _core.Hyper(RMSPROP, lr, alpha, 0.0, eps, wd, momentum, flags)
    return Built(h, (True, momentum != 0, centered))


def adagrad(g: Mapping[str, Any]) -> Built:
    lr = _nonneg("learning rate", "lr", g["lr"])
    lr_decay = _nonneg("lr_decay value", "lr_decay", g["lr_decay"])
    wd = _nonneg("weight_decay value", "weight_decay", g["weight_decay"])
    _nonneg("initial_accumulator_value", "initial_accumulator_value", g["initial_accumulator_value"])
    eps = _nonneg("epsilon value", "eps", g["eps"])
    flags = _flags(maximize=_flag("maximize", g["maximize"]))
    return Built(_core.Hyper(ADAGRAD, lr, 0.0, lr_decay, eps, wd, 0.0, flags), (True,))


def adadelta(g: Mapping[str, Any]) -> Built:
    lr = _nonneg("learning rate", "lr", g["lr"])
    rho = _unit("rho value", "rho", g["rho"])
    eps = _nonneg("epsilon value", "eps", g["eps"])
    wd = _nonneg("weight_decay value", "weight_decay", g["weight_decay"])
    flags = _flags(maximize=_flag("maximize", g["maximize"]))
    return Built(_core.Hyper(ADADELTA, lr, rho, 0.0, eps, wd, 0.0, flags), (True, True))


def adam(g: Mapping[str, Any]) -> Built:
    lr = _nonneg("learning rate", "lr", g["lr"])
    betas = g["betas"]
    if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
        raise ValueError(f"Invalid betas: betas={betas!r} (expected a pair (beta1, beta2))")
    b1 = _unit("beta parameter at index 0", "betas[0]", betas[0])
    b2 = _unit("beta parameter at index 1", "betas[1]", betas[1])
    eps = _nonneg("epsilon value", "eps", g["eps"])
    wd = _nonneg("weight_decay value", "weight_decay", g["weight_decay"])
    amsgrad = _flag("amsgrad", g["amsgrad"])
    flags = _flags(amsgrad=amsgrad, maximize=_flag("maximize", g["maximize"]),
                   decoupled_weight_decay=_flag("decoupled_weight_decay", g["decoupled_weight_decay"]))
    return Built(_core.Hyper(ADAM, lr, b1, b2, eps, wd, 0.0, flags), (True, True, amsgrad))


def sgd(g: Mapping[str, Any]) -> Built:
    lr = _nonneg("learning rate", "lr", g["lr"])
    momentum = _nonneg("momentum value", "momentum", g["momentum"])
    dampening = _real("dampening", g["dampening"])
    if not 0.0 <= dampening <= 1.0:
        raise ValueError(f"Invalid dampening value: dampening={g['dampening']!r} (must be in [0, 1])")
    wd = _nonneg("weight_decay value", "weight_decay", g["weight_decay"])
    nesterov = _flag("nesterov", g["nesterov"])
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("Invalid nesterov: nesterov=True requires momentum > 0 and dampening=0 "
                         f"(momentum={g['momentum']!r}, dampening={g['dampening']!r})")
    flags = _flags(nesterov=nesterov, maximize=_flag("maximize", g["maximize"]))
    return Built(_core.Hyper(SGD, lr, 0.0, dampening, 0.0, wd, momentum, flags), (momentum != 0,))


MAX_STEP = 2**63 - 1  # the native step counters are int64

BUILDERS = {RMSPROP: rmsprop, ADAGRAD: adagrad, ADADELTA: adadelta, ADAM: adam, SGD: sgd}


def check_step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise TypeError(f"step must be an int (the 1-based number of this update), got {step!r}")
    if not 1 <= step <= MAX_STEP:
        raise ValueError(f"Invalid step: step={step!r} (must be in [1, 2**63 - 1])")
    return int(step)


