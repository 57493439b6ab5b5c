"""Statistical test helpers whose tolerances come from standard errors and a failure rate.

Every check compares a Monte Carlo mean with an exact value:
``|mean - truth| <= z * se`` with ``z = norm.isf(alpha / (2 * n_checks))`` (Bonferroni over
all coordinates checked at once), so a correct estimator fails with probability at most
``alpha`` per call, and with fixed seeds not at all. Guards make sure a pass means
something: the tolerance must be small relative to the truth, and the truth must not be
near zero.

Seeds: tests are seeded by an autouse fixture. If a statistical test fails, bumping its
seed once can be a fluke (probability ``alpha``); having to bump it twice means a bug.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bench.cell import moments
from bench.cell.estimate import estimate_chunks, warmed_state
from estimators.base import Estimator, flatten
from problems.base import Problem

ALPHA = 1e-4  # failure rate of a correct estimator per check
#: relative float64 rounding allowed on top of the statistical tolerance
ROUNDING = 1e-12


def z_threshold(n_checks: int, alpha: float = ALPHA) -> float:
    """Two-sided Bonferroni z threshold for ``n_checks`` simultaneous checks
    (``bench.cell.moments.z_threshold`` at the tests' failure rate)."""
    return moments.z_threshold(n_checks, alpha)


@dataclass
class Comparison:
    """Per-coordinate comparison of a Monte Carlo mean with the truth."""

    mean: np.ndarray
    se: np.ndarray
    truth: np.ndarray
    z: float

    @property
    def z_scores(self) -> np.ndarray:
        return (self.mean - self.truth) / self.se

    @property
    def consistent(self) -> bool:
        """True if every coordinate is within ``z * se`` of the truth, plus ``ROUNDING`` times
        the largest |truth| for the rounding error of estimators with zero variance (exact
        ones, e.g. IndeCateR on a separable cost, where se is rounding noise too)."""
        slack = ROUNDING * np.abs(self.truth).max(initial=0.0)
        return bool(np.all(np.abs(self.mean - self.truth) <= self.z * self.se + slack))

    def guard(self, rel: float = 0.5, min_abs: float = 1e-6) -> None:
        """Fail unless the test has power: finite values, the largest truth coordinate not near
        zero and resolved to within ``rel`` of its size."""
        assert np.all(np.isfinite(self.mean)) and np.all(np.isfinite(self.se)), "non-finite"
        assert self.mean.size > 0, "nothing was compared"
        j = int(np.argmax(np.abs(self.truth)))
        assert abs(self.truth[j]) > min_abs, f"truth too close to zero for a test: {self.truth}"
        assert self.z * self.se[j] < rel * abs(self.truth[j]), (
            f"test too weak: tolerance {self.z * self.se[j]:.3g} "
            f"vs |truth| {abs(self.truth[j]):.3g}"
        )


def compare(samples: np.ndarray, truth: np.ndarray, alpha: float = ALPHA) -> Comparison:
    """Compare the mean of ``samples`` ``[R, D]`` with ``truth`` ``[D]``."""
    samples = np.asarray(samples, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64).reshape(-1)
    mean = samples.mean(0)
    se = samples.std(0, ddof=1) / np.sqrt(samples.shape[0])
    return Comparison(mean=mean, se=se, truth=truth, z=z_threshold(truth.size, alpha))


def draw_estimates(
    problem: Problem, estimator: Estimator, n_samples: int, n_repeats: int, chunk: int = 20_000
) -> np.ndarray:
    """``n_repeats`` independent estimates at the problem's evaluation point, flattened over
    parameters: ``[R, D]`` (float64), drawn in batches of at most ``chunk`` repeats."""
    point = problem.init_params()
    state = warmed_state(problem, estimator, point, n_samples)
    chunks = estimate_chunks(problem, estimator, point, n_samples, n_repeats, state, chunk)
    return np.concatenate([part.double().numpy() for part in chunks])


def flat_truth(problem: Problem, n_samples: int = 1) -> np.ndarray:
    """The exact gradient at the problem's evaluation point, flattened like ``draw_estimates``
    (``n_samples``: the K of a multi-sample objective)."""
    truth = problem.truth(problem.init_params(), n_samples)
    assert truth is not None, f"{problem.name} has no exact gradient at these options"
    return flatten(truth.grad, repeated=False).double().numpy()


def variance_consistent(estimates: np.ndarray, exact: np.ndarray | float) -> bool:
    """Whether the sample variance of ``estimates`` ``[R, D]`` matches ``exact`` per
    coordinate, within a Bonferroni z times its standard error from the fourth moment
    (``bench.cell.moments.variance_with_se``); fails
    unless the test has power (tolerance below half the exact variance)."""
    variance, se = (v.numpy() for v in moments.variance_with_se(torch.as_tensor(estimates)))
    z = z_threshold(variance.size)
    assert np.all(z * se < 0.5 * exact), "variance test too weak"
    return bool(np.all(np.abs(variance - exact) <= z * se))


def sample_variance_check(estimates: np.ndarray, exact: np.ndarray) -> None:
    """Assert ``variance_consistent``, naming both variances."""
    assert variance_consistent(estimates, exact), (
        f"{estimates.var(0, ddof=1)} vs exact {exact}")
