"""A user's problems written with ``problems.from_callable``, for ``--plugin tests.custom_plugin``
in tests/test_custom.py: what a user's own module would hold."""

import torch
from torch.distributions import Bernoulli, Normal

from problems import from_callable


def quadratic(z, params):
    return ((z - 0.45) ** 2).mean(-1)


def shifted_square(z, params):
    return ((z + 0.5) ** 2).sum(-1)


PROBLEMS = {
    "plugin_bits": from_callable(
        "plugin_bits", Bernoulli, {"logits": torch.tensor([1.0, 1.0])}, quadratic),
    "plugin_normal": from_callable(
        "plugin_normal", Normal, {"loc": [1.0], "scale": [1.5]}, shifted_square),
}
