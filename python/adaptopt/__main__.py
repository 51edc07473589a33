"""`python -m adaptopt`: a short self-check of this install."""

from __future__ import annotations

import time

import numpy as np

import adaptopt


def _median_seconds(fn, repeats: int = 5) -> float:
    fn()  # warm up: page in the buffers
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _numpy_rmsprop(p, g, v, lr=1e-2, alpha=0.99, eps=1e-8):
    # How an RMSprop step is written by hand with in-place NumPy ufuncs.
    v *= alpha
    v += (1 - alpha) * g * g
    denom = np.sqrt(v)
    denom += eps
    p -= lr * g / denom


def main() -> None:
    n = 10_000_000
    rng = np.random.default_rng(0)
    p = rng.standard_normal(n, dtype=np.float32)
    g = rng.standard_normal(n, dtype=np.float32)
    opt = adaptopt.RMSprop([p])
    t_ao = _median_seconds(lambda: opt.step([g]))
    p2, v2 = p.copy(), np.zeros_like(p)
    t_np = _median_seconds(lambda: _numpy_rmsprop(p2, g, v2))

    # Correctness spot check against NumPy in float64 on a small problem.
    q = rng.standard_normal(1000)
    q_ref, s_ref = q.copy(), np.zeros_like(q)
    gq = rng.standard_normal(1000)
    adaptopt.RMSprop([q]).step([gq])
    _numpy_rmsprop(q_ref, gq, s_ref)
    ok = np.allclose(q, q_ref, rtol=1e-12, atol=1e-15)

    print(f"adaptopt {adaptopt.__version__}")
    print(f"isa: {adaptopt.isa()} (available: {', '.join(adaptopt.available_isas())})")
    print(f"threads: {adaptopt.get_num_threads()}")
    print(f"RMSprop step, {n:.0e} float32 elements: adaptopt {t_ao * 1e3:.1f} ms, "
          f"hand-written NumPy {t_np * 1e3:.1f} ms ({t_np / t_ao:.1f}x)")
    print(f"self-check against NumPy float64: {'ok' if ok else 'MISMATCH'}")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
