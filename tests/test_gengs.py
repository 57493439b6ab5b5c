"""Generalized Gumbel-Softmax (``gengs``) on Poisson counts: the truncated probabilities (the
tail in the last category), one draw replayed by hand, the declared target (verify's
quadrature or randomized QMC) against a large Monte Carlo of the relaxed objective's pathwise
gradient, the estimator's mean on that target and off the exact gradient at tau = 1, the mean
approaching the exact gradient as tau -> 0 with a large truncation, and two broken twins (the
relaxed count mapped with c_i = i + 1, and the tail mass dropped) rejected by the same tests.

The per-sample formula. With log pi_i the truncated log-probabilities, a_i = d log pi_i / drate
(i / rate - 1 for i < n - 1, P(x = n - 2) / P(x >= n - 1) for the last category, since
d/drate P(x >= m) = P(x = m - 1)), w = softmax((log pi + G) / tau) and z = sum_i i w_i:
dw_i / drate = w_i (a_i - sum_j w_j a_j) / tau, so dz / drate = Cov_w(i, a) / tau, and for
f = sum_j (z_j - k)^2 the estimate is mean_k 2 (z_kj - k) dz_kj / drate_j. See tests/stats.py
for the tolerances.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import poisson
from torch.distributions import Poisson
from torch.distributions.utils import clamp_probs

from bench.verify import verify_one
from bench.verify.targets import compute
from estimators import get_estimator
from estimators.gengs import GenGS, relaxed_counts, truncated_log_probs
from estimators.targets import RelaxedCountGradient
from problems import get_problem
from tests.stats import compare, draw_estimates, flat_truth

F64 = torch.float64
R = 40_000


class ShiftedSupport(GenGS):
    """Broken: the relaxed count maps category i to c_i = i + 1 (z + 1)."""

    name = "test_gengs_shifted"

    def relaxed(self, rate, n_samples):
        z, hard = super().relaxed(rate, n_samples)
        return z + 1, hard


class DroppedTail(GenGS):
    """Broken: the last category holds P(x = n - 1) only (the tail dropped; the softmax then
    renormalizes over {0, ..., n - 1})."""

    def relaxed(self, rate, n_samples):
        n = int(self.option_values["truncation"])
        log_pi = Poisson(rate[..., None]).log_prob(torch.arange(n, dtype=rate.dtype))
        u = clamp_probs(torch.rand((n_samples, *log_pi.shape), dtype=rate.dtype))
        return relaxed_counts(log_pi, u, self.option_values["tau"])


def problem_of(options: dict):
    return get_problem("poisson_quadratic")(options, dtype=F64)


def log_pi_by_hand(rate: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """log pi ``[..., n]`` and a = d log pi / drate ``[..., n]`` from scipy's pmf and tail."""
    i = np.arange(n - 1)
    rate = rate[..., None]
    head = poisson.logpmf(i, rate)
    tail = poisson.logsf(n - 2, rate)  # log P(x > n - 2) = log P(x >= n - 1)
    a_tail = np.exp(poisson.logpmf(n - 2, rate) - tail)
    return (np.concatenate([head, tail], -1),
            np.concatenate([i / rate - 1, a_tail], -1))


