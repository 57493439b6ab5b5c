"""The test examples, read from the registries (each class declares its own).

An estimator's example (``Estimator.example_samples`` and ``example_options``) names the
sample count and options at which the statistical tests check it; its options make its bias,
if it has any, large on the problems' examples (bernoulli_toy at theta = 1: straight-through
and the relaxations are far off there). A problem's example (``Problem.example_options``) is
where every applicable estimator is tested against the exact truth. ``EXACT_IN_MEAN``
collects the biased estimators' ``exact_in_mean`` declarations. These are views keyed by
name for the tests' convenience, never a second list: ``tests/test_registry.py`` fails for a
registry entry that does not declare its example.
"""

from __future__ import annotations

from estimators import ESTIMATORS
from problems import PROBLEMS

ESTIMATOR_EXAMPLES: dict[str, dict] = {
    name: {"n_samples": cls.example_samples, "options": dict(cls.example_options)}
    for name, cls in ESTIMATORS.items()
    if "example_samples" in vars(cls) and "example_options" in vars(cls)
}

#: biased estimators that are exact in mean on a problem's example, with the reason
EXACT_IN_MEAN: dict[tuple[str, str], str] = {
    (name, problem): why
    for name, cls in ESTIMATORS.items()
    for problem, why in cls.exact_in_mean.items()
}

#: problem options at which every applicable estimator is tested against the truth
PROBLEM_EXAMPLES: dict[str, dict] = {
    name: dict(cls.example_options)
    for name, cls in PROBLEMS.items()
    if "example_options" in vars(cls)
}
