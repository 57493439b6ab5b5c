"""Variances of gradient estimators at one point, measured and compared with exact values.

``measure`` draws R estimates of each estimator at a problem's evaluation point and returns,
per estimator, the variance averaged over the coordinates with its standard error
(``variance_with_se`` per coordinate; the coordinates share their samples, so the standard
error of the average is bounded by the average of the standard errors, which is used).
``exact_variance_claim`` compares them with exact values (``exact_claim``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from bench.cell.estimate import estimate_chunks, prepare
from bench.cell.moments import variance_with_se
from bench.cell.seeds import derive_seed
from bench.registry import current_registry, estimator_class
from bench.reproduce.base import Claim, exact_claim
from problems.base import Problem


def measure(
    make: Callable[[], Problem], samples: Mapping[str, int], n_repeats: int, *parts: object,
) -> dict[str, tuple[float, float]]:
    """``{name: (mean per-coordinate variance, its standard error)}`` for each registered
    estimator of ``samples`` (name -> K), from ``n_repeats`` estimates seeded by ``parts``."""
    out = {}
    for name, n_samples in samples.items():
        if name not in current_registry().estimators:
            continue
        problem = make()
        point = problem.init_params()
        torch.manual_seed(derive_seed("exact variance", name, *parts))
        estimator = estimator_class(name)()
        state, _ = prepare(problem, estimator, point, n_samples)
        grads = torch.cat(list(estimate_chunks(problem, estimator, point, n_samples, n_repeats,
                                               state)))
        variance, se = variance_with_se(grads)
        out[name] = (float(variance.mean()), float(se.mean()))
    return out


def exact_variance_claim(
    text: str, source: str, measured: Mapping[str, tuple[float, float]],
    exact: Mapping[str, float],
) -> Claim:
    """PASS when every measured variance agrees with its exact value (``exact_claim``)."""
    rows = [(name, *measured[name], exact[name]) for name in exact if name in measured]
    return exact_claim(text, source, rows)
