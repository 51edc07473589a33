"""Train a torch model with adaptopt.torch.RMSprop (a drop-in torch.optim.RMSprop running
adaptopt's fused kernels), next to torch.optim.RMSprop on the same data, and compare.

    python examples/torch_rmsprop.py            # training curves of both (examples/plots/torch_rmsprop.png)
    python examples/torch_rmsprop.py --bench    # full training step of Linear(5000, 2000), batch 16:
                                                # time per step, both optimizers interleaved, medians
    python examples/torch_rmsprop.py --tiny     # a few seconds (smoke test)
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch

import adaptopt.torch as at


def make_data(n: int, seed: int = 0):
    """A noisy teacher network: 64 inputs, 10 outputs."""
    g = torch.Generator().manual_seed(seed)
    teacher = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Tanh(), torch.nn.Linear(128, 10))
    for p in teacher.parameters():
        p.requires_grad_(False)
    x = torch.randn(n, 64, generator=g)
    return x, teacher(x) + 0.05 * torch.randn(n, 10, generator=g)


def train(opt_class, model, x, y, epochs: int, batch: int = 64, lr: float = 1e-3) -> list:
    opt = opt_class(model.parameters(), lr=lr, alpha=0.99, momentum=0.5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    losses = []
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(len(losses)))
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        sched.step()
        with torch.no_grad():
            losses.append(float(torch.nn.functional.mse_loss(model(x), y)))
    return losses


def curves(args) -> None:
    x, y = make_data(512 if args.tiny else 8192)
    epochs = 3 if args.tiny else 30
    torch.manual_seed(1)
    base = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    ours = train(at.RMSprop, copy.deepcopy(base), x, y, epochs)
    theirs = train(torch.optim.RMSprop, copy.deepcopy(base), x, y, epochs)
    for e, (a, b) in enumerate(zip(ours, theirs), start=1):
        print(f"epoch {e:2d}: adaptopt.torch.RMSprop {a:.5f}   torch.optim.RMSprop {b:.5f}")
    print(f"largest difference of the curves: {max(abs(a - b) for a, b in zip(ours, theirs)):.2e}")
    if True:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(range(1, epochs + 1), theirs, label="torch.optim.RMSprop", lw=3, alpha=0.5)
        ax.plot(range(1, epochs + 1), ours, "--", label="adaptopt.torch.RMSprop")
        ax.set(xlabel="epoch", ylabel="training MSE", yscale="log", title="The same run, two optimizers")
        ax.legend()
        out = os.path.join(args.out, "torch_rmsprop.png")
        os.makedirs(args.out, exist_ok=True)
        fig.tight_layout()
        fig.savefig(out, dpi=110)
        print(f"wrote {out}")


def bench(args) -> None:
    """A full training step (forward, backward, optimizer) of Linear(5000, 2000) with batch 16,
    where the optimizer's pass over 1e7 parameters dominates."""
    torch.manual_seed(0)
    models = {name: torch.nn.Linear(5000, 2000) for name in ("torch.optim", "adaptopt.torch")}
    opts = {"torch.optim": torch.optim.RMSprop(models["torch.optim"].parameters(), lr=1e-4),
            "adaptopt.torch": at.RMSprop(models["adaptopt.torch"].parameters(), lr=1e-4)}
    x, y = torch.randn(16, 5000), torch.randn(16, 2000)

    def step(name):
        opts[name].zero_grad()
        torch.nn.functional.mse_loss(models[name](x), y).backward()
        opts[name].step()

    for name in opts:
        for _ in range(3):
            step(name)
    rounds = 5 if args.tiny else 40
    times = {name: [] for name in opts}
    for r in range(rounds):  # interleaved, so drift affects both alike
        for name in (list(opts) if r % 2 == 0 else list(reversed(list(opts)))):
            t0 = time.perf_counter()
            step(name)
            times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}")
    for name, t in med.items():
        print(f"{name:15s} full training step (Linear(5000, 2000), batch 16): {t * 1e3:.2f} ms (median of {rounds})")
    print(f"speedup of the step: {med['torch.optim'] / med['adaptopt.torch']:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", action="store_true", help="time a full training step instead")
    ap.add_argument("--tiny", action="store_true", help="a smoke run of a few seconds")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "plots"),
                    help="directory of the PNG")
    args = ap.parse_args()
    bench(args) if args.bench else curves(args)


if __name__ == "__main__":
    main()
