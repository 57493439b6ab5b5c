"""poisson_quadratic: the closed-form objective and gradient against sums over the Poisson
pmf, and the score-function variance per sample derived here, checked by sampling.

Derivation. With s = x / rate - 1 the score of the rate and f = (x - k)^2 at d = 1,
Var[f s] = E[(x - k)^4 (x / rate - 1)^2] - (1 + 2 (rate - k))^2; the fourth-order moment is
a sum over the pmf, truncated where the tail is below 1e-30 (exact to float64):
32 at (rate, k) = (2, 3) and 105 at (1, 0).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import poisson

from estimators import get_estimator
from problems import get_problem
from tests.stats import compare, draw_estimates, flat_truth, sample_variance_check

F64 = torch.float64
X = np.arange(0, 120)


def moments(rate, k):
    """(E f, d E f / d rate, Var of the score-function estimate per sample) by pmf sums."""
    w = poisson.pmf(X, rate)
    f, score = (X - k) ** 2, X / rate - 1
    mean = (w * f * score).sum()
    return (w * f).sum(), mean, (w * f**2 * score**2).sum() - mean**2


@pytest.mark.parametrize(("rate", "k", "variance"), [(2.0, 3.0, 32.0), (1.0, 0.0, 105.0)])
def test_truth_and_score_function_variance(rate, k, variance):
    problem = get_problem("poisson_quadratic")({"rate": rate, "k": k}, dtype=F64)
    objective, grad, sf_var = moments(rate, k)
    point = problem.init_params()
    np.testing.assert_allclose(problem.objective(point).item(), objective, rtol=1e-12)
    np.testing.assert_allclose(flat_truth(problem), [grad], rtol=1e-12)
    np.testing.assert_allclose(grad, 1 + 2 * (rate - k), rtol=1e-12)
    np.testing.assert_allclose(sf_var, variance, rtol=1e-12)
    estimates = draw_estimates(problem, get_estimator("reinforce")(), 1, 200_000)
    sample_variance_check(estimates, np.array([variance]))
    assert compare(estimates, flat_truth(problem)).consistent


def test_objective_and_gradient_at_d_2_by_pmf_sums_and_finite_differences():
    """E f = sum_j E (x_j - k)^2 at rates (1.5, 0.4): pmf sums per coordinate; the truth
    against central differences of those sums."""
    problem = get_problem("poisson_quadratic")({"k": 2.0, "d": 2}, dtype=F64)
    rates = torch.tensor([1.5, 0.4], dtype=F64)
    exact = sum(moments(r, 2.0)[0] for r in rates.tolist())
    np.testing.assert_allclose(problem.objective({"rate": rates}).item(), exact, rtol=1e-12)
    h = 1e-5
    numeric = [(moments(r + h, 2.0)[0] - moments(r - h, 2.0)[0]) / (2 * h) for r in rates.tolist()]
    truth = problem.truth({"rate": rates}).grad["rate"].numpy()
    np.testing.assert_allclose(truth, numeric, rtol=1e-7)
