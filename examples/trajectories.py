"""Optimizer trajectories on 2-D test functions, and the per-coordinate effective learning
rates of the adaptive methods, read from the optimizers' state.

Functions: an ill-conditioned quadratic f = 0.5 * (u^2 + 100 v^2), once with (u, v) = (x, y)
(axis-aligned) and once with (u, v) the coordinates rotated by 45 degrees, and the Rosenbrock
function f = (1 - x)^2 + 100 (y - x^2)^2. Per-coordinate methods (AdaGrad, RMSProp, Adam) can
undo axis-aligned ill-conditioning but not the rotated one, where the curvature is not along
a coordinate.

Learning rates are not hand-picked: for each optimizer and function the script tries a log
grid from 1e-4 to --max-lr (default 1; three values per decade) and keeps the lr with the
lowest mean log10(f - f*) over the whole run (fast and steady progress both count; ties: the
smaller lr). The chosen lrs are printed and shown in the legends; "(edge)" marks a choice at
the top of the grid, where a larger lr might have done better still.

    python examples/trajectories.py            # default run (~6 s), plots in examples/plots/
    python examples/trajectories.py --tiny     # smoke run, a few seconds
"""

from __future__ import annotations

import argparse
import os
import time

import adaptopt as ao
import numpy as np

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plots")

# name -> (optimizer class, keyword arguments other than lr). Library defaults otherwise.
OPTIMIZERS = {
    "SGD":          (ao.SGD, {}),
    "SGD+momentum": (ao.SGD, dict(momentum=0.9)),
    "AdaGrad":      (ao.Adagrad, {}),
    "RMSProp":      (ao.RMSprop, {}),
    "Adam":         (ao.Adam, {}),
}
F_FLOOR = 1e-25  # f - f* is drawn no lower than this
COLORS = dict(zip(OPTIMIZERS, ("tab:gray", "tab:green", "tab:orange", "tab:blue", "tab:red")))


# -- test functions: value and gradient --------------------------------------------------------
class Quadratic:
    """0.5 * (u^2 + cond * v^2) with (u, v) = R(angle) (x, y)."""

    def __init__(self, cond=100.0, angle_deg=0.0):
        a = np.deg2rad(angle_deg)
        R = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
        self.A = R.T @ np.diag([1.0, cond]) @ R  # the Hessian in (x, y)
        self.name = "quadratic" + (f", rotated {angle_deg:g}°" if angle_deg else ", axis-aligned")
        self.start = np.array([-8.0, 1.0]) if angle_deg == 0 else R.T @ np.array([-8.0, 1.0])
        self.minimum, self.f_min = np.zeros(2), 0.0
        self.steps = 100
        self.log_levels = False
        # the plotted region: (x range, y range); the axis-aligned valley is drawn stretched in y
        self.view = ((-9.0, 2.5), (-1.6, 1.6)) if angle_deg == 0 else ((-7.5, 2.0), (-7.5, 2.0))

    def value(self, x, y):
        """f at points (x, y): NumPy arrays of any (matching) shape."""
        (a, b), (_, c) = self.A
        return 0.5 * (a * x * x + 2 * b * x * y + c * y * y)

    def __call__(self, p):
        """f and its gradient at the point p."""
        return 0.5 * p @ self.A @ p, self.A @ p


class Rosenbrock:
    name = "Rosenbrock"
    start = np.array([-1.2, 1.0])
    minimum, f_min = np.array([1.0, 1.0]), 0.0
    steps = 2000
    log_levels = True
    view = ((-2.0, 2.0), (-0.6, 2.6))

    def value(self, x, y):
        return (1 - x) ** 2 + 100 * (y - x * x) ** 2

    def __call__(self, p):
        x, y = p
        g = np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])
        return self.value(x, y), g


