"""Stochastic triples (Arya et al. 2022): exact means by summing the per-sample estimate
over the whole sample space (bits, one categorical variable, two coupled categoricals, a
Poisson count up to a negligible tail), per-sample values by hand, closed-form variances on
bernoulli_toy and poisson_quadratic, means against the truth on the VAEs, and a one-sided
categorical twin rejected."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.special import softmax
from scipy.stats import poisson

from estimators.stochastic_triples import StochasticTriples
from problems import get_problem
from problems.base import repeat_params
from tests.examples import PROBLEM_EXAMPLES
from tests.stats import compare, draw_estimates, flat_truth, sample_variance_check

F64 = torch.float64


def per_sample(problem, samples, estimator=None):
    """The estimate at each given sample (K = 1, one repeat per sample): ``[N, D]``."""
    estimator = estimator or StochasticTriples()
    params = repeat_params(problem.init_params(), samples.shape[0])
    out = estimator.surrogate_from_samples(problem, params, samples.unsqueeze(0))
    grads = torch.autograd.grad(out.loss.sum(), list(params.values()))
    return torch.cat([g.flatten(1) for g in grads], -1)


def exact_mean(problem, estimator=None):
    """sum_z q(z) g(z) over the enumerated latent space."""
    dist = problem.distribution(repeat_params(problem.init_params(), 1, requires_grad=False))
    event = dist.event_shape
    if problem.latent.value == "binary":
        configs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=event[0])), dtype=F64)
    else:
        eye = torch.eye(event[-1], dtype=F64)
        configs = torch.stack([eye[list(c)] for c in itertools.product(
            range(event[-1]), repeat=event[0])])
    weights = dist.log_prob(configs.unsqueeze(1)).exp()[:, 0]  # [N]
    return (weights.unsqueeze(-1) * per_sample(problem, configs, estimator)).sum(0)


@pytest.mark.parametrize(("name", "options"), [
    ("bernoulli_toy", {"theta": 1.0, "d": 3, "t": 0.3}),
    ("bernoulli_toy", {"theta": -2.0, "d": 1}),
    ("categorical_toy", {"theta": 1.0, "d": 1, "classes": 4}),
    ("categorical_toy", {"theta": 0.5, "d": 2, "classes": 3}),  # the cost couples the groups
])
def test_exact_mean_over_the_sample_space_is_the_gradient(name, options):
    problem = get_problem(name)(options, dtype=F64)
    np.testing.assert_allclose(exact_mean(problem).numpy(), flat_truth(problem), rtol=1e-10,
                               atol=1e-14)


@pytest.mark.parametrize(("rate", "k"), [(2.0, 3.0), (0.3, 1.0)])
def test_poisson_estimate_is_the_forward_difference_and_exact_in_mean(rate, k):
    """g = f(x + 1) - f(x) = 2 (x - k) + 1; sum_x pmf(x) g(x) = 1 + 2 (rate - k); the variance
    per sample is 4 rate (8 at (2, 3), against the score function's 32)."""
    problem = get_problem("poisson_quadratic")({"rate": rate, "k": k}, dtype=F64)
    x = torch.arange(0, 80, dtype=F64).unsqueeze(-1)  # [N, 1]
    g = per_sample(problem, x)[:, 0].numpy()
    np.testing.assert_allclose(g, 2 * (x[:, 0].numpy() - k) + 1, rtol=1e-12)
    w = poisson.pmf(np.arange(80), rate)
    np.testing.assert_allclose((w * g).sum(), 1 + 2 * (rate - k), rtol=1e-12)
    np.testing.assert_allclose((w * g**2).sum() - (w * g).sum() ** 2, 4 * rate, rtol=1e-10)


def test_per_sample_on_one_categorical_by_hand():
    """g_m = [max(-dB_c, 0) (f(c+1) - f(c)) + max(dB_{c-1}, 0) (f(c-1) - f(c))] / p_c with
    dB_c / dl_m = p_m (1[m <= c] - B_c), w.r.t. the normalized logits that the distribution
    holds, so w.r.t. the parameters g - (sum_m g_m) p (the chain rule through the
    normalization)."""
    problem = get_problem("categorical_toy")({"theta": 0.8, "d": 1, "classes": 4, "t": 0.2},
                                             dtype=F64)
    p = softmax(problem.init_params()["logits"][0].numpy())
    v = problem.class_values().numpy()
    f = (v - 0.2) ** 2
    bounds = np.cumsum(p)
    got = per_sample(problem, torch.eye(4, dtype=F64).unsqueeze(1)).numpy()  # [C, C]
    for c in range(4):
        want = np.zeros(4)
        for m in range(4):
            up = p[m] * ((m <= c) - bounds[c])
            if c < 3:
                want[m] += max(-up, 0) * (f[c + 1] - f[c]) / p[c]
            if c > 0:
                down = p[m] * ((m <= c - 1) - bounds[c - 1])
                want[m] += max(down, 0) * (f[c - 1] - f[c]) / p[c]
        np.testing.assert_allclose(got[c], want - want.sum() * p, rtol=1e-10, atol=1e-15)


def test_closed_form_variance_on_bernoulli_toy():
    """g_j = 1[b_j = 0] p (Delta / d): variance p^3 (1 - p) (Delta / d)^2 per sample."""
    theta, d, t, k = 0.7, 3, 0.3, 4
    problem = get_problem("bernoulli_toy")({"theta": theta, "d": d, "t": t}, dtype=F64)
    p, delta = 1 / (1 + np.exp(-theta)), (1 - 2 * t) / d
    estimates = draw_estimates(problem, StochasticTriples(), k, 40_000)
    sample_variance_check(estimates, np.full(d, p**3 * (1 - p) * delta**2 / k))
    result = compare(estimates, flat_truth(problem))
    result.guard()
    assert result.consistent


def test_closed_form_variance_on_poisson_quadratic():
    problem = get_problem("poisson_quadratic")({"rate": 2.0, "k": 3.0, "d": 2}, dtype=F64)
    estimates = draw_estimates(problem, StochasticTriples(), 2, 40_000)
    sample_variance_check(estimates, np.full(2, 4 * 2.0 / 2))
    assert compare(estimates, flat_truth(problem)).consistent


@pytest.mark.parametrize("name", ["bernoulli_vae", "categorical_vae"])
def test_mean_matches_enumeration_on_the_vaes(name):
    problem = get_problem(name)(PROBLEM_EXAMPLES[name], dtype=F64)
    result = compare(draw_estimates(problem, StochasticTriples(), 4, 10_000), flat_truth(problem))
    result.guard()
    assert result.consistent


class UpOnly(StochasticTriples):
    """Broken: a categorical sample only jumps up (the lower boundary's move ignored)."""

    name = "broken_stochastic_triples_up_only"

    @staticmethod
    def weight_down(lower):
        return torch.zeros_like(lower)


def test_one_sided_jumps_are_rejected_exactly():
    problem = get_problem("categorical_toy")({"theta": 1.0, "d": 1, "classes": 4}, dtype=F64)
    gap = np.abs(exact_mean(problem, UpOnly()).numpy() - flat_truth(problem))
    assert gap.max() > 0.1 * np.abs(flat_truth(problem)).max()


def test_cost_accounting_and_applicability():
    vae = get_problem("categorical_vae")({"groups": 3, "categories": 4, "batch": 2})
    assert StochasticTriples().cost_evals(5, vae) == 5 * (1 + 2 * 3)
    assert StochasticTriples().cost_evals(5, get_problem("poisson_quadratic")({"d": 4})) == 25
    assert StochasticTriples.incompatibility(get_problem("poisson_quadratic")) is None
    assert "Poisson" in StochasticTriples.incompatibility(get_problem("gaussian_quadratic"))
