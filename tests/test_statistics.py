"""Statistical tests against exact gradients: unbiased estimators pass, biased ones are
caught by the same test, and variances match closed forms. See tests/stats.py for how the
tolerances are set and what a failing seed means."""

import math

import numpy as np
import pytest
import torch

from estimators import ESTIMATORS, get_estimator
from estimators.base import Surrogate
from estimators.score_function import Reinforce
from problems import PROBLEMS, get_problem
from problems.base import LatentKind
from tests.examples import ESTIMATOR_EXAMPLES, EXACT_IN_MEAN, PROBLEM_EXAMPLES
from tests.stats import (
    compare,
    draw_estimates,
    flat_truth,
    sample_variance_check,
    z_threshold,
)

R = 20_000
TOY_PROBLEMS = [
    "gaussian_quadratic", "bernoulli_toy", "categorical_toy", "gaussian_elbo", "bernoulli_iwae",
    "gamma_quadratic", "polynomial",
]


def pairs(unbiased: bool):
    """The applicable (estimator, toy) pairs that are (un)biased at the example settings: an
    estimator's declaration, except the pairs of ``EXACT_IN_MEAN`` (tests/examples.py)."""
    return [
        pytest.param(e, p, id=f"{e}-{p}")
        for e, est in ESTIMATORS.items()
        for p in TOY_PROBLEMS
        if (est.unbiased or (e, p) in EXACT_IN_MEAN) == unbiased
        and est.incompatibility(PROBLEMS[p]) is None
    ]


def build(estimator: str, problem: str):
    example = ESTIMATOR_EXAMPLES[estimator]
    return (
        get_problem(problem)(PROBLEM_EXAMPLES[problem], dtype=torch.float64),
        get_estimator(estimator)(example.get("options", {})),
        example["n_samples"],
    )


@pytest.mark.parametrize(("estimator", "problem"), pairs(unbiased=True))
def test_unbiased_estimators_match_the_exact_gradient(estimator, problem):
    prob, est, k = build(estimator, problem)
    result = compare(draw_estimates(prob, est, k, R), flat_truth(prob, k))
    result.guard()
    assert result.consistent, f"max |z| = {np.abs(result.z_scores).max():.2f} > {result.z:.2f}"


@pytest.mark.parametrize(("estimator", "problem"), pairs(unbiased=False))
def test_biased_estimators_are_caught(estimator, problem):
    prob, est, k = build(estimator, problem)
    # GRPO divides by the group's std, so its estimates are O(1) where polynomial's true
    # gradient is 0.007: four times the repeats for a test with power there
    n_repeats = 4 * R if (estimator, problem) == ("grpo", "polynomial") else R
    result = compare(draw_estimates(prob, est, k, n_repeats), flat_truth(prob, k))
    result.guard()
    assert not result.consistent, "a biased estimator passed the bias test: the test lacks power"


class SelfBaselineReinforce(Reinforce):
    """Deliberately broken: the baseline includes the sample itself (biased by (K-1)/K)."""

    name = "broken_self_baseline"

    def surrogate(self, problem, params, n_samples, state):
        dist = problem.distribution(params)
        z = dist.sample((n_samples,))
        cost = problem.cost(z, params)
        centred = cost.detach() - cost.detach().mean(0)
        return Surrogate(loss=(centred * dist.log_prob(z) + cost).mean(0), samples=z)


def test_a_deliberately_broken_estimator_is_caught():
    prob = get_problem("bernoulli_toy")(PROBLEM_EXAMPLES["bernoulli_toy"], dtype=torch.float64)
    result = compare(draw_estimates(prob, SelfBaselineReinforce(), 2, R), flat_truth(prob))
    result.guard()
    assert not result.consistent


def test_relaxation_bias_shrinks_at_low_temperature():
    """Gumbel-Softmax's bias on the Bernoulli toy is not monotone in tau (it peaks near
    tau = 0.5 here, about 0.029, against 0.008 at tau = 2), but it vanishes as tau -> 0."""
    prob = get_problem("bernoulli_toy")({"theta": 1.0}, dtype=torch.float64)
    truth = flat_truth(prob)
    bias, se = {}, {}
    for tau in (0.5, 0.05):
        estimates = draw_estimates(prob, get_estimator("gumbel_softmax")({"tau": tau}), 4, R)
        bias[tau] = abs(estimates.mean(0) - truth).max()
        se[tau] = estimates.std(0, ddof=1).max() / math.sqrt(R)
    margin = z_threshold(1) * math.hypot(se[0.5], se[0.05])
    assert bias[0.5] - bias[0.05] > margin


def test_reparam_variance_closed_form():
    """g_mu = 2(x - k), g_sigma = 2(x - k) eps per sample, x = mu + sigma eps, so
    Var g_mu = 4 sigma^2 / K and Var g_sigma = (4 (mu - k)^2 + 8 sigma^2) / K."""
    mu, sigma, k, n = 1.0, 1.5, -0.5, 4
    prob = get_problem("gaussian_quadratic")({"mu": mu, "sigma": sigma, "k": k, "d": 2},
                                             dtype=torch.float64)
    estimates = draw_estimates(prob, get_estimator("reparam")(), n, R)
    exact = np.array([4 * sigma**2] * 2 + [4 * (mu - k) ** 2 + 8 * sigma**2] * 2) / n
    sample_variance_check(estimates, exact)


