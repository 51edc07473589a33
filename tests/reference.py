"""Pure NumPy reference implementations of the adaptopt update rules.

Written from the formulas in shared/reference/optimizer-semantics.md and torch's own single-tensor
code paths, not from adaptopt (this module imports nothing of it):

- torch.optim: RMSprop 2.1, Adagrad 3.1, Adadelta 4.1, Adam/AdamW 5.1, SGD 6, and NAdam, RAdam,
  Adamax as ``torch/optim/{nadam,radam,adamax}.py`` (``_single_tensor_*``) write them;
- optax (2.5, 5.3): RMSprop ``initial_scale`` (the value square_avg starts at) and
  ``bias_correction`` (square_avg and grad_avg divided by 1 - alpha^t before use), and
  ``eps_root`` (inside the sqrt of the bias-corrected second moment);
- Keras 3 (2.4, 5.2): ``decoupled_weight_decay`` for the rules torch gives only L2 decay:
  ``p = p - p * wd * lr`` before the update, with the group's lr;
- adaptopt's own documented extensions: RMSprop ``eps_in_sqrt`` and ``nesterov``.

Each ``*_step`` function does ONE step in place on float64 arrays. ``state`` is a dict filled on
first use: ``step`` (a Python int counting the updates done so far), per-parameter scalars
(NAdam's ``mu_product``, a float starting at 1.0) and the buffers, each created the first time
the options need it (so switching an option on mid-run creates it then, as the optimizer does).

``RefOptimizer`` mirrors the adaptopt class API (param groups, ``step(grads)`` with ``None``
meaning "skip this parameter") on top of those functions.
"""

from __future__ import annotations

import inspect
import math

import numpy as np


def _count(state):
    """Increments and returns the parameter's step count t (1 for its first update)."""
    state["step"] = state.get("step", 0) + 1
    return state["step"]


def _slot(state, key, p, initial=0.0):
    """The buffer ``key``, created as ``full_like(p, initial)`` when it does not exist yet."""
    if key not in state:
        state[key] = np.full_like(p, initial, dtype=np.float64)
    return state[key]


def _prepare_grad(p, g, *, maximize, weight_decay, decoupled, lr, torch_decoupled=False):
    """maximize negates first. L2 weight decay (torch) adds wd * p to the gradient; decoupled
    weight decay changes p before the update: torch's ``p *= 1 - lr * wd`` for the rules torch
    has it for (``torch_decoupled``), otherwise Keras 3's ``p = p - p * wd * lr`` (equal up to
    rounding for a finite p; an infinite one would become NaN here). Nothing happens when
    wd == 0 (an Inf param must not become NaN through 0 * Inf)."""
    g = -g if maximize else g.copy()
    if weight_decay != 0:
        if not decoupled:
            g = g + weight_decay * p
        elif torch_decoupled:
            p *= 1 - lr * weight_decay
        else:
            p -= p * weight_decay * lr
    return np.asarray(g)  # a 0-d array, not a NumPy scalar: a buffer copied from it stays in place


def _lerp_(m, g, w):
    """torch's m.lerp_(g, w), in float64: m + w (g - m)."""
    m += w * (g - m)
    return m


# ------------------------------------------------------------------------------ the rules
#
# Each rule has a ``_<rule>_slots(p, state, **hyper)`` that creates the buffers the options need
# (with their starting values) and the step function that calls it.


def _rmsprop_slots(p, state, *, momentum=0.0, centered=False, initial_scale=0.0, **_):
    _slot(state, "square_avg", p, initial_scale)
    if momentum > 0:
        _slot(state, "momentum_buffer", p)
    if centered:
        _slot(state, "grad_avg", p)


