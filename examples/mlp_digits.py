"""Train a small NumPy MLP on scikit-learn's digits with every adaptopt optimizer.

The network (64 -> hidden... -> 10, ReLU, softmax cross-entropy) is written by hand in
float32; its weights are plain NumPy arrays that adaptopt updates in place. Every optimizer
sees the same initial weights, the same mini-batches in the same order and the same number of
epochs; only the update rule and its learning rate differ. Each run is repeated over several
seeds, and the plots show the mean over seeds (shaded: min..max).

    python examples/mlp_digits.py                 # default run (~6 s), plots in examples/plots/
    python examples/mlp_digits.py --tiny          # smoke run, a few seconds
    python examples/mlp_digits.py --sweep         # the lr sweep the defaults came from (~1 min)
    python examples/mlp_digits.py --storage       # compact storage against float32 (~25 s)

The digits data (1797 8x8 images) ship with scikit-learn: nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import time

# The matrices here are tiny: a multi-threaded BLAS only adds overhead (10x slower on a
# busy 2-core machine). Set before NumPy is imported; the environment still wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import adaptopt as ao
import ml_dtypes
import numpy as np

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plots")

# name -> (optimizer class, keyword arguments). Each lr is the one with the lowest final
# validation loss in `--sweep` (the lr below times SWEEP_FACTORS; default sizes: 3 seeds,
# 30 epochs, batch 32, hidden 64). Adadelta's lr=1.0 is its usual "no learning rate" setting,
# and also the sweep's choice. Everything else is left at the library defaults.
CONFIGS = {
    "SGD":                (ao.SGD, dict(lr=0.3)),
    "SGD+momentum":       (ao.SGD, dict(lr=0.01, momentum=0.9)),
    "AdaGrad":            (ao.Adagrad, dict(lr=0.03)),
    "Adadelta":           (ao.Adadelta, dict(lr=1.0)),
    "RMSProp":            (ao.RMSprop, dict(lr=1e-3)),
    "RMSProp+momentum":   (ao.RMSprop, dict(lr=1e-4, momentum=0.9)),
    "RMSProp (centered)": (ao.RMSprop, dict(lr=1e-3, centered=True)),
    "Adam":               (ao.Adam, dict(lr=3e-3)),
}
SWEEP_FACTORS = (0.1, 0.3, 1.0, 3.0, 10.0)  # a half-decade grid around each lr

# --storage: compact storage against float32, same lrs, same batches. name -> (param dtype,
# optimizer options). Forward and backward run in float32 on float32 copies of the params; the
# gradients are handed to the optimizer in the params' dtype.
BF16 = np.dtype(ml_dtypes.bfloat16)  # adaptopt's bfloat16 (ml_dtypes, a dependency of adaptopt)
STORAGES = {
    "fp32":                      (np.float32, {}),
    "fp32 params, 8-bit state":  (np.float32, dict(state_dtype="8bit")),
    "bf16 params + SR":          (BF16, dict(stochastic_rounding=True)),
    "bf16 params + SR, 8-bit state": (BF16, dict(stochastic_rounding=True, state_dtype="8bit")),
    "bf16 params, round-to-nearest": (BF16, {}),
}
STORAGE_OPTIMIZERS = ("Adam", "RMSProp", "SGD+momentum")


# -- data -------------------------------------------------------------------------------------
def load_data(seed: int = 0, val_fraction: float = 0.25):
    """Digits split into train/validation (stratified), standardized with the training
    statistics, as float32."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X = digits.data.astype(np.float32)
    y = digits.target.astype(np.int64)
    Xtr, Xva, ytr, yva = train_test_split(X, y, test_size=val_fraction, stratify=y,
                                          random_state=seed)
    mean, std = Xtr.mean(0), Xtr.std(0)
    std[std == 0] = 1.0  # a few border pixels are always 0
    return (Xtr - mean) / std, ytr, (Xva - mean) / std, yva


# -- model ------------------------------------------------------------------------------------
def init_params(sizes, seed):
    """He-initialised weights and zero biases: [W1, b1, W2, b2, ...], float32, C-contiguous."""
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        W = rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)
        params.append(W.astype(np.float32))
        params.append(np.zeros(fan_out, dtype=np.float32))
    return params


