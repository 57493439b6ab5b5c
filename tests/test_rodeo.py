"""RODEO (Shi et al. 2022): the Stein control variates have mean exactly 0 for a frozen surrogate
(enumeration over all 2^10 configurations of one sample), the whole estimator's mean is the exact
gradient by enumerating every joint draw, the surrogate 0 is reinforce_loo sample by sample, an
exact replay against a by-hand Gibbs Stein operator, means against the truth with a trained
surrogate, and a broken twin (the Gibbs kernel's flip probability q(x_i) instead of
q(not x_i)) that the enumeration and the Monte Carlo test reject.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from bench.cell.estimate import estimate_chunks
from estimators import get_estimator
from estimators.rodeo import Rodeo
from problems import get_problem
from problems.base import repeat_params
from tests.examples import PROBLEM_EXAMPLES
from tests.stats import compare, draw_estimates, flat_truth

F64 = torch.float64


def frozen(problem, scale=1.0, seed=3, estimator=None):
    """A rodeo whose surrogate network has random (nonzero) output layers, frozen."""
    estimator = estimator or Rodeo()
    torch.manual_seed(seed)
    estimator.setup(problem, problem.init_params())
    with torch.no_grad():
        for key in ("out", "skip", "out_bias"):
            estimator.network[key].copy_(scale * torch.randn_like(estimator.network[key]))
    estimator.freeze()
    return estimator


def frozen_estimates(problem, estimator, n_samples, n_repeats):
    """Estimates ``[R, D]`` of an already set-up estimator (``draw_estimates`` would set it up
    again, resetting the network)."""
    chunks = estimate_chunks(problem, estimator, problem.init_params(), n_samples, n_repeats, {})
    return np.concatenate([part.double().numpy() for part in chunks])


def all_bits(d):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)), dtype=F64)


def mass(theta, bits):
    """q(bits) ``[N]`` under independent Bernoulli(sigmoid(theta))."""
    p = torch.sigmoid(theta)
    return (bits * p + (1 - bits) * (1 - p)).prod(-1)


def test_stein_control_variates_have_mean_zero_on_ten_bits():
    """Sample 0 runs over all 1024 configurations, sample 1 is fixed: given the other sample,
    sum_x q(x) (A h1)(x) = 0 and sum_x q(x) (A [h2 s])(x) = 0 exactly (a frozen surrogate)."""
    d = 10
    problem = get_problem("bernoulli_toy")({"d": d, "t": 0.3}, dtype=F64)
    theta = torch.linspace(-1.5, 1.2, d, dtype=F64)
    estimator = frozen(problem)
    bits = all_bits(d)  # [N, d]
    other = torch.bernoulli(torch.full((d,), 0.5, dtype=F64)).expand_as(bits)
    b = torch.stack([bits, other])  # [2, N, d]
    params = {"theta": theta.expand(bits.shape[0], d).clone()}
    free = problem.cost_terms(b, params).detach()
    baseline_cv, score_cv = estimator.controls(problem, params, b, free)
    q = mass(theta, bits)
    assert baseline_cv[0].abs().max() > 1e-3 and score_cv[0].abs().max() > 1e-3  # not vacuous
    torch.testing.assert_close((q[:, None] * baseline_cv[0]).sum(0), torch.zeros(1, dtype=F64),
                               atol=1e-12, rtol=0)
    torch.testing.assert_close((q[:, None, None] * score_cv[0]).sum(0),
                               torch.zeros(1, d, dtype=F64), atol=1e-12, rtol=0)


def enumerated_mean(problem, estimator, theta, n_samples=2):
    """The estimator's exact mean: every joint draw of the K samples, weighted by its mass."""
    d = theta.numel()
    configs = list(itertools.product(range(2**d), repeat=n_samples))
    bits = all_bits(d)
    b = torch.stack([bits[list(c)] for c in zip(*configs, strict=True)])  # [K, N, d]
    params = {"theta": theta.expand(len(configs), d).clone().requires_grad_()}
    out = estimator.surrogate_from_samples(problem, params, b)
    (grads,) = torch.autograd.grad(out.loss.sum(), [params["theta"]])
    weight = mass(theta, b).prod(0)  # [N]
    return (weight[:, None] * grads).sum(0), grads


@pytest.mark.parametrize("n_samples", [2, 3])
def test_enumerated_mean_is_the_exact_gradient(n_samples):
    d, t = 3, 0.3
    problem = get_problem("bernoulli_toy")({"d": d, "t": t}, dtype=F64)
    theta = torch.tensor([0.4, -1.0, 1.5], dtype=F64)
    p = torch.sigmoid(theta)
    truth = p * (1 - p) * (1 - 2 * t) / d
    mean, grads = enumerated_mean(problem, frozen(problem), theta, n_samples)
    torch.testing.assert_close(mean, truth, rtol=1e-10, atol=1e-14)
    loo = enumerated_mean(problem, Rodeo(), theta, n_samples)[1]
    assert (grads - loo).abs().max() > 1e-3  # the control variates are not zero


class FlipStaysRodeo(Rodeo):
    """Broken: the Gibbs kernel flips bit i with probability q(x_i) instead of q(not x_i), so
    the 'Stein' control variates no longer have mean 0."""

    name = "broken_rodeo_flip_weight"

    @staticmethod
    def flip_weight(mu, x):
        return mu * x + (1 - mu) * (1 - x)


