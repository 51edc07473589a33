"""`python -m adaptopt`: a short self-check of this install."""

from __future__ import annotations

import time

import numpy as np

import adaptopt
from adaptopt import _rules


def _median_seconds(fn, repeats: int = 5) -> float:
    fn()  # warm up: page in the buffers
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    n = 10_000_000
    rng = np.random.default_rng(0)
    p = rng.standard_normal(n, dtype=np.float32)
    g = rng.standard_normal(n, dtype=np.float32)
    opt = adaptopt.RMSprop([p])
    t_ao = _median_seconds(lambda: opt.step([g]))
    # The same step written with NumPy ufuncs (the rule spec's NumPy form).
    p2, state = p.copy(), {}
    numpy_step = _rules.RMSPROP.numpy_stepper({})
    t_np = _median_seconds(lambda: numpy_step(p2, g, state))

    # Correctness spot check of every rule against its NumPy form in float64, on a small problem.
    bad = []
    for spec in _rules.SPECS:
        q = rng.standard_normal(1000)
        q_ref, ref_state = q.copy(), {}
        step = spec.numpy_stepper({})
        opt_q = adaptopt.optim.Optimizer._classes[spec.name]([q])
        for _ in range(3):
            gq = rng.standard_normal(1000)
            opt_q.step([gq])
            step(q_ref, gq, ref_state)
        if not np.allclose(q, q_ref, rtol=1e-12, atol=1e-15):
            bad.append(spec.name)

    print(f"adaptopt {adaptopt.__version__}")
    print(f"isa: {adaptopt.isa()} (available: {', '.join(adaptopt.available_isas())})")
    print(f"threads: {adaptopt.get_num_threads()}")
    print(f"RMSprop step, {n:.0e} float32 elements: adaptopt {t_ao * 1e3:.1f} ms, "
          f"hand-written NumPy {t_np * 1e3:.1f} ms ({t_np / t_ao:.1f}x)")
    print(f"self-check of {len(_rules.SPECS)} rules against NumPy float64: "
          f"{'ok' if not bad else 'MISMATCH in ' + ', '.join(bad)}")
    if bad:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