def bernoulli_single_sample_variance(per_sample) -> float:
    """Exact variance of g(b), b ~ Bernoulli(p), by enumerating b in {0, 1} (d = 1)."""
    p = 1 / (1 + math.exp(-1.0))
    values = np.array([per_sample(0.0, p), per_sample(1.0, p)])
    weights = np.array([1 - p, p])
    mean = (weights * values).sum()
    return float((weights * (values - mean) ** 2).sum())


@pytest.mark.parametrize(
    ("estimator", "per_sample"),
    [
        ("reinforce", lambda b, p: (b - 0.45) ** 2 * (b - p)),
        ("straight_through", lambda b, p: 2 * (b - 0.45) * p * (1 - p)),
    ],
)
def test_discrete_variance_by_enumeration(estimator, per_sample):
    n = 4
    prob = get_problem("bernoulli_toy")({"theta": 1.0, "d": 1}, dtype=torch.float64)
    estimates = draw_estimates(prob, get_estimator(estimator)(), n, R)
    sample_variance_check(estimates, np.array([bernoulli_single_sample_variance(per_sample) / n]))


def test_binary_concrete_is_a_two_class_gumbel_softmax():
    """RelaxedBernoulli(tau, theta) has the law of the first coordinate of a 2-class
    Gumbel-Softmax with logits (theta, 0); and a KS test can tell a different temperature."""
    from scipy.stats import ks_2samp
    from torch.distributions import RelaxedBernoulli, RelaxedOneHotCategorical

    theta, tau, n = 0.8, 0.6, 20_000
    tau_t = torch.tensor(tau, dtype=torch.float64)
    binary = RelaxedBernoulli(tau_t, logits=torch.tensor(theta, dtype=torch.float64)).sample((n,))
    logits = torch.tensor([theta, 0.0], dtype=torch.float64)
    two_class = RelaxedOneHotCategorical(tau_t, logits=logits).sample((n,))[:, 0]
    other = RelaxedOneHotCategorical(2 * tau_t, logits=logits).sample((n,))[:, 0]
    assert ks_2samp(binary.numpy(), two_class.numpy()).pvalue > 1e-4
    assert ks_2samp(binary.numpy(), other.numpy()).pvalue < 1e-4


@pytest.mark.parametrize("problem", TOY_PROBLEMS)
def test_closed_form_objective_matches_monte_carlo(problem):
    """The exact objective E_q[f] agrees with a Monte Carlo average of the cost."""
    from problems.base import repeat_params
    from problems.enumeration import exact_objective

    prob = get_problem(problem)(PROBLEM_EXAMPLES[problem], dtype=torch.float64)
    params = repeat_params(prob.init_params(), 1, False)
    exact = prob.objective(params)
    if exact is None:
        exact = exact_objective(prob, params)
    costs = prob.cost(prob.distribution(params).sample((200_000,)), params)[:, 0].numpy()
    se = costs.std(ddof=1) / math.sqrt(costs.size)
    assert abs(costs.mean() - float(exact)) <= z_threshold(1) * se


@pytest.mark.parametrize("problem", ["gaussian_quadratic", "bernoulli_toy", "gaussian_elbo"])
def test_closed_form_gradient_is_the_gradient_of_the_objective(problem):
    """Autograd of the closed-form objective equals the hand-derived gradient."""
    from problems.base import repeat_params

    prob = get_problem(problem)(PROBLEM_EXAMPLES[problem], dtype=torch.float64)
    params = repeat_params(prob.init_params(), 1)
    grads = torch.autograd.grad(prob.objective(params).sum(), list(params.values()))
    truth = prob.truth(prob.init_params())
    assert truth.kind == "closed_form"
    for grad, name in zip(grads, params, strict=True):
        torch.testing.assert_close(grad[0], truth.grad[name])


def test_bernoulli_closed_form_equals_enumeration():
    from problems.enumeration import enumeration_truth

    prob = get_problem("bernoulli_toy")({"theta": 0.3, "d": 3}, dtype=torch.float64)
    point = prob.init_params()
    point["theta"] = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    by_enumeration = enumeration_truth(prob, point, max_configs=2**10)
    torch.testing.assert_close(by_enumeration.grad["theta"], prob.truth(point).grad["theta"])


def test_categorical_enumeration_equals_an_independent_closed_form():
    """E f = Var(s) + (E s - t)^2 with s = mean_j <z_j, v>: groups independent, so
    Var(s) = (1/d^2) sum_j (sum_c p_jc v_c^2 - (sum_c p_jc v_c)^2)."""
    prob = get_problem("categorical_toy")({"theta": 0.7, "d": 3, "classes": 5},
                                          dtype=torch.float64)
    assert prob.latent is LatentKind.CATEGORICAL
    logits = prob.init_params()["logits"] + torch.randn(3, 5, dtype=torch.float64)
    truth = prob.truth({"logits": logits})
    assert truth.kind == "enumeration"
    leaf = logits.clone().requires_grad_()
    p, v, d = torch.softmax(leaf, -1), prob.class_values(), 3
    mean_j, second_j = p @ v, p @ v**2
    objective = (second_j - mean_j**2).sum() / d**2 + (mean_j.mean() - 0.45) ** 2
    (expected,) = torch.autograd.grad(objective, leaf)
    torch.testing.assert_close(truth.grad["logits"], expected)


def test_enumeration_gives_up_beyond_max_configs():
    prob = get_problem("categorical_toy")({"d": 5, "classes": 10, "max_configs": 1000})
    assert prob.truth(prob.init_params()) is None
