"""Double control variates (Titsias & Shi 2022): the identity with reinforce_loo, an exact
replay, the closed-form variance on bernoulli_toy (the negative result: the best alpha barely
helps), means against the truth with a learned alpha, and a broken twin rejected.

The closed form (estimators/double_control.py): on bernoulli_toy at mu = 1/2, K = 2,
Delta = 1 - 2t, v = mu (1 - mu) = 1/4, per coordinate

    Var g_i = (1 + alpha)^2 V + alpha^2 B,  V = (Delta / d)^2 v^2 d,  B = 2 v^3 / d^2.

Derivation. f(b) = t^2 + (Delta / d) sum_j b_j, so f(b_1) - f(b_2) = (Delta/d)(S_1 - S_2) with
S_k = sum_j x_kj, x_k = b_k - mu. f'(b) = (2/d)(x + Delta/2), so
lin_1 - lin_2 = x_1 . f'(b_2) - x_2 . f'(b_1) = (Delta/d)(S_1 - S_2): the signal is
(1 + alpha) times the leave-one-out one. The correction is alpha v gbar_i with
gbar_i = (2/d)(xbar_i + Delta/2). The leave-one-out estimate is (Delta/d) sum_j C_ij with C the
unbiased sample covariance of the two x's, whose entries are uncorrelated with variance v^2
off the diagonal and 2 v^2 / (K (K - 1)) = v^2 on it (x^2 = 1/4 is constant), so V = (Delta/d)^2
v^2 d; xbar_i is uncorrelated with every C_ij (odd moments vanish) and has variance v / 2, so
B = v^2 (2/d)^2 v / 2 = 2 v^3 / d^2.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from estimators import get_estimator
from estimators.double_control import DoubleCV
from problems import get_problem
from problems.base import repeat_params
from tests.examples import PROBLEM_EXAMPLES
from tests.stats import compare, draw_estimates, flat_truth, sample_variance_check

F64 = torch.float64


def fixed(alpha):
    return DoubleCV({"alpha": alpha, "learn": False})


def grads_of(problem, estimator, n_samples, n_repeats, seed):
    params = repeat_params(problem.init_params(), n_repeats)
    torch.manual_seed(seed)
    out = estimator.surrogate(problem, params, n_samples, estimator.init_state(params))
    return torch.cat([g.flatten(1) for g in torch.autograd.grad(
        out.loss.sum(), list(params.values()))], -1), out


@pytest.mark.parametrize("name", ["bernoulli_toy", "bernoulli_vae"])
def test_alpha_zero_is_reinforce_loo_sample_by_sample(name):
    problem = get_problem(name)(PROBLEM_EXAMPLES[name], dtype=F64)
    loo, _ = grads_of(problem, get_estimator("reinforce_loo")(), 3, 20, seed=5)
    ours, _ = grads_of(problem, fixed(0.0), 3, 20, seed=5)
    torch.testing.assert_close(ours, loo, rtol=1e-12, atol=1e-15)
    other, _ = grads_of(problem, fixed(0.5), 3, 20, seed=5)
    assert not torch.allclose(other, loo)


def test_replay_on_three_bits():
    """g = (1/K) sum_k [f_k - hbar_{-k} + alpha lin_k] x_k - alpha gbar mu (1 - mu), by hand."""
    t, alpha, theta = 0.3, 0.7, np.array([0.4, -1.0, 2.0])
    problem = get_problem("bernoulli_toy")({"d": 3, "t": t}, dtype=F64)
    point = {"theta": torch.tensor(theta)}
    params = repeat_params(point, 4)
    b = torch.bernoulli(torch.sigmoid(params["theta"].detach()).expand(3, 4, 3))  # [K, R, d]
    out = fixed(alpha).surrogate_from_samples(problem, params, b)
    (grads,) = torch.autograd.grad(out.loss.sum(), [params["theta"]])
    mu = 1 / (1 + np.exp(-theta))
    for r in range(4):
        bits = b[:, r].numpy()
        f = ((bits - t) ** 2).mean(-1)
        slope = 2 * (bits - t) / 3
        x = bits - mu
        lin = np.array([x[k] @ np.delete(slope, k, 0).mean(0) for k in range(3)])
        h = f + alpha * lin
        signal = [f[k] - np.delete(h, k).mean() + alpha * lin[k] for k in range(3)]
        want = sum(signal[k] * x[k] for k in range(3)) / 3 - alpha * slope.mean(0) * mu * (1 - mu)
        np.testing.assert_allclose(grads[r].numpy(), want, rtol=1e-12)


D, T = 200, 0.499
V = ((1 - 2 * T) / D) ** 2 / 16 * D  # the leave-one-out's variance per coordinate
B = 2 / 64 / D**2


def exact_variance(alpha):
    return (1 + alpha) ** 2 * V + alpha**2 * B


def test_the_best_alpha_barely_helps_on_the_toy():
    """The closed form's numbers: V = 1.25e-9, the minimum V B / (V + B) = 1.248003e-9 at
    alpha = -V / (V + B) = -1.597e-3."""
    best = -V / (V + B)
    np.testing.assert_allclose(V, 1.25e-9, rtol=1e-12)
    np.testing.assert_allclose(exact_variance(best), V * B / (V + B), rtol=1e-12)
    np.testing.assert_allclose(exact_variance(best), 1.248003e-9, rtol=1e-6)
    np.testing.assert_allclose(best, -1.5974e-3, rtol=1e-4)
    grid = np.linspace(-0.01, 0.01, 2001)
    assert exact_variance(grid).min() >= exact_variance(best) * (1 - 1e-12)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -1.0, -V / (V + B)])
def test_closed_form_variance_on_the_toy(alpha):
    """The sample variance per coordinate against (1 + alpha)^2 V + alpha^2 B at K = 2: alpha = 0
    (V alone), -1 (B alone), 1 and the best (indistinguishable from V at this sample size; the
    quadratic in alpha is pinned by the other three). Means unbiased."""
    problem = get_problem("bernoulli_toy")({"d": D, "t": T, "theta": 0.0}, dtype=F64)
    estimates = draw_estimates(problem, fixed(alpha), 2, 20_000)
    sample_variance_check(estimates, np.full(D, exact_variance(alpha)))
    assert compare(estimates, flat_truth(problem)).consistent


@pytest.mark.parametrize("name", ["bernoulli_toy", "bernoulli_vae"])
def test_mean_matches_the_truth_with_a_learned_alpha(name):
    problem = get_problem(name)(PROBLEM_EXAMPLES[name], dtype=F64)
    estimator = DoubleCV({"warmup": 50})
    result = compare(draw_estimates(problem, estimator, 4, 20_000), flat_truth(problem))
    result.guard()
    assert result.consistent
    assert estimator.alpha is not None and estimator.alpha.item() != 0.0  # it moved


class NoCorrectionDoubleCV(DoubleCV):
    """Broken: the Taylor control variate without its analytic correction -alpha gbar dmu."""

    name = "broken_double_cv_no_correction"

    def correction(self, alpha, mean_slope, mu):
        return torch.zeros(mu.shape[0], dtype=mu.dtype)


def test_without_the_correction_it_is_rejected():
    problem = get_problem("bernoulli_toy")({"theta": 1.0, "d": 3, "t": 0.3}, dtype=F64)
    truth = flat_truth(problem)
    good = compare(draw_estimates(problem, fixed(1.0), 4, 20_000), truth)
    good.guard()
    assert good.consistent
    broken = compare(draw_estimates(problem, NoCorrectionDoubleCV(
        {"alpha": 1.0, "learn": False}), 4, 20_000), truth)
    assert not broken.consistent


def test_refuses_categorical_latents_and_one_sample():
    assert "binary" in DoubleCV.incompatibility(get_problem("categorical_toy"))
    assert DoubleCV.sample_rule(1) is not None and DoubleCV.sample_rule(2) is None
