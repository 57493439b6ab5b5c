"""MuProp, REBAR and RELAX (estimators/control_variate.py, rebar_relax.py) against exact truth.

Three proofs per estimator (../shared/STYLE.md): single estimates replayed from fixed noise
against hand-derived formulas; means against the closed-form or enumerated gradient on the
binary and categorical problems; variances against closed forms (MuProp) and one-dimensional
quadratures (REBAR); and broken twins with the classic mistakes of the family that the same
mean test rejects. Tolerances and seeds: tests/stats.py.

The Bernoulli toy: f(b) = mean_j (b_j - t)^2, p = sigmoid(theta), true gradient
p (1 - p) (1 - 2 t) / d per coordinate.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from estimators import get_estimator
from estimators.control_variate import MuProp
from estimators.discrete import logits_of
from estimators.rebar_relax import (
    Rebar,
    Relax,
    binary_conditional,
    binary_logistic,
    binary_tied,
    categorical_conditional,
    categorical_gumbel,
    categorical_tied,
)
from estimators.score_function import Reinforce
from problems import get_problem
from problems.base import repeat_params
from tests.stats import (
    ALPHA,
    compare,
    draw_estimates,
    flat_truth,
    sample_variance_check,
)

T = 0.45  # the toy's target
R = 20_000


def toy(theta: float | list[float], d: int | None = None):
    """The Bernoulli toy in float64 at ``theta`` (a number, or one per bit)."""
    values = [theta] if isinstance(theta, float | int) else list(theta)
    d = d or len(values)
    problem = get_problem("bernoulli_toy")({"theta": float(values[0]), "d": d}, dtype=torch.float64)
    point = problem.init_params()
    if len(values) > 1:
        point["theta"] = torch.tensor(values, dtype=torch.float64)
        problem.init_params = lambda: {"theta": point["theta"].clone()}
    return problem


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def grads_of(estimator, problem, params, out) -> np.ndarray:
    """The estimates ``[R, D]`` of a surrogate built at leaf ``params``."""
    grads = torch.autograd.grad(out.loss.sum(), list(params.values()))
    return torch.cat([g.reshape(g.shape[0], -1) for g in grads], 1).numpy()


# ----------------------------------------------------------------------------------------------
# exact single estimates from fixed noise
# ----------------------------------------------------------------------------------------------


def rebar_toy_by_hand(theta, u, v, tau, eta, common):
    """One REBAR estimate on the Bernoulli toy, derived by hand for one sample of d bits.

    z = theta + logit(u), b = 1[u > 1 - p]. Given b, the uniform is u' = 1 - p + v p (b = 1)
    or v (1 - p) (b = 0), z~ = theta + logit(u'), and by the chain rule
    dz~/dtheta = 1 + logit'(u') du'/dtheta = 1 - p (1 - p) (1 - v) / (u' (1 - u')) (b = 1) or
    1 - p (1 - p) v / (u' (1 - u')) (b = 0). Common random numbers take u' = u. With
    x = sigmoid(z / tau), d f(x)/d theta_j = (2 / d) (x_j - t) x_j (1 - x_j) / tau * dz_j/dtheta_j,
    and the estimate is [f(b) - eta f(x~)] (b - p) + eta (d f(x) - d f(x~)).
    """
    theta, u, v = (np.asarray(a, dtype=np.float64) for a in (theta, u, v))
    d, p = theta.size, sigmoid(theta)
    b = (u > 1 - p).astype(float)
    if common:
        v = np.where(b > 0, (u - (1 - p)) / p, u / (1 - p))
    u_cond = np.where(b > 0, 1 - p + v * p, v * (1 - p))
    slope = 1 - p * (1 - p) * np.where(b > 0, 1 - v, v) / (u_cond * (1 - u_cond))
    z, z_cond = theta + np.log(u / (1 - u)), theta + np.log(u_cond / (1 - u_cond))
    x, x_cond = sigmoid(z / tau), sigmoid(z_cond / tau)

    def f(y):
        return np.mean((y - T) ** 2)

    def df(y, dz):
        return 2 / d * (y - T) * y * (1 - y) / tau * dz

    return (f(b) - eta * f(x_cond)) * (b - p) + eta * (df(x, 1.0) - df(x_cond, slope))


@pytest.mark.parametrize("coupling", ["common", "independent"])
def test_rebar_replays_the_hand_derived_estimate_on_bits(coupling):
    theta = [0.0, 1.3, -2.0]
    problem, tau, eta = toy(theta), 0.7, 0.8
    estimator = Rebar({"tau": tau, "eta": eta, "coupling": coupling})
    generator = torch.Generator().manual_seed(1)
    u = torch.rand(2, 5, 3, generator=generator, dtype=torch.float64)  # [K, R, d]
    v = torch.rand(2, 5, 3, generator=generator, dtype=torch.float64)
    params = repeat_params(problem.init_params(), 5)
    got = grads_of(
        estimator, problem, params, estimator.surrogate_from_noise(problem, params, u, v)
    )
    for r in range(5):
        expected = np.mean(
            [
                rebar_toy_by_hand(theta, u[k, r], v[k, r], tau, eta, coupling == "common")
                for k in range(2)
            ],
            0,
        )
        np.testing.assert_allclose(got[r], expected, rtol=1e-10, atol=1e-13)


def test_muprop_replays_the_hand_derived_estimate_on_bits():
    """f(b) - f(p) - f'(p) (b - p) = (1/d) sum_k (b_k - p_k)^2 for the quadratic toy, and the
    analytic term is f'(p)_j dp_j/dtheta_j = (2/d) (p_j - t) p_j (1 - p_j), so
    g_j = (1/d) sum_k (b_k - p_k)^2 (b_j - p_j) + (2/d) (p_j - t) p_j (1 - p_j)."""
    theta = np.array([0.0, 1.3, -2.0])
    problem, p = toy(list(theta)), sigmoid(theta)
    b = torch.tensor([[[1.0, 0.0, 1.0]], [[0.0, 0.0, 1.0]]], dtype=torch.float64)  # [K=2, R=1, 3]
    params = repeat_params(problem.init_params(), 1)
    got = grads_of(MuProp(), problem, params, MuProp().surrogate_from_samples(problem, params, b))
    per_sample = [
        ((bk - p) ** 2).mean() * (bk - p) + 2 / 3 * (p - T) * p * (1 - p) for bk in b[:, 0].numpy()
    ]
    np.testing.assert_allclose(got[0], np.mean(per_sample, 0), rtol=1e-12)


def test_rebar_replays_a_hand_computed_categorical_estimate():
    """categorical_toy, one group of 3 classes with values (0, 1/2, 1): f(x) = (x . v - t)^2.
    The conditional Gumbels are written as in Tucker et al. (2017, Appendix C),
    z~_k = -log(-log v_k), z~_c = -log(-log v_c / theta_c - log v_k), and the pathwise
    derivatives w.r.t. the logits are taken by central finite differences with the noise held
    fixed (common random numbers: the exponentials E held at their values from z)."""
    problem = get_problem("categorical_toy")(
        {"d": 1, "classes": 3, "theta": 0.4}, dtype=torch.float64
    )
    logits0 = np.array([0.3, -0.5, 0.9])
    problem.init_params = lambda: {"logits": torch.tensor(logits0).unsqueeze(0)}
    values, tau, eta = np.array([0.0, 0.5, 1.0]), 0.6, 1.2
    u = np.array([0.31, 0.77, 0.52])
    v = np.array([0.64, 0.18, 0.41])

    def f(x):
        return (x @ values - T) ** 2

    def soft(z):
        e = np.exp((z - z.max()) / tau)
        return e / e.sum()

    def log_theta(logits):
        return logits - np.log(np.exp(logits).sum())

    z0 = log_theta(logits0) - np.log(-np.log(u))
    k = int(np.argmax(z0))
    b = np.eye(3)[k]

    for common in (True, False):
        if common:  # E_k = exp(-z_k), E_c = theta_c (exp(-z_c) - exp(-z_k))
            big_e = np.exp(log_theta(logits0)) * (np.exp(-z0) - np.exp(-z0[k]))
            big_e[k] = np.exp(-z0[k])
        else:
            big_e = -np.log(v)

        def z_cond(logits, big_e=big_e):
            theta = np.exp(log_theta(logits))
            out = -np.log(big_e / theta + big_e[k])
            out[k] = -np.log(big_e[k])
            return out

        def z_of(logits):
            return log_theta(logits) - np.log(-np.log(u))

        def grad(fn, h=1e-6):
            out = np.zeros(3)
            for c in range(3):
                step = np.eye(3)[c] * h
                out[c] = (fn(logits0 + step) - fn(logits0 - step)) / (2 * h)
            return out

        theta0 = np.exp(log_theta(logits0))
        expected = (
            (f(b) - eta * f(soft(z_cond(logits0)))) * (b - theta0)
            + eta * grad(lambda lg: f(soft(z_of(lg))))
            - eta * grad(lambda lg: f(soft(z_cond(lg))))
        )
        estimator = Rebar(
            {"tau": tau, "eta": eta, "coupling": "common" if common else "independent"}
        )
        params = repeat_params(problem.init_params(), 1)
        out = estimator.surrogate_from_noise(
            problem,
            params,
            torch.tensor(u).reshape(1, 1, 1, 3),
            torch.tensor(v).reshape(1, 1, 1, 3),
        )
        assert out.samples[0, 0, 0].tolist() == b.tolist()
        np.testing.assert_allclose(
            grads_of(estimator, problem, params, out)[0], expected, rtol=1e-6, atol=1e-8
        )


def test_common_random_numbers_give_back_the_hard_samples_noise():
    """Tied to u, the conditional sample equals z in value (its derivative differs)."""
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(50, 4, generator=generator, dtype=torch.float64) * 3
    u = torch.rand(3, 50, 4, generator=generator, dtype=torch.float64)
    z = binary_logistic(logits, u)
    b = (z > 0).double()
    same = binary_conditional(logits, b, binary_tied(logits, u, b))
    np.testing.assert_allclose(same.numpy(), z.numpy(), rtol=1e-9, atol=1e-9)
    log_probs = torch.log_softmax(logits, -1)
    z = categorical_gumbel(log_probs, u)
    b = torch.nn.functional.one_hot(z.argmax(-1), 4).double()
    same = categorical_conditional(log_probs, b, categorical_tied(log_probs, z, b))
    np.testing.assert_allclose(same.numpy(), z.numpy(), rtol=1e-9, atol=1e-9)


def test_conditional_bits_have_the_law_of_z_given_b():
    """Kolmogorov-Smirnov against the exact conditional CDF of z ~ Logistic(l):
    P(z <= x | b = 1) = (sigmoid(x - l) - (1 - p)) / p on x > 0 and
    P(z <= x | b = 0) = sigmoid(x - l) / (1 - p) on x < 0; and the same test rejects the
    conditional noise built around log p + log(1 + p)."""
    from scipy.stats import kstest

    logit, n = 1.3, 20_000
    p = sigmoid(logit)
    logits = torch.tensor([logit], dtype=torch.float64)
    v = torch.rand(n, 1, dtype=torch.float64)
    for bit, cdf in [
        (1.0, lambda x: (sigmoid(x - logit) - (1 - p)) / p),
        (0.0, lambda x: sigmoid(x - logit) / (1 - p)),
    ]:
        b = torch.full((n, 1), bit, dtype=torch.float64)
        z_cond = binary_conditional(logits, b, v)[:, 0].numpy()
        assert kstest(z_cond, cdf).pvalue > ALPHA
        wrong = WrongConditionalNoise({"coupling": "independent"}).conditional(
            logits, None, b, None, v, True
        )
        assert kstest(wrong[:, 0].numpy(), cdf).pvalue < ALPHA


def test_conditional_gumbels_have_the_law_of_z_given_the_argmax():
    """Two-sample Kolmogorov-Smirnov per class: z~ given class k (fresh noise) against the
    Gumbels z = log theta + G of unconditional draws whose argmax is k; the same test rejects
    conditional Gumbels that leave out the class probabilities."""
    from scipy.stats import ks_2samp

    log_probs = torch.log_softmax(torch.tensor([0.4, -0.3, 1.1], dtype=torch.float64), -1)
    z = categorical_gumbel(log_probs, torch.rand(60_000, 3, dtype=torch.float64))
    k = 2
    chosen = z[z.argmax(-1) == k]  # about 55% of the draws
    b = torch.zeros_like(chosen)
    b[:, k] = 1
    log_e = torch.log(-torch.log(torch.rand(chosen.shape, dtype=torch.float64)))
    z_cond = categorical_conditional(log_probs, b, log_e)
    assert (z_cond.argmax(-1) == k).all()
    for c in range(3):
        assert ks_2samp(z_cond[:, c].numpy(), chosen[:, c].numpy()).pvalue > ALPHA / 3
    # broken: the truncated Gumbels of the other classes without their probabilities theta_c
    wrong = categorical_conditional(torch.zeros_like(log_probs), b, log_e)
    assert min(ks_2samp(wrong[:, c].numpy(), chosen[:, c].numpy()).pvalue for c in range(3)) < ALPHA


# ----------------------------------------------------------------------------------------------
# identities
# ----------------------------------------------------------------------------------------------


def reinforce_on(problem, params, b):
    """REINFORCE with per-factor signals at given samples (estimators/score_function.py)."""
    dist = problem.distribution(params)
    cost = problem.signals(problem.cost_terms(b, params))
    log_q = problem.signals(problem.log_prob_terms(dist, b))
    return ((cost.detach() * log_q).sum(-1) + cost.sum(-1)).mean(0)


@pytest.mark.parametrize("name", ["bernoulli_vae", "categorical_vae"])
def test_rebar_with_eta_zero_is_reinforce(name):
    """eta = 0 removes the control variate and both pathwise terms: what is left is the score
    function with per-example signals plus the direct term, on the same samples."""
    problem = get_problem(name)({"batch": 3}, dtype=torch.float64)
    params = repeat_params(problem.init_params(), 4)
    out = Rebar({"eta": 0.0}).surrogate(problem, params, 3, {})
    expected = reinforce_on(problem, params, out.samples)
    grads = torch.autograd.grad(out.loss.sum(), list(params.values()))
    reference = torch.autograd.grad(expected.sum(), list(params.values()))
    for got, want in zip(grads, reference, strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-14)
    assert any(g.abs().max() > 0 for g in grads)


@pytest.mark.parametrize("name", ["bernoulli_toy", "bernoulli_vae", "categorical_vae"])
def test_untrained_relax_is_rebar(name):
    """r_phi starts at zero, so before any training RELAX gives REBAR's estimate from the same
    noise (with the example's context as input on the VAEs)."""
    problem = get_problem(name)({"batch": 2} if "vae" in name else {"d": 3}, dtype=torch.float64)
    relax, rebar = Relax({"warmup": 0, "tau": 0.3, "eta": 0.7}), Rebar({"tau": 0.3, "eta": 0.7})
    relax.setup(problem, problem.init_params())
    relax.freeze()
    params = repeat_params(problem.init_params(), 3)
    u, v = relax.draw_noise(logits_of(problem.distribution(params)).detach(), 2)
    a = grads_of(relax, problem, params, relax.surrogate_from_noise(problem, params, u, v))
    b = grads_of(rebar, problem, params, rebar.surrogate_from_noise(problem, params, u, v))
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_relax_needs_its_setup():
    problem = toy(1.0)
    with pytest.raises(RuntimeError, match="call setup"):
        Relax().surrogate(problem, repeat_params(problem.init_params(), 2), 1, {})


# ----------------------------------------------------------------------------------------------
# means against exact truth
# ----------------------------------------------------------------------------------------------

#: (theta, d) of the Bernoulli toy: theta = 0 and |theta| >= 1, one bit and several
SETTINGS = [(0.0, 1), (0.0, 3), (0.5, 1), (-1.5, 3), (2.0, 1)]
CONFIGS = {
    "muprop": ("muprop", {}),
    "rebar": ("rebar", {}),
    "rebar_independent": ("rebar", {"coupling": "independent", "tau": 1.0, "eta": 0.5}),
    "rebar_tuned": ("rebar", {"tune": True, "warmup": 10}),
    "relax": ("relax", {"warmup": 10}),
}


def consistent_everywhere(make, problems, n_samples=4, n_repeats=R):
    """Each problem's mean against its truth, Bonferroni over all problems; guards included."""
    alpha = ALPHA / len(problems)
    worst = []
    for problem in problems:
        torch.manual_seed(len(worst))
        result = compare(
            draw_estimates(problem, make(), n_samples, n_repeats), flat_truth(problem), alpha
        )
        result.guard()
        with np.errstate(invalid="ignore"):  # 0 / 0 where a coordinate is exactly 0 always
            worst.append((np.nanmax(np.abs(result.z_scores)) / result.z, result.consistent))
    return worst


def configs(*fast: str) -> list:
    """The CONFIGS, those not in ``fast`` marked slow (the default suite's time budget)."""
    return [pytest.param(key, marks=() if key in fast else pytest.mark.slow) for key in CONFIGS]


@pytest.mark.parametrize("config", configs("muprop", "rebar", "rebar_independent"))
def test_means_match_the_closed_form_on_the_bernoulli_toy(config):
    name, options = CONFIGS[config]
    problems = [toy(theta, d) for theta, d in SETTINGS]
    worst = consistent_everywhere(lambda: get_estimator(name)(options), problems)
    assert all(ok for _, ok in worst), worst


@pytest.mark.parametrize("config", configs("muprop", "rebar"))
def test_means_match_enumeration_on_the_vaes_and_the_categorical_toy(config):
    name, options = CONFIGS[config]
    problems = [get_problem("bernoulli_vae")({"latents": 3, "batch": 2}, dtype=torch.float64)]
    if name != "muprop":
        problems.append(
            get_problem("categorical_vae")(
                {"groups": 2, "categories": 3, "batch": 2}, dtype=torch.float64
            )
        )
        problems.append(
            get_problem("categorical_toy")(
                {"theta": 1.0, "d": 2, "classes": 4, "t": 0.3}, dtype=torch.float64
            )
        )
    worst = consistent_everywhere(
        lambda: get_estimator(name)(options),
        problems,
        n_repeats=4000 if config in ("muprop", "rebar") else R,
    )
    assert all(ok for _, ok in worst), worst


# ----------------------------------------------------------------------------------------------
# variances against closed forms and quadrature
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("theta", [0.0, 1.0, -1.5])
def test_muprop_variance_closed_form_one_bit(theta):
    """One bit: g = (b - p)^3 + 2 (p - t) p (1 - p), so with c = b - p,
    Var g = E c^6 - (E c^3)^2 = p (1 - p)^6 + (1 - p) p^6 - (p (1 - p) (1 - 2 p))^2, over K."""
    p, n = sigmoid(theta), 4
    exact = (p * (1 - p) ** 6 + (1 - p) * p**6 - (p * (1 - p) * (1 - 2 * p)) ** 2) / n
    sample_variance_check(draw_estimates(toy(theta), MuProp(), n, R), np.array([exact]))


def test_muprop_variance_by_enumeration_on_three_bits():
    """d bits: g_j = (1/d) sum_k (b_k - p_k)^2 (b_j - p_j) + const, whose variance is the
    weighted sum over the 2^d outcomes (the hand formula of the replay test)."""
    theta, n = np.array([0.5, -1.0, 2.0]), 4
    p = sigmoid(theta)
    outcomes = np.array(np.meshgrid(*[[0.0, 1.0]] * 3, indexing="ij")).reshape(3, -1).T
    weights = np.prod(np.where(outcomes > 0, p, 1 - p), 1)
    values = ((outcomes - p) ** 2).mean(1, keepdims=True) * (outcomes - p)
    mean = weights @ values
    exact = weights @ (values - mean) ** 2 / n
    sample_variance_check(draw_estimates(toy(list(theta)), MuProp(), n, R), exact)


def rebar_one_bit_moments(theta, tau, eta, common):
    """Mean and variance of one REBAR estimate on one bit by one-dimensional quadrature.

    Common random numbers: g is a function of u alone, integrated over (0, 1 - p) (b = 0) and
    (1 - p, 1) (b = 1). Independent v: g = A(u) + B(b, v) with A the hard and z terms and B the
    z~ terms, so E g^2 = int A^2 du + 2 sum_b (int_{b} A du) (int B(b, v) dv)
    + sum_b P(b) int B(b, v)^2 dv: one-dimensional integrals only.
    """
    p = sigmoid(theta)
    if common:

        def g(u):
            return rebar_toy_by_hand([theta], [u], [0.5], tau, eta, True)[0]

        first = sum(quad(g, a, c, limit=200)[0] for a, c in ((0, 1 - p), (1 - p, 1)))
        second = sum(
            quad(lambda u: g(u) ** 2, a, c, limit=200)[0] for a, c in ((0, 1 - p), (1 - p, 1))
        )
        return first, second - first**2

    def a_term(u):  # eta = 0 in the conditional part: f(b) (b - p) + eta d f(x)
        return rebar_toy_by_hand([theta], [u], [0.5], tau, 0.0, False)[0] + eta * (
            2
            * (sigmoid((theta + np.log(u / (1 - u))) / tau) - T)
            * sigmoid((theta + np.log(u / (1 - u))) / tau)
            * (1 - sigmoid((theta + np.log(u / (1 - u))) / tau))
            / tau
        )

    def b_term(bit, v):  # the whole estimate minus A, at a u with that bit
        u = 1 - p / 2 if bit else (1 - p) / 2
        return rebar_toy_by_hand([theta], [u], [v], tau, eta, False)[0] - a_term(u)

    regions = {0: (0, 1 - p), 1: (1 - p, 1)}
    mass = {0: 1 - p, 1: p}
    int_a = {bit: quad(a_term, *regions[bit], limit=200)[0] for bit in (0, 1)}
    mean_b = {bit: quad(lambda v, bit=bit: b_term(bit, v), 0, 1, limit=200)[0] for bit in (0, 1)}
    square_b = {
        bit: quad(lambda v, bit=bit: b_term(bit, v) ** 2, 0, 1, limit=200)[0] for bit in (0, 1)
    }
    first = sum(int_a[bit] + mass[bit] * mean_b[bit] for bit in (0, 1))
    second = sum(
        quad(lambda u: a_term(u) ** 2, *regions[bit], limit=200)[0] for bit in (0, 1)
    ) + sum(2 * int_a[bit] * mean_b[bit] + mass[bit] * square_b[bit] for bit in (0, 1))
    return first, second - first**2


@pytest.mark.parametrize("coupling", ["common", "independent"])
@pytest.mark.parametrize("theta", [0.0, 1.0, -2.0])
def test_rebar_variance_by_quadrature_one_bit(theta, coupling):
    tau, eta, n = 0.5, 1.0, 4
    mean, variance = rebar_one_bit_moments(theta, tau, eta, coupling == "common")
    p = sigmoid(theta)
    assert mean == pytest.approx(p * (1 - p) * (1 - 2 * T), rel=1e-6)  # the quadrature itself
    estimator = Rebar({"tau": tau, "eta": eta, "coupling": coupling})
    sample_variance_check(draw_estimates(toy(theta), estimator, n, R), np.array([variance / n]))


# ----------------------------------------------------------------------------------------------
# learned state
# ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_training_lowers_the_variance_and_freezes():
    """On one bit at theta = 1, RELAX's warm-up (eta, tau and the network trained on the
    squared estimate) cuts REBAR's variance at the same starting point; tuned REBAR cuts it
    less. Frozen afterwards: the parameters no longer track gradients."""
    problem, n = toy(1.0), 2
    variance = {}
    for key, estimator in [
        ("rebar", Rebar()),
        ("tuned", Rebar({"tune": True, "warmup": 100})),
        ("relax", Relax({"warmup": 100})),
    ]:
        variance[key] = draw_estimates(problem, estimator, n, 4000).var(0, ddof=1).sum()
        assert all(not t.requires_grad for t in estimator.parameters())
    assert variance["relax"] < 0.7 * variance["rebar"], variance
    assert variance["tuned"] < variance["rebar"], variance


# ----------------------------------------------------------------------------------------------
# broken twins: the same mean test rejects them
# ----------------------------------------------------------------------------------------------


class WrongConditionalNoise(Rebar):
    """Broken: the conditional logistic noise built around log p + log(1 + p) instead of
    logit p (a published implementation's mistake)."""

    def conditional(self, logits, z, b, u, v, binary):
        p = torch.sigmoid(logits)
        v = binary_tied(logits, u, b) if self.option_values["coupling"] == "common" else v
        u_cond = torch.where(b > 0.5, 1 - p + v * p, v * (1 - p))
        return torch.log(p) + torch.log1p(p) + torch.log(u_cond) - torch.log1p(-u_cond)


class DetachedConditional(Rebar):
    """Broken: the derivative of the conditional sample w.r.t. theta dropped."""

    def pathwise(self, z_cond):
        return z_cond.detach()


class AddedControlVariate(Rebar):
    """Broken: the control variate added to the learning signal instead of subtracted."""

    def centre(self, cost, control):
        return cost + control


class AddedTaylor(MuProp):
    """Broken: MuProp's Taylor term added instead of subtracted."""

    def centre(self, cost, control):
        return cost + control


class AddedRelax(Relax):
    """Broken: RELAX's control variate added instead of subtracted."""

    def centre(self, cost, control):
        return cost + control


@pytest.mark.parametrize(
    ("broken", "options"),
    [
        (WrongConditionalNoise, {}),
        (WrongConditionalNoise, {"coupling": "independent"}),
        (DetachedConditional, {}),
        (DetachedConditional, {"coupling": "independent"}),
        (AddedControlVariate, {}),
        (AddedTaylor, {}),
        (AddedRelax, {"warmup": 0}),
    ],
)
def test_broken_twins_are_rejected(broken, options):
    problems = [toy(theta, 1) for theta in (1.0, -1.5)]
    worst = consistent_everywhere(lambda: broken(options), problems)
    assert not all(ok for _, ok in worst), f"a broken estimator passed: {worst}"


def test_broken_categorical_twin_is_rejected():
    """Dropping the derivative of the conditional Gumbels is caught on categorical_toy."""
    problems = [
        get_problem("categorical_toy")(
            {"theta": 1.0, "d": 2, "classes": 4, "t": 0.3}, dtype=torch.float64
        )
    ]
    worst = consistent_everywhere(lambda: DetachedConditional(), problems)
    assert not all(ok for _, ok in worst), worst


def test_reinforce_reference_is_consistent_with_the_score_function_module():
    """The replayed REINFORCE of the eta = 0 identity is the registered one's formula: on the
    same draws Reinforce's surrogate gives the same estimate."""
    problem = get_problem("bernoulli_vae")({"batch": 2}, dtype=torch.float64)
    params = repeat_params(problem.init_params(), 3)
    torch.manual_seed(5)
    out = Reinforce().surrogate(problem, params, 2, {})
    mine = reinforce_on(problem, params, out.samples)
    for got, want in zip(
        torch.autograd.grad(out.loss.sum(), list(params.values())),
        torch.autograd.grad(mine.sum(), list(params.values())),
        strict=True,
    ):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-14)
    assert math.isfinite(float(mine.detach().sum()))
