"""Categorical and straight-through estimators: Gumbel-Rao, ReinMax, GST, ZGR and IndeCateR
(the unordered-set estimator: tests/test_without_replacement.py).

Three proofs each (tests/stats.py on tolerances and seeds):

* exact per-sample checks: the estimate from replayed samples against the hand-derived
  per-sample gradient (float64);
* exact moments. The unbiased ones against the exact gradient (enumeration). The biased
  (straight-through) ones against their own exact mean and variance, derived here on the
  one-bit toy (bernoulli_toy, d = 1) and on a one-variable categorical toy (categorical_toy,
  d = 1, C = 3): ReinMax, GST and ZGR are functions of the sampled category D, so their
  moments are sums over D; Gumbel-Rao's (and ST-Gumbel-Softmax's) need an integral over the
  Gumbel noise given D, by ``scipy.integrate.quad`` for the bit and by a tensor Gauss-Legendre
  rule over the C exponentials of ``conditional_gumbels`` for the categorical (checked against
  ``quad`` at C = 2 and against a finer rule);
* broken twins, the classic mistake of each family, rejected by the same tests.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.special import expit, logsumexp, softmax
from scipy.stats import ks_2samp

from estimators import get_estimator
from estimators.exact_sum import IndeCateR
from estimators.straight_through import ZGR, GappedST, GumbelRao, ReinMax, conditional_gumbels
from problems import get_problem
from problems.base import repeat_params
from tests.examples import PROBLEM_EXAMPLES
from tests.stats import compare, draw_estimates, flat_truth, sample_variance_check

F64 = torch.float64
K, R = 3, 5  # per-sample checks
N_SAMPLES, N_REPEATS = 4, 20_000  # moment checks
T = 0.45


def estimate(problem, estimator, n_samples=K, n_repeats=R):
    params = repeat_params(problem.init_params(), n_repeats)
    out = estimator.surrogate(problem, params, n_samples, estimator.init_state(params))
    grads = torch.autograd.grad(out.loss.sum(), list(params.values()))
    return grads[0], out


def one_bit(theta=1.0, d=1):
    return get_problem("bernoulli_toy")({"theta": theta, "d": d, "t": T}, dtype=F64)


def one_categorical(theta=1.0, classes=3):
    return get_problem("categorical_toy")(
        {"theta": theta, "d": 1, "classes": classes, "t": T}, dtype=F64
    )


def jac(pi: np.ndarray) -> np.ndarray:
    """J(pi) = diag(pi) - pi pi^T (the softmax Jacobian at pi), batched over leading dims."""
    return (
        np.einsum("...i,ij->...ij", pi, np.eye(pi.shape[-1])) - pi[..., :, None] * pi[..., None, :]
    )


# -- hand-derived per-sample gradients on one categorical variable, D = e_c ----------------------
# logits lg [C], a = grad_z f(e_c) [C]; each returns d(estimate)/dl [C]. Bits: lg = (theta, 0) and
# the gradient w.r.t. theta is the first coordinate when the cost sees z_0 only (a = (f'(b), 0)).


def reinmax_grad(lg, c, a, tau):
    p = softmax(lg)
    pi_1 = (np.eye(len(lg))[c] + softmax(lg / tau)) / 2
    return (2 * jac(pi_1) - jac(p) / 2) @ a


def zgr_grad(lg, c, a):
    p, e = softmax(lg), np.eye(len(lg))[c]
    return (jac(p) + np.outer(e - p, e - p)) @ a / 2


def gst_grad(lg, c, a, tau, gap):
    top = lg.max()
    p_c = softmax(lg)[c]
    gap = -math.log1p(-p_c) / p_c if gap == "p" else 1.0
    move = np.array(
        [top - lg[j] if j == c else -max(0.0, lg[j] - top + gap) for j in range(len(lg))]
    )
    y = softmax((lg + move) / tau)
    return jac(y) @ a / tau


def categorical_cost_grad(problem, c):
    """grad_z f(e_c) = 2 (v_c - t) v for f(z) = (<z, v> - t)^2 (categorical_toy, d = 1)."""
    v = problem.class_values().numpy()
    return 2 * (v[c] - T) * v


def bit_cost_grad(b):
    return np.array([2 * (b - T), 0.0])


def bit_logits(problem):
    return np.array([problem.init_params()["theta"][0].item(), 0.0])


# -- exact moments of Gumbel-Rao / ST-Gumbel-Softmax: E[g | D] and E[g^2 | D] -------------------


def bit_gumbel_moments(theta: float, tau: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For one bit: P(b), E[g | b], E[g^2 | b] of the ST-Gumbel-Softmax backward
    g = y (1 - y) / tau f'(b), y = sigmoid((theta + L) / tau), L = logit(u) logistic,
    b = 1[theta + L > 0] = 1[u > 1 - p]; index 0 is b = 1. By scipy.integrate.quad on each side
    of the discontinuity."""
    p = expit(theta)

    def g(u, b):
        y = expit((theta + math.log(u) - math.log1p(-u)) / tau)
        return y * (1 - y) / tau * 2 * (b - T)

    prob = np.array([p, 1 - p])
    sides = [(1, (1 - p, 1.0)), (0, (0.0, 1 - p))]
    first = np.array([quad(lambda u, b=b: g(u, b), *ends, epsabs=1e-13)[0] for b, ends in sides])
    second = np.array(
        [quad(lambda u, b=b: g(u, b) ** 2, *ends, epsabs=1e-13)[0] for b, ends in sides]
    )
    return prob, first / prob, second / prob


