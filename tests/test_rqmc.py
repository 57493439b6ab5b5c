"""Randomized quasi-Monte Carlo reparameterization (Buchholz et al. 2018): one draw replayed
from scipy's scrambled Sobol points, closed-form variances at K = 1 (Monte Carlo) and K = 2
(stratified sampling), means against the closed-form truth, variance falling faster than 1/K
(the slope of log variance against log K, with a bootstrap interval), and an unrandomized
twin rejected. See tests/stats.py for the tolerances and what a failing seed means.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import qmc

from estimators.quasi_monte_carlo import RQMCReparam
from problems import get_problem
from problems.base import repeat_params
from tests.stats import compare, draw_estimates, flat_truth, sample_variance_check

QUADRATIC = {"mu": 1.0, "sigma": 1.5, "k": -0.5, "d": 2}


def problem_of(name: str, options: dict):
    return get_problem(name)(options, dtype=torch.float64)


def variance_slope(
    estimates: dict[int, np.ndarray], rng: np.random.Generator, n_boot: int = 1000
) -> tuple[float, float, float]:
    """The least-squares slope of log variance (trace of the covariance) against log K over
    ``{K: estimates [R, D]}``, and its 95% percentile bootstrap interval (repeats resampled
    within each K; the K are independent)."""
    ks = np.log(np.array(list(estimates)))

    def slope(samples: list[np.ndarray]) -> float:
        log_var = np.log([s.var(0, ddof=1).sum() for s in samples])
        return float(np.polyfit(ks, log_var, 1)[0])

    values = list(estimates.values())
    boot = [slope([v[rng.integers(0, len(v), len(v))] for v in values]) for _ in range(n_boot)]
    low, high = np.quantile(boot, [0.025, 0.975])
    return slope(values), float(low), float(high)


def test_rqmc_replays_scipy_sobol_by_hand():
    """The uniforms are scipy's scrambled Sobol points from a generator seeded by torch's;
    g_mu = mean_k 2 (z_k - k), g_sigma = mean_k 2 (z_k - k) Phi^{-1}(u_k)."""
    from scipy.special import ndtri

    problem = problem_of("gaussian_quadratic", QUADRATIC)
    params = repeat_params(problem.init_params(), 1)
    torch.manual_seed(4)
    out = RQMCReparam().surrogate(problem, params, 4, {})
    g_mu, g_sigma = torch.autograd.grad(out.loss.sum(), [params["mu"], params["sigma"]])
    torch.manual_seed(4)
    rng = np.random.default_rng(int(torch.randint(0, 2**62, ())))
    eps = ndtri(qmc.Sobol(2, scramble=True, rng=rng).random(4))  # [K, D]
    residual = 2 * (1.0 + 1.5 * eps + 0.5)
    np.testing.assert_allclose(g_mu[0].numpy(), residual.mean(0), rtol=1e-12)
    np.testing.assert_allclose(g_sigma[0].numpy(), (residual * eps).mean(0), rtol=1e-12)


def test_rqmc_points_are_uniform_and_stratified():
    """Each point is uniform (unbiasedness), and the first two of a coordinate lie in opposite
    halves of (0, 1) (the stratification behind the K = 2 variance)."""
    from scipy.stats import kstest

    from estimators.quasi_monte_carlo import scrambled_sobol

    u = scrambled_sobol(2, 3, 5000, torch.zeros(())).numpy()  # [K, R, D]
    for k in range(2):
        assert kstest(u[k].reshape(-1), "uniform").pvalue > 1e-4
    assert np.all((u[0] < 0.5) != (u[1] < 0.5))


@pytest.mark.parametrize("n_samples", [1, 2])
def test_rqmc_variance_closed_form(n_samples):
    """gaussian_quadratic per coordinate, a = mu - k: g_mu = mean_k 2 (a + sigma e_k),
    g_sigma = mean_k 2 (a + sigma e_k) e_k. K = 1 is Monte Carlo: 4 sigma^2 and
    4 a^2 + 8 sigma^2. K = 2 is stratified: e_1 = -X, e_2 = X' with X, X' independent
    half-normal (E X = m = sqrt(2 / pi), E X^2 = 1, E X^3 = 2 m, E X^4 = 3), so
    Var g_mu = (1/4) 2 (4 sigma^2 (1 - m^2)) = 2 sigma^2 (1 - 2 / pi) and
    Var g_sigma = (1/4) [Var(2 a X + 2 sigma X^2) + Var(-2 a X + 2 sigma X^2)]
    = 2 a^2 (1 - 2 / pi) + 4 sigma^2 (the cross terms +-8 a sigma m cancel)."""
    mu, sigma, k = QUADRATIC["mu"], QUADRATIC["sigma"], QUADRATIC["k"]
    a = mu - k
    if n_samples == 1:
        v_mu, v_sigma = 4 * sigma**2, 4 * a**2 + 8 * sigma**2
    else:
        shrink = 1 - 2 / math.pi
        v_mu, v_sigma = 2 * sigma**2 * shrink, 2 * a**2 * shrink + 4 * sigma**2
    estimates = draw_estimates(problem_of("gaussian_quadratic", QUADRATIC), RQMCReparam(),
                               n_samples, 8000)
    sample_variance_check(estimates, np.array([v_mu] * 2 + [v_sigma] * 2))


@pytest.mark.parametrize(("problem", "options", "n_samples"),
                         [("gaussian_quadratic", QUADRATIC, 3), ("gaussian_elbo", {"d": 2}, 8)])
def test_rqmc_matches_the_exact_gradient(problem, options, n_samples):
    """(scipy builds one scrambled sequence in about 0.4 ms: R = 4000 keeps this fast.)"""
    prob = problem_of(problem, options)
    result = compare(draw_estimates(prob, RQMCReparam(), n_samples, 4000), flat_truth(prob))
    result.guard(rel=0.05)
    assert result.consistent, f"max |z| = {np.abs(result.z_scores).max():.2f} > {result.z:.2f}"


def test_rqmc_variance_falls_faster_than_one_over_k():
    """The slope of log variance (trace) against log K over K = 2 .. 64, with a 95% bootstrap
    interval whose upper end is below -1 (Monte Carlo's slope)."""
    problem = problem_of("gaussian_quadratic", {"mu": 1.0, "sigma": 1.0, "k": 0.0, "d": 1})
    samples = [2**m for m in range(1, 7)]
    estimates = {k: draw_estimates(problem, RQMCReparam(), k, 1000) for k in samples}
    slope, low, high = variance_slope(estimates, np.random.default_rng(0))
    assert low <= slope <= high
    assert high < -1, f"slope {slope:.2f} [{low:.2f}, {high:.2f}] not below -1"


def test_the_slope_interval_contains_monte_carlo_for_monte_carlo():
    """Power and calibration: the same fit on plain reparam estimates gives an interval
    around -1, and refuses 'below -1'."""
    from estimators import get_estimator

    problem = problem_of("gaussian_quadratic", {"mu": 1.0, "sigma": 1.0, "k": 0.0, "d": 1})
    estimates = {2**m: draw_estimates(problem, get_estimator("reparam")(), 2**m, 1000)
                 for m in range(1, 7)}
    _, low, high = variance_slope(estimates, np.random.default_rng(0))
    assert low < -1 < high


class UnrandomizedSobol(RQMCReparam):
    """Broken: the Sobol points without scrambling (the first, 0, skipped): deterministic
    quasi-Monte Carlo, biased."""

    name = "broken_rqmc_unscrambled"

    def uniforms(self, n_samples, n_repeats, dim, like):
        points = qmc.Sobol(dim, scramble=False).random(n_samples + 1)[1:]  # [K, D]
        u = torch.as_tensor(points, dtype=torch.float64)
        return u.unsqueeze(1).expand(n_samples, n_repeats, dim)


def test_unscrambled_sobol_is_rejected():
    problem = problem_of("gaussian_quadratic", QUADRATIC)
    result = compare(draw_estimates(problem, UnrandomizedSobol(), 3, 2000), flat_truth(problem))
    assert not result.consistent, "an unrandomized QMC estimate passed"