def rmsprop_step(
    p,
    g,
    state,
    *,
    lr=1e-2,
    alpha=0.99,
    eps=1e-8,
    weight_decay=0.0,
    momentum=0.0,
    centered=False,
    nesterov=False,
    eps_in_sqrt=False,
    maximize=False,
    decoupled_weight_decay=False,
    initial_scale=0.0,
    bias_correction=False,
):
    t = _count(state)
    _rmsprop_slots(p, state, momentum=momentum, centered=centered, initial_scale=initial_scale)
    g = _prepare_grad(p, g, maximize=maximize, weight_decay=weight_decay,
                      decoupled=decoupled_weight_decay, lr=lr)
    v = state["square_avg"]
    v *= alpha
    v += (1 - alpha) * g * g
    # optax scale_by_rms(bias_correction=True): nu_hat = nu / (1 - decay^count), mu_hat likewise.
    bc = 1 - alpha**t if bias_correction else 1.0
    var = v / bc
    if centered:
        gavg = _lerp_(state["grad_avg"], g, 1 - alpha)
        var = var - (gavg / bc) ** 2
    denom = np.sqrt(var + eps) if eps_in_sqrt else np.sqrt(var) + eps
    u = g / denom
    if momentum > 0:
        buf = state["momentum_buffer"]
        buf *= momentum
        buf += u
        p -= lr * (momentum * buf + u) if nesterov else lr * buf
    else:
        p -= lr * u


def _adagrad_slots(p, state, *, initial_accumulator_value=0.0, **_):
    _slot(state, "sum", p, initial_accumulator_value)


def adagrad_step(
    p,
    g,
    state,
    *,
    lr=1e-2,
    lr_decay=0.0,
    weight_decay=0.0,
    initial_accumulator_value=0.0,
    eps=1e-10,
    maximize=False,
    decoupled_weight_decay=False,
):
    t = _count(state)
    _adagrad_slots(p, state, initial_accumulator_value=initial_accumulator_value)
    g = _prepare_grad(p, g, maximize=maximize, weight_decay=weight_decay,
                      decoupled=decoupled_weight_decay, lr=lr)
    clr = lr / (1 + (t - 1) * lr_decay)
    s = state["sum"]
    s += g * g
    p -= clr * g / (np.sqrt(s) + eps)


def _adadelta_slots(p, state, **_):
    _slot(state, "square_avg", p)
    _slot(state, "acc_delta", p)


def adadelta_step(p, g, state, *, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False,
                  decoupled_weight_decay=False):
    _count(state)
    _adadelta_slots(p, state)
    g = _prepare_grad(p, g, maximize=maximize, weight_decay=weight_decay,
                      decoupled=decoupled_weight_decay, lr=lr)
    v, u = state["square_avg"], state["acc_delta"]
    v *= rho
    v += (1 - rho) * g * g
    delta = np.sqrt(u + eps) / np.sqrt(v + eps) * g
    u *= rho
    u += (1 - rho) * delta * delta
    p -= lr * delta


def _adam_slots(p, state, *, amsgrad=False, **_):
    _slot(state, "exp_avg", p)
    _slot(state, "exp_avg_sq", p)
    if amsgrad:
        _slot(state, "max_exp_avg_sq", p)


def adam_step(
    p,
    g,
    state,
    *,
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    amsgrad=False,
    maximize=False,
    decoupled_weight_decay=False,
    eps_root=0.0,
):
    beta1, beta2 = betas
    t = _count(state)
    _adam_slots(p, state, amsgrad=amsgrad)
    g = _prepare_grad(p, g, maximize=maximize, weight_decay=weight_decay,
                      decoupled=decoupled_weight_decay, lr=lr, torch_decoupled=True)
    m = _lerp_(state["exp_avg"], g, 1 - beta1)
    v = state["exp_avg_sq"]
    v *= beta2
    v += (1 - beta2) * g * g
    bc1 = 1 - beta1**t
    bc2 = 1 - beta2**t
    if amsgrad:
        vmax = state["max_exp_avg_sq"]
        np.maximum(vmax, v, out=vmax)  # propagates NaN, as torch.maximum does
        vv = vmax
    else:
        vv = v
    if eps_root:  # optax: mu_hat / (sqrt(nu_hat + eps_root) + eps)
        denom = np.sqrt(vv / bc2 + eps_root) + eps
    else:  # torch
        denom = np.sqrt(vv) / np.sqrt(bc2) + eps
    p -= (lr / bc1) * m / denom


