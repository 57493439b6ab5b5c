"""The continuous family: ``stl``, ``dreg``, ``mvd``, ``delta_cv`` and implicit
reparameterization on ``gamma_quadratic``.

Each estimator: an exact per-sample replay, its mean against exact truth (closed form or
Gauss-Hermite quadrature) beyond the generic tests of tests/test_statistics.py, closed-form
variances, the identities of issue 13, and a broken twin that the same test rejects. See
tests/stats.py for how the tolerances are set and what a failing seed means.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import gammainc
from scipy.stats import gamma as gamma_law

from estimators import get_estimator
from estimators.base import Estimator, Surrogate
from estimators.delta_method import DeltaCV
from estimators.measure_valued import MeasureValued
from estimators.reparam import DReG
from problems import get_problem
from problems.base import repeat_params
from tests.stats import compare, draw_estimates, flat_truth, sample_variance_check, z_threshold

R = 20_000
QUADRATIC = {"mu": 1.0, "sigma": 1.5, "k": -0.5, "d": 2}
ELBO = {"d": 2, "n_obs": 3}
#: 16 Gauss-Hermite points per coordinate at K d = 4 (relative error of the bound ~1e-5)
IWAE = {"d": 1, "n_obs": 3, "m": 0.3, "s": 0.8, "objective": "iwae", "max_nodes": 2**16}


def problem_of(name: str, options: dict):
    return get_problem(name)(options, dtype=torch.float64)


def one_draw(problem, estimator: Estimator, n_samples: int, seed: int = 3):
    """One estimate (R = 1) and the samples it used."""
    params = repeat_params(problem.init_params(), 1)
    torch.manual_seed(seed)
    out = estimator.surrogate(problem, params, n_samples, {})
    grads = torch.autograd.grad(out.loss.sum(), list(params.values()))
    return {k: g[0] for k, g in zip(params, grads, strict=True)}, out.samples[:, 0]


def assert_consistent(
    problem, estimator: Estimator, n_samples: int, repeats: int = R, rel: float = 0.5
) -> np.ndarray:
    estimates = draw_estimates(problem, estimator, n_samples, repeats)
    result = compare(estimates, flat_truth(problem, n_samples))
    result.guard(rel=rel)
    assert result.consistent, f"max |z| = {np.abs(result.z_scores).max():.2f} > {result.z:.2f}"
    return estimates


def assert_rejected(problem, estimator: Estimator, n_samples: int, repeats: int = R) -> None:
    result = compare(
        draw_estimates(problem, estimator, n_samples, repeats), flat_truth(problem, n_samples)
    )
    result.guard()
    assert not result.consistent, "a biased estimator passed: the test lacks power"


def elbo_constants(problem) -> tuple[float, np.ndarray]:
    """gaussian_elbo per coordinate: -log p(x, z) = A z^2 / 2 - B_j z + const, with
    A = 1 + n / sigma_x^2 and B_j = sum_i x_ij / sigma_x^2; the posterior is N(B / A, 1 / A)."""
    var_x = problem.option_values["sigma_x"] ** 2
    x = problem.x.double().numpy()
    return 1 + x.shape[0] / var_x, x.sum(0) / var_x


# stl --------------------------------------------------------------------------------------------


def test_stl_replays_by_hand():
    """z = m + s eps; log q at detached (m, s) contributes -eps / s per unit of z, so
    g_m = A z - B - eps / s and g_s = (A z - B - eps / s) eps."""
    problem = problem_of("gaussian_elbo", {"d": 1, "n_obs": 3, "m": 0.4, "s": 0.6})
    grads, z = one_draw(problem, get_estimator("stl")(), 1)
    a, b = elbo_constants(problem)
    z = float(z[0, 0])
    eps = (z - 0.4) / 0.6
    path = a * z - b[0] - eps / 0.6
    assert grads["m"].item() == pytest.approx(path, rel=1e-12)
    assert grads["s"].item() == pytest.approx(path * eps, rel=1e-12)


def test_stl_and_reparam_variances_on_the_elbo():
    """Per coordinate with c = A m - B and r = A s - 1 / s (elbo_constants), one sample:
    reparam g_m = c + A s eps, g_s = (c + A s eps) eps - 1 / s: Var g_m = A^2 s^2,
    Var g_s = c^2 + 2 A^2 s^2; stl g_m = c + r eps, g_s = c eps + r eps^2: Var g_m = r^2,
    Var g_s = c^2 + 2 r^2 (each divided by K)."""
    problem, n = problem_of("gaussian_elbo", ELBO), 4
    a, b = elbo_constants(problem)
    m, s = 0.0, 1.0
    c, r = a * m - b, a * s - 1 / s
    exact = {
        "reparam": np.concatenate([np.full(2, a**2 * s**2), c**2 + 2 * a**2 * s**2]) / n,
        "stl": np.concatenate([np.full(2, r**2), c**2 + 2 * r**2]) / n,
    }
    for name, variance in exact.items():
        sample_variance_check(draw_estimates(problem, get_estimator(name)(), n, R), variance)
    assert np.all(exact["stl"] < exact["reparam"])


def test_stl_has_zero_variance_at_the_exact_posterior():
    """q = N(B / A, 1 / A): log w = log p(x) for every z, so every path term vanishes."""
    base = {"d": 1, "n_obs": 3}
    a, b = elbo_constants(problem_of("gaussian_elbo", base))
    problem = problem_of("gaussian_elbo", {**base, "m": b[0] / a, "s": 1 / math.sqrt(a)})
    estimates = draw_estimates(problem, get_estimator("stl")(), 2, 200)
    assert np.abs(estimates).max() < 1e-12
    assert np.allclose(flat_truth(problem), 0, atol=1e-12)
    reparam = draw_estimates(problem, get_estimator("reparam")(), 2, 200)
    assert reparam.var(0).min() > 0.1  # the pathwise estimate is not noise-free there


@pytest.mark.parametrize("n_samples", [2, 4])
def test_stl_is_flagged_biased_on_the_importance_weighted_bound(n_samples):
    assert_rejected(problem_of("gaussian_elbo", IWAE), get_estimator("stl")(), n_samples)


def test_stl_is_unbiased_for_the_bound_at_one_sample():
    problem = problem_of("gaussian_elbo", IWAE)
    assert_consistent(problem, get_estimator("stl")(), 1)


# dreg -------------------------------------------------------------------------------------------


def test_dreg_replays_by_hand():
    """Gradient of the negative bound, per sample k: -w~_k^2 dlog w_k / dz_k dz_k/dtheta with
    dlog w / dz = -(A z - B) + eps / s (log q held at fixed parameters), dz/dm = 1,
    dz/ds = eps."""
    problem = problem_of("gaussian_elbo", IWAE)
    grads, z = one_draw(problem, get_estimator("dreg")(), 3)
    a, b = elbo_constants(problem)
    params = repeat_params(problem.init_params(), 1, False)
    log_w = problem.log_weights(z.unsqueeze(1), params)[:, 0, 0].numpy()
    weights = np.exp(log_w - log_w.max())
    weights /= weights.sum()
    z = z[:, 0].numpy()
    eps = (z - 0.3) / 0.8
    slope = -(a * z - b[0]) + eps / 0.8
    assert grads["m"].item() == pytest.approx(-(weights**2 * slope).sum(), rel=1e-10)
    assert grads["s"].item() == pytest.approx(-(weights**2 * slope * eps).sum(), rel=1e-10)


@pytest.mark.parametrize(
    ("options", "n_samples"),
    [(IWAE, 2), (IWAE, 4), pytest.param({**IWAE, "d": 2}, 2, marks=pytest.mark.slow)],
)
def test_dreg_matches_the_quadrature_gradient_of_the_bound(options, n_samples):
    assert_consistent(problem_of("gaussian_elbo", options), get_estimator("dreg")(), n_samples)


def test_dreg_at_one_sample_is_stl():
    problem = problem_of("gaussian_elbo", IWAE)
    a, _ = one_draw(problem, get_estimator("dreg")(), 1)
    b, _ = one_draw(problem, get_estimator("stl")(), 1)
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=1e-12, atol=1e-12), name


class DReGUnsquared(DReG):
    """Broken: the normalized weights not squared (that is STL on the bound: biased)."""

    name = "broken_dreg_unsquared"

    def surrogate(self, problem, params, n_samples, state):
        z = problem.distribution(params).rsample((n_samples,))
        log_w = problem.log_weights(z, params, detach_q=True)
        weights = torch.softmax(log_w.detach(), 0)
        loss = -problem.factor_scale * (weights * log_w).sum(0).sum(-1)
        return Surrogate(loss=loss, samples=z.detach())


def test_dreg_with_unsquared_weights_is_rejected():
    assert_rejected(problem_of("gaussian_elbo", IWAE), DReGUnsquared(), 2)


# mvd --------------------------------------------------------------------------------------------


def test_mvd_replays_by_hand():
    """Replays the random stream of one coupled estimate on gaussian_quadratic (d = 1, K = 1):
    x = mu + sigma n, W = sqrt(-2 log(1 - u)), M = sign sqrt(chi^2_3), eps' = U M;
    g_mu = (f(mu + sigma W) - f(mu - sigma W)) / (sigma sqrt(2 pi)),
    g_sigma = (f(mu + sigma M) - f(mu + sigma eps')) / sigma."""
    mu, sigma, k = 0.7, 1.3, -0.4
    problem = problem_of("gaussian_quadratic", {"mu": mu, "sigma": sigma, "k": k})
    grads, _ = one_draw(problem, MeasureValued(), 1, seed=11)
    torch.manual_seed(11)
    shape = (1, 1, 1)
    torch.randn(shape, dtype=torch.float64)  # x: cancels in every difference (d = 1)
    w = math.sqrt(-2 * math.log1p(-torch.rand(2, *shape, dtype=torch.float64)[0].item()))
    sign = torch.randint(0, 2, shape).item() * 2 - 1
    maxwell = sign * math.sqrt((torch.randn(3, *shape, dtype=torch.float64) ** 2).sum().item())
    normal = maxwell * torch.rand(shape, dtype=torch.float64).item()

    def f(x):
        return (x - k) ** 2

    g_mu = (f(mu + sigma * w) - f(mu - sigma * w)) / (sigma * math.sqrt(2 * math.pi))
    g_sigma = (f(mu + sigma * maxwell) - f(mu + sigma * normal)) / sigma
    assert grads["mu"].item() == pytest.approx(g_mu, rel=1e-12)
    assert grads["sigma"].item() == pytest.approx(g_sigma, rel=1e-12)


def test_mvd_noise_has_the_right_laws():
    """Rayleigh, double-sided Maxwell and, coupled, U * Maxwell standard normal (KS tests)."""
    from scipy.stats import kstest, maxwell, norm, rayleigh

    from estimators.measure_valued import weak_derivative_noise

    like = torch.zeros((), dtype=torch.float64)
    for coupled in (True, False):
        noise = weak_derivative_noise(torch.Size([20_000]), coupled, like).numpy()
        assert kstest(noise[0], rayleigh.cdf).pvalue > 1e-4
        assert kstest(-noise[1], rayleigh.cdf).pvalue > 1e-4
        assert kstest(np.abs(noise[2]), maxwell.cdf).pvalue > 1e-4
        assert kstest(noise[3], norm.cdf).pvalue > 1e-4
    assert kstest(np.abs(noise[0]), norm.cdf).pvalue < 1e-4  # power: a wrong law is refused


@pytest.mark.parametrize("coupled", [True, False])
def test_mvd_variance_closed_form(coupled):
    """f = (x - k)^2, a = mu - k, W Rayleigh (E W = sqrt(pi/2), E W^2 = 2, E W^4 = 8),
    M double-sided Maxwell (E M^2 = 3, E M^4 = 15), other coordinates cancel in differences.
    Mean: g = (2 a sigma (W + W') + sigma^2 (W^2 - W'^2)) / (sigma sqrt(2 pi)):
    uncoupled Var = a^2 (8/pi - 2) + 4 sigma^2 / pi; coupled (W' = W) a^2 (16/pi - 4).
    Scale: g = 2 a (M - e) + sigma (M^2 - e^2): uncoupled 16 a^2 + 8 sigma^2; coupled
    (e = U M) E g^2 = 4 a^2 E M^2 E(1-U)^2 + sigma^2 E M^4 E(1-U^2)^2 = 4 a^2 + 8 sigma^2,
    Var = 4 a^2 + 4 sigma^2. All per sample (divided by K)."""
    mu, sigma, k = QUADRATIC["mu"], QUADRATIC["sigma"], QUADRATIC["k"]
    a, n = mu - k, 4
    if coupled:
        v_mu, v_sigma = a**2 * (16 / math.pi - 4), 4 * a**2 + 4 * sigma**2
    else:
        v_mu, v_sigma = a**2 * (8 / math.pi - 2) + 4 * sigma**2 / math.pi, 16 * a**2 + 8 * sigma**2
    problem = problem_of("gaussian_quadratic", QUADRATIC)
    estimates = draw_estimates(problem, MeasureValued({"coupled": coupled}), n, R)
    sample_variance_check(estimates, np.array([v_mu] * 2 + [v_sigma] * 2) / n)


def test_score_function_variance_closed_form():
    """The score-function lines of docs/figures/continuous_variance.png: at mu = sigma = 1 with
    a = mu - k, g_mu = (a + e)^2 e and g_sigma = (a + e)^2 (e^2 - 1), so by the Gaussian
    moments (E e^2 = 1, E e^4 = 3, E e^6 = 15, E e^8 = 105) Var g_mu = a^4 + 14 a^2 + 15 and
    Var g_sigma = 2 a^4 + 60 a^2 + 74 per sample."""
    a, n = 1.5, 2
    problem = problem_of("gaussian_quadratic", {"mu": 1.0, "sigma": 1.0, "k": 1.0 - a})
    estimates = draw_estimates(problem, get_estimator("reinforce")(), n, R)
    exact = np.array([a**4 + 14 * a**2 + 15, 2 * a**4 + 60 * a**2 + 74]) / n
    sample_variance_check(estimates, exact)


@pytest.mark.parametrize("problem", ["gaussian_quadratic", "gaussian_elbo"])
def test_mvd_uncoupled_matches_the_exact_gradient(problem):
    options = QUADRATIC if problem == "gaussian_quadratic" else ELBO
    assert_consistent(problem_of(problem, options), MeasureValued({"coupled": False}), 4)


def test_mvd_records_its_cost_evaluations():
    problem = problem_of("gaussian_quadratic", QUADRATIC)
    assert MeasureValued().cost_evals(5, problem) == 5 * (4 * 2 + 1)


class MVDWrongNormalizer(MeasureValued):
    """Broken: the mean derivative normalized by 1 / sigma, not 1 / (sigma sqrt(2 pi))."""

    name = "broken_mvd_normalizer"

    def combine(self, values, sigma):
        _, grad_sigma = super().combine(values, sigma)
        return (values[0] - values[1]) / sigma, grad_sigma


class MVDSwappedScaleParts(MeasureValued):
    """Broken: the scale derivative's positive (Maxwell) and negative (Gaussian) parts
    swapped, i.e. the wrong sign."""

    name = "broken_mvd_sign"

    def combine(self, values, sigma):
        grad_mu, grad_sigma = super().combine(values, sigma)
        return grad_mu, -grad_sigma


@pytest.mark.parametrize("twin", [MVDWrongNormalizer, MVDSwappedScaleParts])
@pytest.mark.parametrize("coupled", [True, False])
def test_broken_mvd_is_rejected(twin, coupled):
    assert_rejected(problem_of("gaussian_quadratic", QUADRATIC), twin({"coupled": coupled}), 4)


# delta_cv ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("base", ["score", "pathwise"])
def test_delta_cv_has_zero_variance_on_the_quadratic(base):
    """f is its own second-order expansion: every estimate is the exact gradient."""
    problem = problem_of("gaussian_quadratic", QUADRATIC)
    estimates = draw_estimates(problem, DeltaCV({"base": base}), 2, 500)
    np.testing.assert_allclose(estimates, np.tile(flat_truth(problem), (500, 1)), rtol=1e-10)


@pytest.mark.parametrize("pilot", [8, pytest.param(32, marks=pytest.mark.slow)])
def test_delta_cv_pathwise_matches_the_elbo_gradient(pilot):
    """The m coordinates have (numerically) zero variance here, so the tolerance adds float64
    rounding to z * se."""
    problem = problem_of("gaussian_elbo", ELBO)
    estimates = draw_estimates(problem, DeltaCV({"base": "pathwise", "pilot": pilot}), 4, R)
    result = compare(estimates, flat_truth(problem))
    slack = result.z * result.se + 1e-10 * np.abs(result.truth).max()
    assert np.all(np.abs(result.mean - result.truth) <= slack)
    assert np.all(np.isfinite(estimates)) and result.z * result.se.max() < 0.1


def test_delta_cv_reduces_the_score_function_variance_on_the_elbo():
    problem = problem_of("gaussian_elbo", ELBO)
    cv = draw_estimates(problem, DeltaCV(), 4, 4000).var(0).sum()
    plain = draw_estimates(problem, get_estimator("reinforce")(), 4, 4000).var(0).sum()
    assert cv < 0.2 * plain


class DeltaCVWithoutItsMean(DeltaCV):
    """Broken: the control variate's exact mean is not added back (B is not centred)."""

    name = "broken_delta_cv_mean"

    def _losses(self, problem, params, n_samples, expansion):
        loss_a, loss_b, z = super()._losses(problem, params, n_samples, expansion)
        dist = problem.distribution(params)
        normal = dist.base_dist
        _, g0, hessian = expansion
        expected = (g0 * normal.loc).sum(-1) + 0.5 * (
            hessian.diagonal(dim1=-2, dim2=-1) * normal.scale**2
        ).sum(-1)
        return loss_a, loss_b + expected, z


def test_delta_cv_without_its_mean_is_rejected():
    assert_rejected(problem_of("gaussian_elbo", ELBO), DeltaCVWithoutItsMean(), 4)


# implicit reparameterization: gamma_quadratic ---------------------------------------------------


def test_gamma_truth_is_the_gradient_of_the_objective():
    problem = problem_of("gamma_quadratic", {"alpha": 0.7, "beta": 2.0, "t": 0.3, "d": 2})
    params = repeat_params(problem.init_params(), 1)
    grads = torch.autograd.grad(problem.objective(params).sum(), list(params.values()))
    truth = problem.truth(problem.init_params())
    for grad, name in zip(grads, params, strict=True):
        assert torch.allclose(grad[0], truth.grad[name], rtol=1e-12), name


def test_gamma_reparam_replays_the_implicit_derivative():
    """dz/dalpha = -(dF/dalpha) / p(z) with F(z; alpha, beta) = P(alpha, beta z) (finite
    differences in alpha of scipy's regularized incomplete gamma) and dz/dbeta = -z / beta;
    the pathwise estimate is 2 (z - t) dz/dtheta. torch computes dF/dalpha with the series
    and asymptotic approximations of Figurnov et al. (2018), Appendix, about 5e-5 relative
    error here, hence the tolerance."""
    alpha, beta, t = 1.7, 1.3, 0.5
    problem = problem_of("gamma_quadratic", {"alpha": alpha, "beta": beta, "t": t})
    grads, z = one_draw(problem, get_estimator("reparam")(), 1)
    z = float(z[0, 0])
    h = 1e-6
    d_cdf = (gammainc(alpha + h, beta * z) - gammainc(alpha - h, beta * z)) / (2 * h)
    dz_dalpha = -d_cdf / gamma_law.pdf(z, alpha, scale=1 / beta)
    assert grads["alpha"].item() == pytest.approx(2 * (z - t) * dz_dalpha, rel=5e-4)
    assert grads["beta"].item() == pytest.approx(2 * (z - t) * (-z / beta), rel=1e-10)


class GammaWithoutImplicitGradient(Estimator):
    """Broken: samples drawn at a detached shape, so the sampler's dependence on alpha (the
    implicit derivative) is dropped. References: none (a test)."""

    name = "broken_gamma_reparam"
    description = "test"
    requires = frozenset()
    unbiased = True

    def surrogate(self, problem, params, n_samples, state):
        detached = {**params, "alpha": params["alpha"].detach()}
        z = problem.distribution(detached).rsample((n_samples,))
        return Surrogate(loss=problem.cost(z, params).mean(0), samples=z.detach())


def test_gamma_without_the_implicit_derivative_is_rejected():
    problem = problem_of("gamma_quadratic", {"alpha": 2.0, "beta": 1.5, "t": 1.0, "d": 2})
    assert_rejected(problem, GammaWithoutImplicitGradient(), 4)


def test_gamma_pathwise_beats_the_score_function():
    problem = problem_of("gamma_quadratic", {"alpha": 2.0, "beta": 1.5, "t": 1.0, "d": 2})
    pathwise = draw_estimates(problem, get_estimator("reparam")(), 4, 4000).var(0).sum()
    score = draw_estimates(problem, get_estimator("reinforce_loo")(), 4, 4000).var(0).sum()
    margin = z_threshold(1)
    assert pathwise * (1 + margin * math.sqrt(2 / 4000)) < score
