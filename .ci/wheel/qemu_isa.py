"""Run under qemu-user with a given CPU model: the dispatcher must pick the expected ISA by
itself, refuse ISAs the CPU lacks, and every rule's benchmark variants (plus weight decay), in
float32 and float64 over a ragged, misaligned tensor, must match the rule's NumPy form in
float64; then the same with 2 threads must be bit-identical.

Usage: qemu_isa.py EXPECTED_ISA SITE_PACKAGES
"""

from __future__ import annotations

import os
import sys

import numpy as np


def close(got, want, dtype, what):
    rtol, atol = (1e-5, 1e-6) if dtype == np.float32 else (1e-12, 1e-13)
    scale = max(1.0, float(np.max(np.abs(want))))
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=rtol, atol=atol * scale, err_msg=what)


def configs(spec):
    for v in spec.variants:
        yield dict(v.kwargs)
        yield {**v.kwargs, "weight_decay": 0.1}


def run_all(adaptopt, specs, n=3 * 4096 + 301, steps=3):
    """Every configuration; returns the final params (n: four 4096-element chunks for the threads
    to share, and a ragged tail for 4, 8, 16 lanes)."""
    out = []
    for dtype in (np.float32, np.float64):
        for spec in specs:
            cls = adaptopt.optim.Optimizer._classes[spec.name]
            for k, cfg in enumerate(configs(spec)):
                rng = np.random.default_rng(1000 + 10 * k + spec.id)
                p0 = rng.standard_normal(n).astype(dtype)
                grads = [rng.standard_normal(n).astype(dtype) for _ in range(steps)]
                p = np.empty(n + 1, dtype)[1:]  # contiguous, not vector-aligned
                p[...] = p0
                opt = cls([p], **cfg)
                ref, ref_state = p0.astype(np.float64), {}
                ref_step = spec.numpy_stepper(cfg)
                for g in grads:
                    opt.step([g])
                    ref_step(ref, g.astype(np.float64), ref_state)
                what = f"{spec.name}{cfg} {np.dtype(dtype).name} under {adaptopt.isa()}"
                close(p, ref, dtype, f"params of {what}")
                state = opt.state_dict()["state"][0]
                assert state["step"] == ref_state["step"] == steps, what
                for key, want in ref_state.items():
                    if isinstance(want, np.ndarray):
                        close(state[key], want, dtype, f"state[{key!r}] of {what}")
                out.append(p.copy())
    return out


def main() -> None:
    expect, site = sys.argv[1], os.path.realpath(sys.argv[2]) + os.sep
    assert "ADAPTOPT_ISA" not in os.environ
    import adaptopt
    from adaptopt import _core, _rules

    for mod in (adaptopt, _core):
        assert os.path.realpath(mod.__file__).startswith(site), f"{mod.__name__} from {mod.__file__}"
    isa, avail = adaptopt.isa(), adaptopt.available_isas()
    assert isa == expect, f"dispatcher chose {isa!r} (available {avail}), expected {expect!r}"
    assert avail[-1] == isa, f"default {isa!r} is not the best of {avail}"
    for other in ("avx2", "avx512"):
        if other not in avail:  # refused, never executed
            try:
                adaptopt.set_isa(other)
            except RuntimeError:
                pass
            else:
                raise AssertionError(f"set_isa({other!r}) accepted on a CPU without it")
            assert adaptopt.isa() == isa

    single = run_all(adaptopt, _rules.SPECS)
    adaptopt.set_num_threads(2)
    _core.set_parallel_threshold(1)  # the steps now run on 2 threads
    threaded = run_all(adaptopt, _rules.SPECS)
    for a, b in zip(single, threaded):
        assert a.tobytes() == b.tobytes(), "2 threads differ from 1 thread"
    print(f"isa={isa} available={avail}: {len(single)} runs ({len(_rules.SPECS)} rules, their benchmark "
          "variants with and without weight decay, float32/float64) match the NumPy float64 form; "
          "1 and 2 threads bit-identical")


if __name__ == "__main__":
    main()
