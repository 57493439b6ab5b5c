"""The stress settings of ``bench verify``: problems with exact truth, at parameter values,
sizes and sample counts chosen to expose the usual mistakes of gradient estimators.

Each problem class declares its settings (``Problem.verify_settings``: options, and whether
the setting is part of ``--quick``); each is checked at the K values below. Parameters far
from 0 (saturated probabilities, large means) catch dropped or mis-scaled terms that vanish at
0; d > 1 catches coordinates mixed up or signals shared across units; K = 1, 2 and larger catch
baselines that include their own sample or mis-normalized averages; the VAEs catch wrong
per-example signals and a forgotten direct term of a cost that depends on theta; the
multi-sample objectives catch estimators that treat the bound as an expectation; the policy
(variable-length responses, per-prompt groups, a bandit at length 1) catches baselines and
normalisers that mix prompts or mis-weigh lengths. Everything
runs in float64, so that rounding never looks like bias.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from problems import PROBLEMS, Problem

#: the sample counts of expectation problems, and of multi-sample objectives (the bound's K)
SAMPLES = (1, 2, 8)
BOUND_SAMPLES = (2, 4)


@dataclass(frozen=True)
class Setting:
    """A problem at options where its exact gradient is known."""

    problem: str
    options: tuple[tuple[str, Any], ...]
    quick: bool = False  # part of the quick check (one setting per problem and objective)

    @property
    def label(self) -> str:
        option_values = " ".join(f"{k}={v}" for k, v in self.options)
        return f"{self.problem}[{option_values}]" if option_values else self.problem


def settings_of(problems: Mapping[str, type[Problem]]) -> tuple[Setting, ...]:
    """Every stress setting that the problems of a registry declare
    (``Problem.verify_settings``), in registry order."""
    return tuple(
        Setting(name, tuple(sorted(stress.options.items())), stress.quick)
        for name, cls in problems.items()
        for stress in getattr(cls, "verify_settings", ())
    )


#: the built-in registry's settings
SETTINGS: tuple[Setting, ...] = settings_of(PROBLEMS)
