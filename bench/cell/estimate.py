"""Drawing gradient estimates: one at a time (a training step) or R at once, chunked.

R independent estimates are computed with batched tensor operations: every repeat gets
its own leaf copy of the parameters (``problems.base.repeat_params``), the estimator's
surrogate is evaluated for all of them at once, and one backward pass of the summed
surrogate yields every repeat's gradient. Chunks of repeats keep memory bounded for any R.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from estimators.base import Estimator, State
from problems.base import Params, Problem, repeat_params

#: bytes one chunk of repeats may allocate (256 MiB)
CHUNK_BYTES = 2**28


def default_chunk_size(problem: Problem, point: Params, n_samples: int, n_repeats: int) -> int:
    """Repeats per chunk: as many as fit ``CHUNK_BYTES``, counting per repeat a parameter
    copy with its gradient, the chunk's row of estimates and slack (4 elements per
    parameter) plus ``n_samples`` samples of ``problem.sample_elements()`` each (which grows
    with the problem's size), in elements of the parameters' dtype. The statistics take
    their own bounded memory (``bench.cell.metrics``), whatever the chunk. Depends only on
    the configuration, so chunking, and with it the random stream, is the same in every run."""
    n_params = sum(v.numel() for v in point.values())
    itemsize = max((v.element_size() for v in point.values()), default=4)
    per_repeat = itemsize * (4 * n_params + n_samples * problem.sample_elements())
    return max(1, min(n_repeats, CHUNK_BYTES // per_repeat))


def flatten(grads: Params) -> Tensor:
    """``{name: [R, *shape]}`` -> ``[R, D]``, parameters in insertion order (a view, not a
    copy, of a single parameter's gradient)."""
    flat = [g.reshape(g.shape[0], -1) for g in grads.values()]
    return flat[0] if len(flat) == 1 else torch.cat(flat, 1)


def expand_state(state: State, n_repeats: int) -> State:
    """Copy a one-repeat state ``[1, ...]`` to ``n_repeats`` repeats."""
    return {k: v.detach().expand(n_repeats, *v.shape[1:]).clone() for k, v in state.items()}


def prepare(
    problem: Problem, estimator: Estimator, point: Params, n_samples: int
) -> tuple[State, float | None]:
    """Set the estimator up for ``problem``, warm it up at ``point`` and freeze it, as a cell
    is measured (``estimators.base``). Returns its state (one repeat) and its last own loss."""
    estimator.setup(problem, point)
    state, own_loss = estimator.warm_up(problem, point, n_samples)
    estimator.freeze()
    return state, own_loss


def warmed_state(problem: Problem, estimator: Estimator, point: Params, n_samples: int) -> State:
    """The estimator's state after ``prepare`` at ``point`` (one repeat)."""
    return prepare(problem, estimator, point, n_samples)[0]


def one_estimate(
    problem: Problem, estimator: Estimator, params: Params, n_samples: int, state: State
) -> tuple[Params, State]:
    """Gradient estimates for leaf ``params`` ``[R, ...]``: returns grads shaped like params."""
    step = estimator.step(problem, params, n_samples, state, train=False)
    return step.grads, step.state


def estimate_chunks(
    problem: Problem,
    estimator: Estimator,
    point: Params,
    n_samples: int,
    n_repeats: int,
    state: State,
    chunk_size: int | None = None,
) -> Iterator[Tensor]:
    """Yield ``n_repeats`` independent estimates at ``point`` as chunks ``[c, D]``.

    Args:
        point: the evaluation point, no repeat dimension.
        state: the estimator's state for one repeat (``[1, ...]``), copied to every repeat.
        chunk_size: repeats per chunk; default ``default_chunk_size``.
    """
    chunk_size = chunk_size or default_chunk_size(problem, point, n_samples, n_repeats)
    for start in range(0, n_repeats, chunk_size):
        size = min(chunk_size, n_repeats - start)
        grads, _ = one_estimate(
            problem, estimator, repeat_params(point, size), n_samples, expand_state(state, size)
        )
        yield flatten(grads).detach()


def gradient_variance(
    problem: Problem,
    estimator: Estimator,
    point: Params,
    n_samples: int,
    n_repeats: int,
    state: State,
) -> float:
    """Trace of the covariance of the estimator at ``point``: sum of per-coordinate variances."""
    if n_repeats < 2:
        raise ValueError(f"n_repeats must be >= 2 to measure a variance, got {n_repeats}")
    total = torch.cat(list(estimate_chunks(problem, estimator, point, n_samples, n_repeats, state)))
    variance = total.double().var(0, unbiased=True).sum().item()
    return variance if math.isfinite(variance) else math.nan
