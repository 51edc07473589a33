"""A vanilla tanh RNN trained with BPTT on the adding problem, with and without clipping.

The adding problem (Hochreiter & Schmidhuber, 1997): each input sequence has two channels, a
random number in [0, 1) and a marker that is 1 at exactly two time steps (one in each half of
the sequence) and 0 elsewhere. The target is the sum of the two marked numbers, read from the
last hidden state. Predicting the mean, 1.0, gives an MSE of 2 * 1/12 = 0.167: a network only
beats that by carrying information across ~T/2 steps, which is where vanishing and exploding
gradients show up. Each optimizer is run twice from the same initial weights and on the same
batches: without clipping and with adaptopt's fused global-norm clipping (``max_grad_norm``).

    python examples/rnn_adding.py              # default run, plots in examples/plots/
    python examples/rnn_adding.py --tiny       # smoke run, a few seconds
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import adaptopt as ao

# name -> (optimizer class, keyword arguments); every config is also run with max_grad_norm.
# Learning rates: a brief search on a short run (see the README), the same for both clip
# settings.
CONFIGS = {
    "SGD":              (ao.SGD, dict(lr=0.05)),
    "SGD+momentum":     (ao.SGD, dict(lr=0.01, momentum=0.9)),
    "RMSProp":          (ao.RMSprop, dict(lr=1e-3)),
    "RMSProp+momentum": (ao.RMSprop, dict(lr=1e-4, momentum=0.9)),
    "Adam":             (ao.Adam, dict(lr=1e-3)),
}
BASELINE_MSE = 1.0 / 6.0  # always predicting 1.0


def adding_batch(rng, batch, length):
    """Inputs (batch, length, 2) float32 and targets (batch,) float32."""
    x = np.zeros((batch, length, 2), dtype=np.float32)
    x[:, :, 0] = rng.random((batch, length))
    half = length // 2
    rows = np.arange(batch)
    first = rng.integers(0, half, batch)
    second = rng.integers(half, length, batch)
    x[rows, first, 1] = 1.0
    x[rows, second, 1] = 1.0
    y = x[rows, first, 0] + x[rows, second, 0]
    return x, y


def init_params(hidden, seed):
    """[W_x (2,H), W_h (H,H) orthogonal, b (H,), W_o (H,1), b_o (1,)], float32."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((hidden, hidden)))
    W_h = q * np.sign(np.diag(r))  # a uniformly random orthogonal matrix
    W_x = rng.standard_normal((2, hidden)) / np.sqrt(2)
    W_o = rng.standard_normal((hidden, 1)) / np.sqrt(hidden)
    return [a.astype(np.float32) for a in (W_x, W_h, np.zeros(hidden), W_o, np.zeros(1))]


def forward(params, x):
    """Returns predictions (B,) and all hidden states (T+1, B, H), hs[0] = 0."""
    W_x, W_h, b, W_o, b_o = params
    B, T, _ = x.shape
    pre_x = np.einsum("btc,ch->tbh", x, W_x) + b  # input contribution, all steps at once
    hs = np.zeros((T + 1, B, W_h.shape[0]), dtype=W_h.dtype)
    for t in range(T):
        hs[t + 1] = np.tanh(pre_x[t] + hs[t] @ W_h)
    return (hs[T] @ W_o)[:, 0] + b_o[0], hs


def loss_and_grads(params, x, y):
    """MSE and its gradients by backpropagation through time."""
    W_x, W_h, b, W_o, b_o = params
    pred, hs = forward(params, x)
    B, T, _ = x.shape
    err = pred - y
    loss = float(np.mean(err ** 2))
    dpred = (2.0 / B) * err[:, None]          # (B, 1)
    dW_o = hs[T].T @ dpred
    db_o = dpred.sum(0)
    dz = np.empty_like(hs[1:])                # dL/d(pre-activation), (T, B, H)
    dh = dpred @ W_o.T
    for t in reversed(range(T)):
        dz[t] = dh * (1.0 - hs[t + 1] ** 2)
        dh = dz[t] @ W_h.T
    H = W_h.shape[0]
    dW_h = hs[:-1].reshape(-1, H).T @ dz.reshape(-1, H)
    dW_x = x.transpose(1, 0, 2).reshape(-1, 2).T @ dz.reshape(-1, H)
    db = dz.sum((0, 1))
    return loss, [dW_x, dW_h, db, dW_o, db_o]


