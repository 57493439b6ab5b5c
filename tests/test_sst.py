"""Stochastic softmax tricks and the k_subset problem: the Gumbel-top-k set probability against
the k! orders of sequential draws and against sampling frequencies, the truth against finite
differences, ``sst``/``st_sst`` equal to ``gumbel_softmax``/``st_gumbel_softmax`` float for
float on one-hot and binary latents, the relaxed top-k's constraint, stationarity, limit and
implicit derivative (a twin without it refused), one draw against finite differences, and the
bias shown (rejected at tau = 1, shrinking with tau). See tests/stats.py for the tolerances.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from estimators import get_estimator
from estimators.stochastic_softmax import SST, STSST, relaxed_top_k
from problems import get_problem
from problems.base import repeat_params
from problems.subsets import top_k_hot
from tests.stats import compare, draw_estimates, flat_truth, z_threshold

R = 20_000
SUBSET = {"n": 6, "k": 3, "theta": 1.0}


def problem_of(name: str, options: dict):
    return get_problem(name)(options, dtype=torch.float64)


def ordered_probability(weights: np.ndarray, chosen: tuple[int, ...]) -> float:
    """P(set) as the sum over its k! orders of sequential draws without replacement."""
    total = 0.0
    for order in itertools.permutations(chosen):
        p, used = 1.0, 0.0
        for i in order:
            p *= weights[i] / (weights.sum() - used)
            used += weights[i]
        total += p
    return total


@pytest.mark.parametrize(("n", "k"), [(5, 2), (6, 3), (7, 1)])
def test_set_probability_is_the_sum_over_orders(n, k):
    problem = problem_of("k_subset", {"n": n, "k": k, "theta": 1.3})
    point = problem.init_params()
    support = problem.subsets().unsqueeze(1)
    log_p = problem.distribution(repeat_params(point, 1, False)).log_prob(support)[:, 0]
    weights = point["logits"].exp().numpy()
    for row, chosen in enumerate(itertools.combinations(range(n), k)):
        assert log_p[row].exp().item() == pytest.approx(ordered_probability(weights, chosen),
                                                        rel=1e-10)
    assert log_p.exp().sum().item() == pytest.approx(1.0, rel=1e-12)


def test_gumbel_top_k_samples_have_the_set_probabilities():
    """Chi-square of 40000 draws against P(S) over the 20 subsets; power: refused against the
    uniform law on the subsets."""
    problem = problem_of("k_subset", SUBSET)
    params = repeat_params(problem.init_params(), 1, False)
    dist = problem.distribution(params)
    z = dist.sample((40_000,))[:, 0]  # [N, n]
    assert torch.all(z.sum(-1) == 3) and torch.all((z == 0) | (z == 1))
    support = problem.subsets()
    counts = (z.unsqueeze(1) == support).all(-1).sum(0).numpy()  # [S]
    expected = dist.log_prob(support.unsqueeze(1))[:, 0].exp().numpy() * z.shape[0]
    assert chisquare(counts, expected).pvalue > 1e-4
    assert chisquare(counts, np.full(len(counts), z.shape[0] / len(counts))).pvalue < 1e-4


def test_k_subset_truth_matches_finite_differences():
    problem = problem_of("k_subset", SUBSET)
    point = problem.init_params()
    truth = problem.truth(point).grad["logits"].numpy()
    h = 1e-6
    for j in range(SUBSET["n"]):
        step = torch.zeros(SUBSET["n"], dtype=torch.float64)
        step[j] = h
        up = problem.objective({"logits": (point["logits"] + step).unsqueeze(0)})
        down = problem.objective({"logits": (point["logits"] - step).unsqueeze(0)})
        assert truth[j] == pytest.approx(float(up - down) / (2 * h), rel=1e-6, abs=1e-10)


def test_k_subset_refuses_k_not_below_n():
    with pytest.raises(ValueError, match=r"k=4 must be below n=4"):
        get_problem("k_subset")({"n": 4, "k": 4})


@pytest.mark.parametrize("problem", [("categorical_toy", {"theta": 1.0, "d": 2, "classes": 4}),
                                     ("bernoulli_toy", {"theta": 1.0, "d": 2}),
                                     ("categorical_vae", {"groups": 2, "categories": 3,
                                                          "batch": 2})])
@pytest.mark.parametrize(("ours", "theirs"), [("sst", "gumbel_softmax"),
                                              ("st_sst", "st_gumbel_softmax")])
def test_sst_on_one_hot_latents_is_gumbel_softmax_float_for_float(problem, ours, theirs):
    prob = problem_of(*problem)
    out = {}
    for name in (ours, theirs):
        torch.manual_seed(6)
        out[name] = draw_estimates(prob, get_estimator(name)({"tau": 0.7}), 3, 64)
    np.testing.assert_array_equal(out[ours], out[theirs])
    assert np.abs(out[ours]).max() > 0


def test_relaxed_top_k_solves_the_regularized_argmax():
    """sum x = k, 0 < x < 1, and stationarity: tau logit(x_i) - U_i is one number (-nu)."""
    torch.manual_seed(0)
    scores = torch.randn(50, 7, dtype=torch.float64) * 3
    for tau in (0.3, 1.0, 4.0):
        x = relaxed_top_k(scores, 3, tau)
        assert torch.allclose(x.sum(-1), torch.full((50,), 3.0, dtype=torch.float64),
                              atol=1e-12)
        assert torch.all((x > 0) & (x < 1))
        gap = tau * torch.logit(x) - scores  # logit loses precision as x nears 0 or 1
        interior = torch.minimum(x, 1 - x) > 1e-6
        centre = (gap * interior).sum(-1, keepdim=True) / interior.sum(-1, keepdim=True)
        assert torch.all(((gap - centre).abs() < 1e-8) | ~interior)
        assert interior.float().mean() > 0.5  # most coordinates checked


def test_relaxed_top_k_tends_to_the_hard_top_k():
    torch.manual_seed(1)
    scores = torch.randn(200, 6, dtype=torch.float64)
    x = relaxed_top_k(scores, 2, 1e-4)
    ordered = scores.sort(-1, descending=True).values
    separated = ordered[:, 1] - ordered[:, 2] > 1e-2  # the 2nd and 3rd not nearly tied
    assert separated.float().mean() > 0.9
    assert torch.allclose(x[separated], top_k_hot(scores, 2)[separated], atol=1e-12)


def jacobian_error(relax) -> float:
    """Largest gap between the autograd Jacobian of ``relax`` and central differences."""
    torch.manual_seed(2)
    scores = torch.randn(6, dtype=torch.float64).requires_grad_()
    auto = torch.autograd.functional.jacobian(relax, scores)
    h = 1e-6
    numeric = torch.stack([(relax(scores.detach() + h * e) - relax(scores.detach() - h * e))
                           / (2 * h) for e in torch.eye(6, dtype=torch.float64)], 1)
    return float((auto - numeric).abs().max() / numeric.abs().max())


def test_relaxed_top_k_has_the_implicit_derivative():
    assert jacobian_error(lambda s: relaxed_top_k(s, 3, 0.8)) < 1e-6


def relaxed_top_k_without_implicit_derivative(scores, k, tau):
    """Broken: nu cut from the graph (the constraint's derivative dropped)."""
    x = relaxed_top_k(scores.detach(), k, tau)
    nu = (scores.detach() - tau * torch.logit(x)).mean(-1, keepdim=True)
    return torch.sigmoid((scores - nu) / tau)


def test_a_relaxation_without_the_implicit_derivative_is_refused():
    assert jacobian_error(lambda s: relaxed_top_k_without_implicit_derivative(s, 3, 0.8)) > 0.1


def test_sst_on_subsets_replays_finite_differences():
    """One draw (K = 2): the estimate is d/dtheta mean_k f(X_tau(theta + G_k)) at fixed G,
    checked by central differences in theta with the Gumbels replayed."""
    problem = problem_of("k_subset", SUBSET)
    params = repeat_params(problem.init_params(), 1)
    torch.manual_seed(9)
    out = SST({"tau": 0.5}).surrogate(problem, params, 2, {})
    (grad,) = torch.autograd.grad(out.loss.sum(), [params["logits"]])
    torch.manual_seed(9)
    gumbels = problem.distribution(repeat_params(problem.init_params(), 1, False)).gumbels((2,))

    def relaxed_cost(logits):
        x = relaxed_top_k(logits + gumbels, SUBSET["k"], 0.5)
        return float(problem.cost(x, {}).mean())

    h, point = 1e-6, problem.init_params()["logits"]
    for j in range(SUBSET["n"]):
        e = torch.zeros_like(point)
        e[j] = h
        numeric = (relaxed_cost(point + e) - relaxed_cost(point - e)) / (2 * h)
        assert grad[0, j].item() == pytest.approx(numeric, rel=1e-5, abs=1e-9)
    assert torch.equal(out.samples.sum(-1), torch.full((2, 1), 3.0, dtype=torch.float64))


@pytest.mark.parametrize("estimator", [SST({"tau": 1.0}), STSST({"tau": 1.0})])
def test_sst_is_shown_biased_on_subsets(estimator):
    problem = problem_of("k_subset", SUBSET)
    result = compare(draw_estimates(problem, estimator, 4, R), flat_truth(problem))
    result.guard()
    assert not result.consistent, "a biased estimator passed: the test lacks power"


def test_sst_bias_on_subsets_shrinks_with_the_temperature():
    problem = problem_of("k_subset", SUBSET)
    truth = flat_truth(problem)
    bias, se = {}, {}
    for tau in (1.0, 0.1):
        estimates = draw_estimates(problem, SST({"tau": tau}), 4, R)
        bias[tau] = np.abs(estimates.mean(0) - truth).max()
        se[tau] = estimates.std(0, ddof=1).max() / math.sqrt(R)
    assert bias[1.0] - bias[0.1] > z_threshold(1) * math.hypot(se[1.0], se[0.1])


def test_score_functions_are_unbiased_on_subsets():
    """The set probability, its sampler and the enumeration truth agree: REINFORCE with the
    leave-one-out baseline matches the truth."""
    problem = problem_of("k_subset", SUBSET)
    result = compare(draw_estimates(problem, get_estimator("reinforce_loo")(), 4, R),
                     flat_truth(problem))
    result.guard()
    assert result.consistent


def test_sst_is_skipped_without_discrete_or_subset_latents():
    reason = SST.incompatibility(get_problem("gaussian_quadratic"))
    assert reason == "sst requires discrete or k-subset latents, which gaussian_quadratic lacks"
    assert SST.incompatibility(get_problem("k_subset")) is None
    assert get_estimator("gumbel_softmax").incompatibility(get_problem("k_subset")) is not None
