"""Repeat independence: estimate r depends on params[r] only, for every problem and estimator.

The harness draws R estimates in one batch and reads estimate r off ``d loss[r] / d params[r]``
(``problems.base``). Anything that mixes the repeat dimension, such as a normalization or a
reduction over dim 1 of ``[K, R, ...]``, would correlate the repeats, so the variance, the
bias z-scores and their intervals would be wrong while every mean still looked right. Two
checks per pair: the gradient of ``loss[r]`` w.r.t. every other repeat's params is exactly
zero, and, at fixed samples, perturbing params[1] leaves the cost and log q of the other
repeats unchanged (this also catches mixing through detached quantities, which autograd
cannot see). A deliberately mixing problem shows that both checks have power. Likewise the
K samples of one estimate must be scored independently (the baselines and the sample means
assume it): changing sample 1 leaves the cost and log q of the other samples unchanged.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from bench.cell.estimate import expand_state, warmed_state
from estimators import ESTIMATORS
from problems import PROBLEMS
from problems.base import LatentKind, Problem, repeat_params
from problems.toys import BernoulliToy
from tests.examples import PROBLEM_EXAMPLES

R, K = 3, 4  # K even: the antithetic estimators take K/2 pairs
#: the critic's quality does not matter here; a barely trained one keeps the test fast
FAST = {"gan_continuous": {"critic_steps": 2}, "gan_discrete": {"critic_steps": 2}}


def pairs() -> list:
    return [
        pytest.param(p, e, id=f"{p}-{e}")
        for p, problem in PROBLEMS.items()
        for e, estimator in ESTIMATORS.items()
        if estimator.incompatibility(problem) is None
    ]


def leaks(problem: Problem, name: str) -> tuple[float, float, float]:
    """The largest cross-repeat gradient, the largest change of the other repeats' cost and
    log q when params[1] moves, and the largest change of repeat 1's own log q (which must
    not be zero, else the perturbation tested nothing)."""
    estimator = ESTIMATORS[name]({"warmup": 2} if name in ("reinforce_ema", "relax") else {})
    point = problem.init_params()
    state = expand_state(warmed_state(problem, estimator, point, K), R)
    params = repeat_params(point, R)
    out = estimator.surrogate(problem, params, K, state)
    assert out.loss.shape == (R,)
    cross = 0.0
    for r in range(R):
        grads = torch.autograd.grad(
            out.loss[r], list(params.values()), retain_graph=True, allow_unused=True
        )
        others = [i for i in range(R) if i != r]
        cross = max(cross, *(0.0 if g is None else g[others].abs().max().item() for g in grads))

    z = out.samples  # [K, R, *event]
    base = {k: v.detach() for k, v in params.items()}
    moved = {k: v.clone() for k, v in base.items()}
    for value in moved.values():
        value[1] += 0.3 * torch.randn_like(value[1])
    cost = problem.cost(z, base) - problem.cost(z, moved)  # [K, R]
    log_q = problem.distribution(base).log_prob(z) - problem.distribution(moved).log_prob(z)
    value = max(cost[:, [0, 2]].abs().max().item(), log_q[:, [0, 2]].abs().max().item())
    return cross, value, log_q[:, 1].abs().max().item()


@pytest.mark.parametrize(("problem", "estimator"), pairs())
def test_repeats_are_independent(problem: str, estimator: str) -> None:
    options = PROBLEM_EXAMPLES[problem] | FAST.get(problem, {})
    cross, value, own = leaks(PROBLEMS[problem](options, dtype=torch.float64), estimator)
    assert own > 0, "perturbing params[1] changed nothing: the check has no power"
    assert cross == 0, f"d loss[r] / d params[s] = {cross:.3g} for some s != r"
    assert value == 0, f"moving params[1] changed other repeats' cost or log q by {value:.3g}"


def other_sample(kind: LatentKind, z: Tensor) -> Tensor:
    """A different point of the support: flipped bits, the next class or items, or a shift."""
    if kind is LatentKind.BINARY:
        return 1 - z
    if kind in (LatentKind.CATEGORICAL, LatentKind.SUBSET):
        return z.roll(1, -1)
    if kind is LatentKind.SEQUENCE:  # the next token id at every position
        return torch.where(z == z.max(), 0, z + 1)
    return z + 0.5


def sample_leak(problem: Problem) -> float:
    """The largest change of samples 0 and 2's cost and log q when sample 1 moves."""
    params = repeat_params(problem.init_params(), R, requires_grad=False)
    dist = problem.distribution(params)
    z = dist.sample((K,))  # [K, R, *event]
    moved = z.clone()
    moved[1] = other_sample(problem.latent, z[1])
    cost = problem.cost(z, params) - problem.cost(moved, params)  # [K, R]
    log_q = dist.log_prob(z) - dist.log_prob(moved)
    assert log_q[1].abs().max() > 0, "the moved sample has the same log q: no power"
    return max(cost[[0, 2]].abs().max().item(), log_q[[0, 2]].abs().max().item())


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_samples_are_scored_independently(name: str) -> None:
    options = PROBLEM_EXAMPLES[name] | FAST.get(name, {})
    assert sample_leak(PROBLEMS[name](options, dtype=torch.float64)) == 0


class MixingToy(BernoulliToy):
    """Deliberately broken: the cost is centred by its mean over the repeats."""

    def cost(self, z, params):
        cost = super().cost(z, params) * (1 + torch.sigmoid(params["theta"]).mean(-1))
        return cost - cost.mean(1, keepdim=True)


@pytest.mark.parametrize("estimator", ["reinforce", "straight_through"])
def test_a_repeat_mixing_problem_is_caught(estimator: str) -> None:
    cross, value, own = leaks(MixingToy({"theta": 1.0, "d": 2}, dtype=torch.float64), estimator)
    assert own > 0 and cross > 0 and value > 0


class SampleMixingToy(BernoulliToy):
    """Deliberately broken: the cost is centred by its mean over the K samples."""

    def cost(self, z, params):
        cost = super().cost(z, params)
        return cost - cost.mean(0)


def test_a_sample_mixing_problem_is_caught() -> None:
    # one bit: flipping it always changes the cost, so the mean over K moves
    assert sample_leak(SampleMixingToy({"theta": 1.0, "d": 1}, dtype=torch.float64)) > 0
