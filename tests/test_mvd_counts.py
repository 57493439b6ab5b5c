"""The measure-valued derivative on Poisson counts: d/drate E f = E[f(x + 1)] - E[f(x)].

Derivation of the variances (f = (x - k)^2, d = 1, x ~ Poisson(rate)). With central moments
mu2 = mu3 = rate and mu4 = rate + 3 rate^2, and a = rate - c,
Var[(x - c)^2] = E(x - c)^4 - (E(x - c)^2)^2
             = rate + 3 rate^2 + 4 a rate + 6 a^2 rate + a^4 - (rate + a^2)^2
             = rate + 2 rate^2 + 4 a rate + 4 a^2 rate =: V(a).
Coupled, g = (x + 1 - k)^2 - (x - k)^2 = 2 (x - k) + 1, variance 4 rate. Uncoupled, the two
parts are independent: V(rate - k + 1) + V(rate - k). At (rate, k) = (2, 3): 8 and 20, against
the score function's 32 (tests/test_counts.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import poisson

from estimators import get_estimator
from estimators.measure_valued import MeasureValued
from problems import get_problem
from problems.base import repeat_params
from tests.stats import compare, draw_estimates, flat_truth, sample_variance_check

F64 = torch.float64
X = np.arange(0, 120)


def v(rate, a):
    return rate + 2 * rate**2 + 4 * a * rate + 4 * a**2 * rate


def exact_variance(rate, k, coupled):
    return 4 * rate if coupled else v(rate, rate - k + 1) + v(rate, rate - k)


@pytest.mark.parametrize(("rate", "k"), [(2.0, 3.0), (1.0, 0.0), (5.5, 2.0)])
def test_the_variance_formulas_against_pmf_sums(rate, k):
    w = poisson.pmf(X, rate)
    for c in (k, k - 1):
        f = (X - c) ** 2
        np.testing.assert_allclose((w * f**2).sum() - (w * f).sum() ** 2, v(rate, rate - c),
                                   rtol=1e-10)
    g = (X + 1 - k) ** 2 - (X - k) ** 2
    np.testing.assert_allclose((w * g).sum(), 1 + 2 * (rate - k), rtol=1e-12)
    np.testing.assert_allclose((w * g**2).sum() - (w * g).sum() ** 2, 4 * rate, rtol=1e-10)
    assert exact_variance(2.0, 3.0, True) == 8.0 and exact_variance(2.0, 3.0, False) == 20.0


def test_coupled_is_stochastic_triples_sample_by_sample():
    problem = get_problem("poisson_quadratic")({"d": 3, "rate": 1.5, "k": 2.0}, dtype=F64)
    grads = []
    for estimator in (MeasureValued(), get_estimator("stochastic_triples")()):
        params = repeat_params(problem.init_params(), 50)
        torch.manual_seed(11)
        out = estimator.surrogate(problem, params, 4, {})
        grads.append(torch.autograd.grad(out.loss.sum(), [params["rate"]])[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=1e-12)
    assert grads[0].std() > 0


@pytest.mark.parametrize("coupled", [True, False])
def test_closed_form_variance_and_mean(coupled):
    problem = get_problem("poisson_quadratic")({"rate": 2.0, "k": 3.0}, dtype=F64)
    estimates = draw_estimates(problem, MeasureValued({"coupled": coupled}), 1, 20_000)
    sample_variance_check(estimates, np.array([exact_variance(2.0, 3.0, coupled)]))
    result = compare(estimates, flat_truth(problem))
    result.guard()
    assert result.consistent


class DownwardJump(MeasureValued):
    """Broken: the weak derivative's positive part taken as the count shifted *down* by one
    (the sign of d/drate Poisson(x) = Poisson(x - 1) - Poisson(x) read the wrong way)."""

    name = "broken_mvd_downward"

    @staticmethod
    def jump(x):
        return x - 1


@pytest.mark.parametrize("coupled", [True, False])
def test_means_on_two_coordinates_and_the_broken_twin(coupled):
    problem = get_problem("poisson_quadratic")({"rate": 2.0, "k": 1.0, "d": 2}, dtype=F64)
    truth = flat_truth(problem)
    good = compare(draw_estimates(problem, MeasureValued({"coupled": coupled}), 4, 20_000), truth)
    good.guard()
    assert good.consistent
    broken = draw_estimates(problem, DownwardJump({"coupled": coupled}), 4, 20_000)
    assert not compare(broken, truth).consistent


def test_applies_to_counts_and_gaussians_only_with_its_cost():
    assert MeasureValued.incompatibility(get_problem("poisson_quadratic")) is None
    assert MeasureValued.incompatibility(get_problem("gaussian_quadratic")) is None
    assert "Poisson" in MeasureValued.incompatibility(get_problem("bernoulli_toy"))
    problem = get_problem("poisson_quadratic")({"d": 3})
    assert MeasureValued().cost_evals(4, problem) == 4 * (3 + 1)