def forward(params, X):
    """Logits and the per-layer inputs the backward pass needs."""
    acts = [X]
    h = X
    n_layers = len(params) // 2
    for i in range(n_layers):
        W, b = params[2 * i], params[2 * i + 1]
        h = h @ W + b
        if i < n_layers - 1:
            h = np.maximum(h, 0)
            acts.append(h)
    return h, acts


def softmax_xent(logits, y):
    """Mean cross-entropy and its gradient with respect to the logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = len(y)
    loss = -logp[np.arange(n), y].mean()
    dlogits = np.exp(logp)
    dlogits[np.arange(n), y] -= 1
    return float(loss), dlogits / n


def loss_and_grads(params, X, y):
    logits, acts = forward(params, X)
    loss, d = softmax_xent(logits, y)
    grads = [None] * len(params)
    for i in reversed(range(len(params) // 2)):
        a = acts[i]
        grads[2 * i] = a.T @ d            # a fresh C-contiguous array, as adaptopt requires
        grads[2 * i + 1] = d.sum(axis=0)
        if i > 0:
            d = (d @ params[2 * i].T) * (a > 0)  # back through the ReLU
    return loss, grads


def evaluate(params, X, y):
    logits, _ = forward(params, X)
    loss, _ = softmax_xent(logits, y)
    return loss, float((logits.argmax(axis=1) == y).mean())


# -- training ---------------------------------------------------------------------------------
def train(opt_cls, kwargs, data, sizes, epochs, batch_size, seed, dtype=np.float32):
    """One run; returns per-epoch curves (index 0 = before training). With 16-bit ``dtype``
    the params are stored in it (the same initial values, rounded) and the model computes in
    float32 on copies of them."""
    Xtr, ytr, Xva, yva = data
    params = init_params(sizes, seed)
    narrow = np.dtype(dtype) != np.float32
    if narrow:
        params = [p.astype(dtype) for p in params]
    opt = opt_cls(params, **kwargs)
    rng = np.random.default_rng(seed + 1000)  # the batch order depends on the seed only
    hist = {k: [] for k in ("train_loss", "val_loss", "val_acc")}

    def wide():
        return [p.astype(np.float32) for p in params] if narrow else params

    def record():
        w = wide()
        tl, _ = evaluate(w, Xtr, ytr)
        vl, va = evaluate(w, Xva, yva)
        hist["train_loss"].append(tl)
        hist["val_loss"].append(vl)
        hist["val_acc"].append(va)

    record()
    for _ in range(epochs):
        order = rng.permutation(len(Xtr))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            _, grads = loss_and_grads(wide(), Xtr[idx], ytr[idx])
            opt.step([g.astype(dtype) for g in grads] if narrow else grads)
        record()
    return {k: np.array(v) for k, v in hist.items()}


def run_all(configs, data, sizes, epochs, batch_size, seeds):
    """{name: {metric: array (n_seeds, epochs + 1)}}"""
    results = {}
    for name, (cls, kwargs) in configs.items():
        runs = [train(cls, kwargs, data, sizes, epochs, batch_size, s) for s in seeds]
        results[name] = {k: np.stack([r[k] for r in runs]) for k in runs[0]}
    return results


def lr_sweep(data, sizes, epochs, batch_size, seeds):
    """For each optimizer, a grid of lrs around its default: final validation loss and final
    training loss (means over seeds); prints the lr with the lowest final validation loss."""
    print(f"lr sweep: final validation loss / training loss, mean over {len(seeds)} seeds "
          "(nan = diverged)")
    for name, (cls, kwargs) in CONFIGS.items():
        row = []
        for f in SWEEP_FACTORS:
            kw = dict(kwargs, lr=kwargs["lr"] * f)
            with np.errstate(all="ignore"):
                runs = [train(cls, kw, data, sizes, epochs, batch_size, s) for s in seeds]
            row.append((kw["lr"], np.mean([r["val_loss"][-1] for r in runs]),
                        np.mean([r["train_loss"][-1] for r in runs])))
        best = min(row, key=lambda r: np.inf if np.isnan(r[1]) else r[1])
        cells = "  ".join(f"{lr:g}: {vl:.3f}/{tl:.1e}" for lr, vl, tl in row)
        print(f"  {name:<20} {cells}   best lr={best[0]:g}", flush=True)


# -- reporting --------------------------------------------------------------------------------
def plot(results, out_dir, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    # (key, title, y scale, y limits, shade min..max over seeds). The validation curves are not
    # shaded: their seed-to-seed spread is wider than the gaps between optimizers, and the
    # bands would hide the means (the table gives the spread of the accuracy).
    panels = [("train_loss", "training loss (cross-entropy)", "log", None, True),
              ("val_loss", "validation loss (cross-entropy)", "linear", (0.0, 0.6), False),
              ("val_acc", "validation accuracy", "linear", (0.90, 0.99), False)]
    colors = plt.get_cmap("tab10").colors
    for ax, (key, label, yscale, ylim, shade) in zip(axes, panels):
        for (name, res), c in zip(results.items(), colors):
            curves = res[key]
            ep = np.arange(curves.shape[1])
            ax.plot(ep, curves.mean(0), color=c, label=f"{name} (lr={CONFIGS[name][1]['lr']:g})")
            if shade:
                ax.fill_between(ep, curves.min(0), curves.max(0), color=c, alpha=0.15, lw=0)
        ax.set_xlabel("epoch")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.set_yscale(yscale)
        if ylim:
            ax.set_ylim(*ylim)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path = os.path.join(out_dir, "mlp_digits.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def print_table(results):
    print("final values after the last epoch, mean±std over seeds; best val loss: lowest point of "
          "the mean curve")
    print(f"{'optimizer':<20} {'lr':>7} {'train loss':>11} {'val loss':>13} {'best val loss':>14} "
          f"{'val acc %':>14}")
    for name, res in results.items():
        tl, vl, va = (res[k][:, -1] for k in ("train_loss", "val_loss", "val_acc"))
        best_vl = res["val_loss"].mean(0).min()
        print(f"{name:<20} {CONFIGS[name][1]['lr']:>7g} {tl.mean():>11.2e} "
              f"{vl.mean():>7.4f}±{vl.std():.3f} {best_vl:>14.4f} "
              f"{100 * va.mean():>8.2f}±{100 * va.std():.2f}")


def run_storage(data, sizes, epochs, batch_size, seeds):
    """{optimizer: {storage: {metric: (n_seeds, epochs + 1)}}} for STORAGE_OPTIMIZERS."""
    out = {}
    for name in STORAGE_OPTIMIZERS:
        cls, kwargs = CONFIGS[name]
        out[name] = {}
        for st, (dtype, options) in STORAGES.items():
            with np.errstate(all="ignore"):
                runs = [train(cls, {**kwargs, **options}, data, sizes, epochs, batch_size, s, dtype)
                        for s in seeds]
            out[name][st] = {k: np.stack([r[k] for r in runs]) for k in runs[0]}
    return out


def print_storage_table(results):
    """Final values per storage; 'in fp32 spread': the storage's mean final validation loss and
    accuracy lie within the min..max over seeds of float32's."""
    print("final values after the last epoch, mean±std over seeds (first non-finite epoch if a "
          "run diverged); in fp32 spread = the mean final val loss and accuracy lie within fp32's "
          "min..max over the seeds")
    print(f"{'optimizer':<14} {'storage':<31} {'train loss':>10} {'val loss':>13} {'val acc %':>13} "
          f"{'in fp32 spread':>15}")
    for name, by_storage in results.items():
        ref = by_storage["fp32"]
        lo_l, hi_l = ref["val_loss"][:, -1].min(), ref["val_loss"][:, -1].max()
        lo_a, hi_a = ref["val_acc"][:, -1].min(), ref["val_acc"][:, -1].max()
        for st, res in by_storage.items():
            tl, vl, va = (res[k][:, -1] for k in ("train_loss", "val_loss", "val_acc"))
            bad = ~np.isfinite(res["train_loss"])
            if bad.any():
                first = int(np.argmax(bad.any(0)))
                print(f"{name:<14} {st:<31} non-finite from epoch {first} in "
                      f"{int(bad.any(1).sum())}/{len(tl)} seeds")
                continue
            inside = lo_l <= vl.mean() <= hi_l and lo_a <= va.mean() <= hi_a
            print(f"{name:<14} {st:<31} {tl.mean():>10.2e} {vl.mean():>7.4f}±{vl.std():.3f} "
                  f"{100 * va.mean():>6.2f}±{100 * va.std():.2f} {'yes' if inside else 'no':>15}")