# -- running one optimizer ----------------------------------------------------------------------
def effective_lr(name, opt, lr):
    """Per-coordinate step size the optimizer applies to its update direction, from its state:
    RMSProp lr / (sqrt(square_avg) + eps) (multiplies the gradient); AdaGrad lr / (sqrt(sum) + eps)
    (multiplies the gradient); Adam (lr / bc1) / (sqrt(exp_avg_sq / bc2) + eps) (multiplies the
    first moment exp_avg). Library defaults for eps, alpha and betas."""
    st = opt.state[0]
    if name == "RMSProp":
        return lr / (np.sqrt(st["square_avg"]) + opt.defaults["eps"])
    if name == "AdaGrad":
        return lr / (np.sqrt(st["sum"]) + opt.defaults["eps"])
    if name == "Adam":
        (b1, b2), t = opt.defaults["betas"], st["step"]
        bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
        return (lr / bc1) / (np.sqrt(st["exp_avg_sq"] / bc2) + opt.defaults["eps"])
    return None


def run(name, lr, fn, steps):
    """Path (steps + 1, 2), f values (steps + 1,), effective lrs (steps, 2) or None."""
    cls, kwargs = OPTIMIZERS[name]
    p = fn.start.astype(np.float64).copy()
    opt = cls([p], lr=lr, **kwargs)
    path, fs, elr = [p.copy()], [], []
    with np.errstate(all="ignore"):  # large lrs diverge during the search: that is expected
        for _ in range(steps):
            f, g = fn(p)
            fs.append(f)
            if not np.all(np.isfinite(g)):
                break
            opt.step([g])
            path.append(p.copy())
            e = effective_lr(name, opt, lr)
            if e is not None:
                elr.append(e.copy())
        fs.append(fn(p)[0])
    return np.array(path), np.array(fs), (np.array(elr) if elr else None)


def score(fs, fn, steps):
    """Mean log10(f - f_min) over the run; inf if it diverged or stopped."""
    if len(fs) < steps + 1 or not np.all(np.isfinite(fs)):
        return np.inf
    return float(np.mean(np.log10(np.maximum(fs - fn.f_min, 1e-300))))


def lr_grid(max_lr):
    """1e-4 .. max_lr, three values per decade (~2.15x apart)."""
    top = np.log10(max_lr)
    return np.logspace(-4, top, round(3 * (float(top) + 4)) + 1)


def best_lr(name, fn, steps, grid):
    scores = [score(run(name, lr, fn, steps)[1], fn, steps) for lr in grid]
    return float(grid[int(np.argmin(scores))])  # argmin keeps the first (smallest) on ties


# -- plots -------------------------------------------------------------------------------------
def lr_label(r):
    return f"lr={r['lr']:.3g}" + (" (edge)" if r["edge"] else "")


def contour_panel(ax, fn, runs):
    (x0, x1), (y0, y1) = fn.view
    X, Y = np.meshgrid(np.linspace(x0, x1, 400), np.linspace(y0, y1, 400))
    Z = fn.value(X, Y)
    levels = np.logspace(-2, np.log10(Z.max()), 20) if fn.log_levels else 20
    ax.contour(X, Y, Z, levels=levels, colors="0.75", linewidths=0.7)
    for i, (name, r) in enumerate(runs.items()):
        path = r["path"]  # earlier entries drawn wider so that overlapping paths stay visible
        ax.plot(path[:, 0], path[:, 1], "-", color=COLORS[name], lw=2.8 - 0.4 * i, alpha=0.8,
                marker=".", ms=3, label=f"{name} ({lr_label(r)})")
        ax.plot(*path[-1], "X", color=COLORS[name], ms=10, mec="k", mew=0.8)  # where it ended
    ax.plot(*fn.start, "ko", ms=6)
    ax.plot(*fn.minimum, "k*", ms=12)
    ax.set_xlim(x0, x1)  # paths may leave the view: the lines then run off the edge
    ax.set_ylim(y0, y1)
    ax.set_title(f"{fn.name}: {fn.steps} steps")
    ax.legend(fontsize=8, loc="best", framealpha=0.9)


