"""LAX (Grathwohl et al. 2018): identities with ``reinforce`` and ``reparam`` bit for bit, one
draw replayed by hand with a non-zero network, the published per-sample variances of the
score-function and pathwise ends derived in closed form and measured, means against the
closed-form truth after training, the variance objective's effect, and broken twins rejected.
See tests/stats.py for the tolerances and what a failing seed means.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.cell.estimate import one_estimate, prepare
from estimators import get_estimator
from estimators.base import Surrogate
from estimators.control_variate import detached
from estimators.lax import Lax
from problems import get_problem
from problems.base import Capability, repeat_params
from tests.stats import (
    compare,
    draw_estimates,
    flat_truth,
    sample_variance_check,
    variance_consistent,
    z_threshold,
)

R = 20_000
SETTINGS = {
    "gaussian_quadratic": {"mu": 1.0, "sigma": 1.5, "k": -0.5, "d": 2},
    "gamma_quadratic": {"alpha": 2.0, "beta": 1.5, "t": 1.0, "d": 2},
    "gaussian_elbo": {"d": 2, "n_obs": 3},
}


def problem_of(name: str, options: dict):
    return get_problem(name)(options, dtype=torch.float64)


def estimates_of(problem, estimator, n_samples: int, repeats: int, seed: int):
    """The estimates ``{name: [R, ...]}`` of a prepared estimator from seed ``seed``."""
    prepare(problem, estimator, problem.init_params(), n_samples)
    torch.manual_seed(seed)
    grads, _ = one_estimate(problem, estimator, repeat_params(problem.init_params(), repeats),
                            n_samples, {})
    return grads


@pytest.mark.parametrize("problem", list(SETTINGS))
@pytest.mark.parametrize(("eta", "reference"), [(0.0, "reinforce"), (1.0, "reparam")])
def test_untrained_lax_is_its_two_ends_bit_for_bit(problem, eta, reference):
    """c = 0 (eta = 0, untrained network) is the score function, c = f (eta = 1) the
    pathwise gradient: the same floats under the same seed (rsample and sample draw the same
    values), including the direct term of the ELBO's log q."""
    prob = problem_of(problem, SETTINGS[problem])
    lax = estimates_of(prob, Lax({"eta": eta, "warmup": 0}), 3, 64, seed=5)
    ref = estimates_of(prob, get_estimator(reference)(), 3, 64, seed=5)
    other = estimates_of(prob, Lax({"eta": 1 - eta, "warmup": 0}), 3, 64, seed=5)
    for name in ref:
        assert torch.equal(lax[name], ref[name]), name
        assert not torch.equal(lax[name], other[name]), f"{name}: the two ends coincide"


def test_lax_replays_by_hand():
    """gaussian_quadratic, d = 1, K = 1, with a random network r(z) = tanh(z w + b) . v + c:
    z = mu + sigma eps, g_mu = (f - r) (z - mu) / sigma^2 + r'(z),
    g_sigma = (f - r) ((z - mu)^2 / sigma^3 - 1 / sigma) + r'(z) eps,
    r'(z) = sum_j w_j (1 - h_j^2) v_j."""
    mu, sigma, k = 0.4, 1.3, -0.7
    problem = problem_of("gaussian_quadratic", {"mu": mu, "sigma": sigma, "k": k})
    lax = Lax({"width": 3, "warmup": 0})
    torch.manual_seed(0)
    lax.setup(problem, problem.init_params())
    with torch.no_grad():
        for tensor in lax.parameters():
            tensor.copy_(torch.randn_like(tensor))
    lax.freeze()
    params = repeat_params(problem.init_params(), 1)
    torch.manual_seed(7)
    out = lax.surrogate(problem, params, 1, {})
    g_mu, g_sigma = torch.autograd.grad(out.loss.sum(), [params["mu"], params["sigma"]])
    net = {name: t.detach().numpy() for name, t in lax.network.items()}
    z = float(out.samples[0, 0, 0])
    eps = (z - mu) / sigma
    hidden = np.tanh(z * net["weight"][0] + net["bias"])
    r = hidden @ net["out"] + net["out_bias"]
    slope = (net["weight"][0] * (1 - hidden**2)) @ net["out"]
    f = (z - k) ** 2
    assert g_mu.item() == pytest.approx((f - r) * (z - mu) / sigma**2 + slope, rel=1e-12)
    expected = (f - r) * ((z - mu) ** 2 / sigma**3 - 1 / sigma) + slope * eps
    assert g_sigma.item() == pytest.approx(expected, rel=1e-12)


def published_variances(a: float) -> dict[float, tuple[float, float]]:
    """Per-sample variances of (g_mu, g_sigma) on N(1, 1), f = (x - k)^2, a = mu - k, at the two
    ends of LAX. eta = 0 (c = 0): g_mu = (a + e)^2 e, g_sigma = (a + e)^2 (e^2 - 1); with
    E e^2 = 1, E e^4 = 3, E e^6 = 15, E e^8 = 105 they have means 2a and 2 and variances
    a^4 + 14 a^2 + 15 and 2 a^4 + 60 a^2 + 74. eta = 1 (c = f): g_mu = 2 (a + e),
    g_sigma = 2 (a + e) e: variances 4 and 4 a^2 + 8."""
    return {0.0: (a**4 + 14 * a**2 + 15, 2 * a**4 + 60 * a**2 + 74), 1.0: (4.0, 4 * a**2 + 8)}


def test_published_variances_follow_from_the_closed_form():
    """Grathwohl et al. (2018) and Mohamed et al. (2020, Figure 2) at mu = sigma = 1:
    score function 30, 15, 87, 495 and pathwise 4 for d mu at k = 0, 1, 3, -3."""
    score = [published_variances(1.0 - k)[0.0][0] for k in (0, 1, 3, -3)]
    path = [published_variances(1.0 - k)[1.0][0] for k in (0, 1, 3, -3)]
    assert score == [30, 15, 87, 495] and path == [4, 4, 4, 4]


