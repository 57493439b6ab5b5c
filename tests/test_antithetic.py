"""ARM, DisARM (binary and stick-breaking categorical), ARMS and REINFORCE with the exact
baseline: exact replays with fixed noise, means against exact gradients, variances against
closed forms derived here, identities between them, and broken twins the same tests reject.
See tests/stats.py for how tolerances are set and what a failing seed means.

Closed forms on ``bernoulli_toy`` (d bits, all with logit theta, p = sigmoid(theta),
m = sigma(|theta|) = max(p, 1 - p), a = m - 1/2, f(b) = (1/d) sum_j (b_j - t)^2). The cost is
separable: f(b) - f(b') = (Delta / d) sum_l (b_l - b'_l) with Delta = (1 - t)^2 - t^2. For an
antithetic pair b = 1[u < p], b' = 1[1 - u < p], D_l = b_l - b'_l is -1, 0, +1 with
probabilities 1 - m, 2m - 1, 1 - m, independent over l, mean 0, E[D^2] = 2 (1 - m).

* DisARM, one pair: g_j = (Delta m / (2d)) (D_j^2 + D_j S), S = sum_{l != j} D_l. The two
  terms are uncorrelated (E[D_j^3] = 0), so
  Var g_j = (Delta m / (2d))^2 [2 (1 - m)(2m - 1) + 4 (1 - m)^2 (d - 1)].
* ARM, one pair: g_j = (Delta / d)(u_j - 1/2)(-D_j - S). -D_j is nonzero exactly on
  u_j < 1 - m or u_j > m, so E[D_j^2 (u_j - 1/2)^2] = 2 int_a^{1/2} s^2 ds = (2/3)(1/8 - a^3),
  E[D_j (u_j - 1/2)] = -p (1 - p), and the cross term vanishes (E[S] = 0):
  Var g_j = (Delta / d)^2 [(2/3)(1/8 - a^3) + (1/12) 2 (1 - m)(d - 1) - (p (1 - p))^2].
* Exact baseline, one sample: f - E f = (Delta / d) sum_l (b_l - p), so
  g_j = (Delta / d)[(b_j - p)^2 + (b_j - p) sum_{l != j} (b_l - p)] and
  Var g_j = (Delta / d)^2 [p (1 - p)(1 - 2p)^2 + (d - 1) (p (1 - p))^2].

An estimate averages K/2 pairs (ARM, DisARM) or K samples (exact baseline): divide by that.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch

from bench.cell.run import run_cell
from bench.cell.spec import CellSpec
from bench.cli.list import main as list_estimators
from estimators import get_estimator
from estimators.antithetic import ARM, ARMS, DisARM, debias
from estimators.base import Surrogate
from estimators.score_function import ReinforceExactBaseline, score_surrogate
from problems import get_problem
from problems.base import Problem, repeat_params
from tests.stats import (
    Comparison,
    compare,
    draw_estimates,
    flat_truth,
    variance_consistent,
)

R = 20_000
T = 0.45  # bernoulli_toy's default target: Delta = 1 - 2t = 0.1
BINARY = ["arm", "disarm", "arms", "reinforce_exact_baseline"]
SAMPLES = {"arm": 4, "disarm": 4, "arms": 3, "reinforce_exact_baseline": 4}


def toy(theta: float, d: int, **options) -> Problem:
    return get_problem("bernoulli_toy")(
        {"theta": theta, "d": d, "t": T, **options}, dtype=torch.float64
    )


def consistent(result: Comparison) -> bool:
    """Within z * se of the truth, with a rounding allowance for zero-variance estimates."""
    slack = 1e-12 * (1 + np.abs(result.truth))
    return bool(np.all(np.abs(result.mean - result.truth) <= result.z * result.se + slack))


def mean_check(problem: Problem, estimator, n_samples: int, repeats: int = R) -> Comparison:
    result = compare(draw_estimates(problem, estimator, n_samples, repeats), flat_truth(problem))
    result.guard()
    return result


class Fixed:
    """Mixin: the estimator's uniforms are ``self.u`` ``[N, 1 or R, ...]``."""

    u: torch.Tensor

    def uniforms(self, shape, like):
        return self.u.to(like).expand(shape)


