"""A vanilla tanh RNN trained with BPTT on the adding problem, with and without clipping.

The adding problem (Hochreiter & Schmidhuber, 1997): each input sequence has two channels, a
random number in [0, 1) and a marker that is 1 at exactly two time steps (one in each half of
the sequence) and 0 elsewhere. The target is the sum of the two marked numbers, read from the
last hidden state. Predicting the mean, 1.0, gives an MSE of 2 * 1/12 = 0.167: a network only
beats that by carrying information across ~T/2 steps, which is where vanishing and exploding
gradients show up. Each optimizer is run twice from the same initial weights and on the same
batches: without clipping and with adaptopt's fused global-norm clipping (``max_grad_norm``).

    python examples/rnn_adding.py              # default run (45-80 s on 2 cores), examples/plots/
    python examples/rnn_adding.py --tiny       # smoke run, a few seconds
    python examples/rnn_adding.py --sweep      # the lr sweep the defaults came from (~5 min)
    python examples/rnn_adding.py --storage    # compact storage against float32 (~1.5 min)

Runs are spread over --jobs processes (default 2); the results do not depend on it.
"""

from __future__ import annotations

import argparse
import functools
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor

# The matrices here are tiny: a multi-threaded BLAS only adds overhead (10x slower on a
# busy 2-core machine). Set before NumPy is imported; the environment still wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import adaptopt as ao
import ml_dtypes
import numpy as np

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plots")

# name -> (optimizer class, keyword arguments); every config is also run with max_grad_norm.
# Each lr is the one of `--sweep` (defaults: T=50, 2000 iterations, 2 seeds) with the lowest
# geometric mean of the final validation MSE with and without clipping: one lr per optimizer,
# chosen without favouring either clip setting.
CONFIGS = {
    "SGD":              (ao.SGD, dict(lr=0.05)),
    "SGD+momentum":     (ao.SGD, dict(lr=0.01, momentum=0.9)),
    "RMSProp":          (ao.RMSprop, dict(lr=1e-3)),
    "RMSProp+momentum": (ao.RMSprop, dict(lr=1e-4, momentum=0.9)),
    "Adam":             (ao.Adam, dict(lr=1e-3)),
}
SWEEP_FACTORS = (0.1, 0.3, 1.0, 3.0, 10.0)  # the sweep tries each default lr times these
BASELINE_MSE = 1.0 / 6.0  # always predicting 1.0
# --storage: compact storage against float32 (no clipping, the same lrs and batches). name ->
# (param dtype, optimizer options). The RNN computes in float32 on float32 copies of the params;
# the gradients are handed to the optimizer in the params' dtype.
BF16 = np.dtype(ml_dtypes.bfloat16)
STORAGES = {
    "fp32":                          (np.float32, {}),
    "fp32 params, 8-bit state":      (np.float32, dict(state_dtype="8bit")),
    "bf16 params + SR":              (BF16, dict(stochastic_rounding=True)),
    "bf16 params + SR, 8-bit state": (BF16, dict(stochastic_rounding=True, state_dtype="8bit")),
    "bf16 params, round-to-nearest": (BF16, {}),
}
STORAGE_OPTIMIZERS = ("Adam", "RMSProp+momentum", "RMSProp")
FINAL_EVALS = 5  # "final MSE" = mean of the last 5 evaluations (the curves are noisy)


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
    W_h, W_o = params[1], params[3]
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


def final_mse(curve):
    """Mean validation MSE over the last FINAL_EVALS evaluations; NaN if the run diverged."""
    return float(np.mean(curve[-FINAL_EVALS:]))


@functools.lru_cache(maxsize=4)
def validation_set(length):
    """1000 fixed sequences, the same for every run."""
    return adding_batch(np.random.default_rng(12345), 1000, length)


