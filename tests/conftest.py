"""Shared fixtures: every test is seeded (see tests/stats.py on what a failing seed means).
A plugin a test loads (``--plugin`` in-process, ``run_sweep(plugins=...)``) extends the
registry of that invocation only (``bench.registry``), so nothing needs restoring."""

import pytest
import torch

# pytest -n auto runs one worker per core; each worker's default of one torch thread per core
# would oversubscribe the cores (measured: the suite 340-390 s with it, 284 s without, on 2
# cores). Tests that exercise the thread policy set and check threads themselves.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def seeded() -> None:
    torch.manual_seed(20261125)


def pytest_collection_modifyitems(config, items):
    """Skip the tests marked ``cuda`` where there is no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