def replay(estimator, problem: Problem, point, n_samples: int):
    """One estimate at ``point`` (one repeat): the gradient and the samples."""
    params = repeat_params(point, 1)
    out = estimator.surrogate(problem, params, n_samples, {})
    grads = torch.autograd.grad(out.loss.sum(), list(params.values()))
    return grads[0][0], out.samples[:, 0]


# exact replays with fixed noise -----------------------------------------------------------------


class FixedARM(Fixed, ARM):
    pass


class FixedDisARM(Fixed, DisARM):
    pass


class FixedARMS(Fixed, ARMS):
    pass


def two_bits():
    """theta = (0.5, -1), u = (0.5, 0.1): b = (1, 1), b' = (1[0.5 < 0.62], 1[0.9 < 0.27]) =
    (1, 0); f(b) = (1 - t)^2 = 0.3025, f(b') = ((1 - t)^2 + t^2) / 2 = 0.2525."""
    problem = toy(0.0, 2)
    point = {"theta": torch.tensor([0.5, -1.0], dtype=torch.float64)}
    return problem, point, torch.tensor([[[0.5, 0.1]]], dtype=torch.float64)


def test_arm_replays_by_hand():
    problem, point, u = two_bits()
    estimator = FixedARM()
    estimator.u = u
    grad, z = replay(estimator, problem, point, 2)
    assert z.tolist() == [[1.0, 1.0], [1.0, 0.0]]
    # (f(b') - f(b)) (u - 1/2) = -0.05 * (0, -0.4)
    torch.testing.assert_close(grad, torch.tensor([0.0, 0.02], dtype=torch.float64))


def test_disarm_replays_by_hand():
    problem, point, u = two_bits()
    estimator = FixedDisARM()
    estimator.u = u
    grad, _ = replay(estimator, problem, point, 2)
    # 1/2 (f(b) - f(b')) (b - b') sigma(|theta|) = 0.025 * (0, 1) * sigma(1)
    expected = torch.tensor([0.0, 0.025 / (1 + math.exp(-1))], dtype=torch.float64)
    torch.testing.assert_close(grad, expected)


def test_arms_replays_by_hand():
    """K = 3 on one bit, theta = 1 (p > 1/2: samples 1[1 - u_k < p]), u = (0.1, 0.5, 0.9):
    z = (0, 1, 1), f = (t^2, (1-t)^2, (1-t)^2); m = 1 - p, C = max(2 sqrt(m) - 1, 0)^2."""
    problem = toy(1.0, 1)
    estimator = FixedARMS()
    estimator.u = torch.tensor([[[0.1]], [[0.5]], [[0.9]]], dtype=torch.float64)
    grad, z = replay(estimator, problem, problem.init_params(), 3)
    assert z[:, 0].tolist() == [0.0, 1.0, 1.0]
    p = 1 / (1 + math.exp(-1.0))
    f = np.array([T**2, (1 - T) ** 2, (1 - T) ** 2])
    loo = ((f - f.mean()) * (np.array([0.0, 1.0, 1.0]) - p)).sum() / 2
    m = 1 - p
    factor = p * (1 - p) / (m - max(2 * math.sqrt(m) - 1, 0) ** 2)
    assert float(grad) == pytest.approx(loo * factor, rel=1e-12)
    assert float(debias(torch.tensor(p, dtype=torch.float64), 3)) == pytest.approx(factor)


