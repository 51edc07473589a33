"""Pure NumPy reference implementations of the adaptopt update rules.

Written from the PyTorch formulas in shared/reference/optimizer-semantics.md (sections 2.1, 3.1,
4.1, 5.1), plus adaptopt's extensions (RMSprop ``eps_in_sqrt`` and ``nesterov``). Each ``*_step``
function does ONE step in place on float64 arrays; ``state`` is a dict that the function fills on
first use (``step`` is a Python int counting the updates done so far).

``RefOptimizer`` mirrors the adaptopt class API (param groups, ``step(grads)`` with ``None``
meaning "skip this parameter") on top of those functions.
"""

from __future__ import annotations

import inspect

import numpy as np


def _prepare_grad(p, g, maximize, weight_decay):
    """maximize negates first; L2 weight decay is added only when it is non-zero."""
    g = -g if maximize else g.copy()
    if weight_decay != 0:
        g = g + weight_decay * p
    return g


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
):
    if not state:
        state["step"] = 0
        state["square_avg"] = np.zeros_like(p)
        if momentum > 0:
            state["momentum_buffer"] = np.zeros_like(p)
        if centered:
            state["grad_avg"] = np.zeros_like(p)
    state["step"] += 1
    g = _prepare_grad(p, g, maximize, weight_decay)

    v = state["square_avg"]
    v *= alpha
    v += (1 - alpha) * g * g
    if centered:
        gavg = state["grad_avg"]
        gavg += (1 - alpha) * (g - gavg)  # lerp(gavg, g, 1 - alpha)
        var = v - gavg * gavg
    else:
        var = v
    denom = np.sqrt(var + eps) if eps_in_sqrt else np.sqrt(var) + eps
    u = g / denom
    if momentum > 0:
        buf = state["momentum_buffer"]
        buf *= momentum
        buf += u
        p -= lr * (momentum * buf + u) if nesterov else lr * buf
    else:
        p -= lr * u


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
):
    if not state:
        state["step"] = 0
        state["sum"] = np.full_like(p, initial_accumulator_value)
    state["step"] += 1
    t = state["step"]
    g = _prepare_grad(p, g, maximize, weight_decay)
    clr = lr / (1 + (t - 1) * lr_decay)
    s = state["sum"]
    s += g * g
    p -= clr * g / (np.sqrt(s) + eps)


def adadelta_step(p, g, state, *, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False):
    if not state:
        state["step"] = 0
        state["square_avg"] = np.zeros_like(p)
        state["acc_delta"] = np.zeros_like(p)
    state["step"] += 1
    g = _prepare_grad(p, g, maximize, weight_decay)
    v, u = state["square_avg"], state["acc_delta"]
    v *= rho
    v += (1 - rho) * g * g
    delta = np.sqrt(u + eps) / np.sqrt(v + eps) * g
    u *= rho
    u += (1 - rho) * delta * delta
    p -= lr * delta


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
):
    beta1, beta2 = betas
    if not state:
        state["step"] = 0
        state["exp_avg"] = np.zeros_like(p)
        state["exp_avg_sq"] = np.zeros_like(p)
        if amsgrad:
            state["max_exp_avg_sq"] = np.zeros_like(p)
    g = -g if maximize else g.copy()
    state["step"] += 1
    t = state["step"]
    if weight_decay != 0:
        if decoupled_weight_decay:
            p *= 1 - lr * weight_decay
        else:
            g = g + weight_decay * p
    m, v = state["exp_avg"], state["exp_avg_sq"]
    m += (1 - beta1) * (g - m)
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
):
    adam_step(
        p,
        g,
        state,
        lr=lr,
        betas=betas,
        eps=eps,
        weight_decay=weight_decay,
        amsgrad=amsgrad,
        maximize=maximize,
        decoupled_weight_decay=True,
    )


def sgd_step(p, g, state, *, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
             maximize=False):
    """torch.optim.SGD: the momentum buffer starts as a copy of the first gradient."""
    if not state:
        state["step"] = 0
        if momentum > 0:
            state["momentum_buffer"] = np.zeros_like(p)
    state["step"] += 1
    g = _prepare_grad(p, g, maximize, weight_decay)
    if momentum > 0:
        buf = state["momentum_buffer"]
        if state["step"] == 1:
            buf[...] = g
        else:
            buf *= momentum
            buf += (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf.copy()
    p -= lr * g


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
}


def defaults_of(name):
    """The keyword defaults of one optimizer's step function (= the PyTorch/adaptopt defaults)."""
    sig = inspect.signature(STEP_FUNCTIONS[name])
    return {k: v.default for k, v in sig.parameters.items() if v.kind is v.KEYWORD_ONLY}


class RefOptimizer:
    """float64 mirror of an adaptopt optimizer.

    ``params`` is a list of arrays or a list of group dicts (``{"params": [...], **overrides}``);
    every array is copied to float64. ``param_groups`` hyperparameters may be changed between steps.
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
        for group in groups:
            merged = {**defaults, **group}
            merged["params"] = [np.array(p, dtype=np.float64) for p in group["params"]]
            self.param_groups.append(merged)
        self.params = [p for group in self.param_groups for p in group["params"]]
        self.state = [{} for _ in self.params]
        if name == "Adagrad":  # Adagrad creates its state eagerly, with the constructor's value
            iav = defaults["initial_accumulator_value"]
            for p, s in zip(self.params, self.state):
                s["step"] = 0
                s["sum"] = np.full_like(p, iav)

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
