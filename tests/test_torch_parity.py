"""Trajectories against torch.optim itself, for every rule and every option torch has (skipped
when torch is not installed): float32 and float64, param groups, lr changed mid-run, and state
dicts exchanged both ways mid-run."""

import adaptopt
import numpy as np
import pytest
from adaptopt import _rules

torch = pytest.importorskip("torch")

STEPS = 50

# Every spec, each with the options torch has. test_configs_cover_every_torch_option checks that
# every key torch shares with adaptopt takes a non-default value in some configuration.
CONFIGS = [
    ("RMSprop", {}),
    ("RMSprop", dict(momentum=0.9)),
    ("RMSprop", dict(centered=True, weight_decay=0.1, alpha=0.9, eps=1e-6)),
    ("RMSprop", dict(momentum=0.9, centered=True, maximize=True, lr=3e-3)),
    ("Adagrad", {}),
    ("Adagrad", dict(lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.1, eps=1e-8)),
    ("Adagrad", dict(maximize=True, lr=0.05)),
    ("Adadelta", {}),
    ("Adadelta", dict(weight_decay=0.1, lr=0.5, maximize=True, rho=0.8, eps=1e-5)),
    ("Adam", {}),
    ("Adam", dict(amsgrad=True, weight_decay=0.1, betas=(0.8, 0.99), eps=1e-6)),
    ("Adam", dict(weight_decay=0.1, decoupled_weight_decay=True, maximize=True, lr=1e-2)),
    ("AdamW", {}),
    ("AdamW", dict(amsgrad=True, weight_decay=0.05, maximize=True, betas=(0.85, 0.995), eps=1e-7, lr=3e-3)),
    ("SGD", dict(lr=1e-2)),
    ("SGD", dict(lr=1e-2, momentum=0.9, dampening=0.3, weight_decay=0.1)),
    ("SGD", dict(lr=1e-2, momentum=0.9, nesterov=True, maximize=True)),
    ("NAdam", {}),
    ("NAdam", dict(weight_decay=0.1, momentum_decay=8e-3, betas=(0.8, 0.99), eps=1e-6)),
    ("NAdam", dict(weight_decay=0.1, decoupled_weight_decay=True, maximize=True, lr=1e-2)),
    ("RAdam", {}),
    ("RAdam", dict(weight_decay=0.1, betas=(0.8, 0.9), eps=1e-6, lr=1e-2)),  # rectified from step 6
    ("RAdam", dict(weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
    ("Adamax", {}),
    ("Adamax", dict(weight_decay=0.1, betas=(0.8, 0.99), eps=1e-6, maximize=True, lr=1e-2)),
]
SHAPES = [(7,), (3, 5), ()]


def config_id(name, hyper):
    return "-".join([name, *(k if v is True else f"{k}={v}" for k, v in hyper.items())])


@pytest.fixture(autouse=True)
def _torch_default_dtype(request):
    """torch keeps scalar state (step, NAdam's mu_product) in its default dtype: float64 runs
    compare with torch in float64 throughout."""
    dtype = request.node.callspec.params.get("dtype") if hasattr(request.node, "callspec") else None
    previous = torch.get_default_dtype()
    if dtype is np.float64:
        torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


by_dtype = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])


class Problem:
    """grad = 2 (p - target) * scale + noise: a noisy quadratic with a seeded generator."""

    def __init__(self, dtype, seed=0):
        rng = np.random.default_rng(seed)
        self.dtype = dtype
        self.init = [np.asarray(rng.standard_normal(s)).astype(dtype) for s in SHAPES]
        self.target = [np.asarray(rng.standard_normal(s)).astype(dtype) for s in SHAPES]
        self.scale = [np.asarray(rng.uniform(0.5, 2.0, s)).astype(dtype) for s in SHAPES]
        self.rng = np.random.default_rng(seed + 1)

    def noise(self):
        return [np.asarray(0.1 * self.rng.standard_normal(s)).astype(self.dtype) for s in SHAPES]

    def grad(self, params, noise):
        return [np.asarray(2 * (p - t) * s + n, dtype=self.dtype)
                for p, t, s, n in zip(params, self.target, self.scale, noise)]


class Runner:
    """One torch optimizer and one adaptopt optimizer, each following its own trajectory."""

    def __init__(self, name, problem, groups_hyper=None, **hyper):
        self.problem = problem
        self.ours = [p.copy() for p in problem.init]
        self.theirs = [torch.from_numpy(p.copy()) for p in problem.init]
        split = [self.ours[:2], self.ours[2:]] if groups_hyper else [self.ours]
        tsplit = [self.theirs[:2], self.theirs[2:]] if groups_hyper else [self.theirs]
        extras = groups_hyper or [{}]
        self.opt = getattr(adaptopt, name)([{"params": p, **e} for p, e in zip(split, extras)], **hyper)
        self.topt = getattr(torch.optim, name)([{"params": p, **e} for p, e in zip(tsplit, extras)], **hyper)

    def step(self):
        noise = self.problem.noise()
        self.opt.step(self.problem.grad(self.ours, noise))
        for t, g in zip(self.theirs, self.problem.grad([t.numpy() for t in self.theirs], noise)):
            t.grad = torch.from_numpy(g)
        self.topt.step()

    def set_lr(self, lr):
        for ours, theirs in zip(self.opt.param_groups, self.topt.param_groups):
            ours["lr"] = theirs["lr"] = lr

    def check(self):
        for i, (ours, theirs) in enumerate(zip(self.ours, self.theirs)):
            check_close(ours, theirs.numpy(), f"params[{i}]")