def test_broken_flip_weight_is_rejected_by_enumeration():
    d, t = 3, 0.3
    problem = get_problem("bernoulli_toy")({"d": d, "t": t}, dtype=F64)
    theta = torch.tensor([0.4, -1.0, 1.5], dtype=F64)
    p = torch.sigmoid(theta)
    truth = p * (1 - p) * (1 - 2 * t) / d
    mean, _ = enumerated_mean(problem, frozen(problem, estimator=FlipStaysRodeo()), theta)
    assert (mean - truth).abs().max() > 1e-4


@pytest.mark.parametrize("name", ["bernoulli_toy", "bernoulli_vae"])
def test_zero_surrogate_is_reinforce_loo_sample_by_sample(name):
    problem = get_problem(name)(PROBLEM_EXAMPLES[name], dtype=F64)
    params = repeat_params(problem.init_params(), 20)
    torch.manual_seed(5)
    b = problem.distribution(params).sample((3,))
    grads = []
    for estimator in (get_estimator("reinforce_loo")(), Rodeo({"warmup": 0}), frozen(problem)):
        if isinstance(estimator, Rodeo) and estimator.network is None:
            estimator.setup(problem, problem.init_params())  # output layers at 0
        torch.manual_seed(5)
        out = (estimator.surrogate(problem, params, 3, {}) if not isinstance(estimator, Rodeo)
               else estimator.surrogate_from_samples(problem, params, b))
        assert torch.equal(out.samples, b)
        grads.append(torch.cat([g.flatten(1) for g in torch.autograd.grad(
            out.loss.sum(), list(params.values()))], -1))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-12, atol=1e-15)
    assert not torch.allclose(grads[2], grads[0])


def by_hand(net, x, mu, t):
    """One estimate from bits ``x`` ``[K, d]``: each bit flipped in turn, the surrogate network
    called at each neighbour, the Gibbs Stein operator summed as written."""
    n, d = x.shape
    f = ((x - t) ** 2).mean(-1)
    slope = 2 * (x - t) / d

    def h(k, y):
        rest = [j for j in range(n) if j != k]
        u = sum(slope[j] @ (y - x[j]) for j in rest) / (n - 1)
        return net(u, f[rest].mean())

    def stein(k, fn):
        total = 0
        for i in range(d):
            y = x[k].clone()
            y[i] = 1 - y[i]
            flip = mu[i] * (1 - x[k, i]) + (1 - mu[i]) * x[k, i]
            total = total + flip * (fn(k, y) - fn(k, x[k]))
        return total / d

    a1 = [stein(k, lambda k, y: h(k, y)[0]) for k in range(n)]
    a2 = [stein(k, lambda k, y: h(k, y)[1] * (y - mu)) for k in range(n)]
    return sum((f[k] - np.mean([f[j] + a1[j] for j in range(n) if j != k])) * (x[k] - mu)
               + a2[k] for k in range(n)) / n


def test_replay_on_three_bits_against_a_by_hand_operator():
    """g = (1/K) sum_k [(f_k - mean_{j!=k}(f_j + A h1_j)) s_k + A[h2_k s](x_k)]."""
    t, d, n = 0.3, 3, 3
    problem = get_problem("bernoulli_toy")({"d": d, "t": t}, dtype=F64)
    estimator = frozen(problem)
    theta = torch.tensor([0.4, -1.0, 2.0], dtype=F64)
    params = repeat_params({"theta": theta}, 2)
    b = torch.bernoulli(torch.sigmoid(theta).expand(n, 2, d))
    (grads,) = torch.autograd.grad(
        estimator.surrogate_from_samples(problem, params, b).loss.sum(), [params["theta"]])
    for r in range(2):
        want = by_hand(estimator.surrogate_net, b[:, r], torch.sigmoid(theta), t)
        torch.testing.assert_close(grads[r], want.detach(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("name", ["bernoulli_toy", "bernoulli_vae"])
def test_mean_matches_the_truth_with_a_trained_surrogate(name):
    problem = get_problem(name)(PROBLEM_EXAMPLES[name], dtype=F64)
    estimator = Rodeo({"warmup": 50})
    result = compare(draw_estimates(problem, estimator, 4, 20_000), flat_truth(problem))
    result.guard()
    assert result.consistent
    assert estimator.network["out"].abs().max() > 0  # it trained


def test_broken_flip_weight_is_rejected_by_the_monte_carlo_test():
    problem = get_problem("bernoulli_toy")({"theta": 1.0, "d": 3, "t": 0.3}, dtype=F64)
    truth = flat_truth(problem)
    good = compare(frozen_estimates(problem, frozen(problem), 4, 20_000), truth)
    good.guard()
    assert good.consistent
    broken = compare(frozen_estimates(problem, frozen(problem, estimator=FlipStaysRodeo()), 4,
                                      20_000), truth)
    assert not broken.consistent


def test_refuses_categorical_latents_and_one_sample():
    assert "binary" in Rodeo.incompatibility(get_problem("categorical_toy"))
    assert Rodeo.sample_rule(1) is not None and Rodeo.sample_rule(2) is None
