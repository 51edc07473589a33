"""One spec per update rule: torch's keys, defaults and argument order, the validators, the
packing into the native hyperparameters, the functional form's argument names, the benchmark
variants, and the rule in NumPy (the benchmark's NumPy peer, the self-check and the tests'
reference all run it).

The native module is the source of truth for everything the kernels define (rule ids, the
named hyperparameters of each rule, state slot names, per-parameter scalar state, option flags,
which slots the options need, what a new buffer starts at): a spec names its rule and is
checked against the native description at import, so the two cannot drift apart.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

from . import _core

FLAGS: Dict[str, int] = dict(_core.FLAGS)
MAX_STEP = 2**63 - 1  # the native step counters are int64
_NATIVE = {r.name: r for r in _core.rules()}

# ---------------------------------------------------------------------------------------------
# Validators: check(name, value) -> the normalised value, or TypeError / ValueError naming the
# key, with torch's wording ("Invalid learning rate: ...").


def real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}: {value!r}")
    try:
        return float(value)
    except OverflowError:  # an int no double can hold
        raise ValueError(f"Invalid {name}: {name}={value!r} (too large for a double)") from None


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_, numbers.Integral)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}: {value!r}")
    return bool(value)


def nonneg(desc: str) -> Callable[[str, Any], float]:
    def check(name: str, value: Any) -> float:
        v = real(name, value)
        if not v >= 0.0:  # also rejects NaN
            raise ValueError(f"Invalid {desc}: {name}={value!r} (must be >= 0)")
        return v
    return check


def unit(desc: str) -> Callable[[str, Any], float]:
    def check(name: str, value: Any) -> float:
        v = real(name, value)
        if not 0.0 <= v < 1.0:
            raise ValueError(f"Invalid {desc}: {name}={value!r} (must be in [0, 1))")
        return v
    return check


def closed_unit(desc: str) -> Callable[[str, Any], float]:
    def check(name: str, value: Any) -> float:
        v = real(name, value)
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"Invalid {desc}: {name}={value!r} (must be in [0, 1])")
        return v
    return check


def betas(name: str, value: Any) -> Tuple[float, float]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"Invalid betas: {name}={value!r} (expected a pair (beta1, beta2))")
    b = unit("beta parameter at index 0")(f"{name}[0]", value[0])
    return b, unit("beta parameter at index 1")(f"{name}[1]", value[1])


def check_step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise TypeError(f"step must be an int (the 1-based number of this update), got {step!r}")
    if not 1 <= step <= MAX_STEP:
        raise ValueError(f"Invalid step: step={step!r} (must be in [1, 2**63 - 1])")
    return int(step)


# ---------------------------------------------------------------------------------------------
# Specs


@dataclass(frozen=True)
class Key:
    """One hyperparameter as torch names it. ``check`` validates and normalises a value;
    ``fields`` are the native hyperparameters a tuple value spreads into (betas -> beta1, beta2).
    A key is positional in the constructor (torch's order) unless ``keyword_only``."""

    name: str
    default: Any
    check: Callable[[str, Any], Any]
    fields: Tuple[str, ...] = ()
    keyword_only: bool = False


@dataclass(frozen=True)
class Variant:
    """A benchmarked configuration: ``kwargs`` construct the adaptopt class, the torch.optim class
    of the same name (unless torch lacks one of them) and the NumPy peer."""

    name: str  # plain, momentum, centered, ...
    kwargs: Mapping[str, Any] = field(default_factory=dict)


class Built:
    """Validated hyperparameters of one group: the values, the native Hyper and what the slots
    need (read once from the native object)."""

    __slots__ = ("values", "hyper", "needed", "slot_init")

    def __init__(self, values: Dict[str, Any], hyper: Any):
        self.values = values
        self.hyper = hyper
        self.needed: Tuple[bool, ...] = tuple(hyper.needed)
        self.slot_init: Tuple[float, ...] = tuple(hyper.slot_init)


class Spec:
    """One update rule on the Python side (see the module docstring)."""

    def __init__(self, name: str, rule: str, keys: List[Key], *, numpy: Callable[..., None],
                 state_args: Tuple[str, ...], variants: Tuple[Variant, ...] = (Variant("plain"),),
                 check: Optional[Callable[[Dict[str, Any]], None]] = None,
                 fixed: Optional[Mapping[str, Any]] = None, torch_lacks: Tuple[str, ...] = (),
                 step_used: Callable[[Dict[str, Any]], bool] = lambda v: True, functional: bool = True,
                 torch_saves_step: bool = True, doc: str = ""):
        self.name = name
        self.rule = rule
        self.native = _NATIVE[rule]
        self.id: int = self.native.id
        self.slots: Tuple[str, ...] = tuple(self.native.slots)
        self.state_names: Tuple[str, ...] = tuple(n for n, _ in self.native.state)
        self.state_init: Tuple[float, ...] = tuple(v for _, v in self.native.state)
        self.eager_state: bool = self.native.eager_state
        self.unsigned_slots: Tuple[bool, ...] = tuple(self.native.unsigned_slots)
        self.keys: Dict[str, Key] = {k.name: k for k in keys}
        self.defaults: Dict[str, Any] = {k.name: k.default for k in keys}
        self.fixed: Dict[str, Any] = dict(fixed or {})
        self.defaults.update(self.fixed)
        self.numpy = numpy
        self.state_args = state_args
        self.variants = variants
        self.torch_lacks = frozenset(torch_lacks)
        self.step_used = step_used
        self.torch_saves_step = torch_saves_step  # torch's SGD keeps no step: a state dict may lack it
        self.functional = f"{rule}_" if functional else None
        self.doc = doc
        self._check = check
        self._flag_keys = tuple(k for k in self.keys if k in FLAGS)
        self._check_against_native()

    def _check_against_native(self) -> None:
        fields = set(self.native.fields)
        covered = set()
        for k in self.keys.values():
            spread = k.fields or ((k.name,) if k.name in fields else ())
            if k.name in ("lr", "weight_decay") or k.name in FLAGS:
                if k.name in FLAGS and k.name not in self.native.flags:
                    raise AssertionError(f"{self.name}: native rule {self.rule} does not take flag {k.name}")
            elif not spread or not set(spread) <= fields:
                raise AssertionError(f"{self.name}: key {k.name} maps to no native hyperparameter")
            covered |= set(spread)
        missing = fields - covered
        if missing or len(self.state_args) != len(self.slots) or {"lr", "weight_decay"} - set(self.keys):
            raise AssertionError(f"{self.name}: spec and native rule {self.rule} disagree "
                                 f"(fields {sorted(missing)} not covered, or slot/argument counts)")

    def variant(self, name: str, *, defaults: Mapping[str, Any], fixed: Mapping[str, Any],
                variants: Tuple[Variant, ...], doc: str) -> "Spec":
        """The same rule under another class name (AdamW): other defaults, some keys fixed (the
        functional form stays the base rule's)."""
        keys = [Key(k.name, defaults.get(k.name, k.default), k.check, k.fields, k.keyword_only)
                for k in self.keys.values() if k.name not in fixed]
        return Spec(name, self.rule, keys, numpy=self.numpy, state_args=self.state_args, variants=variants,
                    check=self._check, fixed=fixed, torch_lacks=tuple(self.torch_lacks),
                    step_used=self.step_used, functional=False, torch_saves_step=self.torch_saves_step, doc=doc)

    def positional(self) -> List[str]:
        return [k.name for k in self.keys.values() if not k.keyword_only]

    def validate(self, group: Mapping[str, Any]) -> Dict[str, Any]:
        """Every key of this rule checked and normalised (plus the fixed ones). Raises TypeError
        or ValueError naming the key; a missing key is a ValueError too."""
        values: Dict[str, Any] = {}
        for name, key in self.keys.items():
            if name not in group:
                raise ValueError(f"missing hyperparameter {name!r}")
            values[name] = key.check(name, group[name])
        values.update(self.fixed)
        if self._check is not None:
            self._check(values)
        return values

    def build(self, group: Mapping[str, Any]) -> Built:
        """Validates ``group`` and packs it into the native Hyper."""
        v = self.validate(group)
        native: Dict[str, float] = {}
        for name, key in self.keys.items():
            if key.fields:
                native.update(zip(key.fields, v[name]))
            elif name not in FLAGS:
                native[name] = v[name]
        flags = sum(FLAGS[k] for k in (*self._flag_keys, *self.fixed) if v[k])
        hyper = _core.Hyper(self.id, v["lr"], v["weight_decay"], flags,
                            [native[f] for f in self.native.fields])
        return Built(v, hyper)

    def numpy_stepper(self, hyper: Mapping[str, Any]) -> Callable[[np.ndarray, np.ndarray, Dict[str, Any]], None]:
        """``step(p, g, state)``: one in-place step of this rule in NumPy, in the arrays' dtype.
        ``state`` is a dict like the optimizer's per-parameter state (filled on first use)."""
        built = self.build({**self.defaults, **hyper})
        v = built.values

        def step(p: np.ndarray, g: np.ndarray, state: Dict[str, Any]) -> None:
            new = set()
            if not state:
                state["step"] = 0
                for name, init in zip(self.state_names, self.state_init):
                    state[name] = init
            for name, need, init in zip(self.slots, built.needed, built.slot_init):
                if need and name not in state:
                    state[name] = np.full_like(p, init)
                    new.add(name)
            state["step"] += 1
            g = -g if v["maximize"] else g
            if v["weight_decay"] != 0:
                if v["decoupled_weight_decay"]:
                    p *= 1 - v["lr"] * v["weight_decay"]
                else:
                    g = g + v["weight_decay"] * p
            self.numpy(p, g, state, state["step"], new, **v)

        return step


# ---------------------------------------------------------------------------------------------
# The rules in NumPy: the in-place ufunc chain a user would write, op for op the formulas of
# torch.optim (shared/reference/optimizer-semantics.md). g arrives with maximize and weight decay
# applied; t is the 1-based step; `new` names the slots created for this step.


def _np_rmsprop(p, g, s, t, new, *, lr, alpha, eps, momentum, centered, nesterov, eps_in_sqrt, bias_correction,
                **_):
    v = s["square_avg"]
    v *= alpha
    v += (1 - alpha) * g * g
    bc = 1 - alpha**t if bias_correction else 1.0
    avg = v / bc if bias_correction else v
    if centered:
        ga = s["grad_avg"]
        ga += (1 - alpha) * (g - ga)
        gh = ga / bc if bias_correction else ga
        avg = np.maximum(avg - gh * gh, 0.0)  # clamped at 0, as the kernels (NaN propagates)
    if eps_in_sqrt:
        denom = np.sqrt(avg + eps)
    else:
        denom = np.sqrt(avg)
        denom += eps
    if momentum > 0:
        buf = s["momentum_buffer"]
        buf *= momentum
        u = g / denom
        buf += u
        p -= lr * (momentum * buf + u) if nesterov else lr * buf
    else:
        p -= lr * g / denom


def _np_adagrad(p, g, s, t, new, *, lr, lr_decay, eps, **_):
    acc = s["sum"]
    acc += g * g
    denom = np.sqrt(acc)
    denom += eps
    p -= (lr / (1 + (t - 1) * lr_decay)) * g / denom


def _np_adadelta(p, g, s, t, new, *, lr, rho, eps, **_):
    v, u = s["square_avg"], s["acc_delta"]
    v *= rho
    v += (1 - rho) * g * g
    delta = np.sqrt(u + eps) / np.sqrt(v + eps) * g
    u *= rho
    u += (1 - rho) * delta * delta
    p -= lr * delta


def _moments(s, g, b1, b2):
    m, v = s["exp_avg"], s["exp_avg_sq"]
    m += (1 - b1) * (g - m)  # lerp
    v *= b2
    v += (1 - b2) * g * g
    return m, v


def _np_adam(p, g, s, t, new, *, lr, betas, eps, eps_root, amsgrad, **_):
    b1, b2 = betas
    m, v = _moments(s, g, b1, b2)
    if amsgrad:
        np.maximum(s["max_exp_avg_sq"], v, out=s["max_exp_avg_sq"])  # NaN propagates, as in torch
        v = s["max_exp_avg_sq"]
    bc1, bc2 = 1 - b1**t, 1 - b2**t
    if eps_root:
        denom = np.sqrt(v / bc2 + eps_root)
    else:
        denom = np.sqrt(v)
        denom /= math.sqrt(bc2)
    denom += eps
    p -= (lr / bc1) * m / denom


def _np_nadam(p, g, s, t, new, *, lr, betas, eps, eps_root, momentum_decay, **_):
    b1, b2 = betas
    mu = b1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
    mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
    s["mu_product"] *= mu
    prod = s["mu_product"]
    m, v = _moments(s, g, b1, b2)
    denom = np.sqrt(v / (1 - b2**t) + eps_root)
    denom += eps
    p += (-lr * (1 - mu) / (1 - prod)) * g / denom
    p += (-lr * mu_next / (1 - prod * mu_next)) * m / denom


def _np_radam(p, g, s, t, new, *, lr, betas, eps, eps_root, **_):
    b1, b2 = betas
    m, v = _moments(s, g, b1, b2)
    bc1, bc2 = 1 - b1**t, 1 - b2**t
    rho_inf = 2 / (1 - b2) - 1
    rho_t = rho_inf - 2 * t * b2**t / bc2
    step = m / bc1 * lr
    if rho_t > 5:
        rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
        step *= math.sqrt(bc2) / (np.sqrt(v + eps_root * bc2) + eps) * rect
    p -= step


def _np_adamax(p, g, s, t, new, *, lr, betas, eps, **_):
    b1, b2 = betas
    m, u = s["exp_avg"], s["exp_inf"]
    m += (1 - b1) * (g - m)
    u *= b2
    np.maximum(u, np.abs(g) + eps, out=u)
    p -= (lr / (1 - b1**t)) * m / u


def _np_sgd(p, g, s, t, new, *, lr, momentum, dampening, nesterov, **_):
    if momentum != 0:
        buf = s["momentum_buffer"]
        if "momentum_buffer" in new:
            buf[...] = g
        else:
            buf *= momentum
            buf += (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf
    p -= lr * g


# ---------------------------------------------------------------------------------------------
# Cross-key checks


def _check_rmsprop(v: Dict[str, Any]) -> None:
    if v["nesterov"] and v["momentum"] <= 0:
        raise ValueError(f"Invalid nesterov: nesterov=True requires momentum > 0 (momentum={v['momentum']!r})")


def _check_sgd(v: Dict[str, Any]) -> None:
    if v["nesterov"] and (v["momentum"] <= 0 or v["dampening"] != 0):
        raise ValueError("Invalid nesterov: nesterov=True requires momentum > 0 and dampening=0 "
                         f"(momentum={v['momentum']!r}, dampening={v['dampening']!r})")


def _lr(default: float) -> Key:
    return Key("lr", default, nonneg("learning rate"))


def _flag(name: str, keyword_only: bool = True) -> Key:
    return Key(name, False, boolean, keyword_only=keyword_only)


_EPS = nonneg("epsilon value")
_WD = Key("weight_decay", 0.0, nonneg("weight_decay value"))
_BETAS = Key("betas", (0.9, 0.999), betas, fields=("beta1", "beta2"))
_MAXIMIZE, _DECOUPLED = _flag("maximize"), _flag("decoupled_weight_decay")
_EPS_ROOT = Key("eps_root", 0.0, nonneg("eps_root value"), keyword_only=True)

# Positional keys in torch's constructor order (adaptopt's own additions after torch's), then the
# keyword-only ones.
RMSPROP = Spec(
    "RMSprop", "rmsprop",
    [_lr(1e-2), Key("alpha", 0.99, unit("alpha value")), Key("eps", 1e-8, _EPS), _WD,
     Key("momentum", 0.0, nonneg("momentum value")), _flag("centered", False), _flag("nesterov", False),
     _flag("eps_in_sqrt", False), _MAXIMIZE, _DECOUPLED,
     Key("initial_scale", 0.0, nonneg("initial_scale value"), keyword_only=True), _flag("bias_correction")],
    numpy=_np_rmsprop, state_args=("square_avgs", "momentum_buffers", "grad_avgs"), check=_check_rmsprop,
    variants=(Variant("plain"), Variant("momentum", dict(momentum=0.9)), Variant("centered", dict(centered=True)),
              Variant("nesterov", dict(momentum=0.9, nesterov=True))),
    torch_lacks=("nesterov", "eps_in_sqrt", "initial_scale", "bias_correction", "decoupled_weight_decay"),
    step_used=lambda v: v["bias_correction"],
    doc="RMSprop with torch.optim.RMSprop's semantics (eps outside the sqrt, L2 weight decay, lr outside the "
        "momentum buffer), plus ``nesterov``, ``eps_in_sqrt`` (TF/Keras placement), ``initial_scale`` (the value "
        "square_avg starts at; TF1 used 1.0) and ``bias_correction`` (optax).")

ADAGRAD = Spec(
    "Adagrad", "adagrad",
    [_lr(1e-2), Key("lr_decay", 0.0, nonneg("lr_decay value")), _WD,
     Key("initial_accumulator_value", 0.0, nonneg("initial_accumulator_value value")), Key("eps", 1e-10, _EPS),
     _MAXIMIZE, _DECOUPLED],
    numpy=_np_adagrad, state_args=("state_sums",), torch_lacks=("decoupled_weight_decay",),
    doc="Adagrad with torch.optim.Adagrad's semantics; state is created at construction. Unlike torch, a "
        "per-group ``initial_accumulator_value`` is honoured.")

ADADELTA = Spec(
    "Adadelta", "adadelta",
    [_lr(1.0), Key("rho", 0.9, unit("rho value")), Key("eps", 1e-6, _EPS), _WD, _MAXIMIZE, _DECOUPLED],
    numpy=_np_adadelta, state_args=("square_avgs", "acc_deltas"), torch_lacks=("decoupled_weight_decay",),
    step_used=lambda v: False, doc="Adadelta with torch.optim.Adadelta's semantics.")

ADAM = Spec(
    "Adam", "adam",
    [_lr(1e-3), _BETAS, Key("eps", 1e-8, _EPS), _WD, _flag("amsgrad", False), _MAXIMIZE, _DECOUPLED, _EPS_ROOT],
    numpy=_np_adam, state_args=("exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"),
    variants=(Variant("plain"), Variant("amsgrad", dict(amsgrad=True))), torch_lacks=("eps_root",),
    doc="Adam with torch.optim.Adam's semantics (eps after bias correction, amsgrad on the raw second moment, "
        "L2 or decoupled weight decay), plus ``eps_root`` (optax: inside the sqrt of the bias-corrected second "
        "moment).")

ADAMW = ADAM.variant(
    "AdamW", defaults=dict(weight_decay=1e-2), fixed=dict(decoupled_weight_decay=True),
    variants=(Variant("plain", dict(weight_decay=1e-2)),),
    doc="AdamW: Adam with decoupled weight decay (default 1e-2), as torch.optim.AdamW.")

SGD = Spec(
    "SGD", "sgd",
    [_lr(1e-3), Key("momentum", 0.0, nonneg("momentum value")), Key("dampening", 0.0, closed_unit("dampening value")),
     _WD, _flag("nesterov", False), _MAXIMIZE, _DECOUPLED],
    numpy=_np_sgd, state_args=("momentum_buffers",), check=_check_sgd,
    variants=(Variant("plain"), Variant("momentum", dict(momentum=0.9))), torch_lacks=("decoupled_weight_decay",),
    step_used=lambda v: v["momentum"] != 0, torch_saves_step=False,
    doc="SGD with momentum, dampening, Nesterov and weight decay (torch.optim.SGD's semantics: a new momentum "
        "buffer starts as a copy of the gradient).")

NADAM = Spec(
    "NAdam", "nadam",
    [_lr(2e-3), _BETAS, Key("eps", 1e-8, _EPS), _WD, Key("momentum_decay", 4e-3, nonneg("momentum_decay value")),
     _flag("decoupled_weight_decay", False), _MAXIMIZE, _EPS_ROOT],
    numpy=_np_nadam, state_args=("exp_avgs", "exp_avg_sqs"), torch_lacks=("eps_root",),
    doc="NAdam with torch.optim.NAdam's semantics (the momentum_decay schedule of mu_t and their running "
        "product mu_product, kept in double), plus ``eps_root``.")

RADAM = Spec(
    "RAdam", "radam",
    [_lr(1e-3), _BETAS, Key("eps", 1e-8, _EPS), _WD, _flag("decoupled_weight_decay", False), _MAXIMIZE, _EPS_ROOT],
    numpy=_np_radam, state_args=("exp_avgs", "exp_avg_sqs"), torch_lacks=("eps_root",),
    doc="RAdam with torch.optim.RAdam's semantics (the variance rectification once rho_t > 5), plus "
        "``eps_root``.")

ADAMAX = Spec(
    "Adamax", "adamax",
    [_lr(2e-3), _BETAS, Key("eps", 1e-8, _EPS), _WD, _MAXIMIZE, _DECOUPLED],
    numpy=_np_adamax, state_args=("exp_avgs", "exp_infs"), torch_lacks=("decoupled_weight_decay",),
    doc="Adamax with torch.optim.Adamax's semantics (the exponentially weighted infinity norm exp_inf).")

SPECS: Tuple[Spec, ...] = (RMSPROP, ADAGRAD, ADADELTA, ADAM, ADAMW, SGD, NADAM, RADAM, ADAMAX)
BY_NAME: Dict[str, Spec] = {s.name: s for s in SPECS}
