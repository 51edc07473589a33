"""adaptopt.torch: torch.optim subclasses over adaptopt's kernels, against torch.optim in real
training loops (schedulers, zero_grad, hooks, closures), state dicts both ways, refusals."""

import copy

import numpy as np
import pytest
from adaptopt import _rules

torch = pytest.importorskip("torch")
import adaptopt.torch as at  # noqa: E402

NAMES = [s.name for s in _rules.SPECS]
# torch's options for each rule, switched on (every key torch shares with adaptopt takes a
# non-default value in some configuration: test_torch_parity.py checks the same kernels).
CONFIGS = {
    "RMSprop": [dict(lr=1e-2), dict(lr=3e-3, momentum=0.9, centered=True, weight_decay=0.1, maximize=True)],
    "Adagrad": [dict(lr=5e-2), dict(lr=5e-2, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.1)],
    "Adadelta": [dict(lr=1.0), dict(lr=0.5, rho=0.8, weight_decay=0.1, maximize=True)],
    "Adam": [dict(lr=1e-2), dict(lr=1e-2, amsgrad=True, weight_decay=0.1, decoupled_weight_decay=True)],
    "AdamW": [dict(lr=1e-2), dict(lr=1e-2, amsgrad=True, weight_decay=0.05, betas=(0.8, 0.99))],
    "SGD": [dict(lr=1e-2), dict(lr=1e-2, momentum=0.9, nesterov=True, weight_decay=0.01)],
    "NAdam": [dict(lr=1e-2), dict(lr=1e-2, momentum_decay=8e-3, decoupled_weight_decay=True, weight_decay=0.1)],
    "RAdam": [dict(lr=1e-2), dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True)],
    "Adamax": [dict(lr=1e-2), dict(lr=1e-2, weight_decay=0.1, maximize=True)],
}
CASES = [(n, c) for n in NAMES for c in CONFIGS[n]]


def _models(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    a = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).to(dtype)
    b = copy.deepcopy(a)
    return a, b