def adamw_step(
    p,
    g,
    state,
    *,
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=1e-2,
    amsgrad=False,
    maximize=False,
    eps_root=0.0,
    decoupled_weight_decay=True,
):
    """Adam with decoupled weight decay (always: AdamW's group carries the fixed True)."""
    assert decoupled_weight_decay is True, "AdamW's weight decay is always decoupled"
    adam_step(p, g, state, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
              amsgrad=amsgrad, maximize=maximize, decoupled_weight_decay=True, eps_root=eps_root)


def _sgd_slots(p, state, *, momentum=0.0, **_):
    if momentum != 0:
        _slot(state, "momentum_buffer", p)


def sgd_step(p, g, state, *, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
             nesterov=False, maximize=False, decoupled_weight_decay=False):
    """torch.optim.SGD: a missing momentum buffer starts as a copy of the gradient (no
    dampening on that step), also when momentum is switched on after the first step."""
    _count(state)
    g = _prepare_grad(p, g, maximize=maximize, weight_decay=weight_decay,
                      decoupled=decoupled_weight_decay, lr=lr)
    if momentum != 0:
        if "momentum_buffer" not in state:
            buf = state["momentum_buffer"] = g.copy()
        else:
            buf = state["momentum_buffer"]
            buf *= momentum
            buf += (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf.copy()
    p -= lr * g


def _nadam_slots(p, state, **_):
    state.setdefault("mu_product", 1.0)
    _slot(state, "exp_avg", p)
    _slot(state, "exp_avg_sq", p)


def nadam_step(
    p,
    g,
    state,
    *,
    lr=2e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    momentum_decay=4e-3,
    decoupled_weight_decay=False,
    maximize=False,
    eps_root=0.0,
):
    """torch's _single_tensor_nadam (mu_product kept as a Python float)."""
    beta1, beta2 = betas
    t = _count(state)
    _nadam_slots(p, state)
    g = _prepare_grad(p, g, maximize=maximize, weight_decay=weight_decay,
                      decoupled=decoupled_weight_decay, lr=lr, torch_decoupled=True)
    bias_correction2 = 1 - beta2**t
    mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay))
    mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
    state["mu_product"] *= mu
    mu_product = state["mu_product"]
    m = _lerp_(state["exp_avg"], g, 1 - beta1)
    v = state["exp_avg_sq"]
    v *= beta2
    v += (1 - beta2) * g * g
    denom = np.sqrt(v / bias_correction2 + eps_root) + eps  # eps_root: optax, inside the sqrt
    p += (-lr * (1.0 - mu) / (1.0 - mu_product)) * g / denom
    p += (-lr * mu_next / (1.0 - mu_product * mu_next)) * m / denom


def _radam_slots(p, state, **_):
    _slot(state, "exp_avg", p)
    _slot(state, "exp_avg_sq", p)