def exponential_rule(step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A tanh-sinh (double exponential) rule for E[h(E)], E ~ Exp(1), as an integral over
    u = exp(-E) in (0, 1): nodes u = expit(2 s), s = (pi/2) sinh(t), t on a grid of ``step``.
    The transformation clusters nodes at both ends, where h has the log singularities of the
    Gumbel transform, and converges exponentially there (Takahasi & Mori 1974). Returns the
    weights, E and log E (E = log(1 + exp(-2 s)) computed without cancellation)."""
    t = np.arange(-3.6, 3.6 + step / 2, step)
    s = np.pi / 2 * np.sinh(t)
    u = expit(2 * s)
    weight = step * np.pi / 2 * np.cosh(t) * 2 * u * (1 - u)
    exp = np.logaddexp(0.0, -2 * s)
    return weight, exp, np.log(exp)


def categorical_gumbel_moments(
    logits: np.ndarray, cost_grads: np.ndarray, tau: float, step: float = 0.2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For one categorical variable: P(D = c), E[g | c] ``[C, C]`` and E[g^2 | c] ``[C, C]`` of
    g = J(y)^T a_c / tau, y = softmax((lg + G) / tau), G Gumbel given argmax(lg + G) = c, with
    a_c = ``cost_grads[c]``. Given c, lg + G is a function of C iid Exp(1) variables E
    (``conditional_gumbels``: the maximum lse(lg) - log E_c, the others
    -log(exp(-max) + E_j exp(-l_j))), integrated by the tensor product of ``exponential_rule``."""
    n = len(logits)
    w, _, log_e = exponential_rule(step)
    weight = np.prod(np.meshgrid(*[w] * n, indexing="ij"), axis=0).reshape(-1)
    log_exp = np.stack([g.reshape(-1) for g in np.meshgrid(*[log_e] * n, indexing="ij")], -1)
    probs, first, second = softmax(logits), [], []
    for c in range(n):
        top = logsumexp(logits) - log_exp[:, c]
        others = -np.logaddexp(-top[:, None], log_exp - logits)
        values = np.where(np.arange(n) == c, top[:, None], others)
        y = softmax(values / tau, axis=-1)
        g = np.einsum("pij,j->pi", jac(y), cost_grads[c]) / tau
        first.append(weight @ g)
        second.append(weight @ g**2)
    return probs, np.array(first), np.array(second)


def mixture_moments(prob, first, second, rao_samples=1):
    """Mean and variance of g_M = (1/M) sum_m g_m, the g_m iid given D:
    Var = sum_D P(D) [Var(g | D) / M + E[g | D]^2] - mean^2 (per coordinate)."""
    prob = prob.reshape(-1, *[1] * (first.ndim - 1))
    mean = (prob * first).sum(0)
    var = (prob * ((second - first**2) / rao_samples + first**2)).sum(0) - mean**2
    return mean, var


def by_enumeration(prob, grads):
    """Mean and variance of an estimate that is a function g(D) of the sampled category."""
    grads = np.asarray(grads)
    mean = (prob[:, None] * grads).sum(0)
    return mean, (prob[:, None] * (grads - mean) ** 2).sum(0)


def exact_st_moments(name, options, problem):
    """(mean, variance) of one sample's estimate of a straight-through estimator, flattened
    like ``draw_estimates``, on the one-bit or one-variable categorical toy."""
    if problem.name == "bernoulli_toy":
        lg, grad_at = bit_logits(problem), (lambda c: bit_cost_grad(1 - c))  # class 0 = bit 1
        pick = slice(0, 1)
    else:
        lg = problem.init_params()["logits"][0].numpy()
        grad_at, pick = (lambda c: categorical_cost_grad(problem, c)), slice(None)
    tau = options.get("tau", 1.0)
    prob = softmax(lg)
    if name in ("gumbel_rao", "st_gumbel_softmax"):
        if problem.name == "bernoulli_toy":
            _, first, second = bit_gumbel_moments(lg[0], tau)
            first, second = first[:, None], second[:, None]
        else:
            a = np.stack([grad_at(c) for c in range(len(lg))])
            _, first, second = categorical_gumbel_moments(lg, a, tau)
        mean, var = mixture_moments(prob, first, second, options.get("rao_samples", 1))
        return mean[pick], var[pick]
    per_class = {
        "reinmax": lambda c: reinmax_grad(lg, c, grad_at(c), tau),
        "zgr": lambda c: zgr_grad(lg, c, grad_at(c)),
        "gst": lambda c: gst_grad(lg, c, grad_at(c), tau, options.get("gap", "1")),
    }[name]
    mean, var = by_enumeration(prob, [per_class(c) for c in range(len(lg))])
    return mean[pick], var[pick]


# -- exact per-sample checks --------------------------------------------------------------------


def replay_bits(out):
    return out.samples.squeeze(-1).numpy()  # [K, R] (d = 1)


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_reinmax_per_sample(tau):
    problem = one_bit(theta=0.7)
    grads, out = estimate(problem, ReinMax({"tau": tau}))
    lg = bit_logits(problem)
    hand = np.vectorize(lambda b: reinmax_grad(lg, int(1 - b), bit_cost_grad(b), tau)[0])
    torch.testing.assert_close(grads[:, 0], torch.tensor(hand(replay_bits(out)).mean(0)))
    problem = one_categorical()
    grads, out = estimate(problem, ReinMax({"tau": tau}))
    lg = problem.init_params()["logits"][0].numpy()
    classes = out.samples[:, :, 0].argmax(-1).numpy()  # [K, R]
    hand = np.array(
        [
            [reinmax_grad(lg, c, categorical_cost_grad(problem, c), tau) for c in row]
            for row in classes
        ]
    ).mean(0)
    torch.testing.assert_close(grads[:, 0], torch.tensor(hand))


def test_zgr_per_sample_is_darn_at_one_half():
    """For a bit: g = f'(1) (1 - p) / 2 at b = 1 and f'(0) p / 2 at b = 0 (DARN(1/2))."""
    problem = one_bit(theta=0.7)
    grads, out = estimate(problem, get_estimator("zgr")())
    b, p = replay_bits(out), expit(0.7)
    hand = np.where(b == 1, 2 * (1 - T) * (1 - p) / 2, -2 * T * p / 2).mean(0)
    torch.testing.assert_close(grads[:, 0], torch.tensor(hand))
    problem = one_categorical()
    grads, out = estimate(problem, get_estimator("zgr")())
    lg = problem.init_params()["logits"][0].numpy()
    classes = out.samples[:, :, 0].argmax(-1).numpy()
    hand = np.array(
        [[zgr_grad(lg, c, categorical_cost_grad(problem, c)) for c in row] for row in classes]
    ).mean(0)
    torch.testing.assert_close(grads[:, 0], torch.tensor(hand))


@pytest.mark.parametrize("gap", ["1", "p"])
def test_gst_per_sample(gap):
    for problem in (one_bit(theta=0.3), one_categorical(theta=0.4)):
        grads, out = estimate(problem, GappedST({"gap": gap, "tau": 0.7}))
        if problem.name == "bernoulli_toy":
            bit = bit_logits(problem)
            hand = np.vectorize(
                lambda b, bit=bit: gst_grad(bit, int(1 - b), bit_cost_grad(b), 0.7, gap)[0]
            )
            torch.testing.assert_close(grads[:, 0], torch.tensor(hand(replay_bits(out)).mean(0)))
        else:
            lg = problem.init_params()["logits"][0].numpy()
            classes = out.samples[:, :, 0].argmax(-1).numpy()
            hand = np.array(
                [
                    [gst_grad(lg, c, categorical_cost_grad(problem, c), 0.7, gap) for c in row]
                    for row in classes
                ]
            ).mean(0)
            torch.testing.assert_close(grads[:, 0], torch.tensor(hand))


def test_gumbel_rao_per_sample():
    """Replaying the hard samples and conditional Gumbels from the same seed: g is the mean
    over the M draws of J(y_m)^T a_c / tau, y_m = softmax((lg + G_m) / tau)."""
    problem, tau, m = one_categorical(), 0.8, 3
    torch.manual_seed(5)
    grads, out = estimate(problem, GumbelRao({"tau": tau, "rao_samples": m}))
    torch.manual_seed(5)
    logits = repeat_params(problem.init_params(), R, False)["logits"]  # [R, 1, C]
    hard = torch.nn.functional.one_hot(
        torch.distributions.Categorical(logits=logits).sample((K,)), 3
    ).to(F64)
    gumbels = conditional_gumbels(logits, hard, m).numpy()  # [M, K, R, 1, C]
    torch.testing.assert_close(hard, out.samples)
    lg = logits[0, 0].numpy()
    y = softmax((lg + gumbels[:, :, :, 0]) / tau, axis=-1)  # [M, K, R, C]
    a = np.stack(
        [categorical_cost_grad(problem, c) for c in hard[:, :, 0].argmax(-1).reshape(-1)]
    ).reshape(K, R, 3)
    hand = np.einsum("mkrij,krj->mkri", jac(y), a).mean((0, 1)) / tau
    torch.testing.assert_close(grads[:, 0], torch.tensor(hand))


def test_conditional_gumbels_have_the_conditional_law():
    """argmax(lg + G) = D always, and each coordinate has the law of an unconditional Gumbel
    draw filtered on its argmax being D (two-sample KS tests, which detect the unconditional
    law)."""
    logits = torch.tensor([0.5, -0.3, 1.2], dtype=F64)
    n = 20_000
    hard = torch.zeros(n, 3, dtype=F64)
    hard[:, 1] = 1.0
    gumbels = conditional_gumbels(logits, hard, 1)[0]
    assert torch.equal((logits + gumbels).argmax(-1), torch.ones(n, dtype=torch.long))
    free = torch.distributions.Gumbel(0.0, 1.0).sample((12 * n, 3)).to(F64)
    kept = free[(logits + free).argmax(-1) == 1][:n]
    for j in range(3):
        assert ks_2samp(gumbels[:, j].numpy(), kept[:, j].numpy()).pvalue > 1e-4
    assert ks_2samp(gumbels[:, 1].numpy(), free[:n, 1].numpy()).pvalue < 1e-4


def test_indecater_per_sample():
    """On categorical_toy (d = 2, a cost coupling the groups): for group i,
    g_i = sum_c p_i(c) (e_c - p_i) f(z_{-i}, c), averaged over the K samples."""
    problem = get_problem("categorical_toy")(
        {"theta": 0.6, "d": 2, "classes": 3, "t": 0.3}, dtype=F64
    )
    grads, out = estimate(problem, get_estimator("indecater")())
    v = problem.class_values().numpy()
    lg = problem.init_params()["logits"].numpy()
    z = out.samples.argmax(-1).numpy()  # [K, R, 2]
    hand = np.zeros((R, 2, 3))
    for k, r, i in itertools.product(range(K), range(R), range(2)):
        p = softmax(lg[i])
        for c in range(3):
            s = (v[c] + v[z[k, r, 1 - i]]) / 2
            hand[r, i] += p[c] * (np.eye(3)[c] - p) * (s - 0.3) ** 2 / K
    torch.testing.assert_close(grads, torch.tensor(hand))


# -- exact moments of the biased ones -----------------------------------------------------------


def test_categorical_quadrature_matches_quad_and_converges():
    """The tanh-sinh rule over the conditional Gumbels: at C = 2 with logits (theta, 0) it
    agrees with scipy.integrate.quad over the logistic noise of the bit, and at C = 3 a finer
    step changes nothing beyond 2e-6 (relative; measured at tau = 0.5: 1e-6 at step 0.2
    against 0.05)."""
    theta, tau = 1.0, 0.7
    prob, first, second = bit_gumbel_moments(theta, tau)
    a = np.stack([bit_cost_grad(1), bit_cost_grad(0)])
    cat_prob, cat_first, cat_second = categorical_gumbel_moments(np.array([theta, 0.0]), a, tau)
    np.testing.assert_allclose(cat_prob, prob, rtol=1e-12)
    np.testing.assert_allclose(cat_first[:, 0], first, rtol=1e-7)
    np.testing.assert_allclose(cat_second[:, 0], second, rtol=1e-7)
    problem = one_categorical()
    lg = problem.init_params()["logits"][0].numpy()
    a = np.stack([categorical_cost_grad(problem, c) for c in range(3)])
    coarse = categorical_gumbel_moments(lg, a, 0.5)
    fine = categorical_gumbel_moments(lg, a, 0.5, step=0.15)
    for x, y in zip(coarse[1:], fine[1:], strict=True):
        np.testing.assert_allclose(x, y, rtol=2e-6, atol=1e-12)


ST_CASES = [
    ("gumbel_rao", {"tau": 1.0, "rao_samples": 4}),
    ("gumbel_rao", {"tau": 0.5, "rao_samples": 1}),
    ("reinmax", {"tau": 2.0}),
    ("reinmax", {"tau": 1.0}),
    ("gst", {"gap": "1", "tau": 1.0}),
    ("gst", {"gap": "p", "tau": 0.5}),
    ("zgr", {}),
]
#: exact in mean on these quadratic costs: ZGR, and ReinMax at tau = 1 (module docstring)
EXACT_IN_MEAN = {("reinmax", 1.0), ("zgr", 1.0)}


@pytest.mark.parametrize("toy", ["one_bit", "one_categorical"])
@pytest.mark.parametrize(
    ("name", "options"),
    ST_CASES,
    ids=[f"{n}-{'-'.join(map(str, o.values()))}" for n, o in ST_CASES],
)
def test_straight_through_exact_mean_and_variance(toy, name, options):
    """Sample mean and variance against the exact ones derived above; the bias test against
    the true gradient flags every case whose exact bias is large, and ZGR and ReinMax at tau = 1
    have none on these quadratic costs."""
    problem = one_bit() if toy == "one_bit" else one_categorical()
    mean, var = exact_st_moments(name, options, problem)
    estimates = draw_estimates(problem, get_estimator(name)(options), N_SAMPLES, N_REPEATS)
    result = compare(estimates, mean)
    result.guard()
    assert result.consistent, f"{result.mean} vs exact {mean}"
    sample_variance_check(estimates, var / N_SAMPLES)
    truth = flat_truth(problem)
    against_truth = compare(estimates, truth)
    if (name, options.get("tau", 1.0)) in EXACT_IN_MEAN:
        np.testing.assert_allclose(mean, truth, rtol=1e-10, atol=1e-14)
        assert against_truth.consistent
    else:
        assert np.abs(mean - truth).max() > 4 * against_truth.z * against_truth.se.max()
        assert not against_truth.consistent


def test_reinmax_at_tau_one_is_zgr():
    """Same seed, same samples: identical estimates, for bits and for categoricals."""
    for problem in (one_bit(theta=-0.4, d=3), one_categorical(classes=4)):
        torch.manual_seed(11)
        reinmax, _ = estimate(problem, ReinMax({"tau": 1.0}))
        torch.manual_seed(11)
        zgr, _ = estimate(problem, get_estimator("zgr")())
        torch.testing.assert_close(reinmax, zgr)
        torch.manual_seed(11)
        other, _ = estimate(problem, ReinMax({"tau": 1.5}))
        assert not torch.allclose(other, zgr)


@pytest.mark.parametrize(
    "toy", ["one_bit", pytest.param("one_categorical", marks=pytest.mark.slow)]
)
def test_gumbel_rao_mean_is_st_gumbel_softmax_for_every_m_and_variance_decreases(toy):
    """E[g_M] is ST-Gumbel-Softmax's exact mean for M = 1, 2, 8, and the exact variance
    strictly decreases in M; the sample moments agree with both. ST-Gumbel-Softmax itself
    (M = 1) matches the same exact moments."""
    problem = one_bit() if toy == "one_bit" else one_categorical()
    tau = 0.7
    stgs_mean, stgs_var = exact_st_moments("st_gumbel_softmax", {"tau": tau}, problem)
    estimates = draw_estimates(
        problem, get_estimator("st_gumbel_softmax")({"tau": tau}), N_SAMPLES, N_REPEATS
    )
    assert compare(estimates, stgs_mean).consistent
    sample_variance_check(estimates, stgs_var / N_SAMPLES)
    variances = []
    for m in (1, 2, 8):
        mean, var = exact_st_moments("gumbel_rao", {"tau": tau, "rao_samples": m}, problem)
        np.testing.assert_allclose(mean, stgs_mean, rtol=1e-12)
        estimates = draw_estimates(
            problem, GumbelRao({"tau": tau, "rao_samples": m}), N_SAMPLES, N_REPEATS
        )
        result = compare(estimates, mean)
        result.guard()
        assert result.consistent
        sample_variance_check(estimates, var / N_SAMPLES)
        variances.append(var)
    assert np.all(np.diff(np.array(variances), axis=0) < 0)


# -- identities and exact truth of the unbiased ones --------------------------------------------


def test_indecater_has_zero_variance_on_a_separable_cost():
    """bernoulli_toy's cost is a sum of per-bit terms: every bit's exact sum over its two
    values is the exact gradient p (1 - p) (1 - 2t) / d, whatever the other bits are."""
    problem = get_problem("bernoulli_toy")({"theta": 0.8, "d": 3}, dtype=F64)
    estimates = draw_estimates(problem, get_estimator("indecater")(), 2, 500)
    truth = flat_truth(problem)
    np.testing.assert_allclose(estimates, np.broadcast_to(truth, estimates.shape), rtol=1e-12)
    assert IndeCateR().cost_evals(2, problem) == 2 * 3 * 2


def test_cost_accounting():
    vae = get_problem("categorical_vae")({"groups": 3, "categories": 4, "batch": 2})
    assert IndeCateR().cost_evals(5, vae) == 5 * 3 * 4  # per sample: U * C minibatch costs


# -- broken twins --------------------------------------------------------------------------------


class UnconditionalGumbelRao(GumbelRao):
    """Broken: the M Gumbels are drawn afresh, not given the sampled category."""

    name = "broken_unconditional_gumbel_rao"

    def soft(self, logits, hard):
        gumbels = (
            torch.distributions.Gumbel(0.0, 1.0)
            .sample((self.option_values["rao_samples"], *hard.shape))
            .to(hard)
        )
        return torch.softmax((logits + gumbels) / self.option_values["tau"], -1).mean(0)


class ThroughConditionalGumbelRao(GumbelRao):
    """Broken for the mean: the derivative also flows through the conditional Gumbels, whose
    law depends on the logits (the paper's text)."""

    name = "broken_through_gumbel_rao"

    def soft(self, logits, hard):
        logits = logits.expand_as(hard)
        exp = torch.empty(
            (self.option_values["rao_samples"], *hard.shape), dtype=hard.dtype
        ).exponential_()
        top = torch.logsumexp(logits, -1, keepdim=True) - torch.log((exp * hard).sum(-1, True))
        others = -torch.logaddexp(-top, torch.log(exp) - logits)
        values = torch.where(hard.bool(), top, others)
        return torch.softmax(values / self.option_values["tau"], -1).mean(0)


class HalfGapGST(GappedST):
    """Broken: only raises the sampled class, without lowering the others by the gap."""

    name = "broken_gst_no_gap"

    def soft(self, logits, hard):
        fixed = logits.detach().expand_as(hard)
        top = fixed.max(-1, keepdim=True).values
        move = hard * (top - (fixed * hard).sum(-1, keepdim=True))
        return torch.softmax((logits + move) / self.option_values["tau"], -1)


class FullScoreZGR(ZGR):
    """Broken: ZGR's score term without the factor 1/2 (p + (D - p) log p_c)."""

    name = "broken_zgr_full_score"

    def soft(self, logits, hard):
        log_p = torch.log_softmax(logits, -1)
        return log_p.exp() / 2 + (hard - log_p.exp().detach()) * (log_p * hard).sum(-1, True)


class TemperedPiZeroReinMax(ReinMax):
    """Broken: pi_0 at temperature tau as well (softmax(lg / tau) / 2 subtracted)."""

    name = "broken_reinmax_tempered_pi0"

    def soft(self, logits, hard):
        return (
            super().soft(logits, hard)
            + (torch.softmax(logits, -1) - torch.softmax(logits / self.option_values["tau"], -1))
            / 2
        )


class FrozenCost:
    """A problem whose cost does not depend on the parameters (cut from the graph)."""

    def __init__(self, problem):
        self.problem = problem

    def __getattr__(self, name):
        return getattr(self.problem, name)

    def cost_terms(self, z, params, **kwargs):
        return self.problem.cost_terms(z, {k: v.detach() for k, v in params.items()}, **kwargs)


class NoDirectTermIndeCateR(IndeCateR):
    """Broken: leaves out df/dtheta, which the VAEs' cost has through log q(z | x)."""

    name = "broken_indecater_no_direct"

    def surrogate(self, problem, params, n_samples, state):
        return super().surrogate(FrozenCost(problem), params, n_samples, state)


@pytest.mark.parametrize(
    ("broken", "toy", "options"),
    [
        (UnconditionalGumbelRao, "one_bit", {"tau": 1.0, "rao_samples": 4}),
        (ThroughConditionalGumbelRao, "one_bit", {"tau": 1.0, "rao_samples": 4}),
        (HalfGapGST, "one_categorical", {"gap": "1", "tau": 1.0}),
        (TemperedPiZeroReinMax, "one_bit", {"tau": 2.0}),
    ],
)
def test_broken_straight_through_twins_are_rejected(broken, toy, options):
    """The same exact-moment test as the correct estimator's rejects each broken twin."""
    problem = one_bit() if toy == "one_bit" else one_categorical()
    name = {
        UnconditionalGumbelRao: "gumbel_rao",
        ThroughConditionalGumbelRao: "gumbel_rao",
        HalfGapGST: "gst",
        TemperedPiZeroReinMax: "reinmax",
    }[broken]
    mean, _ = exact_st_moments(name, options, problem)
    result = compare(draw_estimates(problem, broken(options), N_SAMPLES, N_REPEATS), mean)
    result.guard()
    assert not result.consistent


def test_broken_zgr_is_rejected_where_zgr_is_exact():
    problem = one_categorical()
    result = compare(
        draw_estimates(problem, FullScoreZGR(), N_SAMPLES, N_REPEATS), flat_truth(problem)
    )
    result.guard()
    assert not result.consistent


@pytest.mark.parametrize(
    "name", [pytest.param("bernoulli_vae", marks=pytest.mark.slow), "categorical_vae"]
)
def test_indecater_without_the_direct_term_is_rejected(name):
    """With grad_decoder the decoder's gradient is all direct term. (The encoder's direct term,
    through log q, has mean zero: E_q[grad log q] = 0.)"""
    problem = get_problem(name)({**PROBLEM_EXAMPLES[name], "grad_decoder": True}, dtype=F64)
    truth = flat_truth(problem)
    good = compare(draw_estimates(problem, IndeCateR(), 2, 4000), truth)
    good.guard()
    assert good.consistent
    broken = compare(draw_estimates(problem, NoDirectTermIndeCateR(), 2, 4000), truth)
    assert not broken.consistent
