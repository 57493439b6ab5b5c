"""The gradient each cell is compared with.

* ``closed_form`` / ``enumeration``: the problem's own exact gradient (``Problem.truth``).
* ``reference``: for problems without an exact gradient (``truth=reference`` among their
  options), the mean of ``reference_repeats`` independent estimates of the problem's
  unbiased ``reference_estimator`` with ``reference_samples`` samples each; its standard
  error per coordinate is carried into the bias z-scores and intervals.
* ``none``: no truth; only truth-free metrics (variance, snr, timing) are reported.
"""

from __future__ import annotations

import torch

from bench.cell.estimate import estimate_chunks, unflatten, warmed_state
from estimators import get_estimator
from problems.base import Params, Problem, Truth

REFERENCE_SAMPLES = 100
REFERENCE_REPEATS = 1000


def reference_truth(problem: Problem, point: Params, seed: int, n_samples: int = 1) -> Truth:
    """An unbiased high-sample estimate of the gradient, with its standard error.

    On a multi-sample objective the bound itself depends on K, so the reference estimates the
    K = ``n_samples`` bound, with ``reference_samples * reference_repeats / K`` estimates.
    """
    name = problem.reference_estimator
    if name is None:
        raise ValueError(f"problem {problem.name!r} has no reference estimator for truth=reference")
    estimator = get_estimator(name)()
    if not get_estimator(name).unbiased:
        raise ValueError(f"reference estimator {name!r} of {problem.name!r} is biased")
    samples = int(problem.option_values.get("reference_samples", REFERENCE_SAMPLES))
    n_repeats = int(problem.option_values.get("reference_repeats", REFERENCE_REPEATS))
    if problem.multi_sample:
        n_repeats = max(n_repeats, samples * n_repeats // n_samples)
    else:
        n_samples = samples
    torch.manual_seed(seed)
    state = warmed_state(problem, estimator, point, n_samples)
    flat = torch.cat(list(estimate_chunks(problem, estimator, point, n_samples, n_repeats, state)))
    flat = flat.double()
    mean, se = flat.mean(0), flat.std(0, unbiased=True) / n_repeats**0.5
    grad, err = unflatten(mean, point), unflatten(se, point)
    return Truth(grad=grad, kind="reference", se=err)


def cell_truth(problem: Problem, point: Params, seed: int, n_samples: int = 1) -> Truth | None:
    """The truth a cell with K = ``n_samples`` is measured against (see module docstring);
    K matters only for multi-sample objectives."""
    if problem.option_values.get("truth") == "reference":
        return reference_truth(problem, point, seed, n_samples)
    if problem.option_values.get("truth") == "none":
        return None
    return problem.truth(point, n_samples)