def train(task, args):
    """One run. task = (optimizer class, kwargs, max_grad_norm or None, seed[, param dtype]).
    Returns the validation MSE every args.eval_every iterations (NaN after a divergence) and the
    gradient norm before clipping at every iteration. With a 16-bit dtype the params are stored
    in it and the RNN computes in float32 on copies of them."""
    opt_cls, kwargs, clip, seed = task[:4]
    dtype = np.dtype(task[4] if len(task) > 4 else np.float32)
    narrow = dtype != np.float32
    x_val, y_val = validation_set(args.length)
    params = init_params(args.hidden, seed)
    if narrow:
        params = [p.astype(dtype) for p in params]
    opt = opt_cls(params, max_grad_norm=clip, **kwargs)

    def wide():
        return [p.astype(np.float32) for p in params] if narrow else params

    rng = np.random.default_rng(seed + 1000)  # the same batches for every optimizer
    curve = np.full(args.iters // args.eval_every + 1, np.nan)
    norms = np.full(args.iters, np.nan)
    with np.errstate(all="ignore"):  # a diverging run overflows before its loss turns NaN
        for it in range(args.iters + 1):
            if it % args.eval_every == 0:
                pred, _ = forward(wide(), x_val)
                curve[it // args.eval_every] = np.mean((pred - y_val) ** 2)
                if not np.isfinite(curve[it // args.eval_every]):
                    curve[it // args.eval_every] = np.nan
                    break  # diverged
            if it == args.iters:
                break
            _, grads = loss_and_grads(wide(), *adding_batch(rng, args.batch, args.length))
            # computed here for the unclipped runs too; with clipping, opt.last_grad_norm
            # holds the same global norm after the step
            norms[it] = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads))
            opt.step([g.astype(dtype) for g in grads] if narrow else grads)
    return curve, norms


def run_all(tasks, args):
    """train() over tasks, in args.jobs processes; results in task order."""
    if args.jobs <= 1:
        return [train(t, args) for t in tasks]
    with ProcessPoolExecutor(args.jobs) as ex:
        return list(ex.map(train, tasks, [args] * len(tasks)))


def lr_sweep(configs, args):
    """Final validation MSE (mean over seeds; inf = diverged) for each optimizer at its
    default lr times SWEEP_FACTORS, without and with clipping."""
    clips = (None, args.clip)
    grid = {name: [dict(kw, lr=kw["lr"] * f) for f in SWEEP_FACTORS]
            for name, (_, kw) in configs.items()}
    tasks = [(configs[name][0], kw, clip, seed) for name in configs for kw in grid[name]
             for clip in clips for seed in range(args.seeds)]
    finals = iter(np.nan_to_num(final_mse(c), nan=np.inf) for c, _ in run_all(tasks, args))
    print(f"lr sweep, T={args.length}, {args.iters} iterations, {args.seeds} seed(s): final "
          f"validation MSE (mean of the last {FINAL_EVALS} evaluations and of the seeds; inf = "
          f"diverged) without / with max_grad_norm={args.clip:g}")
    for name in configs:
        cells, best = [], (np.inf, None)
        for kw in grid[name]:
            m = [np.mean([next(finals) for _ in range(args.seeds)]) for _ in clips]
            cells.append(f"{kw['lr']:g}: {m[0]:.4f}/{m[1]:.4f}")
            best = min(best, (np.sqrt(m[0] * m[1]), kw["lr"]))
        print(f"  {name:<17} " + "  ".join(cells) + f"   best lr={best[1]:g}", flush=True)


def plot(configs, results, args, out_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    its = np.arange(args.iters // args.eval_every + 1) * args.eval_every
    fig, axes = plt.subplots(2, len(configs), figsize=(4.2 * len(configs), 7.5), sharex=True,
                             squeeze=False)
    for j, name in enumerate(configs):
        ax_l, ax_g = axes[0, j], axes[1, j]
        for clip, color in ((None, "tab:red"), (args.clip, "tab:blue")):
            label = "no clipping" if clip is None else f"max_grad_norm={clip:g}"
            for s, (curve, norms) in enumerate(results[name, clip]):
                ax_l.plot(its, curve, color=color, alpha=0.8, lw=1.2,
                          label=label if s == 0 else None)
                k = min(50, len(norms))  # smoothed over 50 steps to be readable
                ax_g.plot(np.arange(k - 1, len(norms)), np.convolve(norms, np.ones(k) / k, "valid"),
                          color=color, alpha=0.7, lw=1)
        ax_l.axhline(BASELINE_MSE, color="k", ls="--", lw=1, label="predict 1.0 (0.167)")
        ax_l.set_yscale("log")
        ax_l.set_ylim(5e-3, 1.0)
        ax_l.set_title(f"{name} (lr={configs[name][1]['lr']:g})")
        ax_g.set_yscale("log")
        ax_g.set_xlabel("iteration")
        for ax in (ax_l, ax_g):
            ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("validation MSE")
    axes[1, 0].set_ylabel("gradient norm before clipping\n(50-step moving average)")
    axes[0, 0].legend(fontsize=8, loc="lower left")
    fig.suptitle(f"Adding problem, T={args.length}: tanh RNN, {args.hidden} units, batch "
                 f"{args.batch}, {args.seeds} seed(s), one line per seed "
                 "(a line that stops diverged)")
    fig.tight_layout()
    path = os.path.join(out_dir, "rnn_adding.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run_storage(args):
    """{(optimizer, storage): [curve per seed]} for STORAGE_OPTIMIZERS x STORAGES, no clipping."""
    names = [n for n in STORAGE_OPTIMIZERS if not args.only or n in args.only]
    tasks = [(CONFIGS[n][0], {**CONFIGS[n][1], **options}, None, seed, dtype)
             for n in names for dtype, options in STORAGES.values() for seed in range(args.seeds)]
    runs = iter(run_all(tasks, args))
    return {(n, st): [next(runs)[0] for _ in range(args.seeds)] for n in names for st in STORAGES}


def print_storage_table(results, args):
    """Final validation MSE per seed; 'in fp32 spread': the mean over seeds lies within fp32's
    min..max over seeds."""
    print(f"final val MSE = mean of the last {FINAL_EVALS} evaluations, per seed; in fp32 spread = "
          "the mean over seeds lies within fp32's min..max")
    print(f"{'optimizer':<18} {'storage':<31} {'final val MSE (per seed)':<34} {'mean':>7} "
          f"{'in fp32 spread':>15}")
    for (name, st), curves in results.items():
        finals = [final_mse(c) for c in curves]
        ref = [final_mse(c) for c in results[name, "fp32"]]
        cells = " ".join("diverged" if np.isnan(f) else f"{f:.4f}" for f in finals)
        mean = float(np.mean(finals))
        inside = "-" if np.isnan(mean) or np.isnan(ref).any() else \
            ("yes" if min(ref) <= mean <= max(ref) else "no")
        print(f"{name:<18} {st:<31} {cells:<34} {mean:>7.4f} {inside:>15}")


def plot_storage(results, args, out_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(n for n, _ in results))
    its = np.arange(args.iters // args.eval_every + 1) * args.eval_every
    fig, axes = plt.subplots(1, len(names), figsize=(5.6 * len(names), 4.8), squeeze=False,
                             sharey=True)
    colors = plt.get_cmap("tab10").colors
    for ax, name in zip(axes[0], names):
        for st, c in zip(STORAGES, colors):
            curves = np.array(results[name, st])
            ls = "--" if "round-to-nearest" in st else "-"
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: diverged
                ax.plot(its, np.nanmean(curves, 0) if np.isfinite(curves).any() else curves[0],
                        ls, color=c, lw=1.4, label=st)
                ax.fill_between(its, np.nanmin(curves, 0), np.nanmax(curves, 0), color=c,
                                alpha=0.12, lw=0)
        ax.axhline(BASELINE_MSE, color="k", ls=":", lw=1, label="predict 1.0 (0.167)")
        ax.set_yscale("log")
        ax.set_ylim(5e-3, 1.0)
        ax.set_title(f"{name} (lr={CONFIGS[name][1]['lr']:g}), no clipping")
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("validation MSE")
    axes[0, 0].legend(fontsize=8, loc="lower left")
    fig.suptitle(f"Adding problem, T={args.length}: tanh RNN, {args.hidden} units, batch "
                 f"{args.batch}: storage, mean over {args.seeds} seeds (shaded: min..max; a line "
                 "that stops diverged)")
    fig.tight_layout()
    path = os.path.join(out_dir, "rnn_adding_storage.png")
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
    ap.add_argument("--seeds", type=int, help="runs per configuration (default 2, 3 with --storage)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                    help="worker processes (results do not depend on it)")
    ap.add_argument("--only", nargs="+", choices=list(CONFIGS), help="run only these optimizers")
    ap.add_argument("--out", default=DEFAULT_OUT,
                    help="output directory (default: plots/ next to this script)")
    ap.add_argument("--tiny", action="store_true", help="smoke run: T=10, 60 iterations, 1 seed")
    ap.add_argument("--sweep", action="store_true", help="run the lr sweep instead (no plots)")
    ap.add_argument("--storage", action="store_true",
                    help="compare compact storage (8-bit state, bf16 params with stochastic "
                         "rounding, both, bf16 rounded to nearest) with float32, without clipping, "
                         f"for {', '.join(STORAGE_OPTIMIZERS)}; writes rnn_adding_storage.png")
    args = ap.parse_args(argv)
    if args.seeds is None:
        args.seeds = 3 if args.storage else 2
    if args.tiny:
        args.length, args.iters, args.eval_every, args.seeds, args.jobs = 10, 60, 20, 1, 1
    configs = {k: v for k, v in CONFIGS.items() if not args.only or k in args.only}

    t0 = time.perf_counter()
    if args.sweep:
        lr_sweep(configs, args)
        print(f"done in {time.perf_counter() - t0:.1f} s")
        return
    if args.storage:
        results = run_storage(args)
        print(f"adding problem T={args.length}, hidden {args.hidden}, batch {args.batch}, "
              f"{args.iters} iterations, {args.seeds} seed(s), no clipping: storage against float32")
        print_storage_table(results, args)
        os.makedirs(args.out, exist_ok=True)
        path = plot_storage(results, args, args.out)
        print(f"wrote {path}; done in {time.perf_counter() - t0:.1f} s")
        return
    clips = (None, args.clip)
    tasks = [(cls, kw, clip, seed) for cls, kw in configs.values() for clip in clips
             for seed in range(args.seeds)]
    runs = iter(run_all(tasks, args))
    results = {(name, clip): [next(runs) for _ in range(args.seeds)]
               for name in configs for clip in clips}

    print(f"adding problem T={args.length}, hidden {args.hidden}, batch {args.batch}, "
          f"{args.iters} iterations, {args.seeds} seed(s); baseline MSE {BASELINE_MSE:.3f}")
    print(f"final val MSE = mean of the last {FINAL_EVALS} evaluations; max grad norm: before "
          "clipping, over the run")
    print(f"{'optimizer':<18} {'clipping':<9} {'final val MSE (per seed)':<26} "
          f"{'first eval < 0.05':<19} {'max grad norm'}")
    for (name, clip), rs in results.items():
        finals = " ".join("diverged" if np.isnan(final_mse(c)) else f"{final_mse(c):.4f}"
                          for c, _ in rs)
        solved = " ".join(str(int(np.argmax(c < 0.05)) * args.eval_every) if np.any(c < 0.05)
                          else "-" for c, _ in rs)
        peak = " ".join(f"{np.nanmax(n):.3g}" for _, n in rs)
        print(f"{name:<18} {'none' if clip is None else f'{clip:g}':<9} {finals:<26} "
              f"{solved:<19} {peak}")
    os.makedirs(args.out, exist_ok=True)
    path = plot(configs, results, args, args.out)
    print(f"wrote {path}; done in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
