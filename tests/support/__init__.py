"""Helpers shared by the adaptopt tests, by job.

- ``arrays``: array construction (alignment, misaligned and guarded views, random data, groups).
- ``compare``: tolerances, closeness against the float64 reference, bit equality, snapshots,
  and the conditioning-aware tolerance of the property tests.
- ``rules``: what the tests enumerate, read from ``adaptopt._rules.SPECS`` (a new spec is tested
  automatically): rule names, classes, parametrize marks, helpers over a rule's keys.
- ``configs``: the per-rule data written by hand (configurations, hypothesis strategies of valid
  and invalid hyperparameters, the functional forms' signatures), keyed by spec name;
  ``tests/test_support.py`` checks every spec has its entry in every table.
- ``pair``: an adaptopt optimizer and its float64 reference fed the same gradients.
- ``properties``: the hypothesis machinery both property files share (profiles, strategies of
  whole problems, runtime settings, reference runs with the conditioning term, subprocesses).
"""
