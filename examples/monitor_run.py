"""Watch a training run with adaptopt.monitor: the NumPy MLP of mlp_digits.py trained with
Adam under a cosine schedule, logged every 10 steps to CSV (and to TensorBoard when tensorboardX
is installed), then plotted from the CSV: loss and accuracy, the scheduled lr and the effective
per-element learning rate, the gradient norm and the update RMS per layer.

    python examples/monitor_run.py             # writes examples/plots/monitor_run.png (and runs/)
    python examples/monitor_run.py --tiny      # a few seconds
    tensorboard --logdir examples/runs         # if tensorboardX wrote events there
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # tiny matrices: one BLAS thread is faster

import numpy as np

import adaptopt as ao
from adaptopt import monitor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from mlp_digits import evaluate, init_params, load_data, loss_and_grads  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--out", default=os.path.join(HERE, "plots"), help="directory of the PNG")
    ap.add_argument("--runs", default=os.path.join(HERE, "runs"), help="directory of the CSV and event files")
    args = ap.parse_args()
    epochs, batch = (2, 64) if args.tiny else (20, 32)
    Xtr, ytr, Xva, yva = load_data()
    params = init_params([64, 64, 10], seed=0)
    steps = epochs * (len(Xtr) // batch)
    opt = ao.Adam(params, lr=ao.schedules.cosine(3e-3, total=steps, warmup=steps // 20), max_grad_norm=5.0)
    os.makedirs(args.runs, exist_ok=True)
    csv_path = os.path.join(args.runs, "monitor_run.csv")
    tb = dict(logdir=os.path.join(args.runs, "monitor_run")) if importlib.util.find_spec("tensorboardX") else {}
    rng = np.random.default_rng(1)
    with monitor.Logger(opt, every=10, csv=csv_path, **tb) as logger:
        for _ in range(epochs):
            order = rng.permutation(len(Xtr))
            for i in range(0, len(order) - batch + 1, batch):
                idx = order[i:i + batch]
                loss, grads = loss_and_grads(params, Xtr[idx], ytr[idx])
                opt.step(grads)
                if logger.step % logger.every == 0:  # evaluate only on the logged steps
                    _, acc = evaluate(params, Xva, yva)
                    logger.log(loss=loss, val_accuracy=acc)
                else:
                    logger.log(loss=loss, val_accuracy=float("nan"))
    print(f"logged {logger.step} steps to {csv_path}" + (f" and {tb['logdir']}" if tb else ""))
    plot(csv_path, os.path.join(args.out, "monitor_run.png"))


def plot(csv_path: str, png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    col = {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}
    step = col["step"]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    ax = axes[0, 0]
    ax.plot(step, col["loss"], label="training loss (batch)")
    ax2 = ax.twinx()
    ax2.plot(step, col["val_accuracy"], "C1", label="validation accuracy")
    ax.set(xlabel="step", ylabel="loss", yscale="log", title="loss and accuracy")
    ax2.set_ylabel("accuracy")
    ax = axes[0, 1]
    ax.plot(step, col["group0/lr"], "k", label="scheduled lr")
    ax.fill_between(step, col["group0/lr_min"], col["group0/lr_max"], alpha=0.3, label="effective lr, min..max")
    ax.plot(step, col["group0/lr_mean"], label="effective lr, mean")
    ax.set(xlabel="step", yscale="log", title="learning rates (Adam: lr / denominator)")
    ax.legend(fontsize=8)
    axes[1, 0].plot(step, col["grad_norm"])
    axes[1, 0].set(xlabel="step", yscale="log", title="global gradient norm (clipped at 5)")
    axes[1, 1].plot(step, col["group0/update_rms"])
    axes[1, 1].set(xlabel="step", yscale="log", title="update RMS")
    fig.tight_layout()
    os.makedirs(os.path.dirname(png), exist_ok=True)
    fig.savefig(png, dpi=100)
    print(f"wrote {png}")


if __name__ == "__main__":
    main()