def test_categorical_disarm_replays_by_hand():
    """categorical_toy, one group of 3 classes, logits (-1, 0, 1), descending order: ranks are
    classes (2, 1, 0), eta_1 = 1 - log(1 + e^-1), eta_2 = 0 - (-1) = 1. u = (0.2, 0.6): sample 1
    has bits (1, 1) -> class 2; sample 2 has bits (1[0.8 < s(eta_1)], 1[0.4 < s(eta_2)]) =
    (0, 1) -> class 1. Bit 1 is reached by both (DisARM term), bit 2 by sample 2 only
    (REINFORCE term with sample 1's cost as baseline)."""
    problem = get_problem("categorical_toy")(
        {"theta": 1.0, "d": 1, "classes": 3, "t": T}, dtype=torch.float64
    )
    estimator = FixedDisARM()
    estimator.u = torch.tensor([[[[0.2, 0.6]]]], dtype=torch.float64)
    point = problem.init_params()
    grad, z = replay(estimator, problem, point, 2)
    assert z[:, 0].tolist() == [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    f1, f2 = (1 - T) ** 2, (0.5 - T) ** 2
    eta1, eta2 = 1 - math.log(1 + math.exp(-1)), 1.0
    s = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    g_eta = torch.tensor(
        [0.5 * (f1 - f2) * 1 * s(abs(eta1)), -0.5 * (f1 - f2) * (1 - s(eta2))], dtype=torch.float64
    )
    logits = point["logits"][0].clone().requires_grad_(True)
    eta = torch.stack([logits[2] - torch.logsumexp(logits[:2], 0), logits[1] - logits[0]])
    expected = torch.autograd.grad((g_eta * eta).sum(), logits)[0]
    torch.testing.assert_close(grad[0], expected)


def test_exact_baseline_replays_by_hand():
    problem = toy(0.5, 1)
    torch.manual_seed(3)
    grad, z = replay(ReinforceExactBaseline(), problem, problem.init_params(), 2)
    p = 1 / (1 + math.exp(-0.5))
    expected = ((1 - 2 * T) * (z[:, 0] - p) ** 2).mean()  # (f - E f)(b - p) = Delta (b - p)^2
    assert float(grad) == pytest.approx(float(expected), rel=1e-12)


# means against the exact gradient ---------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 3])
@pytest.mark.parametrize("theta", [0.0, 0.5, -1.5, 2.0])
@pytest.mark.parametrize("name", BINARY)
def test_mean_on_the_bit_toy(name, theta, d):
    result = mean_check(toy(theta, d), get_estimator(name)(), SAMPLES[name])
    assert consistent(result), f"max |z| = {np.nanmax(np.abs(result.z_scores)):.2f}"


VAES = [
    ("bernoulli_vae", {"latents": 3, "batch": 2}),
    ("bernoulli_vae", {"latents": 2, "batch": 3, "signals": "global", "grad_decoder": True}),
    ("categorical_vae", {"groups": 2, "categories": 3, "batch": 2}),
]


def vae_cases():
    """Every pair; the slower ones (the per-repeat enumeration of the exact baseline, global
    signals with the decoder) run with the slow tests (``bench verify`` covers them quickly)."""
    for name in BINARY:
        for (problem, options), label in zip(VAES, ["bvae", "bvae-global", "cvae"], strict=True):
            if get_estimator(name).incompatibility(get_problem(problem), options) is not None:
                continue
            slow = name == "reinforce_exact_baseline" or label == "bvae-global"
            marks = [pytest.mark.slow] if slow else []
            yield pytest.param(name, problem, options, id=f"{name}-{label}", marks=marks)


@pytest.mark.parametrize(("name", "problem", "options"), list(vae_cases()))
def test_mean_on_the_enumerable_vaes(name, problem, options):
    prob = get_problem(problem)(options, dtype=torch.float64)
    assert consistent(mean_check(prob, get_estimator(name)(), SAMPLES[name], 5000))


@pytest.mark.parametrize("order", ["descending", "ascending", "none"])
def test_categorical_disarm_mean_in_every_order(order):
    prob = get_problem("categorical_toy")(
        {"theta": -0.7, "d": 2, "classes": 5, "t": 0.3}, dtype=torch.float64
    )
    assert consistent(mean_check(prob, DisARM({"order": order}), 4))


@pytest.mark.parametrize(
    ("name", "problem", "options"),
    [
        ("arm", "bernoulli_vae", {"latents": 3, "batch": 4}),
        ("disarm", "bernoulli_vae", {"latents": 3, "batch": 4}),
        ("arms", "bernoulli_vae", {"latents": 3, "batch": 4}),
        ("disarm", "categorical_vae", {"groups": 2, "categories": 3, "batch": 4}),
    ],
)
def test_per_example_signals_are_less_noisy(name, problem, options):
    """Each image's units use its own cost term; the whole minibatch's (``signals=global``,
    unbiased too: ``test_mean_on_the_enumerable_vaes``) adds the other images' noise. Measured
    ratio of the variance traces about 5 on bernoulli_vae (batch 4)."""
    trace = {}
    for signals in ("local", "global"):
        prob = get_problem(problem)({**options, "signals": signals}, dtype=torch.float64)
        trace[signals] = draw_estimates(prob, get_estimator(name)(), 4, 1000).var(0).sum()
    assert trace["global"] > 2 * trace["local"], trace


# variances against closed forms -----------------------------------------------------------------


def pair_variance(name: str, theta: float, d: int) -> float:
    """The closed forms of the module docstring, for one pair (ARM, DisARM) or sample."""
    p = 1 / (1 + math.exp(-theta))
    m = max(p, 1 - p)
    delta = (1 - T) ** 2 - T**2
    if name == "disarm":
        return (delta * m / (2 * d)) ** 2 * (2 * (1 - m) * (2 * m - 1) + 4 * (1 - m) ** 2 * (d - 1))
    if name == "arm":
        a = m - 0.5
        return (delta / d) ** 2 * (
            (2 / 3) * (1 / 8 - a**3) + (d - 1) * 2 * (1 - m) / 12 - (p * (1 - p)) ** 2
        )
    return (delta / d) ** 2 * (p * (1 - p) * (1 - 2 * p) ** 2 + (d - 1) * (p * (1 - p)) ** 2)


@pytest.mark.parametrize("d", [1, 3])
@pytest.mark.parametrize("theta", [0.5, -1.5, 2.0])
@pytest.mark.parametrize("name", ["arm", "disarm", "reinforce_exact_baseline"])
def test_variance_matches_the_closed_form(name, theta, d):
    n_samples = 4  # two pairs, or four samples
    per_estimate = pair_variance(name, theta, d) / (2 if name != "reinforce_exact_baseline" else 4)
    estimates = draw_estimates(toy(theta, d), get_estimator(name)(), n_samples, R)
    assert variance_consistent(estimates, per_estimate)


def arms_one_bit_law(theta: float, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """The law of N(K - N), N the number of coupled samples below m = min(p, 1 - p), under the
    Dirichlet copula: with a = 1 - m^{1/(K-1)}, P(u_1..u_j < m) = P(d_1..d_j > a) =
    (1 - j a)_+^{K-1}, and inclusion-exclusion over the other K - n samples gives
    P(N = n) = C(K, n) sum_j (-1)^j C(K - n, j) (1 - (n + j) a)_+^{K-1}.

    On one bit f(b_k) - fbar = Delta (b_k - bbar), so sum_k (f(b_k) - fbar)(b_k - p) =
    Delta N(K - N) / K (for p > 1/2 the ones are the complement's, and N(K - N) is symmetric):
    ARMS's estimate is g = debias * Delta N(K - N) / (K (K - 1)). Its mean is
    debias * Delta (m - C(m, m)) = Delta p (1 - p), checked here too."""
    p = 1 / (1 + math.exp(-theta))
    m, k = min(p, 1 - p), n_samples
    a = 1 - m ** (1 / (k - 1))
    probs = np.array(
        [
            math.comb(k, n)
            * sum(
                (-1) ** j * math.comb(k - n, j) * max(1 - (n + j) * a, 0) ** (k - 1)
                for j in range(k - n + 1)
            )
            for n in range(k + 1)
        ]
    )
    n = np.arange(k + 1)
    factor = float(debias(torch.tensor(p, dtype=torch.float64), k))
    values = factor * (1 - 2 * T) * n * (k - n) / (k * (k - 1))
    assert probs.sum() == pytest.approx(1.0) and np.all(probs > -1e-12)
    assert (probs * values).sum() == pytest.approx((1 - 2 * T) * p * (1 - p), rel=1e-9)
    return probs, values


@pytest.mark.parametrize("n_samples", [3, 5])
@pytest.mark.parametrize("theta", [0.5, -1.5, 2.0])
def test_arms_variance_matches_the_copula_law(theta, n_samples):
    probs, values = arms_one_bit_law(theta, n_samples)
    exact = (probs * values**2).sum() - (probs * values).sum() ** 2
    estimates = draw_estimates(toy(theta, 1), ARMS(), n_samples, R)
    assert variance_consistent(estimates, exact)


def test_arm_variance_at_theta_zero():
    """Delta^2 (2/3)(1/8) - (Delta / 4)^2 = Delta^2 / 48 per pair on one bit."""
    estimates = draw_estimates(toy(0.0, 1), ARM(), 2, R)
    assert variance_consistent(estimates, (1 - 2 * T) ** 2 / 48)


# identities -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["disarm", "reinforce_exact_baseline"])
def test_zero_variance_on_one_bit_at_theta_zero(name):
    """DisARM: b != b' always at p = 1/2 and g = Delta / 4 for both orders. The exact baseline:
    Delta (b - 1/2)^2 = Delta / 4 for both b."""
    estimates = draw_estimates(toy(0.0, 1), get_estimator(name)(), 2, 1000)
    np.testing.assert_allclose(estimates, (1 - 2 * T) / 4, rtol=1e-12)


def test_verify_takes_rounding_level_spread_for_zero_variance():
    """At theta = 0 the exact baseline's estimate is Delta / 4 in exact arithmetic; rounding
    spreads it by ~1e-18, which must not read as a significant bias in ``bench verify``."""
    from bench.verify.checks import check_bias

    problem = toy(0.0, 1)
    point = problem.init_params()
    truth = problem.truth(point).grad["theta"]
    result = check_bias(problem, ReinforceExactBaseline(), {}, point, truth, 2, 0, 1e-3, 0.05, 2000)
    assert result.max_abs_z == 0.0 and result.variance < 1e-30


@pytest.mark.parametrize("theta", [0.7, -1.5])
def test_arms_with_two_samples_is_disarm_sample_for_sample(theta):
    """With u_2 = 1 - u_1 (the Dirichlet copula at K = 2) ARMS's estimate is DisARM's."""
    problem = toy(theta, 3)
    u = torch.rand(1, 1, 3, dtype=torch.float64).expand(1, 200, 3)
    arms, disarm = FixedARMS(), FixedDisARM()
    arms.u, disarm.u = torch.cat([u, 1 - u]), u
    params = repeat_params(problem.init_params(), 200)
    draws = [
        torch.autograd.grad(e.surrogate(problem, params, 2, {}).loss.sum(), params["theta"])[0]
        for e in (arms, disarm)
    ]
    torch.testing.assert_close(draws[0], draws[1], rtol=1e-12, atol=1e-15)


def test_arms_copula_at_two_samples_is_antithetic_and_uniform():
    from scipy.stats import kstest

    u = ARMS().uniforms(torch.Size((2, 5000)), torch.zeros((), dtype=torch.float64))
    torch.testing.assert_close(u[0] + u[1], torch.ones(5000, dtype=torch.float64))
    u4 = ARMS().uniforms(torch.Size((4, 5000)), torch.zeros((), dtype=torch.float64))
    assert kstest(u4[2].numpy(), "uniform").pvalue > 1e-4
    assert np.corrcoef(u4[0].numpy(), u4[1].numpy())[0, 1] < -0.2  # negatively dependent


def test_arms_with_two_samples_has_disarms_distribution():
    """Mean and the DisARM closed-form variance of one pair, from ARMS's own copula."""
    theta, d = -1.5, 3
    estimates = draw_estimates(toy(theta, d), ARMS(), 2, R)
    assert variance_consistent(estimates, pair_variance("disarm", theta, d))
    assert consistent(compare(estimates, flat_truth(toy(theta, d))))


def test_two_class_stick_breaking_is_binary_disarm():
    """A 2-class categorical with logits (-theta, theta) is one bit of logit 2 theta (class 1):
    the same uniforms give the same estimate, d/dlogits = (-g, g)."""
    theta, n = 0.6, 100
    categorical = get_problem("categorical_toy")(
        {"theta": theta, "d": 1, "classes": 2, "t": T}, dtype=torch.float64
    )
    u = torch.rand(1, 1, 1, 1, dtype=torch.float64).expand(1, n, 1, 1)
    cat_estimator, bit_estimator = FixedDisARM(), FixedDisARM()
    cat_estimator.u, bit_estimator.u = u, u.reshape(1, n, 1)
    params = repeat_params(categorical.init_params(), n)
    g_cat = torch.autograd.grad(
        cat_estimator.surrogate(categorical, params, 2, {}).loss.sum(), params["logits"]
    )[0]  # [n, 1, 2]
    bit = toy(2 * theta, 1)
    bit_params = repeat_params(bit.init_params(), n)
    g_bit = torch.autograd.grad(
        bit_estimator.surrogate(bit, bit_params, 2, {}).loss.sum(), bit_params["theta"]
    )[0]  # [n, 1]
    torch.testing.assert_close(g_cat[:, 0, 1], g_bit[:, 0])
    torch.testing.assert_close(g_cat[:, 0, 0], -g_bit[:, 0])


# broken twins -----------------------------------------------------------------------------------


class DisARMAdded(DisARM):
    """Broken: the partner's cost added instead of subtracted (a published bug)."""

    def difference(self, f_first, f_second):
        return f_first + f_second


class ARMWrongSign(ARM):
    """Broken: (f(b) - f(b')) (u - 1/2)."""

    def weight(self, f_first, f_second, u, first, second, logits):
        return (f_first - f_second) * (u - 0.5)


class ARMWrongPartner(ARM):
    """Broken: the partner 1[u > p] = 1 - b (sigmoid(theta) where sigmoid(-theta) belongs).
    On one bit, and on any separable cost such as the bit toy's, its mean is still
    Delta p (1 - p) per coordinate: only a cost that couples the bits (the VAE) exposes it."""

    def partner(self, u, p):
        return (u > p).to(p.dtype)


class ARMSWithoutDebias(ARMS):
    """Broken: leave-one-out REINFORCE on the copula's correlated samples, not debiased."""

    def correction(self, p, n_samples):
        return torch.ones_like(p)


class BaselineNotDetached(ReinforceExactBaseline):
    """Broken: the gradient flows through the exact baseline b(theta) into the score term."""

    def surrogate(self, problem, params, n_samples, state):
        baseline = problem.signals(problem.objective_terms(params))
        loss, z, _ = score_surrogate(
            problem, params, n_samples, baseline.unsqueeze(0).expand(n_samples, -1, -1)
        )
        return Surrogate(loss=loss, samples=z)


BVAE = ("bernoulli_vae", {"latents": 3, "batch": 2})


@pytest.mark.parametrize(
    ("broken", "problem"),
    [
        (DisARMAdded, ("bernoulli_toy", {"theta": 0.0, "d": 1})),
        (DisARMAdded, ("bernoulli_toy", {"theta": 0.5, "d": 3})),
        (ARMWrongSign, ("bernoulli_toy", {"theta": 0.5, "d": 3})),
        (ARMWrongPartner, BVAE),
        (ARMSWithoutDebias, ("bernoulli_toy", {"theta": 0.5, "d": 3})),
        (BaselineNotDetached, ("bernoulli_toy", {"theta": 0.5, "d": 3})),
    ],
    ids=[
        "disarm-added-0",
        "disarm-added",
        "arm-sign",
        "arm-partner",
        "arms-debias",
        "baseline-grad",
    ],
)
def test_broken_twins_are_rejected(broken, problem):
    n_samples = 3 if issubclass(broken, ARMS) else 4
    prob = get_problem(problem[0])(problem[1], dtype=torch.float64)
    result = mean_check(prob, broken(), n_samples, R if problem[0] == "bernoulli_toy" else 5000)
    assert not consistent(result), "a broken estimator passed: the test lacks power"


def test_broken_categorical_disarm_is_rejected():
    prob = get_problem("categorical_toy")({"theta": 1.0, "d": 2, "classes": 4}, dtype=torch.float64)
    assert not consistent(mean_check(prob, DisARMAdded(), 4))


# contract: K, skipped pairs, cost ---------------------------------------------------------------


def test_pairs_need_an_even_k_and_say_so(capsys):
    assert ARM.sample_rule(3) == "arm needs K >= 2, even, got K=3"
    assert DisARM.sample_rule(1) == "disarm needs K >= 2, even, got K=1"
    assert DisARM.sample_rule(6) is None and ARMS.sample_rule(3) is None
    assert ARMS.sample_rule(1) == "arms needs K >= 2, got K=1"
    problem = toy(0.0, 1)
    with pytest.raises(ValueError, match="even number of samples"):
        ARM().surrogate(problem, repeat_params(problem.init_params(), 1), 3, {})
    list_estimators(argparse.Namespace())
    listing = capsys.readouterr().out
    assert "arm: Augment" in listing and "K >= 2, even; cost K (K/2 antithetic pairs)" in listing


def test_pairs_that_do_not_apply_say_why():
    categorical = get_problem("categorical_toy")
    assert ARM.incompatibility(categorical) == (
        "arm needs binary latents; categorical_toy has categorical latents"
    )
    assert ARMS.incompatibility(categorical) is not None
    assert DisARM.incompatibility(categorical) is None
    assert ReinforceExactBaseline.incompatibility(get_problem("gan_continuous")) == (
        "reinforce_exact_baseline requires exact_objective, which gan_continuous lacks"
    )
    too_big = {"classes": 10, "d": 6}
    assert ReinforceExactBaseline.incompatibility(categorical, too_big) is not None


@pytest.mark.parametrize("name", BINARY)
def test_cost_evaluations_are_k(name):
    assert get_estimator(name)().cost_evals(6, toy(0.0, 1)) == 6


def test_cells_skip_an_odd_k_with_the_reason_and_record_the_cost():
    options = (("d", 2), ("t", T), ("theta", 0.5))
    for k, status in ((3, "skipped"), (4, "ok")):
        spec = CellSpec(
            problem="bernoulli_toy",
            problem_options=options,
            estimator="disarm",
            estimator_options=(("order", "descending"),),
            n_samples=k,
            n_repeats=20,
            seed=0,
            n_bootstrap=0,
        )
        row, _ = run_cell(spec)
        assert row["status"] == status, row.get("reason")
    assert row["cost_evals"] == 4
    skipped, _ = run_cell(
        CellSpec(
            problem="bernoulli_toy",
            problem_options=options,
            estimator="arm",
            estimator_options=(),
            n_samples=3,
            n_repeats=20,
            seed=0,
            n_bootstrap=0,
        )
    )
    assert skipped["reason"] == "arm needs K >= 2, even, got K=3"
