"""Invertible Gaussian reparameterization (``igr``): one draw replayed by hand on bits and on
one-hot latents, the sample on the open simplex and inverted exactly, the declared target
(verify's quadrature) against a 1-D integral of the Gaussian density, the estimator's mean on
that target while it is off the exact gradient, a twin with the temperature applied twice
rejected, and the closed-form KL against a Monte Carlo estimate on the simplex by the change
of variables (a twin without the log-variance term rejected). See tests/stats.py for the
tolerances.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.stats import norm

from bench.verify.targets import compute
from estimators import get_estimator
from estimators.igr import IGR, gaussian_kl, softmax_pp
from estimators.targets import IGRGradient
from problems import get_problem
from problems.base import repeat_params
from tests.stats import compare, draw_estimates, flat_truth, z_threshold

R = 20_000


def problem_of(name: str, options: dict):
    return get_problem(name)(options, dtype=torch.float64)


def one_draw(problem, estimator, n_samples: int = 3, n_repeats: int = 2):
    """One estimate per repeat and the Gaussian noise it used (replayed from the seed)."""
    params = repeat_params(problem.init_params(), n_repeats)
    state = torch.random.get_rng_state()
    step = estimator.step(problem, params, n_samples, {})
    torch.random.set_rng_state(state)
    return step.grads, params


def test_one_bit_draw_by_hand():
    """z = sigmoid((theta + sigma eps) / tau - log delta), f = mean_j (z_j - t)^2, so
    g_j = mean_k 2 (z_kj - t) z_kj (1 - z_kj) / (tau d)."""
    problem = problem_of("bernoulli_toy", {"theta": 0.7, "d": 2, "t": 0.3})
    tau, sigma, delta = 0.6, 1.3, 0.4
    estimator = IGR({"tau": tau, "sigma": sigma, "delta": delta})
    grads, _ = one_draw(problem, estimator)
    eps = torch.randn((3, 2, 2), dtype=torch.float64)  # [K, R, d], the same draw
    z = torch.sigmoid((0.7 + sigma * eps) / tau - math.log(delta))
    expected = (2 * (z - 0.3) * z * (1 - z) / (tau * 2)).mean(0)
    torch.testing.assert_close(grads["theta"], expected, rtol=1e-12, atol=1e-14)


def test_one_categorical_draw_by_hand():
    """x = (l_{<C} - l_C + sigma eps) / tau, z = softmax++(x); dz_c / dx_j = z_c (1[c=j] - z_j)
    for j < C (z_C included), dx_j / dl_i = (1[i=j] - 1[i=C]) / tau, and
    f = (mean_g <z_g, v> - t)^2."""
    problem = problem_of("categorical_toy", {"theta": 0.8, "d": 2, "classes": 3, "t": 0.3})
    tau, sigma, delta = 0.7, 0.9, 1.5
    grads, params = one_draw(problem, IGR({"tau": tau, "sigma": sigma, "delta": delta}),
                             n_samples=2, n_repeats=1)
    logits = params["logits"].detach()[0]  # [d, C]
    eps = torch.randn((2, 1, 2, 2), dtype=torch.float64)[:, 0]  # [K, d, C-1]
    x = (logits[:, :2] - logits[:, 2:] + sigma * eps) / tau
    weights = torch.cat([x.exp(), torch.full_like(x[..., :1], delta)], -1)
    z = weights / weights.sum(-1, keepdim=True)  # [K, d, C]
    v = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    df_dz = 2 * ((z @ v).mean(-1) - 0.3)[:, None, None] * v / 2  # [K, d, C]
    dz_dx = z[..., :, None] * (torch.eye(3, 2, dtype=torch.float64) - z[..., None, :2])
    df_dx = torch.einsum("kgc,kgcj->kgj", df_dz, dz_dx)  # [K, d, C-1]
    df_dl = torch.cat([df_dx, -df_dx.sum(-1, keepdim=True)], -1) / tau
    torch.testing.assert_close(grads["logits"][0], df_dl.mean(0), rtol=1e-12, atol=1e-14)


def test_the_sample_is_on_the_open_simplex_and_inverts():
    """softmax++ is a bijection onto the open simplex: x = log z_{<C} - log z_C + log delta."""
    x = 3 * torch.randn(1000, 4, dtype=torch.float64)
    z = softmax_pp(x, 0.3)
    assert torch.all(z > 0)
    torch.testing.assert_close(z.sum(-1), torch.ones(1000, dtype=torch.float64))
    back = z[:, :4].log() - z[:, 4:].log() + math.log(0.3)
    torch.testing.assert_close(back, x, rtol=1e-10, atol=1e-10)


def _bit_objective(theta: float, tau: float, sigma: float, delta: float, t: float) -> float:
    """E (z - t)^2 with z = sigmoid((theta + sigma eps) / tau - log delta), over the normal
    density of eps."""
    def integrand(e: float) -> float:
        z = 1 / (1 + math.exp(-((theta + sigma * e) / tau - math.log(delta))))
        return (z - t) ** 2 * norm.pdf(e)

    return quad(integrand, -40, 40, points=[(tau * math.log(delta) - theta) / sigma],
                limit=400, epsabs=1e-14)[0]


@pytest.mark.parametrize(("tau", "sigma", "delta"), [(1.0, 1.0, 1.0), (0.3, 1.7, 0.1)])
def test_declared_target_is_the_derivative_of_the_gaussian_integral(tau, sigma, delta):
    problem = problem_of("bernoulli_toy", {"theta": 1.2, "d": 1, "t": 0.45})
    point = problem.init_params()
    truth = problem.truth(point).grad["theta"].reshape(-1)
    value = compute(IGRGradient(), problem, point, truth,
                    {"tau": tau, "sigma": sigma, "delta": delta})
    h = 1e-4
    expected = (_bit_objective(1.2 + h, tau, sigma, delta, 0.45)
                - _bit_objective(1.2 - h, tau, sigma, delta, 0.45)) / (2 * h)
    assert value.kind == "quadrature" and float(value.error) < 1e-6
    np.testing.assert_allclose(float(value.value), expected, rtol=1e-6)


class TwiceTau(IGR):
    """Broken: the temperature applied twice, x = (mu + sigma eps) / tau^2."""

    name = "test_igr_twice_tau"

    def relaxed(self, logits, n_samples):
        mu = logits[..., :-1] - logits[..., -1:]
        eps = torch.randn((n_samples, *mu.shape), dtype=mu.dtype)
        values = self.option_values
        return softmax_pp((mu + values["sigma"] * eps) / values["tau"] ** 2, values["delta"])


CASES = [("bernoulli_toy", {"theta": 1.0, "d": 2}),
         ("categorical_toy", {"theta": 1.0, "d": 1, "classes": 3})]


@pytest.mark.parametrize(("name", "options"), CASES)
def test_mean_is_the_relaxed_target_and_not_the_exact_gradient(name, options):
    problem = problem_of(name, options)
    point = problem.init_params()
    truth = flat_truth(problem)
    values = {"tau": 0.5, "sigma": 1.0, "delta": 1.0}
    target = compute(IGRGradient(), problem, point, torch.as_tensor(truth), values)
    estimates = draw_estimates(problem, IGR(values), 4, R)
    on_target = compare(estimates, target.value.numpy())
    on_target.guard(rel=0.1)
    assert float(target.error.max()) < 0.01 * on_target.se.min()  # quadrature error negligible
    assert on_target.consistent, on_target.z_scores
    assert not compare(estimates, truth).consistent  # biased for the exact gradient
    twice = compare(draw_estimates(problem, TwiceTau(values), 4, R), target.value.numpy())
    assert not twice.consistent  # the broken twin is off target


def test_the_estimator_is_registered_with_its_target():
    cls = get_estimator("igr")
    assert cls is IGR and not cls.unbiased and isinstance(cls.target, IGRGradient)


def _log_density(z: torch.Tensor, mu, sigma, tau: float, delta: float) -> torch.Tensor:
    """log of IGR's density on the simplex (coordinates z_{<C}), by the change of variables:
    log N(g^-1(z); mu, sigma) - log |det dg/dy| at y = g^-1(z), the Jacobian by autograd."""
    y = tau * (z[..., :-1].log() - z[..., -1:].log() + math.log(delta))
    forward = lambda row: softmax_pp(row / tau, delta)[:-1]  # noqa: E731
    log_det = torch.stack([torch.linalg.slogdet(torch.autograd.functional.jacobian(forward, row))
                           [1] for row in y])
    return torch.distributions.Normal(mu, sigma).log_prob(y).sum(-1) - log_det


@pytest.mark.parametrize("broken", [False, True])
def test_closed_form_kl_matches_monte_carlo_on_the_simplex(broken):
    mu, sigma = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([0.7, 1.5, 0.4])
    prior_mu, prior_sigma = torch.tensor([0.0, 0.3, -0.2]), torch.tensor([1.0, 0.8, 2.0])
    tau, delta, n = 0.4, 0.5, 4000
    mu, sigma, prior_mu, prior_sigma = (v.double() for v in (mu, sigma, prior_mu, prior_sigma))
    z = softmax_pp((mu + sigma * torch.randn(n, 3, dtype=torch.float64)) / tau, delta)
    log_ratio = (_log_density(z, mu, sigma, tau, delta)
                 - _log_density(z, prior_mu, prior_sigma, tau, delta))
    mean, se = float(log_ratio.mean()), float(log_ratio.std() / math.sqrt(n))
    closed = float(gaussian_kl(mu, sigma, prior_mu, prior_sigma))
    if broken:  # the classic slip: the log-variance term dropped
        closed -= float(torch.log(prior_sigma / sigma).sum())
    assert z_threshold(1) * se < 0.1 * closed  # a test with power
    assert (abs(mean - closed) <= z_threshold(1) * se) != broken, (mean, se, closed)