def radam_step(
    p,
    g,
    state,
    *,
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    decoupled_weight_decay=False,
    maximize=False,
    eps_root=0.0,
):
    """torch's _single_tensor_radam; eps_root inside the sqrt of the bias-corrected second
    moment with torch's eps placement kept: sqrt(bc2) / (sqrt(v + eps_root * bc2) + eps)."""
    beta1, beta2 = betas
    t = _count(state)
    _radam_slots(p, state)
    g = _prepare_grad(p, g, maximize=maximize, weight_decay=weight_decay,
                      decoupled=decoupled_weight_decay, lr=lr, torch_decoupled=True)
    m = _lerp_(state["exp_avg"], g, 1 - beta1)
    v = state["exp_avg_sq"]
    v *= beta2
    v += (1 - beta2) * g * g
    bias_correction1 = 1 - beta1**t
    bias_correction2 = 1 - beta2**t
    bias_corrected_exp_avg = m / bias_correction1
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * t * (beta2**t) / bias_correction2
    if rho_t > 5.0:
        rect = math.sqrt(
            (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
        )
        adaptive_lr = math.sqrt(bias_correction2) / (
            np.sqrt(v + eps_root * bias_correction2) + eps
        )
        p -= bias_corrected_exp_avg * lr * adaptive_lr * rect
    else:
        p -= bias_corrected_exp_avg * lr


def _adamax_slots(p, state, **_):
    _slot(state, "exp_avg", p)
    _slot(state, "exp_inf", p)


def adamax_step(p, g, state, *, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                maximize=False, decoupled_weight_decay=False):
    """torch's _single_tensor_adamax."""
    beta1, beta2 = betas
    t = _count(state)
    _adamax_slots(p, state)
    g = _prepare_grad(p, g, maximize=maximize, weight_decay=weight_decay,
                      decoupled=decoupled_weight_decay, lr=lr)
    m = _lerp_(state["exp_avg"], g, 1 - beta1)
    u = state["exp_inf"]
    u *= beta2
    np.maximum(u, np.abs(g) + eps, out=u)  # torch.maximum: NaN propagates
    clr = lr / (1 - beta1**t)
    p -= clr * m / u


def clip_scale(grads, max_norm):
    """torch.nn.utils.clip_grad_norm_ in float64: (scale to apply, total norm)."""
    total = np.sqrt(sum(float(np.sum(np.asarray(g, np.float64) ** 2)) for g in grads if g is not None))
    return min(1.0, max_norm / (total + 1e-6)), total


STEP_FUNCTIONS = {
    "RMSprop": rmsprop_step,
    "Adagrad": adagrad_step,
    "Adadelta": adadelta_step,
    "Adam": adam_step,
    "AdamW": adamw_step,
    "SGD": sgd_step,
    "NAdam": nadam_step,
    "RAdam": radam_step,
    "Adamax": adamax_step,
}

_SLOTS = {
    "RMSprop": _rmsprop_slots,
    "Adagrad": _adagrad_slots,
    "Adadelta": _adadelta_slots,
    "Adam": _adam_slots,
    "AdamW": _adam_slots,
    "SGD": _sgd_slots,
    "NAdam": _nadam_slots,
    "RAdam": _radam_slots,
    "Adamax": _adamax_slots,
}

# Rules whose state exists from construction (torch's Adagrad).
EAGER = {"Adagrad"}


def defaults_of(name):
    """The keyword defaults of one optimizer's step function (= the PyTorch/adaptopt defaults)."""
    sig = inspect.signature(STEP_FUNCTIONS[name])
    return {k: v.default for k, v in sig.parameters.items() if v.kind is v.KEYWORD_ONLY}


def initial_state(name, p, **hyper):
    """The state a parameter has before its first update: step 0, the per-parameter scalars
    and every buffer these options need, at its starting value (float64)."""
    state = {"step": 0}
    _SLOTS[name](np.asarray(p, dtype=np.float64), state, **{**defaults_of(name), **hyper})
    return state


def state_keys(name, **hyper):
    """The state keys of a parameter after one update with these options."""
    state = {}
    STEP_FUNCTIONS[name](np.zeros(3), np.ones(3), state, **hyper)
    return set(state)


class RefOptimizer:
    """float64 mirror of an adaptopt optimizer.

    ``params`` is a list of arrays or a list of group dicts (``{"params": [...], **overrides}``);
    every array is copied to float64. ``param_groups`` hyperparameters may be changed between steps.
    Adagrad's state is created at construction, with each group's initial_accumulator_value
    (adaptopt honours a per-group value; torch would use the constructor's).
    """

    def __init__(self, name, params, **hyper):
        self.name = name
        self._fn = STEP_FUNCTIONS[name]
        defaults = {**defaults_of(name), **hyper}
        if params and isinstance(params[0], dict):
            groups = params
        else:
            groups = [{"params": params}]
        self.param_groups = []
        self.state = []
        for group in groups:
            merged = {**defaults, **group}
            merged["params"] = [np.array(p, dtype=np.float64) for p in group["params"]]
            self.param_groups.append(merged)
            hyper_of_group = {k: v for k, v in merged.items() if k != "params"}
            for p in merged["params"]:
                self.state.append(initial_state(name, p, **hyper_of_group) if name in EAGER else {})
        self.params = [p for group in self.param_groups for p in group["params"]]

    def step(self, grads):
        assert len(grads) == len(self.params)
        i = 0
        for group in self.param_groups:
            hyper = {k: v for k, v in group.items() if k != "params"}
            for p in group["params"]:
                g = grads[i]
                if g is not None:
                    self._fn(p, np.asarray(g, dtype=np.float64), self.state[i], **hyper)
                i += 1
