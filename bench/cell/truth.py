"""The gradient each cell is compared with, as the problem declares it (``problems.truth``).

* ``closed_form`` / ``quadrature`` / ``enumeration``: the problem's own exact gradient
  (``Problem.truth``), of the declared kind;
* ``reference``: the mean of the declaration's ``repeats`` independent estimates of its
  unbiased ``estimator`` with ``samples`` samples each; its standard error per coordinate
  is carried into the bias z-scores and intervals. A cell of that same estimator is marked
  (``self_reference``): its bias is measured against itself;
* ``none``: no truth; only truth-free metrics (variance, snr, timing) are reported.
"""

from __future__ import annotations

import torch

from bench.cell.estimate import estimate_chunks, warmed_state
from bench.registry import estimator_class
from estimators.base import unflatten
from problems.base import Params, Problem, Truth
from problems.truth import TruthKind, TruthSource


def reference_truth(problem: Problem, point: Params, seed: int, n_samples: int,
                    source: TruthSource) -> Truth:
    """An unbiased high-sample estimate of the gradient, with its standard error.

    On a multi-sample objective the bound itself depends on K, so the reference estimates the
    K = ``n_samples`` bound, with ``source.samples * source.repeats / K`` estimates.
    """
    cls = estimator_class(source.estimator)
    if not cls.unbiased:
        raise ValueError(f"reference estimator {source.estimator!r} of {problem.name!r} "
                         "is biased")
    estimator = cls()
    samples, n_repeats = source.samples, source.repeats
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
    return Truth(grad=grad, kind=TruthKind.REFERENCE.value, se=err)


def cell_truth(problem: Problem, point: Params, seed: int, n_samples: int = 1) -> Truth | None:
    """The truth a cell with K = ``n_samples`` is measured against (see module docstring);
    K matters only for multi-sample objectives.

    Raises:
        RuntimeError: the problem's ``truth`` is of another kind than it declares.
    """
    source = problem.truth_of(problem.option_values, n_samples)
    if source.kind is TruthKind.REFERENCE:
        return reference_truth(problem, point, seed, n_samples, source)
    if source.kind is TruthKind.NONE:
        return None
    truth = problem.truth(point, n_samples)
    if truth is not None and truth.kind != source.kind:
        raise RuntimeError(f"problem {problem.name!r} declares {source.kind} truth but its "
                           f"truth() gave {truth.kind}")
    return truth