def _train(model, opt, sched, steps, dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(32, 12, generator=g, dtype=dtype)
        y = torch.randn(32, 3, generator=g, dtype=dtype)

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            return loss

        opt.step(closure)
        sched.step()


def _close(a, b, dtype):
    for p, q in zip(a.parameters(), b.parameters()):
        if dtype == torch.float64:
            torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
        else:
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("name", "hyper"), CASES, ids=[f"{n}-{i}" for n, c in CONFIGS.items() for i in range(len(c))])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_training_loop_with_scheduler_matches_torch(name, hyper, dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # torch keeps scalar state in it
    try:
        theirs_m, ours_m = _models(dtype)
        theirs = getattr(torch.optim, name)(theirs_m.parameters(), **hyper)
        ours = getattr(at, name)(ours_m.parameters(), **hyper)
        s1 = torch.optim.lr_scheduler.StepLR(theirs, 4, 0.5)
        s2 = torch.optim.lr_scheduler.StepLR(ours, 4, 0.5)
        _train(theirs_m, theirs, s1, 15, dtype)
        _train(ours_m, ours, s2, 15, dtype)
        _close(theirs_m, ours_m, dtype)
        assert ours.param_groups[0]["lr"] == theirs.param_groups[0]["lr"]
    finally:
        torch.set_default_dtype(previous)


@pytest.mark.parametrize("name", NAMES)
def test_state_dicts_exchange_both_ways_mid_run(name):
    hyper = CONFIGS[name][-1]
    theirs_m, ours_m = _models()
    theirs = getattr(torch.optim, name)(theirs_m.parameters(), **hyper)
    ours = getattr(at, name)(ours_m.parameters(), **hyper)
    s1, s2 = (torch.optim.lr_scheduler.ExponentialLR(o, 0.9) for o in (theirs, ours))
    _train(theirs_m, theirs, s1, 6, torch.float32)
    _train(ours_m, ours, s2, 6, torch.float32)
    # swap: torch continues from adaptopt's state, adaptopt from torch's
    a_m, b_m = copy.deepcopy(ours_m), copy.deepcopy(theirs_m)
    a = getattr(torch.optim, name)(a_m.parameters(), **hyper)
    a.load_state_dict(copy.deepcopy(ours.state_dict()))  # torch aliases what it loads
    b = getattr(at, name)(b_m.parameters(), **hyper)
    b.load_state_dict(copy.deepcopy(theirs.state_dict()))
    for m, o in ((theirs_m, theirs), (ours_m, ours), (a_m, a), (b_m, b)):
        _train(m, o, torch.optim.lr_scheduler.ConstantLR(o, 1.0, 1), 6, torch.float32, seed=2)
    _close(theirs_m, b_m, torch.float32)  # adaptopt resumed from torch == torch
    _close(ours_m, a_m, torch.float32)  # torch resumed from adaptopt == adaptopt
    sd = ours.state_dict()
    assert set(sd["state"][0]) == set(theirs.state_dict()["state"][0]) | ({"step"} if name == "SGD" else set())


def test_hooks_zero_grad_and_none_grads():
    m, _ = _models()
    opt = at.Adam(m.parameters(), lr=1e-2)
    calls = []
    opt.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    opt.register_step_post_hook(lambda o, a, k: calls.append("post"))
    x = torch.randn(4, 12)
    m(x).sum().backward()
    for p in list(m.parameters())[2:]:
        p.grad = None  # the last layer has no gradient: skipped, no state
    opt.step()
    assert calls == ["pre", "post"]
    params = list(m.parameters())
    assert int(opt.state[params[0]]["step"]) == 1 and params[3] not in opt.state
    opt.zero_grad()
    assert all(p.grad is None for p in params)


def test_bfloat16_params_with_master_weights():
    torch.manual_seed(0)
    mbf = torch.nn.Linear(8, 4).to(torch.bfloat16)
    m32 = copy.deepcopy(mbf).to(torch.float32)  # the same values, upcast
    ref = at.Adam(m32.parameters(), lr=1e-2)
    opt = at.Adam(mbf.parameters(), lr=1e-2, master_weights=True)
    for _ in range(5):
        x = torch.randn(16, 8)
        for m, o in ((m32, ref), (mbf, opt)):
            o.zero_grad()
            m(x.to(next(m.parameters()).dtype)).float().sum().backward()
        for p, q in zip(m32.parameters(), mbf.parameters()):  # the same (upcast) gradients
            p.grad = q.grad.float()
        ref.step()
        opt.step()
    for p, q in zip(m32.parameters(), mbf.parameters()):
        master = opt.state[q]["master"]
        assert master.dtype == torch.float32 and torch.equal(master, p.detach())
        assert torch.equal(q.detach(), p.detach().to(torch.bfloat16))
    sd = opt.state_dict()
    again = at.Adam(copy.deepcopy(mbf).parameters(), lr=1e-2, master_weights=True)
    again.load_state_dict(sd)  # float32 master and state of a bf16 param keep their dtype
    for st in again.state.values():
        assert st["master"].dtype == torch.float32 and st["exp_avg"].dtype == torch.float32


@pytest.mark.parametrize("what", ["cuda-like", "sparse-grad", "non-contiguous", "capturable", "differentiable"])
def test_refusals(what):
    if what == "cuda-like":
        p = torch.zeros(3, device="meta")
        with pytest.raises(ValueError, match="CPU tensors"):
            at.Adam([p])
    elif what == "sparse-grad":
        emb = torch.nn.Embedding(10, 3, sparse=True)
        opt = at.Adagrad(emb.parameters())
        emb(torch.tensor([1, 2])).sum().backward()
        before = emb.weight.detach().clone()
        with pytest.raises(ValueError, match="sparse gradients"):
            opt.step()
        assert torch.equal(emb.weight.detach(), before)
    elif what == "non-contiguous":
        p = torch.zeros(4, 4).t().requires_grad_()
        with pytest.raises(ValueError, match="contiguous"):
            at.SGD([p], lr=0.1)
    else:
        with pytest.raises(ValueError, match=f"{what}=True is not supported"):
            at.Adam([torch.zeros(3, requires_grad=True)], **{what: True})


def test_signature_is_torchs_plus_adaptopts_options():
    import inspect

    for name in NAMES:
        ours = list(inspect.signature(getattr(at, name)).parameters)
        theirs = list(inspect.signature(getattr(torch.optim, name)).parameters)
        assert ours[:len(theirs)] == theirs, name
        assert {"state_dtype", "master_weights", "stochastic_rounding", "seed"} <= set(ours)
    assert "nesterov" in inspect.signature(at.RMSprop).parameters


def test_example_trains_like_torch(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("matplotlib")
    script = Path(__file__).resolve().parent.parent / "examples" / "torch_rmsprop.py"
    r = subprocess.run([sys.executable, str(script), "--tiny", "--out", str(tmp_path)], capture_output=True,
                       text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    diff = float(r.stdout.split("largest difference of the curves:")[1].split()[0])
    assert diff < 1e-4
    assert (tmp_path / "torch_rmsprop.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = subprocess.run([sys.executable, str(script), "--bench", "--tiny"], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    assert r.returncode == 0 and "speedup of the step" in r.stdout, r.stdout + r.stderr
