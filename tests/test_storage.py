"""Compact storage (issue 9): float16/bfloat16 params with round-to-nearest-even, master weights
and stochastic rounding; bfloat16 and 8-bit state. References model each rounding: NumPy's and
ml_dtypes' nearest-even casts, and the 8-bit code re-implemented here in NumPy from its
definition (cpp/src/kernels/storage.h) — independent of the kernels."""

import adaptopt
import ml_dtypes
import numpy as np
import pytest
from adaptopt import _core, _rules

BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
HALVES = [F16, BF16]
half_ids = ["float16", "bfloat16"]
BLOCK = _core.Q8_BLOCK


def cls(name):
    return adaptopt.optim.Optimizer._classes[name]


# ---------------------------------------------------------------- the 8-bit code in NumPy

def q8_decode_ref(codes, absmax, unsigned):
    """The code's definition: sign + E4M3 (bias 15), or E5M3 (bias 31) without sign; 0x80 / 0 is
    a non-finite value; times absmax / 1.875 per block."""
    c = codes.astype(np.int64).ravel()
    bias = 31 if unsigned else 15
    mag = c if unsigned else c & 0x7F
    e, m = mag >> 3, mag & 7
    y = np.where(e == 0, m * 2.0 ** (-bias - 2), (1 + m / 8) * 2.0 ** (e - bias))
    if not unsigned:
        y = np.where(c & 0x80, -y, y)
    nonfinite = c == (0 if unsigned else 0x80)
    scale = np.repeat(absmax.astype(np.float32) / np.float32(1.875), BLOCK)[: c.size]
    out = (y.astype(np.float32) * scale).astype(np.float32)
    return np.where(nonfinite, np.nan, out).reshape(codes.shape)


