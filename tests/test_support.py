"""The hand-written per-rule test data (support.configs) covers every spec of the registry and
agrees with each spec's keys, so a new rule cannot be tested half-way; and the reference knows
every rule."""

from __future__ import annotations

import inspect

import adaptopt.functional as F
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import STEP_FUNCTIONS, defaults_of
from support import configs
from support.properties import examples
from support.rules import NAMES, SPEC, by_name


@pytest.mark.parametrize("table", sorted(configs.PER_RULE))
def test_every_spec_has_an_entry(table):
    assert set(configs.PER_RULE[table]) == set(NAMES), (
        f"support.configs.{table}: missing {sorted(set(NAMES) - set(configs.PER_RULE[table]))}, "
        f"unknown {sorted(set(configs.PER_RULE[table]) - set(NAMES))}"
    )


def test_every_spec_has_a_reference():
    assert set(STEP_FUNCTIONS) == set(NAMES)


def _keys(name):
    """The keys a user may set for this rule (AdamW's fixed decoupled_weight_decay is not one)."""
    return set(SPEC[name].keys)


@by_name
def test_configurations_use_only_the_rules_keys(name):
    tables = [configs.RICH[name], configs.CHECKPOINT[name], configs.SPARSE[name]]
    for table in ("OPTIONS", "GROUPS", "STATE_CONFIGS", "STATS", "FUNCTIONAL_CONFIGS"):
        tables += configs.PER_RULE[table][name]
    for hyper in tables:
        assert set(hyper) <= _keys(name), f"{name}: unknown keys {set(hyper) - _keys(name)}"


@by_name
def test_invalid_table_covers_every_key(name):
    assert configs.INVALID[name].keys() == _keys(name)


@by_name
def test_reference_takes_every_key(name):
    assert set(defaults_of(name)) == _keys(name) | set(SPEC[name].fixed)


@by_name
def test_functional_table_matches_the_generated_signature(name):
    spec = configs.FUNCTIONAL[name]
    fn = getattr(F, spec.fn)
    params = list(inspect.signature(fn).parameters.values())
    names = [p.name for p in params if p.kind is not p.KEYWORD_ONLY]
    assert names == ["params", "grads", *spec.slots, *spec.scalars]
    keywords = {p.name for p in params if p.kind is p.KEYWORD_ONLY}
    pairs = {k for k in _keys(name) if k in configs.PAIRS}
    spread = {f for k in pairs for f in configs.PAIRS[k]}
    assert keywords == {"step"} | (_keys(name) - pairs) | spread | set(spec.fixed)


@examples(40)
@given(data=st.data())
def test_strategies_draw_every_key(data):
    name = data.draw(st.sampled_from(NAMES))
    hyper = data.draw(configs.HYPER[name])
    assert set(hyper) == _keys(name)
    SPEC[name].validate(hyper)  # a valid configuration
    bad, _ = data.draw(configs.invalid_hyper(name))
    assert set(bad) <= _keys(name) | {"momentum", "nesterov", "dampening"}
