"""Options that torch.optim lacks, against the formulas of the libraries that define them (optax,
Keras 3), written here in NumPy float64 from shared/reference/optimizer-semantics.md
(sections 2.4, 2.5, 5.2, 5.3): RMSprop's initial_scale, bias_correction, eps_in_sqrt and
Nesterov momentum (optax), eps_root (optax), and decoupled weight decay for every rule
(Keras 3)."""

import math

import adaptopt
import numpy as np
import pytest
from adaptopt import _rules

STEPS = 20
N = 37  # a ragged tail for every vector width


def problem(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(N), [rng.standard_normal(N) for _ in range(STEPS)]


def run(cls, p0, grads, **hyper):
    p = p0.copy()
    opt = cls([p], **hyper)
    for g in grads:
        opt.step([g])
    return p


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def optax_rmsprop(p, grads, *, lr, decay, eps, initial_scale=0.0, eps_in_sqrt=True, centered=False,
                  momentum=None, nesterov=False, bias_correction=False):
    """optax.rmsprop: scale_by_rms / scale_by_stddev, scale_by_learning_rate, trace."""
    p = p.copy()
    nu = np.full_like(p, initial_scale)
    mu = np.zeros_like(p)
    tr = np.zeros_like(p)
    for count, g in enumerate(grads, start=1):
        nu = (1 - decay) * g**2 + decay * nu
        mu = (1 - decay) * g + decay * mu
        nu_hat = nu / (1 - decay**count) if bias_correction else nu
        mu_hat = mu / (1 - decay**count) if bias_correction else mu
        var = nu_hat - mu_hat**2 if centered else nu_hat  # (see test_centered_variance_clamped)
        scale = 1 / np.sqrt(var + eps) if eps_in_sqrt else 1 / (np.sqrt(var) + eps)
        u = -lr * scale * g
        if momentum is not None:
            tr = u + momentum * tr
            u = u + momentum * tr if nesterov else tr
        p += u
    return p


RMSPROP_CASES = [
    dict(initial_scale=1.0),
    dict(initial_scale=0.5, eps_in_sqrt=False, centered=True),
    dict(bias_correction=True),
    dict(bias_correction=True, centered=True, eps_in_sqrt=False, initial_scale=0.1),
    dict(bias_correction=True, initial_scale=0.1, momentum=0.9),
    dict(momentum=0.9, nesterov=True, eps_in_sqrt=False),
    dict(momentum=0.5, nesterov=True, centered=True, bias_correction=True, initial_scale=0.2),
]


@pytest.mark.parametrize("case", RMSPROP_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_rmsprop_matches_optax(case, isa):
    p0, grads = problem()
    lr, decay, eps = 3e-3, 0.9, 1e-6
    case = {"eps_in_sqrt": True, **case}
    ours = run(adaptopt.RMSprop, p0, grads, lr=lr, alpha=decay, eps=eps, **case)
    theirs = optax_rmsprop(p0, grads, lr=lr, decay=decay, eps=eps,
                           **{k: v for k, v in case.items()})
    close(ours, theirs)


@pytest.mark.parametrize("case", [dict(alpha=0.0, centered=True), dict(centered=True, bias_correction=True)])
@pytest.mark.parametrize("eps_in_sqrt", [False, True])
def test_centered_variance_clamped_at_zero(case, eps_in_sqrt, isa):
    """Where the centered variance is 0 in exact arithmetic (alpha = 0; the first bias-corrected
    step), a rounding below 0 gives 0, not NaN: the denominator is eps (or sqrt(eps))."""
    p0, grads = problem(4)
    p = run(adaptopt.RMSprop, p0, grads[:3], lr=1e-3, eps=1e-8, eps_in_sqrt=eps_in_sqrt, **case)
    assert np.all(np.isfinite(p))
    g = np.full(N, np.nan)
    assert np.all(np.isnan(run(adaptopt.RMSprop, p0, [g], lr=1e-3, **case)))  # NaN still propagates


def optax_adam(p, grads, *, lr, b1, b2, eps, eps_root):
    """optax.adam (scale_by_adam, PyTorch's eps placement): u = mu_hat / (sqrt(nu_hat + eps_root) + eps)."""
    p = p.copy()
    mu, nu = np.zeros_like(p), np.zeros_like(p)
    for count, g in enumerate(grads, start=1):
        mu = (1 - b1) * g + b1 * mu
        nu = (1 - b2) * g**2 + b2 * nu
        mu_hat, nu_hat = mu / (1 - b1**count), nu / (1 - b2**count)
        p -= lr * mu_hat / (np.sqrt(nu_hat + eps_root) + eps)
    return p


@pytest.mark.parametrize("eps_root", [0.0, 1e-8, 1e-3])
def test_adam_eps_root_matches_optax(eps_root, isa):
    p0, grads = problem(1)
    ours = run(adaptopt.Adam, p0, grads, lr=1e-2, betas=(0.9, 0.99), eps=1e-8, eps_root=eps_root)
    close(ours, optax_adam(p0, grads, lr=1e-2, b1=0.9, b2=0.99, eps=1e-8, eps_root=eps_root))


def test_nadam_and_radam_eps_root(isa):
    """eps_root sits inside the sqrt of the bias-corrected second moment, eps keeps torch's
    place: NAdam sqrt(v/bc2 + eps_root) + eps; RAdam sqrt(bc2) / (sqrt(v + eps_root*bc2) + eps)."""
    p0, grads = problem(2)
    b1, b2, eps, root, lr = 0.9, 0.99, 1e-8, 1e-3, 1e-2
    # NAdam
    p, m, v, prod = p0.copy(), np.zeros(N), np.zeros(N), 1.0
    for t, g in enumerate(grads, start=1):
        mu, mu_next = (b1 * (1 - 0.5 * 0.96 ** (k * 4e-3)) for k in (t, t + 1))
        prod *= mu
        m += (1 - b1) * (g - m)
        v = b2 * v + (1 - b2) * g * g
        denom = np.sqrt(v / (1 - b2**t) + root) + eps
        p += -lr * (1 - mu) / (1 - prod) * g / denom - lr * mu_next / (1 - prod * mu_next) * m / denom
    close(run(adaptopt.NAdam, p0, grads, lr=lr, betas=(b1, b2), eps=eps, eps_root=root), p)
    # RAdam
    p, m, v = p0.copy(), np.zeros(N), np.zeros(N)
    rho_inf = 2 / (1 - b2) - 1
    for t, g in enumerate(grads, start=1):
        m += (1 - b1) * (g - m)
        v = b2 * v + (1 - b2) * g * g
        bc1, bc2 = 1 - b1**t, 1 - b2**t
        rho_t = rho_inf - 2 * t * b2**t / bc2
        step = m / bc1 * lr
        if rho_t > 5:
            rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            step = step * (math.sqrt(bc2) / (np.sqrt(v + root * bc2) + eps)) * rect
        p -= step
    close(run(adaptopt.RAdam, p0, grads, lr=lr, betas=(b1, b2), eps=eps, eps_root=root), p)


@pytest.mark.parametrize("spec", _rules.SPECS, ids=lambda s: s.name)
def test_decoupled_weight_decay_is_keras_form_for_every_rule(spec, isa):
    """Keras 3 (every optimizer's _apply_weight_decay): theta -= theta * wd * lr before the update;
    the update itself then sees no weight decay."""
    cls = adaptopt.optim.Optimizer._classes[spec.name]
    p0, grads = problem(3)
    lr, wd = 1e-2, 0.3
    ours = run(cls, p0, grads, lr=lr, weight_decay=wd,
               **({} if "decoupled_weight_decay" in spec.fixed else {"decoupled_weight_decay": True}))
    p = p0.copy()
    opt = cls([p], lr=lr, weight_decay=0.0)
    for g in grads:
        p *= 1 - lr * wd
        opt.step([g])
    close(ours, p)
