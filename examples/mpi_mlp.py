"""Data-parallel training of a NumPy MLP on scikit-learn's digits with a ZeRO-sharded optimizer.

Every rank holds the whole model; each global mini-batch is split between the ranks, each rank
computes the gradient of its part, and ``ZeroRedundancyOptimizer`` averages the gradients (a
reduce-scatter), steps its shard of the optimizer state and all-gathers the updated weights.
Rank 0 also trains the same model in one process, on the whole mini-batches, with the plain
optimizer: the two loss curves agree to float32 rounding.

    mpiexec -n 2 python examples/mpi_mlp.py            # ~5 s; any number of ranks
    mpiexec -n 3 python examples/mpi_mlp.py --tiny     # smoke run
    python examples/mpi_mlp.py                         # one rank works too

The weights are views of the optimizer's flat buffer (``flat_params``) and the backward pass
writes its gradients straight into ``grad_buffers()``, so a step copies nothing. Across hosts:
``mpiexec -hosts a,b -n 4 python examples/mpi_mlp.py`` (MPICH; Open MPI: ``--host a,b``), or under
Slurm ``srun -n 4 python examples/mpi_mlp.py`` with mpi4py built against the cluster's MPI.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # tiny matrices: one BLAS thread per rank
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # one adaptopt thread per rank

import numpy as np
from mpi4py import MPI

import adaptopt as ao
from adaptopt.distributed import ZeroRedundancyOptimizer

ao.set_num_threads(1)  # the library's own setter: whatever runs adaptopt's threads, one per rank
COMM = MPI.COMM_WORLD
RANK, P = COMM.Get_rank(), COMM.Get_size()


def load_data(seed: int = 0):
    """Digits split 1347/450 (stratified), standardized with the training statistics, float32."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X, y = digits.data.astype(np.float32), digits.target.astype(np.int64)
    Xtr, Xva, ytr, yva = train_test_split(X, y, test_size=0.25, stratify=y, random_state=seed)
    mean, std = Xtr.mean(0), Xtr.std(0)
    std[std == 0] = 1.0
    return (Xtr - mean) / std, ytr, (Xva - mean) / std, yva


def shapes_of(sizes):
    out = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        out += [(fan_in, fan_out), (fan_out,)]
    return out


def init_into(params, sizes, seed):
    """He-initialised weights and zero biases, written into ``params`` in place."""
    rng = np.random.default_rng(seed)
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        params[2 * i][...] = (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        params[2 * i + 1][...] = 0.0


def forward(params, X):
    acts, h = [X], X
    n = len(params) // 2
    for i in range(n):
        h = h @ params[2 * i] + params[2 * i + 1]
        if i < n - 1:
            h = np.maximum(h, 0)
            acts.append(h)
    return h, acts


def loss_of(logits, y):
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean()), logp


def backward_into(grads, params, X, y, denom):
    """Writes into ``grads`` the gradient of sum(per-sample losses) / denom over (X, y)."""
    logits, acts = forward(params, X)
    _, logp = loss_of(logits, y)
    d = np.exp(logp)
    d[np.arange(len(y)), y] -= 1
    d /= denom
    for i in reversed(range(len(params) // 2)):
        np.matmul(acts[i].T, d, out=grads[2 * i])
        np.sum(d, axis=0, out=grads[2 * i + 1])
        if i > 0:
            d = (d @ params[2 * i].T) * (acts[i] > 0)


def evaluate(params, X, y):
    logits, _ = forward(params, X)
    loss, _ = loss_of(logits, y)
    return loss, float((logits.argmax(axis=1) == y).mean())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32, help="global mini-batch, split between the ranks")
    ap.add_argument("--hidden", type=int, nargs="+", default=[64])
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tiny", action="store_true", help="smoke run: 2 epochs")
    args = ap.parse_args(argv)
    if args.tiny:
        args.epochs = 2

    Xtr, ytr, Xva, yva = load_data()
    sizes = [Xtr.shape[1], *args.hidden, 10]
    shapes = shapes_of(sizes)
    # The model's weights live in the optimizer's flat buffer: no copies at each step.
    params = ZeroRedundancyOptimizer.flat_params(shapes, np.float32, comm=COMM)
    init_into(params, sizes, args.seed)
    lr = ao.schedules.cosine(args.lr, total=args.epochs * -(-len(Xtr) // args.batch_size))
    opt = ZeroRedundancyOptimizer(params, ao.Adam, COMM, lr=lr, max_grad_norm=5.0)
    grads = opt.grad_buffers()

    # The same run in one process, on rank 0: whole mini-batches, the plain optimizer.
    ref = ref_opt = ref_grads = None
    if RANK == 0:
        ref = [np.empty(s, np.float32) for s in shapes]
        init_into(ref, sizes, args.seed)
        ref_opt = ao.Adam(ref, lr=lr, max_grad_norm=5.0)
        ref_grads = [np.empty(s, np.float32) for s in shapes]

    rng = np.random.default_rng(args.seed + 1000)  # the same batch order on every rank
    curves = {"zero": [], "one": []}
    t0 = time.perf_counter()
    for epoch in range(args.epochs + 1):
        curves["zero"].append((*evaluate(params, Xtr, ytr), *evaluate(params, Xva, yva)))
        if RANK == 0:
            curves["one"].append((*evaluate(ref, Xtr, ytr), *evaluate(ref, Xva, yva)))
        if epoch == args.epochs:
            break
        order = rng.permutation(len(Xtr))
        for start in range(0, len(order), args.batch_size):
            idx = order[start:start + args.batch_size]
            mine = np.array_split(idx, P)[RANK]
            # Each rank's gradient is sum(its losses) / len(batch) * P: their mean over the
            # ranks is the gradient of the batch's mean loss, whatever the split.
            backward_into(grads, params, Xtr[mine], ytr[mine], len(idx) / P)
            opt.step()
            if RANK == 0:
                backward_into(ref_grads, ref, Xtr[idx], ytr[idx], len(idx))
                ref_opt.step(ref_grads)
    elapsed = time.perf_counter() - t0

    if RANK == 0:
        print(f"digits MLP {sizes}, Adam (cosine lr from {args.lr:g}, max_grad_norm 5), global batch "
              f"{args.batch_size} over {P} rank(s), {args.epochs} epochs, {elapsed:.1f} s")
        print(f"{'epoch':>5} {'train loss':>12} {'(1 process)':>12} {'val loss':>10} {'(1 process)':>12} "
              f"{'val acc %':>10}")
        for e, (z, o) in enumerate(zip(curves["zero"], curves["one"])):
            if e % max(1, args.epochs // 10) == 0 or e == args.epochs:
                print(f"{e:>5} {z[0]:>12.5f} {o[0]:>12.5f} {z[2]:>10.5f} {o[2]:>12.5f} {100 * z[3]:>10.2f}")
        diff = max(abs(z[k] - o[k]) for z, o in zip(curves["zero"], curves["one"]) for k in (0, 2))
        wdiff = max(float(np.max(np.abs(p - r))) for p, r in zip(params, ref))
        state = opt.optim.state_dict()["state"]
        mine = sum(v.nbytes for e in state.values() for v in e.values() if isinstance(v, np.ndarray))
        print(f"largest difference between the curves: {diff:.2e} (losses); between the weights: {wdiff:.2e}")
        print(f"optimizer state on rank 0: {mine} bytes (one process: {sum(8 * int(np.prod(s)) for s in shapes)})")
        assert diff < 1e-3, "the distributed run left the single-process curve"


if __name__ == "__main__":
    main()