def train(opt_cls, kwargs, clip, args, seed, x_val, y_val):
    params = init_params(args.hidden, seed)
    opt = opt_cls(params, max_grad_norm=clip, **kwargs)
    rng = np.random.default_rng(seed + 1000)  # same batches for every optimizer
    evals, norms = [], []
    for it in range(args.iters + 1):
        if it % args.eval_every == 0:
            with np.errstate(all="ignore"):
                pred, _ = forward(params, x_val)
                evals.append(float(np.mean((pred - y_val) ** 2)))
            if not np.isfinite(evals[-1]):
                break  # diverged: the rest of the curve stays NaN
        if it == args.iters:
            break
        x, y = adding_batch(rng, args.batch, args.length)
        with np.errstate(all="ignore"):
            _, grads = loss_and_grads(params, x, y)
        norms.append(float(np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads))))
        opt.step(grads)
    n_evals = args.iters // args.eval_every + 1
    curve = np.full(n_evals, np.nan)
    curve[:len(evals)] = evals
    gn = np.full(args.iters, np.nan)
    gn[:len(norms)] = norms
    return curve, gn


def plot(results, args, out_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(CONFIGS)
    its = np.arange(args.iters // args.eval_every + 1) * args.eval_every
    fig, axes = plt.subplots(2, len(names), figsize=(4.2 * len(names), 7.5), sharex=True)
    for j, name in enumerate(names):
        ax_l, ax_g = axes[0, j], axes[1, j]
        for clip, color in ((None, "tab:red"), (args.clip, "tab:blue")):
            curves, norms = results[name, clip]
            label = "no clipping" if clip is None else f"max_grad_norm={clip:g}"
            for s, (c, g) in enumerate(zip(curves, norms)):
                ax_l.plot(its, c, color=color, alpha=0.8, lw=1.2, label=label if s == 0 else None)
                # the gradient norm, smoothed over 50 steps to be readable
                k = min(50, len(g))
                ax_g.plot(np.arange(k - 1, len(g)), np.convolve(g, np.ones(k) / k, "valid"),
                          color=color, alpha=0.7, lw=1)
        ax_l.axhline(BASELINE_MSE, color="k", ls="--", lw=1, label="predict 1.0 (0.167)")
        ax_l.set_yscale("log")
        ax_l.set_ylim(1e-4, 1.0)
        ax_l.set_title(f"{name} (lr={CONFIGS[name][1]['lr']:g})")
        ax_g.set_yscale("log")
        ax_g.set_xlabel("iteration")
        for ax in (ax_l, ax_g):
            ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("validation MSE")
    axes[1, 0].set_ylabel("gradient norm before clipping\n(50-step moving average)")
    axes[0, 0].legend(fontsize=8, loc="lower left")
    fig.suptitle(f"Adding problem, T={args.length}: tanh RNN with {args.hidden} units, batch "
                 f"{args.batch}, {len(results[names[0], None][0])} seed(s) (one line each)")
    fig.tight_layout()
    path = os.path.join(out_dir, "rnn_adding.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--length", type=int, default=50, help="sequence length T")
    ap.add_argument("--hidden", type=int, default=48)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--clip", type=float, default=1.0, help="max_grad_norm of the clipped runs")
    ap.add_argument("--seeds", type=int, default=2, help="runs per configuration")
    ap.add_argument("--only", nargs="+", choices=list(CONFIGS), help="run only these optimizers")
    ap.add_argument("--out", default=os.path.join("examples", "plots"), help="output directory")
    ap.add_argument("--tiny", action="store_true", help="smoke run: T=10, 60 iterations, 1 seed")
    args = ap.parse_args(argv)
    if args.tiny:
        args.length, args.iters, args.eval_every, args.seeds = 10, 60, 20, 1
    if args.only:
        for name in set(CONFIGS) - set(args.only):
            del CONFIGS[name]

    val_x, val_y = adding_batch(np.random.default_rng(12345), 1000, args.length)
    t0 = time.perf_counter()
    print(f"adding problem T={args.length}, hidden {args.hidden}, batch {args.batch}, "
          f"{args.iters} iterations, {args.seeds} seed(s); baseline MSE {BASELINE_MSE:.3f}")
    print(f"{'optimizer':<18} {'clipping':<10} {'final val MSE per seed':<28} "
          f"{'first iter < 0.05':<20}")
    results = {}
    for name, (cls, kwargs) in CONFIGS.items():
        for clip in (None, args.clip):
            runs = [train(cls, kwargs, clip, args, s, val_x, val_y) for s in range(args.seeds)]
            curves, norms = np.array([r[0] for r in runs]), np.array([r[1] for r in runs])
            results[name, clip] = (curves, norms)
            finals = " ".join("diverged" if np.isnan(c[-1]) else f"{c[-1]:.4f}" for c in curves)
            solved = " ".join(str(int(np.argmax(c < 0.05)) * args.eval_every)
                              if np.any(c < 0.05) else "-" for c in curves)
            print(f"{name:<18} {'none' if clip is None else f'{clip:g}':<10} {finals:<28} "
                  f"{solved:<20}", flush=True)
    os.makedirs(args.out, exist_ok=True)
    path = plot(results, args, args.out)
    print(f"wrote {path}; done in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
