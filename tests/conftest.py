"""Shared fixtures: every test is seeded (see tests/stats.py on what a failing seed means),
and the registries are restored after each test, so that a plugin one test registers (through
``--plugin`` in-process) never leaks into another test's "every problem" loop."""

import pytest
import torch

from estimators import ESTIMATORS
from problems import PROBLEMS


@pytest.fixture(autouse=True)
def seeded() -> None:
    torch.manual_seed(20261125)


@pytest.fixture(autouse=True)
def registries_restored():
    problems, estimators = dict(PROBLEMS), dict(ESTIMATORS)
    yield
    for registry, saved in ((PROBLEMS, problems), (ESTIMATORS, estimators)):
        registry.clear()
        registry.update(saved)


def pytest_collection_modifyitems(config, items):
    """Skip the tests marked ``cuda`` where there is no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
