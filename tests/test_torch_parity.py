"""Trajectories against torch.optim itself (skipped when torch is not installed)."""

import numpy as np
import pytest
from _util import assert_close, by_dtype, config_id, optimizer_class

torch = pytest.importorskip("torch")

STEPS = 50

CONFIGS = [
    ("RMSprop", {}),
    ("RMSprop", dict(momentum=0.9)),
    ("RMSprop", dict(centered=True, weight_decay=0.1)),
    ("RMSprop", dict(momentum=0.9, centered=True, maximize=True)),
    ("Adagrad", {}),
    ("Adagrad", dict(lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.1)),
    ("Adadelta", {}),
    ("Adadelta", dict(weight_decay=0.1, lr=0.5, maximize=True)),
    ("Adam", {}),
    ("Adam", dict(amsgrad=True, weight_decay=0.1)),
    ("Adam", dict(weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
    ("AdamW", {}),
    ("AdamW", dict(amsgrad=True, weight_decay=0.05)),
]
SHAPES = [(7,), (3, 5), ()]


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
        return [
            np.asarray(2 * (p - t) * s + n, dtype=self.dtype)
            for p, t, s, n in zip(params, self.target, self.scale, noise)
        ]


def torch_kwargs(name, hyper):
    kw = dict(hyper)
    if name == "Adam" and not kw.get("decoupled_weight_decay", False):
        kw.pop("decoupled_weight_decay", None)  # older torch has no such argument
    return kw


class Runner:
    """One torch optimizer and one adaptopt optimizer, each following its own trajectory."""

    def __init__(self, name, problem, groups_hyper, **hyper):
        self.problem = problem
        self.ours = [p.copy() for p in problem.init]
        self.theirs = [torch.from_numpy(p.copy()) for p in problem.init]
        split = [self.ours[:2], self.ours[2:]] if groups_hyper else [self.ours]
        tsplit = [self.theirs[:2], self.theirs[2:]] if groups_hyper else [self.theirs]
        extras = groups_hyper or [{}]
        self.opt = optimizer_class(name)(
            [{"params": p, **e} for p, e in zip(split, extras)], **hyper
        )
        self.topt = getattr(torch.optim, name)(
            [{"params": p, **e} for p, e in zip(tsplit, extras)], **torch_kwargs(name, hyper)
        )

    def step(self):
        noise = self.problem.noise()
        self.opt.step(self.problem.grad(self.ours, noise))
        for t, g in zip(self.theirs, self.problem.grad([t.numpy() for t in self.theirs], noise)):
            t.grad = torch.from_numpy(g)
        self.topt.step()

    def check(self):
        for i, (ours, theirs) in enumerate(zip(self.ours, self.theirs)):
            check_close(ours, theirs.numpy(), f"params[{i}]")


def check_close(ours, theirs, msg):
    if ours.dtype == np.float64:
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12, err_msg=msg)
    else:
        assert_close(ours, theirs.astype(np.float64), err_msg=msg)


@pytest.mark.parametrize(("name", "hyper"), CONFIGS, ids=[config_id(n, h) for n, h in CONFIGS])
@by_dtype
def test_trajectory(name, hyper, dtype):
    runner = Runner(name, Problem(dtype), None, **hyper)
    for _ in range(STEPS):
        runner.step()
    runner.check()


GROUPS = {
    "RMSprop": [dict(lr=1e-2), dict(lr=3e-3, momentum=0.9)],
    "Adagrad": [dict(lr=5e-2), dict(lr=1e-2)],
    "Adadelta": [dict(lr=1.0), dict(lr=0.5)],
    "Adam": [dict(lr=1e-3), dict(lr=1e-2, amsgrad=True)],
    "AdamW": [dict(lr=1e-3), dict(lr=5e-3, weight_decay=0.1)],
}


@pytest.mark.parametrize("name", list(GROUPS))
@by_dtype
def test_param_groups(name, dtype):
    runner = Runner(name, Problem(dtype, seed=3), GROUPS[name])
    for _ in range(STEPS):
        runner.step()
    runner.check()


def to_torch_state_dict(sd, topt):
    """adaptopt state_dict -> torch: tensors for arrays, a float tensor for step, and only the
    group keys torch knows (torch's own values for its implementation switches)."""
    state = {
        i: {
            k: torch.tensor(float(v)) if k == "step" else torch.from_numpy(np.array(v))
            for k, v in s.items()
        }
        for i, s in sd["state"].items()
    }
    groups = []
    for ours, theirs in zip(sd["param_groups"], topt.state_dict()["param_groups"]):
        group = dict(theirs)
        for k, v in ours.items():
            if k in theirs and k != "params":
                group[k] = tuple(v) if k == "betas" else v
        groups.append(group)
    return {"state": state, "param_groups": groups}


@pytest.mark.parametrize(("name", "hyper"), CONFIGS, ids=[config_id(n, h) for n, h in CONFIGS])
@by_dtype
def test_state_dict_exported_to_torch(name, hyper, dtype):
    """adaptopt runs 20 steps, torch resumes from its state_dict: both continue alike."""
    problem = Problem(dtype, seed=5)
    runner = Runner(name, problem, None, **hyper)
    for _ in range(20):
        runner.step()
    for ours, theirs in zip(runner.ours, runner.theirs):  # torch resumes from adaptopt's params
        theirs.copy_(torch.from_numpy(ours))
    runner.topt.load_state_dict(to_torch_state_dict(runner.opt.state_dict(), runner.topt))
    for _ in range(30):
        runner.step()
    runner.check()