def check_close(ours, theirs, msg):
    if ours.dtype == np.float64:
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12, err_msg=msg)
    else:
        scale = max(1.0, float(np.max(np.abs(theirs), initial=0.0)))
        np.testing.assert_allclose(ours.astype(np.float64), theirs.astype(np.float64), rtol=1e-5,
                                   atol=1e-6 * scale, err_msg=msg)


def test_configs_cover_every_rule_and_torch_option():
    assert {n for n, _ in CONFIGS} == {s.name for s in _rules.SPECS}
    for spec in _rules.SPECS:
        shared = set(spec.keys) - spec.torch_lacks
        varied = {k for n, h in CONFIGS if n == spec.name for k, v in h.items() if v != spec.defaults[k]}
        assert shared <= varied, (spec.name, shared - varied)


@pytest.mark.parametrize(("name", "hyper"), CONFIGS, ids=[config_id(n, h) for n, h in CONFIGS])
@by_dtype
def test_trajectory(name, hyper, dtype, isa):
    runner = Runner(name, Problem(dtype), **hyper)
    for i in range(STEPS):
        if i == STEPS // 2:  # lr changed mid-run, as a scheduler would
            runner.set_lr(runner.opt.param_groups[0]["lr"] * 0.3)
        runner.step()
    runner.check()


GROUPS = {
    "RMSprop": [dict(lr=1e-2), dict(lr=3e-3, momentum=0.9)],
    "Adagrad": [dict(lr=5e-2), dict(lr=1e-2)],
    "Adadelta": [dict(lr=1.0), dict(lr=0.5)],
    "Adam": [dict(lr=1e-3), dict(lr=1e-2, amsgrad=True)],
    "AdamW": [dict(lr=1e-3), dict(lr=5e-3, weight_decay=0.1)],
    "SGD": [dict(lr=1e-2), dict(lr=3e-2, momentum=0.9)],
    "NAdam": [dict(lr=2e-3), dict(lr=1e-2, momentum_decay=1e-2)],
    "RAdam": [dict(lr=1e-3), dict(lr=1e-2, weight_decay=0.1)],
    "Adamax": [dict(lr=2e-3), dict(lr=1e-2, betas=(0.8, 0.99))],
}


@pytest.mark.parametrize("name", list(GROUPS))
@by_dtype
def test_param_groups(name, dtype):
    runner = Runner(name, Problem(dtype, seed=3), GROUPS[name])
    for _ in range(STEPS):
        runner.step()
    runner.check()


def to_torch_state_dict(sd, topt):
    """adaptopt state_dict -> torch: tensors for arrays, 0-d tensors for scalars (step and
    NAdam's mu_product, in torch's default dtype), and only the group keys torch knows (torch's
    own values for its implementation switches). torch's SGD keeps no step."""
    sgd = isinstance(topt, torch.optim.SGD)
    state = {i: {k: torch.tensor(float(v)) if not isinstance(v, np.ndarray) else torch.from_numpy(np.array(v))
                 for k, v in s.items() if not (sgd and k == "step")}
             for i, s in sd["state"].items()}
    groups = []
    for ours, theirs in zip(sd["param_groups"], topt.state_dict()["param_groups"]):
        group = dict(theirs)
        group.update({k: tuple(v) if k == "betas" else v for k, v in ours.items() if k in theirs and k != "params"})
        groups.append(group)
    return {"state": state, "param_groups": groups}


def from_torch_state_dict(tsd, steps):
    """torch state_dict -> adaptopt: arrays, Python numbers; SGD's missing step from ``steps``."""
    scalars = {"step", "mu_product"}
    state = {i: {k: v.item() if k in scalars else v.numpy().copy() for k, v in s.items()}
             for i, s in tsd["state"].items()}
    for i, s in state.items():
        s["step"] = int(s.get("step", steps))
    return {"state": state, "param_groups": [dict(g) for g in tsd["param_groups"]]}


@pytest.mark.parametrize(("name", "hyper"), CONFIGS, ids=[config_id(n, h) for n, h in CONFIGS])
@by_dtype
def test_state_dict_exchanged_both_ways(name, hyper, dtype):
    """adaptopt runs 20 steps, torch resumes from its state_dict for 15, adaptopt resumes from
    torch's for 15 more: both trajectories stay together."""
    problem = Problem(dtype, seed=5)
    runner = Runner(name, problem, **hyper)
    for _ in range(20):
        runner.step()
    for ours, theirs in zip(runner.ours, runner.theirs):  # torch resumes from adaptopt's params
        theirs.copy_(torch.from_numpy(ours))
    runner.topt.load_state_dict(to_torch_state_dict(runner.opt.state_dict(), runner.topt))
    for _ in range(15):
        runner.step()
    runner.check()
    for ours, theirs in zip(runner.ours, runner.theirs):  # and adaptopt from torch's
        ours[...] = theirs.numpy()
    runner.opt.load_state_dict(from_torch_state_dict(runner.topt.state_dict(), steps=35))
    for _ in range(15):
        runner.step()
    runner.check()
