"""``reinforce_optimal_baseline``: the published Gaussian-quadratic variances derived in
closed form, its baseline and estimates replayed, its mean against exact truth, and a
broken twin (a baseline that sees the estimate's own samples)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.polynomial import Polynomial

from estimators import get_estimator
from estimators.base import Surrogate
from estimators.optimal_baseline import ReinforceOptimalBaseline, moment_source
from problems import get_problem
from problems.base import repeat_params
from tests.stats import compare, draw_estimates, flat_truth, sample_variance_check

F64 = torch.float64


def gaussian_mean(poly: Polynomial) -> float:
    """E[poly(eps)], eps ~ N(0, 1): E[eps^n] = (n - 1)!! for even n, 0 for odd n."""
    return sum(c * (math.prod(range(n - 1, 0, -2)) if n % 2 == 0 else 0.0)
               for n, c in enumerate(poly.coef))


def closed_form(mu: float, sigma: float, k: float) -> tuple[list[float], list[float]]:
    """Optimal baselines and per-sample variances of (f - b) s for d mu and d sigma, with
    x = mu + sigma eps, f = (x - k)^2, s_mu = eps / sigma, s_sigma = (eps^2 - 1) / sigma."""
    eps = Polynomial([0.0, 1.0])
    f = (mu - k + sigma * eps) ** 2
    baselines, variances = [], []
    for score in (eps / sigma, (eps**2 - 1) / sigma):
        b = gaussian_mean(f * score**2) / gaussian_mean(score**2)
        g = (f - b) * score
        baselines.append(b)
        variances.append(gaussian_mean(g**2) - gaussian_mean(g) ** 2)
    return baselines, variances


@pytest.mark.parametrize(("k", "published"), [
    (0.0, (14, 64)), (1.0, (6, 24)), (3.0, (38, 184)), (-3.0, (134, 664)),
])
def test_published_gaussian_quadratic_variances_are_the_closed_form(k, published):
    """Mohamed et al. (2020), Sec. 7.4: mu = sigma = 1, per sample, (d mu, d sigma)."""
    baselines, variances = closed_form(1.0, 1.0, k)
    assert variances == pytest.approx(list(published), abs=1e-9)
    problem = get_problem("gaussian_quadratic")({"k": k}, dtype=F64)
    assert moment_source(problem) == "exact"
    point = repeat_params(problem.init_params(), 1, requires_grad=False)
    got = ReinforceOptimalBaseline().baselines(problem, point)[0]
    assert got.tolist() == pytest.approx(baselines, rel=1e-10)


@pytest.mark.parametrize("k", [0.0, -3.0])
def test_measured_variance_matches_the_closed_form(k):
    problem = get_problem("gaussian_quadratic")({"k": k}, dtype=F64)
    estimates = draw_estimates(problem, ReinforceOptimalBaseline(), 2, 200_000)
    sample_variance_check(estimates, np.array(closed_form(1.0, 1.0, k)[1]) / 2)


def test_one_estimate_replays_by_hand():
    """K = 2 bits: g = mean_k (f_k - b) (b_k - p), b = E[f (b - p)^2] / E[(b - p)^2]."""
    problem = get_problem("bernoulli_toy")({"theta": 0.8}, dtype=F64)
    torch.manual_seed(5)
    params = repeat_params(problem.init_params(), 1)
    out = ReinforceOptimalBaseline().surrogate(problem, params, 2, {})
    got = torch.autograd.grad(out.loss.sum(), params["theta"])[0].item()
    p = 1 / (1 + math.exp(-0.8))
    f1, f0 = 0.55**2, 0.45**2
    b = (p * f1 * (1 - p) ** 2 + (1 - p) * f0 * p**2) / (p * (1 - p) ** 2 + (1 - p) * p**2)
    bits = out.samples.flatten().tolist()
    expected = np.mean([((0.55**2 if x else 0.45**2) - b) * (x - p) for x in bits])
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("name", "options"), [
    ("bernoulli_toy", {"theta": 1.0, "d": 2}),
    ("categorical_toy", {"theta": 1.0, "d": 2, "classes": 3}),
    ("gaussian_quadratic", {"mu": 1.0, "sigma": 1.5, "k": -0.5, "d": 2}),
    ("gamma_quadratic", {}),
])
def test_mean_matches_the_exact_gradient(name, options):
    problem = get_problem(name)(options, dtype=F64)
    estimator = ReinforceOptimalBaseline({"pilot": 20})
    estimates = draw_estimates(problem, estimator, 2, 20_000)
    result = compare(estimates, flat_truth(problem))
    result.guard()
    assert result.consistent
    expected = "pilot" if name == "gamma_quadratic" else "exact"
    assert moment_source(problem) == expected
    assert estimator.cost_evals(2, problem) == (22 if expected == "pilot" else 2)


def test_pilot_moments_are_unbiased_too():
    problem = get_problem("bernoulli_toy")({"theta": 1.0, "d": 2}, dtype=F64)
    estimator = get_estimator("reinforce_optimal_baseline")({"moments": "pilot", "pilot": 10})
    result = compare(draw_estimates(problem, estimator, 2, 20_000), flat_truth(problem))
    result.guard()
    assert result.consistent


class SelfSeeingBaseline(ReinforceOptimalBaseline):
    """Deliberately broken: the moments are taken from the estimate's own K samples."""

    name = "broken_self_moments"

    def surrogate(self, problem, params, n_samples, state):
        dist = problem.distribution(params)
        z = dist.sample((n_samples,))  # [K, R, 1]
        cost = problem.cost(z, params)
        log_q = problem.log_prob_terms(dist, z).sum(-1)
        score = (z[..., 0] - torch.sigmoid(params["theta"][:, 0])).detach()  # one bit
        b = (cost * score**2).mean(0) / (score**2).mean(0)
        loss = ((cost.detach() - b.detach()) * log_q + cost).mean(0)
        return Surrogate(loss=loss, samples=z)


def test_a_baseline_from_the_estimates_own_samples_is_caught():
    problem = get_problem("bernoulli_toy")({"theta": 1.0}, dtype=F64)
    result = compare(draw_estimates(problem, SelfSeeingBaseline(), 2, 20_000),
                     flat_truth(problem))
    result.guard()
    assert not result.consistent
