"""The checks of ``bench verify`` on one estimator and one problem setting.

* **Bias**, at a number of estimates R chosen for power: a pilot of ``PILOT`` estimates gives
  each coordinate's variance v_c; R is the smallest number at which a bias of
  ``power_bias * max_c |t_c|`` in any coordinate is detected with probability 0.975 by the
  test below (R = max_c (z_alpha + z_beta)^2 v_c / (power_bias * max |t|)^2, z_beta = 1.96),
  capped at ``max_repeats`` (the cell then says what it can detect). The test: per coordinate
  z_c = (mean_c - t_c) / sqrt(v_c / R) against Student's t with R - 1 degrees of freedom,
  Bonferroni over the D coordinates; a coordinate within float64 rounding of the truth is
  unbiased, and one with zero variance is biased when it misses the truth by more than that.
* **Variance** against a standard estimator of the same problem at the same K (pathwise where
  it applies, else the leave-one-out score function, else plain REINFORCE).
* **Independence of repeats**: the harness reads estimate r off d loss[r] / d params[r], so the
  gradient of loss[r] w.r.t. every other repeat's parameters must be exactly zero.
* **Determinism**: the same seed gives the same estimates, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from bench.cell.estimate import estimate_chunks, expand_state, prepare
from bench.cell.moments import Moments, z_threshold
from estimators.base import Estimator, State
from problems.base import Params, Problem, repeat_params

#: estimates of the pilot run that sets R
PILOT = 400
#: z of the power target (probability 0.975 of detecting the target bias)
Z_POWER = 1.96
#: float64 rounding allowed for an exactly zero-variance coordinate, relative to max |t|
ZERO_VARIANCE_TOLERANCE = 1e-10


@dataclass(frozen=True)
class BiasResult:
    """What the bias and variance checks of one cell found.

    Attributes:
        n_repeats: R, the estimates the test used.
        p_value: Bonferroni p-value of "unbiased" over the coordinates.
        max_abs_z: the largest |z_c|.
        detectable: the relative bias (w.r.t. max |t|) detected with probability 0.975.
        variance: trace of the covariance of one estimate.
        n_nonfinite: estimates with a non-finite coordinate (left out).
    """

    n_repeats: int
    p_value: float
    max_abs_z: float
    detectable: float
    variance: float
    n_nonfinite: int


def _moments(
    problem: Problem, estimator: Estimator, state: State, point: Params, truth: torch.Tensor,
    n_samples: int, n_repeats: int,
) -> Moments:
    """The ``Moments`` of ``n_repeats`` estimates of a prepared estimator, centred on the
    truth for accuracy."""
    moments = Moments(truth.numel(), shift=truth)
    for chunk in estimate_chunks(problem, estimator, point, n_samples, n_repeats, state):
        moments.add(chunk)
    return moments


def check_bias(
    problem: Problem,
    estimator: Estimator,
    state: State,
    point: Params,
    truth: torch.Tensor,
    n_samples: int,
    seed: int,
    alpha: float,
    power_bias: float,
    max_repeats: int,
) -> BiasResult:
    """The bias test of one cell at a power-chosen R (module docstring), for an estimator
    already set up and warmed up (``prepare``): the pilot and the test draw their own
    estimates."""
    dim = truth.numel()
    z_alpha = z_threshold(dim, alpha)
    scale = float(truth.abs().max())
    torch.manual_seed(seed)
    pilot_var = _moments(problem, estimator, state, point, truth, n_samples, PILOT).variance
    target = power_bias * scale
    needed = (z_alpha + Z_POWER) ** 2 * float(pilot_var.max()) / target**2 if target > 0 else 0
    n_repeats = int(min(max_repeats, max(PILOT, math.ceil(needed))))
    moments = _moments(problem, estimator, state, point, truth, n_samples, n_repeats)
    variance, n = moments.variance, moments.n
    se = (variance / max(n, 1)).sqrt()
    # a miss within float64 rounding is no evidence of bias, also where rounding alone gives
    # an estimator of zero variance in exact arithmetic a tiny se (a huge z otherwise)
    test = moments.z_test(truth, exact=ZERO_VARIANCE_TOLERANCE * max(scale, 1e-300),
                          variance=variance)
    max_z, p_value, bad = test.max_abs_z, test.p_value, moments.n_nonfinite
    detectable = (z_alpha + Z_POWER) * float(se.max()) / scale if scale > 0 else math.inf
    return BiasResult(n_repeats, p_value, max_z, detectable, float(variance.sum()), bad)


def variance_of(
    problem: Problem, estimator: Estimator, point: Params, n_samples: int, n_repeats: int,
    seed: int,
) -> float:
    """Trace of the covariance of one estimate, from ``n_repeats`` estimates."""
    torch.manual_seed(seed)
    state, _ = prepare(problem, estimator, point, n_samples)
    zero = torch.zeros(sum(v.numel() for v in point.values()), dtype=torch.float64)
    return float(_moments(problem, estimator, state, point, zero, n_samples, n_repeats)
                 .variance.sum())


def repeat_leak(
    problem: Problem, estimator: Estimator, state: State, point: Params, n_samples: int
) -> float:
    """How much three repeats of a prepared estimator leak into each other (must be 0): the
    largest |d loss[r] / d params[s]| over s != r, and the largest change of the estimates of
    repeats 0 and 2 when params[1] moves at the same random draws (which also catches mixing
    through detached quantities, such as a baseline averaged over repeats). The second part is
    skipped when moving params[1] changes the other repeats' samples (rejection samplers draw
    a parameter-dependent amount of randomness)."""
    seed = int(torch.randint(2**62, ()))
    results = []
    for moved in (False, True):
        params = repeat_params(point, 3)
        if moved:
            with torch.no_grad():
                for value in params.values():
                    value[1] += 0.1 * (value[1].abs() + 1)
        torch.manual_seed(seed)
        out = estimator.surrogate(problem, params, n_samples, expand_state(state, 3))
        grads = [torch.autograd.grad(out.loss[r], list(params.values()), retain_graph=True,
                                     allow_unused=True) for r in range(3)]
        results.append((out.samples, grads))
    worst = 0.0
    for r, per_param in enumerate(results[0][1]):
        for grad in per_param:
            if grad is not None:
                worst = max(worst, float(grad[[s for s in range(3) if s != r]].abs().max()))
    (samples, grads), (moved_samples, moved_grads) = results
    if torch.equal(samples[:, [0, 2]], moved_samples[:, [0, 2]]):
        for r in (0, 2):
            for a, b in zip(grads[r], moved_grads[r], strict=True):
                if a is not None and b is not None:
                    worst = max(worst, float((a[r] - b[r]).abs().max()))
    return worst


def deterministic(
    problem: Problem, make: Callable[[], Estimator], point: Params, n_samples: int, seed: int
) -> bool:
    """Whether two runs from the same seed (set-up and warm-up included) give identical
    estimates."""
    draws = []
    for _ in range(2):
        torch.manual_seed(seed)
        estimator = make()
        state, _ = prepare(problem, estimator, point, n_samples)
        draws.append(torch.cat(list(estimate_chunks(problem, estimator, point, n_samples, 64,
                                                    state))))
    return bool(torch.equal(draws[0], draws[1]))
