"""The distributed step under mpiexec: per-step time split into reduce-scatter, local step and
all-gather, state bytes per rank, against one process's step, all measured in one run.

    mpiexec -n 2 python -m adaptopt.bench.mpi --sizes 1e7,1e8 --json out.json

For each size N (one group of ``--params`` float32 params totalling N elements, made by
``ZeroRedundancyOptimizer.flat_params`` and stepped from ``grad_buffers()``: the zero-copy path),
every repetition measures, in this order, each behind a barrier and as the slowest rank's time:

* ``step``: one ``ZeroRedundancyOptimizer.step()``, with its phases (``last_timings``: time spent
  waiting for the reduce-scatter, in the local native step (the 1/P is its gradient scale),
  waiting for the all-gather);
* ``reduce_scatter``: the same in-place ``Ireduce_scatter_block`` of every bucket, alone, one
  in flight at a time as in the step;
* ``all_gather``: the same in-place ``Iallgather`` of every bucket, alone, all in flight as in
  the step;
* ``single``: ``optimizer_class`` over N elements in one process (rank 0 steps while the other
  ranks sleep in a non-busy barrier), with the same thread count per rank.

The target at P ranks: step <= (reduce_scatter + all_gather + single / P) * 1.1, on medians.
State bytes per rank are the local optimizer's state arrays, against 1/P of the total.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np


def _sizes(text: str) -> List[int]:
    return [int(float(t)) for t in text.split(",") if t.strip()]


def _idle_barrier(comm: Any) -> None:
    """A barrier that sleeps instead of spinning (MPICH's barrier polls a core)."""
    req = comm.Ibarrier()
    while not req.Test():
        time.sleep(2e-4)


def _timed(comm: Any, fn: Callable[[], None]) -> float:
    """fn() on every rank behind a barrier; the slowest rank's time."""
    comm.Barrier()
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    return comm.allreduce(dt, op=_max())


def _max() -> Any:
    from mpi4py import MPI
    return MPI.MAX


def _cpu_sample(comm: Any) -> Tuple[float, float, float]:
    """(wall clock, busy CPU seconds of the machine, CPU seconds of every rank together)."""
    from .measure import cpu_sample

    wall, busy, me = cpu_sample()
    return wall, busy, comm.allreduce(me)


def other_cores(comm: Any, start: Tuple[float, float, float]) -> float:
    """Cores other processes kept busy since ``start`` (every rank on one machine)."""
    from .measure import other_load

    return other_load(start, _cpu_sample(comm), slack=0.02)


def wait_quiet(comm: Any, threshold: float, window: float, budget: float) -> float:
    """Sleeps until other processes have kept fewer than ``threshold`` cores busy for ``window``
    seconds (at most ``budget`` seconds); returns the seconds waited."""
    t0 = time.perf_counter()
    quiet_since = t0
    while time.perf_counter() - t0 < budget:
        start = _cpu_sample(comm)
        time.sleep(1.0)
        load = comm.bcast(other_cores(comm, start), root=0)
        now = time.perf_counter()
        if load >= threshold:
            quiet_since = now
        elif now - quiet_since >= window:
            break
    return time.perf_counter() - t0


def measure_size(comm: Any, n: int, cls: type, kwargs: Dict[str, Any], nparams: int, reps: int,
                 bucket_bytes: int) -> Dict[str, Any]:
    from mpi4py import MPI

    import adaptopt
    from adaptopt.distributed import ZeroRedundancyOptimizer

    rank, P = comm.Get_rank(), comm.Get_size()
    shapes = [(n // nparams + (1 if i < n % nparams else 0),) for i in range(nparams)]
    params = ZeroRedundancyOptimizer.flat_params(shapes, np.float32, comm=comm, bucket_bytes=bucket_bytes)
    rng = np.random.default_rng(0)
    for p in params:
        p[...] = rng.standard_normal(p.shape, dtype=np.float32)
    opt = ZeroRedundancyOptimizer(params, cls, comm, bucket_bytes=bucket_bytes, **kwargs)
    assert not opt.copies_params
    opt.profile = True
    lay = opt.layouts[0]
    grad = lay.grad

    def fill() -> None:  # the next step's gradients (a backward pass would write them)
        grad.fill(1e-3)

    def step() -> None:
        opt.step()

    def reduce_scatter() -> None:  # as the step does it: one bucket in flight at a time
        for b in lay.buckets:
            region = [grad[b.start:b.start + b.length], MPI.FLOAT]
            if b.equal:
                opt.comm.Ireduce_scatter_block(MPI.IN_PLACE, region, MPI.SUM).Wait()
            else:
                opt.comm.Ireduce_scatter(MPI.IN_PLACE, region, b.counts, MPI.SUM).Wait()

    def all_gather() -> None:
        reqs = []
        for b in lay.buckets:
            region = lay.flat[b.start:b.start + b.length]
            if b.equal:
                reqs.append(opt.comm.Iallgather(MPI.IN_PLACE, [region, MPI.FLOAT]))
            else:
                reqs.append(opt.comm.Iallgatherv(MPI.IN_PLACE, [region, b.counts,
                                                                [r * b.shard for r in range(P)], MPI.FLOAT]))
        MPI.Request.Waitall(reqs)

    # The single-process step: rank 0 alone, its own arrays (allocated only there).
    single_opt: Optional[Any] = None
    if rank == 0:
        sp = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
        sg = [np.full(s, 1e-3, np.float32) for s in shapes]
        single_opt = cls(sp, **kwargs)
        single_opt.step(sg)  # state allocated, pages touched

    def single() -> float:
        if rank == 0:
            t0 = time.perf_counter()
            single_opt.step(sg)  # type: ignore[union-attr]
            dt = time.perf_counter() - t0
            comm.Ibarrier().Wait()
        else:
            dt = 0.0
            _idle_barrier(comm)
        return comm.allreduce(dt, op=MPI.MAX)

    def single_all_threads() -> float:  # one process using every core, for reference
        threads = adaptopt.get_num_threads()
        adaptopt.set_num_threads(os.cpu_count() or 1)
        try:
            return single()
        finally:
            adaptopt.set_num_threads(threads)

    for _ in range(2):  # warm-up: state allocated, buffers paged in
        fill()
        _timed(comm, step)
    rows: Dict[str, List[float]] = {k: [] for k in ("step", "reduce_scatter", "all_gather", "single",
                                                    "single_all_threads")}
    load0 = _cpu_sample(comm)
    phases: Dict[str, List[float]] = {}
    for _ in range(reps):
        fill()
        rows["step"].append(_timed(comm, step))
        t = opt.last_timings or {}
        every = comm.allgather(t)
        for k in t:
            phases.setdefault(k, []).append(max(e[k] for e in every))
        fill()
        rows["reduce_scatter"].append(_timed(comm, reduce_scatter))
        rows["all_gather"].append(_timed(comm, all_gather))
        comm.Barrier()
        rows["single"].append(single())
        comm.Barrier()
        rows["single_all_threads"].append(single_all_threads())
    load = other_cores(comm, load0)
    med = {k: float(np.median(v)) for k, v in rows.items()}
    med_phases = {k: float(np.median(v)) for k, v in phases.items()}
    state_bytes = 0
    for entry in opt.optim.state_dict()["state"].values():
        state_bytes += sum(v.nbytes for v in entry.values() if isinstance(v, np.ndarray))
    every_state = comm.allgather(state_bytes)
    total_state = sum(every_state)
    bound = (med["reduce_scatter"] + med["all_gather"] + med["single"] / P) * 1.1
    return {
        "n": n, "ranks": P, "params": nparams, "buckets": len(lay.buckets), "reps": reps,
        "median_s": med, "step_phases_median_s": med_phases, "all_s": rows,
        "state_bytes_per_rank": every_state, "state_bytes_total": total_state,
        "state_fraction_max": max(every_state) / total_state if total_state else 0.0,
        "state_target": 1.0 / P + 0.01,
        "param_bytes": n * 4, "model_bytes_sent_per_rank": 2 * (P - 1) / P * n * 4,
        "target_s": bound, "target_ratio": med["step"] / bound,
        "other_load_cores": load,
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m adaptopt.bench.mpi", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=_sizes, default=[10**7, 10**8], help="elements, e.g. 1e7,1e8")
    ap.add_argument("--optimizer", default="Adam", help="an adaptopt optimizer class (default Adam)")
    ap.add_argument("--params", type=int, default=4, help="params the N elements are split into")
    ap.add_argument("--reps", type=int, default=7, help="timed repetitions per size (median)")
    ap.add_argument("--bucket-mib", type=float, default=32.0, help="bucket size in MiB")
    ap.add_argument("--threads", type=int, default=1, help="adaptopt threads per rank (default 1)")
    ap.add_argument("--json", help="write the results here (rank 0)")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                    help="before each size, wait (at most this long) until other processes have kept "
                         "fewer than 0.15 cores busy for 10 s")
    args = ap.parse_args(argv)

    from mpi4py import MPI

    import adaptopt

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    adaptopt.set_num_threads(args.threads)
    cls = getattr(adaptopt, args.optimizer)
    results = []
    for n in args.sizes:
        waited = wait_quiet(comm, 0.15, 10.0, args.wait_quiet) if args.wait_quiet > 0 else 0.0
        r = measure_size(comm, n, cls, {}, args.params, args.reps, int(args.bucket_mib * (1 << 20)))
        r["waited_s"] = waited
        results.append(r)
        if rank == 0:
            m, ph = r["median_s"], r["step_phases_median_s"]
            print(f"N={n:.0e} P={r['ranks']} {args.optimizer} buckets={r['buckets']}: step {m['step'] * 1e3:.1f} ms "
                  f"[rs wait {ph.get('reduce_scatter', 0) * 1e3:.1f}, "
                  f"local {ph.get('local_step', 0) * 1e3:.1f}, ag wait {ph.get('all_gather', 0) * 1e3:.1f}] | "
                  f"alone: reduce-scatter {m['reduce_scatter'] * 1e3:.1f}, all-gather {m['all_gather'] * 1e3:.1f}, "
                  f"single-process step {m['single'] * 1e3:.1f} ms | target "
                  f"{r['target_s'] * 1e3:.1f} ms, ratio {r['target_ratio']:.2f} | state/rank "
                  f"{r['state_fraction_max']:.4f} of total (target <= {r['state_target']:.4f}) | single-process, "
                  f"{os.cpu_count()} threads {m['single_all_threads'] * 1e3:.1f} ms | other processes "
                  f"{r['other_load_cores']:.2f} cores", flush=True)
    if rank == 0 and args.json:
        doc = {"command": " ".join([f"mpiexec -n {comm.Get_size()}", "python -m adaptopt.bench.mpi",
                                    *(argv if argv is not None else sys.argv[1:])]),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.processor() or
               platform.machine(), "cpus": os.cpu_count(), "isa": adaptopt.isa(), "threads_per_rank": args.threads,
               "mpi": MPI.Get_library_version().splitlines()[0], "optimizer": args.optimizer, "results": results}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
