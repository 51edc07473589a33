"""An adaptopt optimizer and its float64 reference, fed the same gradients."""

from __future__ import annotations

from reference import RefOptimizer

from support.arrays import copy_groups, flat_params, random_grads
from support.compare import assert_bitwise_equal, assert_close
from support.rules import optimizer_class


class Pair:
    def __init__(self, name, params_or_groups, **hyper):
        self.name = name
        self.params = flat_params(params_or_groups)
        self.ref = RefOptimizer(name, copy_groups(params_or_groups), **hyper)
        self.opt = optimizer_class(name)(copy_groups(params_or_groups), **hyper)

    def step(self, grads):
        before = [None if g is None else g.copy() for g in grads]
        self.opt.step(grads)
        assert_bitwise_equal(list(grads), before, "grads (must be read only)")
        self.ref.step(grads)

    def random_step(self, rng, misaligned=False):
        grads = random_grads(rng, self.params, misaligned)
        self.step(grads)
        return grads

    def set_hyper(self, group, key, value):
        self.opt.param_groups[group][key] = value
        self.ref.param_groups[group][key] = value

    def check(self, states=True):
        for i, (p, r) in enumerate(zip(self.params, self.ref.params)):
            assert_close(p, r, err_msg=f"params[{i}] (dtype {p.dtype}, shape {p.shape})")
        if not states:
            return
        state = self.opt.state_dict()["state"]
        for i, ref_state in enumerate(self.ref.state):
            if not ref_state:
                continue
            assert i in state, f"no state for params[{i}]"
            assert set(state[i]) == set(ref_state), (
                f"state[{i}] keys {sorted(state[i])}, expected {sorted(ref_state)}"
            )
            for key, want in ref_state.items():
                got = state[i][key]
                if key == "step":
                    assert got == want, f"state[{i}]['step'] = {got}, expected {want}"
                else:
                    assert_close(got, want, err_msg=f"state[{i}][{key!r}]")
