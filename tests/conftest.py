"""Shared fixtures: every test is seeded (see tests/stats.py on what a failing seed means)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def seeded() -> None:
    torch.manual_seed(20261125)
