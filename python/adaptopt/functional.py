"""In-place functional updates for users who keep their own state arrays.

Each function updates ``params`` and the state lists in place, in one native call over all
tensors, with the same kernels and checks as the optimizer classes. ``step`` is the 1-based
number of this update (it drives Adam's bias correction and Adagrad's lr_decay).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from . import _core, _hyper

__all__ = ["rmsprop_", "adagrad_", "adadelta_", "adam_"]

Arrays = Sequence[np.ndarray]


def _run(algo: int, params, grads, named_states, built: _hyper.Built, step: int) -> None:
    if isinstance(params, np.ndarray) or isinstance(grads, np.ndarray):
        raise TypeError("params and grads must be sequences of arrays, not a single ndarray")
    params, grads = list(params), list(grads)
    n = len(params)
    if len(grads) != n:
        raise ValueError(f"grads: expected {n} arrays (one per parameter), got {len(grads)}")
    columns = []
    for (name, arrays), need in zip(named_states, built.needed):
        if arrays is None:
            if need:
                raise ValueError(f"{name}: required by these hyperparameters")
            columns.append([None] * n)
            continue
        arrays = list(arrays)
        if len(arrays) != n:
            raise ValueError(f"{name}: expected {n} arrays (one per parameter), got {len(arrays)}")
        columns.append(arrays)
    states = [list(row) for row in zip(*columns)] if n else []
    steps = np.full(n, step - 1, dtype=np.int64)
    labels = [name for name, _ in named_states]
    group = _core.Group(algo, params, states, steps, "params", 0, labels)
    _core.multi_step([group], [built.hyper], grads)


def rmsprop_(params: Arrays, grads: Arrays, square_avgs: Arrays,
             momentum_buffers: Optional[Arrays] = None, grad_avgs: Optional[Arrays] = None, *,
             lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0,
             momentum: float = 0, centered: bool = False, nesterov: bool = False,
             eps_in_sqrt: bool = False, maximize: bool = False) -> None:
    """One RMSprop step; ``momentum_buffers`` is needed when momentum > 0, ``grad_avgs`` when
    centered."""
    built = _hyper.rmsprop(dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                momentum=momentum, centered=centered, nesterov=nesterov,
                                eps_in_sqrt=eps_in_sqrt, maximize=maximize))
    _run(_hyper.RMSPROP, params, grads, [("square_avgs", square_avgs),
                                         ("momentum_buffers", momentum_buffers),
                                         ("grad_avgs", grad_avgs)], built, 1)


def adagrad_(params: Arrays, grads: Arrays, state_sums: Arrays, *, step: int, lr: float = 1e-2,
             lr_decay: float = 0, weight_decay: float = 0, eps: float = 1e-10,
             maximize: bool = False) -> None:
    """One Adagrad step; ``state_sums`` start at initial_accumulator_value."""
    built = _hyper.adagrad(dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                initial_accumulator_value=0.0, eps=eps, maximize=maximize))
    _run(_hyper.ADAGRAD, params, grads, [("state_sums", state_sums)], built, _hyper.check_step(step))


def adadelta_(params: Arrays, grads: Arrays, square_avgs: Arrays, acc_deltas: Arrays, *,
              lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6, weight_decay: float = 0,
              maximize: bool = False) -> None:
    """One Adadelta step."""
    built = _hyper.adadelta(dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize))
    _run(_hyper.ADADELTA, params, grads, [("square_avgs", square_avgs), ("acc_deltas", acc_deltas)],
         built, 1)


def adam_(params: Arrays, grads: Arrays, exp_avgs: Arrays, exp_avg_sqs: Arrays,
          max_exp_avg_sqs: Optional[Arrays] = None, *, step: int, lr: float = 1e-3,
          beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0,
          amsgrad: bool = False, maximize: bool = False, decoupled_weight_decay: bool = False) -> None:
    """One Adam step (AdamW with ``decoupled_weight_decay=True``); ``max_exp_avg_sqs`` is needed
    when amsgrad."""
    built = _hyper.adam(dict(lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay,
                             amsgrad=amsgrad, maximize=maximize,
                             decoupled_weight_decay=decoupled_weight_decay))
    _run(_hyper.ADAM, params, grads, [("exp_avgs", exp_avgs), ("exp_avg_sqs", exp_avg_sqs),
                                      ("max_exp_avg_sqs", max_exp_avg_sqs)],
         built, _hyper.check_step(step))