def make_plots(all_runs, out_dir, max_lr):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fns = list(all_runs)
    paths = []
    note = (f"black dot: start, X: end, star: minimum; each lr is the best of a grid up to "
            f"{max_lr:g} ((edge): the top of the grid)")
    # 1. the quadratics side by side, Rosenbrock alone
    quads = [fn for fn in fns if isinstance(fn, Quadratic)]
    fig, axes = plt.subplots(1, len(quads), figsize=(16, 6.2), squeeze=False,
                             gridspec_kw=dict(width_ratios=[1.5, 1][:len(quads)]))
    for ax, fn in zip(axes[0], quads):
        contour_panel(ax, fn, all_runs[fn])
    fig.suptitle(note)
    fig.tight_layout()
    paths.append(os.path.join(out_dir, "trajectories_quadratic.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 6.5))
    contour_panel(ax, fns[-1], all_runs[fns[-1]])
    fig.suptitle(note, fontsize=10)
    fig.tight_layout()
    paths.append(os.path.join(out_dir, "trajectories_rosenbrock.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    # 2. f - f* over steps (top) and effective lrs per coordinate (bottom)
    fig, axes = plt.subplots(2, len(fns), figsize=(5.5 * len(fns), 8.5), squeeze=False)
    for j, fn in enumerate(fns):
        ax_f, ax_e = axes[0, j], axes[1, j]
        for name, r in all_runs[fn].items():
            ax_f.plot(np.maximum(r["f"] - fn.f_min, F_FLOOR), color=COLORS[name],
                      label=f"{name} ({lr_label(r)})")
            if r["elr"] is not None:
                t = np.arange(1, len(r["elr"]) + 1)
                ax_e.plot(t, r["elr"][:, 0], color=COLORS[name], label=f"{name}: x")
                ax_e.plot(t, r["elr"][:, 1], color=COLORS[name], ls="--", label=f"{name}: y")
        ax_f.set_yscale("log")
        ax_f.set_title(f"{fn.name}: f - f* (floored at {F_FLOOR:g})")
        ax_f.legend(fontsize=8)
        ax_e.set_yscale("log")
        ax_e.set_xlabel("step")
        ax_e.set_title("effective lr per coordinate (solid x, dashed y)")
        lo, hi = ax_e.get_ylim()
        ax_e.set_ylim(lo, hi * 10)  # headroom for the legend
        ax_e.legend(fontsize=8, loc="upper center", ncol=3)
        for ax in (ax_f, ax_e):
            ax.grid(alpha=0.3)
    fig.suptitle("Adam's effective lr multiplies its first moment exp_avg; RMSProp's and "
                 "AdaGrad's multiply the gradient")
    fig.tight_layout()
    paths.append(os.path.join(out_dir, "trajectories_effective_lr.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT,
                    help="output directory (default: plots/ next to this script)")
    ap.add_argument("--max-lr", type=float, default=1.0, help="top of the lr grid")
    ap.add_argument("--tiny", action="store_true",
                    help="smoke run: 10x fewer steps, coarse lr grid")
    args = ap.parse_args(argv)
    fns = [Quadratic(100.0, 0.0), Quadratic(100.0, 45.0), Rosenbrock()]
    grid = lr_grid(args.max_lr)
    if args.tiny:
        grid = grid[::5]
        for fn in fns:
            fn.steps //= 10

    t0 = time.perf_counter()
    all_runs = {}
    print(f"{'function':<28} {'optimizer':<14} {'lr':>8} {'final f - f*':>13} "
          f"{'final |p - p*|':>15}")
    for fn in fns:
        all_runs[fn] = {}
        for name in OPTIMIZERS:
            lr = best_lr(name, fn, fn.steps, grid)
            path, fs, elr = run(name, lr, fn, fn.steps)
            all_runs[fn][name] = dict(lr=lr, path=path, f=fs, elr=elr, edge=lr == grid[-1])
            dist = np.linalg.norm(path[-1] - fn.minimum)
            print(f"{fn.name:<28} {name:<14} {lr:>8.3g}{'*' if lr == grid[-1] else ' '} "
                  f"{fs[-1] - fn.f_min:>13.3e} {dist:>15.3e}")
    print("* = top of the lr grid")
    os.makedirs(args.out, exist_ok=True)
    paths = make_plots(all_runs, args.out, args.max_lr)
    print(f"wrote {', '.join(paths)}; done in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