def q8_encode_ref(x, unsigned):
    """Nearest-even rounding of |x| * (1.875 / absmax) onto the code's grid, absmax over the
    finite values of each block; zero is not representable unsigned (the smallest code)."""
    x = np.asarray(x, np.float32).ravel()
    n = x.size
    absmax = np.zeros(-(-n // BLOCK), np.float32)
    codes = np.zeros(n, np.uint8)
    bias = 31 if unsigned else 15
    for b in range(absmax.size):
        blk = x[b * BLOCK:(b + 1) * BLOCK]
        fin = np.isfinite(blk)
        a = np.float32(np.max(np.abs(blk[fin]), initial=0.0))
        absmax[b] = a
        inv = np.float32(1.875) / a if a > 0 else np.float32(0)
        with np.errstate(invalid="ignore"):  # inf * 0 in an all-zero block
            y = np.minimum(np.abs(blk).astype(np.float32) * inv, np.float32(1.875)).astype(np.float64)
        # every code value, ascending, and nearest-even choice among them (ties to the even code)
        grid = q8_decode_ref(np.arange(128 if not unsigned else 256, dtype=np.uint8) | (0 if unsigned else 0),
                             np.full(1, 1.875, np.float32), unsigned).astype(np.float64)
        grid = np.nan_to_num(grid, nan=-1.0)  # the non-finite code is never chosen
        idx = np.searchsorted(grid, y)
        lo = np.clip(idx - 1, 0, grid.size - 1)
        hi = np.clip(idx, 0, grid.size - 1)
        dlo, dhi = y - grid[lo], grid[hi] - y
        pick = np.where(dhi < dlo, hi, np.where(dlo < dhi, lo, np.where(hi % 2 == 0, hi, lo)))
        mag = pick if not unsigned else np.maximum(pick, 1)
        code = mag | (0 if unsigned else ((np.signbit(blk) & (mag > 0)).astype(np.int64) << 7))
        code = np.where(fin, code, 0 if unsigned else 0x80)
        codes[b * BLOCK:(b + 1) * BLOCK] = code
    return codes, absmax


def _q8_inputs(rng, n):
    x = rng.standard_normal(n).astype(np.float32) * np.exp(rng.uniform(-30, 5, n)).astype(np.float32)
    x[rng.integers(0, n, 4)] = -0.0  # a negative zero, and negatives below the smallest code,
    x[rng.integers(0, n, 4)] = -1e-30  # must encode as +0, not as the non-finite code
    x[rng.integers(0, n, 8)] = 0.0
    x[rng.integers(0, n, 3)] = np.nan
    x[rng.integers(0, n, 2)] = np.inf
    if n > 20:
        x[:20] = x[20]  # a run of equal values
    return x


@pytest.mark.parametrize("unsigned", [False, True], ids=["signed", "unsigned"])
def test_q8_code_matches_its_definition(unsigned, isa):
    rng = np.random.default_rng(0)
    for n in (1, 7, BLOCK, BLOCK + 3, 5 * BLOCK - 1):
        x = _q8_inputs(rng, n)
        if unsigned:
            x = np.abs(x)
        codes, absmax = _core.q8_encode(x, unsigned)
        want_codes, want_absmax = q8_encode_ref(x, unsigned)
        np.testing.assert_array_equal(absmax, want_absmax)
        np.testing.assert_array_equal(codes, want_codes, err_msg=f"n={n}")
        back = _core.q8_decode(codes, absmax, unsigned)
        np.testing.assert_array_equal(back, q8_decode_ref(codes, absmax, unsigned))
        fin = np.isfinite(x)
        assert np.all(np.isnan(back[~fin])) and not np.any(np.isnan(back[fin]))
        # relative error of the E?M3 grid: at most 2^-4 above the subnormal range
        a = np.repeat(absmax, BLOCK)[:n]
        big = fin & (np.abs(x) > a * 2.0 ** (-12 if not unsigned else -28))
        assert np.all(np.abs(back[big] - x[big]) <= np.abs(x[big]) * 2.0**-4 + 1e-30)


# ---------------------------------------------------------------- 16-bit params


def _problem(dtype, n=1000, seed=0):
    rng = np.random.default_rng(seed)
    p = (rng.standard_normal(n) * 0.5).astype(np.float32)
    grads = [(rng.standard_normal(n) * 0.1).astype(np.float32) for _ in range(6)]
    return p.astype(dtype), [g.astype(dtype) for g in grads]


@pytest.mark.parametrize("dtype", HALVES, ids=half_ids)
@pytest.mark.parametrize("name", ["Adam", "RMSprop", "SGD", "Adagrad"])
def test_master_weights_equal_a_float32_run(name, dtype, isa):
    """The master is an fp32 run fed with the upcast gradients, bit for bit; the param is the
    master rounded to nearest even."""
    p16, grads = _problem(dtype)
    kw = dict(lr=1e-2) if name != "SGD" else dict(lr=1e-2, momentum=0.9)
    opt = cls(name)([p16], master_weights=True, **kw)
    p32 = p16.astype(np.float32)
    ref = cls(name)([p32], **kw)
    for g in grads:
        opt.step([g])
        ref.step([g.astype(np.float32)])
    master = opt.state[0]["master"]
    np.testing.assert_array_equal(master, p32)
    np.testing.assert_array_equal(p16.view(np.uint16), p32.astype(dtype).view(np.uint16))


@pytest.mark.parametrize("dtype", HALVES, ids=half_ids)
def test_rounded_params_follow_fp32_math_rounded_each_step(dtype, isa):
    """Round mode: each step is fp32 math on the upcast param, rounded to nearest even."""
    p16, grads = _problem(dtype)
    opt = adaptopt.Adam([p16], lr=1e-2)
    p = p16.astype(np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, g16 in enumerate(grads, start=1):
        opt.step([g16])
        g = g16.astype(np.float32)
        work = p.copy()
        ref = adaptopt.Adam([work], lr=1e-2)
        ref.load_state_dict({"state": {0: {"step": t - 1, "exp_avg": m, "exp_avg_sq": v}},
                             "param_groups": ref.state_dict()["param_groups"]})
        ref.step([g])
        m, v = ref.state[0]["exp_avg"].copy(), ref.state[0]["exp_avg_sq"].copy()
        p = work.astype(dtype).astype(np.float32)
        np.testing.assert_array_equal(p16.astype(np.float32), p)


@pytest.mark.parametrize("dtype", HALVES, ids=half_ids)
def test_stochastic_rounding_is_unbiased_and_reproducible(dtype):
    """Updates far below half an ulp: nearest rounding loses them all, stochastic rounding
    keeps them on average; the bits do not depend on the thread count or the ISA."""
    n, steps, lr = 4096, 64, 1e-4
    start = np.full(n, 1.0, np.float32).astype(dtype)  # ulp(1) = 2^-7 (bf16) or 2^-10 (f16)
    g = np.full(n, 1.0, np.float32).astype(dtype)
    results = {}
    for isa in adaptopt.available_isas():
        for threads in (1, 2):
            adaptopt.set_isa(isa)
            adaptopt.set_num_threads(threads)
            _core.set_parallel_threshold(64)
            p = start.copy()
            opt = adaptopt.SGD([p], lr=lr, stochastic_rounding=True, seed=3)
            for _ in range(steps):
                opt.step([g])
            results[isa, threads] = p.copy()
    ref = next(iter(results.values()))
    for key, p in results.items():
        np.testing.assert_array_equal(p.view(np.uint16), ref.view(np.uint16), err_msg=str(key))
    drift = float(np.mean(ref.astype(np.float64)) - 1.0)
    expected = -lr * steps
    ulp = 2.0**-7 if dtype == BF16 else 2.0**-10
    assert abs(drift - expected) < 0.1 * abs(expected), (drift, expected)
    # nearest rounding loses every update: the sub-ulp updates are the point
    p = start.copy()
    opt = adaptopt.SGD([p], lr=lr)
    for _ in range(steps):
        opt.step([g])
    assert np.all(p == start) and lr < ulp / 2
    # another seed gives other bits, the same mean
    p = start.copy()
    opt = adaptopt.SGD([p], lr=lr, stochastic_rounding=True, seed=4)
    for _ in range(steps):
        opt.step([g])
    assert not np.array_equal(p.view(np.uint16), ref.view(np.uint16))
    assert abs(float(np.mean(p.astype(np.float64))) - 1.0 - expected) < 0.1 * abs(expected)


# ---------------------------------------------------------------- compact state


@pytest.mark.parametrize("state_dtype", ["bfloat16", "8bit"])
@pytest.mark.parametrize("spec", _rules.SPECS, ids=lambda s: s.name)
def test_compact_state_follows_its_rounding(spec, state_dtype, isa):
    """Each step equals the float32 step on the decoded state, with the new state re-encoded:
    one step at a time against a float32 optimizer loaded with the decoded state."""
    rng = np.random.default_rng(1)
    n = 3 * BLOCK + 17
    p = rng.standard_normal(n).astype(np.float32)
    kw = {"momentum": 0.9} if spec.name in ("SGD", "RMSprop") else {}
    opt = cls(spec.name)([p], state_dtype=state_dtype, **kw)
    for t in range(1, 5):
        g = (rng.standard_normal(n) * 0.1).astype(np.float32)
        before = opt.state_dict(dequantize=True)
        work = p.copy()
        ref = cls(spec.name)([work], **kw)
        if before["state"]:
            ref.load_state_dict({"state": before["state"], "param_groups": ref.state_dict()["param_groups"],
                                 "adaptopt": before["adaptopt"]})
        opt.step([g])
        ref.step([g])
        np.testing.assert_array_equal(p, work, err_msg=f"params at step {t}")
        got = opt.state_dict(dequantize=True)["state"][0]
        for k, (slot, uns) in enumerate(zip(spec.slots, spec.unsigned_slots)):
            if slot not in ref.state[0]:
                continue
            want = ref.state[0][slot]
            if state_dtype == "bfloat16":
                want = want.astype(BF16).astype(np.float32)
            else:
                want = q8_decode_ref(*q8_encode_ref(want, uns), uns)
            np.testing.assert_array_equal(got[slot], want, err_msg=f"{slot} at step {t}")


@pytest.mark.parametrize("state_dtype", [None, "bfloat16", "8bit"])
@pytest.mark.parametrize("dtype", [np.dtype(np.float32), *HALVES], ids=["float32", *half_ids])
def test_compact_state_dict_round_trips_bit_exact(tmp_path, dtype, state_dtype):
    rng = np.random.default_rng(2)
    p = rng.standard_normal(700).astype(np.float32).astype(dtype)
    mode = {"master_weights": True} if dtype != np.float32 else {}
    opt = adaptopt.Adam([p], state_dtype=state_dtype, **mode)
    grads = [(rng.standard_normal(700) * 0.1).astype(dtype) for _ in range(4)]
    for g in grads[:2]:
        opt.step([g])
    sd = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in opt.state_dict()["state"][0].items()}
    opt.save(tmp_path / "c.npz")
    q = p.copy()
    other = adaptopt.Adam([q], state_dtype=state_dtype, **mode)
    other.load(tmp_path / "c.npz")
    third = adaptopt.Adam([p.copy()], state_dtype=state_dtype, **mode)
    third.load_state_dict(opt.state_dict())
    for o in (other, third):
        for k, v in o.state[0].items():
            want = sd[k]
            if isinstance(v, np.ndarray):
                assert v.dtype == want.dtype and v.tobytes() == want.tobytes(), k
            else:
                assert v == want, k
    for g in grads[2:]:
        opt.step([g])
        other.step([g])
    assert p.tobytes() == q.tobytes()


def test_dequantized_state_dict_loads_into_torch_and_back():
    torch = pytest.importorskip("torch")
    p = np.random.default_rng(3).standard_normal(600).astype(np.float32)
    opt = adaptopt.Adam([p], state_dtype="8bit")
    for _ in range(3):
        opt.step([np.full(600, 0.1, np.float32)])
    sd = opt.state_dict(dequantize=True)
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    assert all(v.dtype == np.float32 for k, v in sd["state"][0].items() if k != "step")
    t = torch.from_numpy(p.copy())
    topt = torch.optim.Adam([t])
    topt.load_state_dict({"state": {0: {"step": torch.tensor(3.0), **{k: torch.from_numpy(v) for k, v in
                                                                      sd["state"][0].items() if k != "step"}}},
                          "param_groups": topt.state_dict()["param_groups"]})
    back = adaptopt.Adam([p.copy()], state_dtype="8bit")
    back.load_state_dict(sd)  # float32 arrays are quantized on load
    got = back.state_dict(dequantize=True)["state"][0]
    for k in ("exp_avg", "exp_avg_sq"):
        np.testing.assert_array_equal(got[k], sd["state"][0][k])  # decode(encode(decoded)) is exact


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(("dtype", "options", "pattern"), [
    (np.float64, dict(state_dtype="8bit"), r"Invalid state_dtype.*float64"),
    (np.float64, dict(state_dtype="bfloat16"), r"Invalid state_dtype.*float64"),
    (np.float32, dict(master_weights=True), r"Invalid master_weights.*float16 or bfloat16"),
    (np.float32, dict(stochastic_rounding=True), r"Invalid stochastic_rounding.*float16 or bfloat16"),
    (np.float16, dict(master_weights=True, stochastic_rounding=True), r"exclude each other"),
    (np.float32, dict(state_dtype="int8"), r"Invalid state_dtype"),
    (np.float32, dict(seed=-1), r"Invalid seed"),
])
def test_unsupported_combinations_name_the_option(dtype, options, pattern):
    p = np.ones(10, dtype)
    with pytest.raises((TypeError, ValueError), match=pattern):
        adaptopt.Adam([p], **options)
    opt = adaptopt.Adam([np.ones(10, np.float32)])
    with pytest.raises((TypeError, ValueError), match=pattern):
        opt.add_param_group({"params": [p], **options})


def test_gradient_dtype_must_equal_the_param_dtype():
    p = np.ones(10, BF16)
    opt = adaptopt.Adam([p])
    with pytest.raises(TypeError, match=r"grads\[0\].*bfloat16"):
        opt.step([np.ones(10, np.float32)])
    assert np.all(p == 1)


def test_storage_options_cannot_change_once_there_is_state():
    p = np.ones(10, np.float32)
    opt = adaptopt.Adam([p])
    opt.param_groups[0]["state_dtype"] = "8bit"  # no state yet: taken
    opt.step([np.ones(10, np.float32)])
    assert opt.state[0]["exp_avg"].dtype == np.uint8
    opt.param_groups[0]["state_dtype"] = "bfloat16"
    with pytest.raises(ValueError, match="cannot change once the group has state"):
        opt.step([np.ones(10, np.float32)])


def test_sparse_rows_with_8bit_state_are_refused():
    p = np.ones((4, 3), np.float32)
    opt = adaptopt.Adam([p], state_dtype="8bit")
    with pytest.raises(ValueError, match="sparse rows cannot update 8-bit state"):
        opt.step([adaptopt.SparseRows([1], np.ones((1, 3), np.float32))])
    opt.sparse_mode = "dense"
    opt.step([adaptopt.SparseRows([1], np.ones((1, 3), np.float32))])


def test_bfloat16_sparse_rows_and_clipping():
    p = np.ones((4, 3), BF16)
    opt = adaptopt.Adam([p], lr=0.1, max_grad_norm=0.5, state_dtype="bfloat16")
    opt.step([adaptopt.SparseRows([0, 2], np.ones((2, 3), BF16))])
    assert opt.last_grad_norm == pytest.approx(np.sqrt(6))
    assert np.all(p[1] == 1) and np.all(p[0] < 1)