@pytest.mark.parametrize("k", [0.0, 1.0, 3.0, -3.0])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_lax_ends_have_the_published_variances(k, eta):
    problem = problem_of("gaussian_quadratic", {"mu": 1.0, "sigma": 1.0, "k": k})
    estimates = draw_estimates(problem, Lax({"eta": eta, "warmup": 0}), 1, 40_000)
    sample_variance_check(estimates, np.array(published_variances(1.0 - k)[eta]))


def test_the_variance_check_refuses_the_other_end():
    """Power: the pathwise sample is not consistent with the score function's variances."""
    problem = problem_of("gaussian_quadratic", {"mu": 1.0, "sigma": 1.0, "k": 0.0})
    estimates = draw_estimates(problem, Lax({"eta": 1.0, "warmup": 0}), 1, 40_000)
    assert not variance_consistent(estimates, np.array(published_variances(1.0)[0.0]))


@pytest.mark.parametrize("problem", list(SETTINGS))
def test_trained_lax_matches_the_exact_gradient(problem):
    prob = problem_of(problem, SETTINGS[problem])
    result = compare(draw_estimates(prob, Lax(), 4, R), flat_truth(prob))
    result.guard(rel=0.2)
    assert result.consistent, f"max |z| = {np.abs(result.z_scores).max():.2f} > {result.z:.2f}"


@pytest.mark.parametrize("problem", ["gaussian_quadratic", "gaussian_elbo"])
def test_training_the_control_variate_lowers_the_variance(problem):
    """After the default 200 variance-objective steps, below 0.6 of REINFORCE's variance
    (measured: about 0.35 on the quadratic, 0.1 on the ELBO), beyond the noise of the two
    variance estimates (relative standard error about sqrt(2 / R) each, times four for the
    heavy tails)."""
    prob = problem_of(problem, SETTINGS[problem])
    n = R
    trained = draw_estimates(prob, Lax(), 4, n).var(0).sum()
    plain = draw_estimates(prob, get_estimator("reinforce")(), 4, n).var(0).sum()
    margin = 1 + z_threshold(1) * math.sqrt(2 / n) * 4  # heavy tails: four times Gaussian
    assert trained * margin < 0.6 * plain


def test_lax_learns_when_it_warms_up():
    problem = problem_of("gaussian_quadratic", SETTINGS["gaussian_quadratic"])
    lax = Lax({"warmup": 20})
    torch.manual_seed(0)
    _, loss = prepare(problem, lax, problem.init_params(), 4)
    assert loss is not None and math.isfinite(loss)
    assert float(lax.network["out"].abs().sum()) > 0  # the output layer moved from zero
    assert all(not t.requires_grad for t in lax.parameters())  # frozen for measuring


def test_lax_counts_the_costs_inside_its_control_variate():
    problem = problem_of("gaussian_quadratic", {})
    assert Lax().cost_evals(5, problem) == 5
    assert Lax({"eta": 0.5}).cost_evals(5, problem) == 10


class BlackBox(type(problem_of("gaussian_quadratic", {}))):
    """gaussian_quadratic declared non-differentiable. References: none (a test)."""

    provides = frozenset({Capability.RSAMPLE, Capability.EXACT_OBJECTIVE})


def test_lax_refuses_to_differentiate_a_black_box_cost():
    problem = BlackBox({}, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"lax with eta=1.0 differentiates the cost.*eta=0"):
        Lax({"eta": 1.0}).setup(problem, problem.init_params())
    Lax().setup(problem, problem.init_params())  # the black-box LAX needs no derivative of f


class WrongSignLax(Lax):
    """Broken: the control variate added to the score's coefficient instead of subtracted."""

    name = "broken_lax_sign"

    def surrogate(self, problem, params, n_samples, state):
        dist = problem.distribution(params)
        z = dist.rsample((n_samples,))
        fixed = z.detach()
        cost = problem.cost_terms(fixed, params)
        signal = cost.detach() + self.control_variate(problem, fixed, detached(params))
        path = self.control_variate(problem, z, params)
        loss = (signal * problem.log_prob_terms(dist, fixed) + cost + path).sum(-1).mean(0)
        return Surrogate(loss=loss, samples=fixed)


class DetachedPathLax(Lax):
    """Broken: the control variate's pathwise term evaluated at the detached sample, so its
    derivative through T(theta, eps) is dropped (E[c d log q] is subtracted, not added back)."""

    name = "broken_lax_path"

    def surrogate(self, problem, params, n_samples, state):
        dist = problem.distribution(params)
        fixed = dist.rsample((n_samples,)).detach()
        cost = problem.cost_terms(fixed, params)
        coefficient = self.control_variate(problem, fixed, detached(params))
        path = self.control_variate(problem, fixed, params)
        log_q = problem.log_prob_terms(dist, fixed)
        loss = ((cost.detach() - coefficient) * log_q + cost + path).sum(-1).mean(0)
        return Surrogate(loss=loss, samples=fixed)


@pytest.mark.parametrize("twin", [WrongSignLax, DetachedPathLax])
@pytest.mark.parametrize("options", [{}, {"eta": 1.0, "warmup": 0}], ids=["trained", "c=f"])
def test_broken_lax_is_rejected(twin, options):
    problem = problem_of("gaussian_quadratic", SETTINGS["gaussian_quadratic"])
    result = compare(draw_estimates(problem, twin(options), 4, R), flat_truth(problem))
    result.guard()
    assert not result.consistent, "a broken LAX passed: the test lacks power"
