"""logistic_regression: the data, the quadrature truth against scipy, finite differences and
large Monte Carlo estimates, the estimators that apply, and the training hooks."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from torch.distributions import Normal, kl_divergence

from estimators import get_estimator
from problems import get_problem
from problems.base import repeat_params
from problems.logistic_regression import N_EXAMPLES, breast_cancer
from tests.stats import compare, draw_estimates, flat_truth, z_threshold

F64 = torch.float64
EXAMPLE = {"batch": 4, "log_scale": -1.0, "loc": 0.1}


def build(**options):
    return get_problem("logistic_regression")(EXAMPLE | options, dtype=F64)


def test_the_data_is_standardized_breast_cancer():
    features, labels = breast_cancer()
    assert features.shape == (569, 31) and set(np.unique(labels)) == {-1.0, 1.0}
    np.testing.assert_allclose(features[:, :30].mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(features[:, :30].std(0), 1, rtol=1e-12)
    assert (features[:, 30] == 1).all()


@pytest.mark.parametrize("log_scale", [-2.0, 0.0, 0.5])
def test_the_quadrature_has_converged(log_scale):
    """Doubling and quadrupling the resolution moves the gradient by < 1e-9 of its size, also
    where the activations' spread reaches 34 (log_scale = 0.5)."""
    grads = []
    for resolution in (2.0, 8.0):
        problem = build(log_scale=log_scale, resolution=resolution, batch=32)
        truth = problem.truth(problem.init_params())
        grads.append(torch.cat(list(truth.grad.values())))
    assert (grads[0] - grads[1]).abs().max() < 1e-9 * grads[1].abs().max()


def test_each_expectation_matches_scipy_quad():
    problem = build(batch=3)
    params = problem.init_params()
    params["loc"] = params["loc"] + 0.3 * torch.randn(31, dtype=F64)
    signed = problem.signed[problem.batch].numpy()
    total = 0.0
    for row in signed:
        mu = float(params["loc"].numpy() @ row)
        sigma = float(np.sqrt(np.exp(2 * params["log_scale"].numpy()) @ row**2))
        value, _ = integrate.quad(
            lambda e, mu=mu, sigma=sigma: -np.logaddexp(0, -(mu + sigma * e))
            * np.exp(-e * e / 2) / math.sqrt(2 * math.pi), -np.inf, np.inf, epsabs=1e-13)
        total += value
    quadrature = problem.expected_log_likelihood(repeat_params(params, 1, False), problem.batch)
    assert quadrature.item() == pytest.approx(total, rel=1e-11)


def test_the_kl_is_torchs():
    problem = build()
    params = problem.init_params()
    params["loc"] = torch.randn(31, dtype=F64)
    params["log_scale"] = 0.2 * torch.randn(31, dtype=F64)
    q = Normal(params["loc"], params["log_scale"].exp())
    expected = kl_divergence(q, Normal(torch.zeros(31, dtype=F64), 1.0)).sum()
    assert problem.kl(params).item() == pytest.approx(expected.item(), rel=1e-12)


def test_the_gradient_matches_central_differences():
    problem = build()
    point = problem.init_params()
    truth = problem.truth(point)
    step = 1e-5
    for name, index in (("loc", 0), ("loc", 30), ("log_scale", 7), ("log_scale", 30)):
        shifted = [{k: v.clone() for k, v in point.items()} for _ in range(2)]
        shifted[0][name][index] += step
        shifted[1][name][index] -= step
        up, down = (problem.objective(repeat_params(p, 1, False)).item() for p in shifted)
        assert (up - down) / (2 * step) == pytest.approx(truth.grad[name][index].item(),
                                                         rel=1e-7, abs=1e-7)


def test_the_objective_matches_a_large_monte_carlo_mean():
    problem = build(log_scale=0.0)
    params = repeat_params(problem.init_params(), 1, False)
    costs = problem.cost(problem.distribution(params).sample((200_000,)), params)[:, 0]
    se = costs.std().item() / math.sqrt(costs.numel())
    assert abs(costs.mean().item() - problem.objective(params).item()) <= z_threshold(1) * se
    assert se < 3e-3 * abs(problem.objective(params).item())  # not vacuous


@pytest.mark.parametrize(("name", "k"), [("reparam", 4), ("reinforce_loo", 4), ("mvd", 1),
                                         ("delta_cv", 4)])
def test_unbiased_estimators_match_the_quadrature_gradient(name, k):
    """The large Monte Carlo check of the truth's gradient: pathwise, score-function,
    measure-valued and delta-method estimates agree with it to their standard errors."""
    problem = build()
    result = compare(draw_estimates(problem, get_estimator(name)(), k, 4000), flat_truth(problem))
    result.guard()
    assert result.consistent


def test_a_wrong_truth_is_rejected():
    """The same test rejects the gradient of the prior-free objective (the KL dropped)."""
    problem = build()
    estimates = draw_estimates(problem, get_estimator("reparam")(), 4, 4000)
    point = problem.init_params()
    kl_grad = torch.cat([point["loc"], (2 * point["log_scale"]).exp() - 1])
    result = compare(estimates, flat_truth(problem) - kl_grad.numpy())
    assert not result.consistent


def test_training_hooks():
    problem = build(batch=32)
    assert len(problem.batch) == 32
    problem.next_batch(1, torch.Generator().manual_seed(5))
    drawn = problem.batch.clone()
    problem.next_batch(1, torch.Generator().manual_seed(5))
    assert torch.equal(drawn, problem.batch) and len(set(drawn.tolist())) == 32
    problem.reset_batch()
    assert torch.equal(problem.batch, problem.fixed_batch)
    full = build(batch=N_EXAMPLES)
    metrics = full.train_metrics(full.init_params())
    objective = full.objective(repeat_params(full.init_params(), 1, False)).item()
    assert metrics["full_nelbo"] == pytest.approx(objective, rel=1e-12)
    assert 0 <= metrics["accuracy"] <= 1


def test_one_repeats_objective_does_not_depend_on_anothers_parameters():
    """reinforce_exact_baseline evaluates the objective for R repeats at once: widening
    repeat 1's q must leave repeat 0's value unchanged to the bit (at a coarse resolution,
    where a shared step would move it visibly)."""
    problem = build(resolution=0.5)
    params = repeat_params(problem.init_params(), 2, False)
    before = problem.objective(params)[0].item()
    params["log_scale"][1] += 2.0
    assert problem.objective(params)[0].item() == before