def plot_storage(results, out_dir, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(len(names), 3, figsize=(17, 4.3 * len(names)), squeeze=False)
    panels = [("train_loss", "training loss", "log", None),
              ("val_loss", "validation loss", "linear", (0.0, 0.6)),
              ("val_acc", "validation accuracy", "linear", (0.90, 0.99))]
    colors = plt.get_cmap("tab10").colors
    for row, name in zip(axes, names):
        for ax, (key, label, yscale, ylim) in zip(row, panels):
            for (st, res), c in zip(results[name].items(), colors):
                curves = res[key]
                ep = np.arange(curves.shape[1])
                ls = "--" if "round-to-nearest" in st else "-"
                ax.plot(ep, curves.mean(0), ls, color=c, label=st, lw=1.4)
                ax.fill_between(ep, curves.min(0), curves.max(0), color=c, alpha=0.12, lw=0)
            ax.set_title(f"{name} (lr={CONFIGS[name][1]['lr']:g}): {label}")
            ax.set_yscale(yscale)
            if ylim:
                ax.set_ylim(*ylim)
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    fig.suptitle(title)
    fig.tight_layout()
    path = os.path.join(out_dir, "mlp_digits_storage.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--hidden", type=int, nargs="+", default=[64],
                    help="hidden layer widths, e.g. --hidden 128 64 for two layers")
    ap.add_argument("--seeds", type=int, help="runs per optimizer (seeds 0..n-1; default 3, "
                                              "5 with --storage)")
    ap.add_argument("--out", default=DEFAULT_OUT,
                    help="output directory (default: plots/ next to this script)")
    ap.add_argument("--tiny", action="store_true", help="smoke run: 2 epochs, 1 seed")
    ap.add_argument("--sweep", action="store_true", help="run the lr sweep instead (no plots)")
    ap.add_argument("--storage", action="store_true",
                    help="compare compact storage (8-bit state, bf16 params with stochastic "
                         "rounding, both, bf16 rounded to nearest) with float32 for "
                         f"{', '.join(STORAGE_OPTIMIZERS)}; writes mlp_digits_storage.png "
                         "(default 5 seeds)")
    args = ap.parse_args(argv)
    if args.seeds is None:
        args.seeds = 5 if args.storage else 3
    if args.tiny:
        args.epochs, args.seeds = 2, 1

    data = load_data()
    sizes = [data[0].shape[1], *args.hidden, 10]
    seeds = list(range(args.seeds))
    t0 = time.perf_counter()
    if args.sweep:
        lr_sweep(data, sizes, args.epochs, args.batch_size, seeds)
        print(f"done in {time.perf_counter() - t0:.1f} s")
        return
    if args.storage:
        print(f"digits, MLP {sizes}, {args.epochs} epochs, batch {args.batch_size}, {len(seeds)} "
              f"seed(s): storage against float32, adaptopt {ao.__version__} ({ao.isa()})")
        results = run_storage(data, sizes, args.epochs, args.batch_size, seeds)
        print_storage_table(results)
        os.makedirs(args.out, exist_ok=True)
        path = plot_storage(results, args.out,
                            f"MLP {sizes} on digits, batch {args.batch_size}: storage, mean over "
                            f"{len(seeds)} seeds (shaded: min..max)")
        print(f"wrote {path}; done in {time.perf_counter() - t0:.1f} s")
        return
    print(f"digits: {len(data[0])} train / {len(data[2])} validation, MLP {sizes}, "
          f"{args.epochs} epochs, batch {args.batch_size}, {len(seeds)} seed(s), "
          f"adaptopt {ao.__version__} ({ao.isa()})")
    results = run_all(CONFIGS, data, sizes, args.epochs, args.batch_size, seeds)
    print_table(results)
    os.makedirs(args.out, exist_ok=True)
    path = plot(results, args.out, f"MLP {sizes} on digits, batch {args.batch_size}, "
                                   f"mean over {len(seeds)} seed(s) (shaded: min..max over seeds)")
    print(f"wrote {path}; done in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