def pathwise_by_hand(rate: np.ndarray, k: float, tau: float, n: int,
                     gumbels: np.ndarray) -> np.ndarray:
    """The per-sample gradient 2 (z - k) Cov_w(i, a) / tau ``[..., D]`` at Gumbels
    ``[..., D, n]`` (module docstring)."""
    log_pi, a = log_pi_by_hand(rate, n)
    scores = (log_pi + gumbels) / tau
    w = np.exp(scores - scores.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    c = np.arange(n)
    z = (w * c).sum(-1)
    dz = ((w * c * a).sum(-1) - z * (w * a).sum(-1)) / tau
    return 2 * (z - k) * dz


def test_truncated_probabilities_put_the_tail_in_the_last_category():
    rate = torch.tensor([0.3, 2.0, 7.5], dtype=F64, requires_grad=True)
    n = 6
    log_pi = truncated_log_probs(rate, n)
    expected, a = log_pi_by_hand(rate.detach().numpy(), n)
    np.testing.assert_allclose(log_pi.detach().numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(log_pi.exp().sum(-1).detach().numpy(), 1.0, rtol=1e-12)
    grad = torch.autograd.grad(log_pi[:, -1].sum(), rate)[0]  # d log P(x >= n - 1) / drate
    np.testing.assert_allclose(grad.numpy(), a[:, -1], rtol=1e-8)


@pytest.mark.parametrize("broken", [False, True])
def test_one_draw_by_hand(broken):
    """Two coordinates at different rates, K = 3, two repeats: the estimate equals
    mean_k 2 (z_k - k) Cov_w(i, a) / tau, the hard sample is argmax(log pi + G); the
    c_i = i + 1 twin does not."""
    problem = problem_of({"k": 2.0, "d": 2})
    tau, n, k_samples = 0.7, 5, 3
    rate = torch.tensor([[1.5, 2.5], [0.4, 3.0]], dtype=F64, requires_grad=True)
    estimator = (ShiftedSupport if broken else GenGS)({"tau": tau, "truncation": n})
    state = torch.random.get_rng_state()
    out = estimator.surrogate(problem, {"rate": rate}, k_samples, {})
    grad = torch.autograd.grad(out.loss.sum(), rate)[0]
    torch.random.set_rng_state(state)
    u = clamp_probs(torch.rand((k_samples, 2, 2, n), dtype=F64)).numpy()  # the same draw
    gumbels = -np.log(-np.log(u))
    expected = pathwise_by_hand(rate.detach().numpy(), 2.0, tau, n, gumbels).mean(0)
    log_pi, _ = log_pi_by_hand(rate.detach().numpy(), n)
    np.testing.assert_array_equal(out.samples.numpy(), (log_pi + gumbels).argmax(-1))
    assert np.all(np.abs(expected) > 1e-3)  # a non-trivial draw
    matches = np.allclose(grad.numpy(), expected, rtol=1e-10, atol=1e-12)
    assert matches != broken


@pytest.mark.parametrize(("d", "n"), [(1, 3), (1, 12), (2, 12)])
def test_target_matches_a_large_monte_carlo_of_the_pathwise_gradient(d, n):
    """verify's target (tensor-product quadrature at D n <= 4, randomized QMC beyond) against
    5 10^5 pathwise gradients of the relaxed objective by the hand formula, within the Monte
    Carlo tolerance plus the target's stated error."""
    problem = problem_of({"rate": 2.0, "k": 3.0, "d": d})
    point = problem.init_params()
    options = {"tau": 1.0, "truncation": n}
    target = compute(RelaxedCountGradient(), problem, point, torch.zeros(d, dtype=F64), options)
    assert target.kind == ("quadrature" if d * n <= 4 else "randomized quasi-Monte Carlo")
    rng = np.random.default_rng(0)
    gumbels = rng.gumbel(size=(5 * 10**5, d, n))
    mc = pathwise_by_hand(np.full(d, 2.0), 3.0, 1.0, n, gumbels)
    check = compare(mc, target.value.numpy())
    check.guard(rel=0.05)
    error = target.error.numpy()
    assert np.all(error < check.z * check.se), "the target's error swamps the check"
    assert np.all(np.abs(check.mean - check.truth) <= check.z * check.se + error), (
        check.mean, check.truth, error)


def _on(estimates: np.ndarray, target) -> bool:
    """Whether the mean of ``estimates`` is within z se plus the target's error of it."""
    check = compare(estimates, target.value.numpy())
    check.guard(rel=0.1)
    slack = target.error.numpy()
    assert np.all(slack < check.z * check.se), "the target's error swamps the test"
    return bool(np.all(np.abs(check.mean - check.truth) <= check.z * check.se + slack))


@pytest.mark.parametrize(("options", "values", "broken"), [
    ({"d": 2}, {"tau": 1.0, "truncation": 12}, (ShiftedSupport,)),
    ({"d": 1}, {"tau": 1.0, "truncation": 4}, (ShiftedSupport, DroppedTail)),
])
def test_mean_is_the_relaxed_target_and_not_the_exact_gradient(options, values, broken):
    """At tau = 1 the mean matches the declared target (randomized QMC at the default
    truncation 12, quadrature at 4) and misses the exact gradient 1 + 2 (rate - k) (biased,
    by the same z-test); the broken twins miss the target (the dropped tail only where the
    tail matters: P(x >= 3) = 0.32 at n = 4, 8e-6 at n = 12)."""
    problem = problem_of({"rate": 2.0, "k": 3.0, **options})
    point = problem.init_params()
    truth = flat_truth(problem)
    target = compute(RelaxedCountGradient(), problem, point, torch.as_tensor(truth), values)
    estimates = draw_estimates(problem, GenGS(values), 4, R)
    assert _on(estimates, target)
    assert not compare(estimates, truth).consistent  # biased for the exact gradient
    for twin in broken:
        assert not _on(draw_estimates(problem, twin(values), 4, R), target), twin.__name__


@pytest.mark.slow
def test_mean_approaches_the_exact_gradient_as_tau_goes_to_zero():
    """tau = 1 is off the exact gradient by about a third of it; at tau = 0.02 with n = 16
    (tail P(x >= 15) = 1e-9) the mean is on it, by a test that would detect a quarter of
    the tau = 1 bias; with n = 4 the limit is E f(min(x, 3))'s gradient, off the truth."""
    problem = problem_of({"rate": 2.0, "k": 3.0, "d": 1})
    truth = flat_truth(problem)
    at_one = compare(draw_estimates(problem, GenGS({"tau": 1.0, "truncation": 16}), 1, R),
                     truth)
    bias = abs(float(at_one.mean[0] - truth[0]))
    assert not at_one.consistent and bias > 0.2 * abs(truth[0])
    cold = compare(draw_estimates(problem, GenGS({"tau": 0.02, "truncation": 16}), 1,
                                  2 * 10**6, chunk=100_000), truth)
    assert cold.z * cold.se[0] < 0.25 * bias, "the test cannot see a quarter of the bias"
    assert cold.consistent, (cold.mean, truth)
    short = compare(draw_estimates(problem, GenGS({"tau": 0.02, "truncation": 4}), 1,
                                   10**6, chunk=100_000), truth)
    assert not short.consistent


def test_bench_verify_passes_at_the_default_options_and_fails_the_shifted_twin():
    """``bench verify --quick`` at the default tau = 1, truncation = 12 (d = 2: 24 noise
    dimensions, the randomized QMC target): on target; the c_i = i + 1 twin off it."""
    fast = {"quick": True, "max_repeats": 20_000, "problems": ["poisson_quadratic"]}
    report = verify_one("gengs", **fast)
    assert report.verified and report.verdict().startswith("VERIFIED"), report.verdict()
    cell = report.cells[0]
    assert cell.verdict == "ok" and cell.target == "randomized quasi-Monte Carlo"
    assert cell.truth_p < 1e-6  # on target, and biased for the exact gradient
    twin = verify_one(ShiftedSupport, **fast)
    assert twin.verdict().startswith("FAILED: test_gengs_shifted: OFF TARGET"), twin.verdict()


def test_options_are_validated_and_the_pairing_is_declared():
    cls = get_estimator("gengs")
    assert cls is GenGS and not cls.unbiased and isinstance(cls.target, RelaxedCountGradient)
    assert cls.incompatibility(get_problem("poisson_quadratic")) is None
    assert "count latents" in cls.incompatibility(get_problem("bernoulli_toy"))
    for bad in ({"truncation": 1}, {"tau": 0.0}, {"truncation": 2.5}):
        with pytest.raises(ValueError, match=next(iter(bad))) as info:
            GenGS(bad)
        assert "\n" not in str(info.value)
