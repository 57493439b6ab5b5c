"""Score-function estimators with learned or multi-sample baselines: ``nvil`` and ``vimco``.

Exact per-sample replays, means against exact truth (closed form and enumeration, including
the VAEs with ``objective=iwae``), VIMCO's variance by exact enumeration over the K samples,
the identity of its two baselines at K = 2, and broken twins whose baseline sees its own
sample. See tests/stats.py for how the tolerances are set and what a failing seed means.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.special import expit, logsumexp

from bench.cell.estimate import prepare
from estimators import get_estimator
from estimators.base import Surrogate
from estimators.score_function import NVIL, VIMCO
from problems import get_problem
from problems.base import repeat_params
from tests.stats import compare, draw_estimates, flat_truth
from tests.test_statistics import sample_variance_check

R = 20_000
ONE_BIT = {"theta": 0.5, "log_p0": -1.0, "log_p1": -2.5, "d": 1}
#: (problem, options, K, baselines tested, repeats): the VAEs are slower, one baseline each
BOUNDS = [
    ("bernoulli_iwae", {"theta": 0.5, "d": 2}, 4, ("geometric", "arithmetic"), R),
    (
        "gaussian_elbo",
        {"d": 1, "n_obs": 3, "objective": "iwae", "max_nodes": 2**16},
        2,
        ("geometric", "arithmetic"),
        R,
    ),
    ("bernoulli_vae", {"latents": 2, "batch": 2, "objective": "iwae"}, 4, ("geometric",), 4000),
    (
        "categorical_vae",
        {"groups": 2, "categories": 3, "batch": 2, "objective": "iwae"},
        2,
        ("arithmetic",),
        4000,
    ),
]


def problem_of(name: str, options: dict):
    return get_problem(name)(options, dtype=torch.float64)


def assert_consistent(problem, estimator, n_samples: int, repeats: int = R, rel: float = 0.5):
    result = compare(
        draw_estimates(problem, estimator, n_samples, repeats), flat_truth(problem, n_samples)
    )
    result.guard(rel=rel)
    assert result.consistent, f"max |z| = {np.abs(result.z_scores).max():.2f} > {result.z:.2f}"


def assert_rejected(problem, estimator, n_samples: int, repeats: int = R) -> None:
    result = compare(
        draw_estimates(problem, estimator, n_samples, repeats), flat_truth(problem, n_samples)
    )
    result.guard()
    assert not result.consistent, "a biased estimator passed: the test lacks power"


# vimco ------------------------------------------------------------------------------------------


def vimco_by_hand(bits: np.ndarray, theta: float, baseline: str) -> float:
    """VIMCO's estimate on one bit of bernoulli_iwae (defaults log p(x, 0) = -1,
    log p(x, 1) = -2.5) for a K-tuple of bits: with p = sigmoid(theta) and score b - p,
    g = sum_k (J - J_{-k}) (b_k - p) + sum_k w~_k (b_k - p), J = -log mean_k w_k, J_{-k} the
    same with w_k replaced by the geometric or arithmetic mean of the others."""
    p = expit(theta)
    log_q = np.where(bits == 1, np.log(p), np.log1p(-p))
    log_w = np.where(bits == 1, -2.5, -1.0) - log_q
    k = len(bits)
    bound = logsumexp(log_w) - math.log(k)
    score = bits - p
    total = float(np.sum(np.exp(log_w - logsumexp(log_w)) * score))  # the direct term
    for i in range(k):
        others = np.delete(log_w, i)
        geometric = baseline == "geometric"
        replaced = others.mean() if geometric else logsumexp(others) - math.log(k - 1)
        loo = logsumexp(np.append(others, replaced)) - math.log(k)
        total += (loo - bound) * score[i]  # J - J_{-k} = -(bound - loo)
    return total


def test_vimco_replays_by_hand():
    problem = problem_of("bernoulli_iwae", ONE_BIT)
    params = repeat_params(problem.init_params(), 1)
    for baseline in ("geometric", "arithmetic"):
        torch.manual_seed(5)
        out = VIMCO({"baseline": baseline}).surrogate(problem, params, 5, {})
        (grad,) = torch.autograd.grad(out.loss.sum(), params["theta"])
        bits = out.samples[:, 0, 0].numpy()
        assert 0 < bits.sum() < 5  # a tuple with both outcomes: every term is exercised
        assert grad.item() == pytest.approx(vimco_by_hand(bits, 0.5, baseline), rel=1e-10)


def exact_moments(n_samples: int, baseline: str) -> tuple[float, float]:
    """Mean and variance of VIMCO's estimate by enumerating the 2^K tuples of bits."""
    p = expit(0.5)
    mean = second = 0.0
    for bits in itertools.product((0.0, 1.0), repeat=n_samples):
        bits = np.array(bits)
        prob = float(np.prod(np.where(bits == 1, p, 1 - p)))
        g = vimco_by_hand(bits, 0.5, baseline)
        mean += prob * g
        second += prob * g**2
    return mean, second - mean**2


@pytest.mark.parametrize("baseline", ["geometric", "arithmetic"])
@pytest.mark.parametrize("n_samples", [2, 4])
def test_vimco_mean_and_variance_by_enumeration(baseline, n_samples):
    problem = problem_of("bernoulli_iwae", ONE_BIT)
    mean, variance = exact_moments(n_samples, baseline)
    assert mean == pytest.approx(flat_truth(problem, n_samples)[0], rel=1e-10)
    estimates = draw_estimates(problem, VIMCO({"baseline": baseline}), n_samples, R)
    sample_variance_check(estimates, np.array([variance]))


def test_vimco_baselines_agree_at_two_samples():
    problem = problem_of("bernoulli_iwae", {"theta": 0.5, "d": 3})
    draws = []
    for baseline in ("geometric", "arithmetic"):
        torch.manual_seed(9)
        draws.append(draw_estimates(problem, VIMCO({"baseline": baseline}), 2, 500))
    np.testing.assert_allclose(draws[0], draws[1], rtol=1e-12, atol=1e-14)
    assert exact_moments(2, "geometric") == pytest.approx(exact_moments(2, "arithmetic"))
    assert exact_moments(4, "geometric")[1] != pytest.approx(exact_moments(4, "arithmetic")[1])


@pytest.mark.parametrize(
    ("name", "options", "n_samples", "baseline", "repeats"),
    [(name, options, k, b, r) for name, options, k, bs, r in BOUNDS for b in bs],
    ids=[f"{name}-K{k}-{b}" for name, _, k, bs, _ in BOUNDS for b in bs],
)
def test_vimco_matches_the_exact_gradient_of_the_bound(name, options, n_samples, baseline, repeats):
    estimator = VIMCO({"baseline": baseline})
    assert_consistent(problem_of(name, options), estimator, n_samples, repeats, rel=1.0)


def test_vimco_beats_reinforce_on_the_bound():
    problem = problem_of("bernoulli_iwae", {"theta": 0.5, "d": 2})
    vimco = draw_estimates(problem, VIMCO(), 4, 4000).var(0).sum()
    plain = draw_estimates(problem, get_estimator("reinforce")(), 4, 4000).var(0).sum()
    assert vimco < 0.5 * plain


class VIMCOSeesItself(VIMCO):
    """Broken: the left-out weight replaced by the mean of all K weights, its own included,
    so the baseline of sample k depends on z_k."""

    name = "broken_vimco_self"

    def surrogate(self, problem, params, n_samples, state):
        dist = problem.distribution(params)
        z = dist.sample((n_samples,))
        joint = problem.joint_cost_terms(z, params)
        log_w = problem.log_weights(z, params).detach()  # [K, R, F]
        k = n_samples
        mean_all = torch.logsumexp(log_w, 0) - math.log(k)  # [R, F], w_k included
        eye = torch.eye(k, dtype=torch.bool).reshape(k, k, 1, 1)
        others = torch.logsumexp(log_w.expand(k, *log_w.shape).masked_fill(eye, -math.inf), 1)
        loo = -problem.factor_scale * (torch.logaddexp(others, mean_all) - math.log(k))
        signal = joint.detach().unsqueeze(0) - loo
        log_q = problem.log_prob_terms(dist, z)
        return Surrogate(loss=(signal * log_q).sum((0, -1)) + joint.sum(-1), samples=z)


def test_vimco_whose_baseline_sees_its_own_sample_is_rejected():
    assert_rejected(problem_of("bernoulli_iwae", {"theta": 0.5, "d": 2}), VIMCOSeesItself(), 4)


def test_vimco_needs_two_samples_and_a_bound():
    assert VIMCO.sample_rule(1) == "vimco needs K >= 2, got K=1"
    assert "multi_sample" in VIMCO.incompatibility(get_problem("bernoulli_toy"))
    with pytest.raises(ValueError, match=r"baseline='harmonic'.*geometric, arithmetic"):
        VIMCO({"baseline": "harmonic"})


# nvil -------------------------------------------------------------------------------------------


def test_nvil_replays_by_hand():
    """K = 1 on bernoulli_toy (d = 1, theta = 1, t = 0.45): with a learned constant b, centre
    c and running variance v = 4, g = (f(b) - b - c) / max(1, sqrt v) (b - p), and the state
    moves to c' = 0.8 c + 0.2 (f - b), v' = 0.8 v + 0.2 (f - b - c)^2."""
    problem = problem_of("bernoulli_toy", {"theta": 1.0, "d": 1})
    estimator = NVIL()
    estimator.setup(problem, problem.init_params())
    with torch.no_grad():
        estimator.weights["b2"].fill_(0.1)
    params = repeat_params(problem.init_params(), 1)
    state = {
        "centre": torch.tensor([0.05], dtype=torch.float64),
        "variance": torch.tensor([4.0], dtype=torch.float64),
    }
    torch.manual_seed(2)
    out = estimator.surrogate(problem, params, 1, state)
    (grad,) = torch.autograd.grad(out.loss.sum(), params["theta"])
    bit, p = out.samples.item(), expit(1.0)
    f = (bit - 0.45) ** 2
    assert grad.item() == pytest.approx((f - 0.15) / 2 * (bit - p), rel=1e-12)
    assert out.state["centre"].item() == pytest.approx(0.8 * 0.05 + 0.2 * (f - 0.1), rel=1e-12)
    assert out.state["variance"].item() == pytest.approx(0.8 * 4 + 0.2 * (f - 0.15) ** 2, rel=1e-12)
    assert out.own_loss.item() == pytest.approx((f - 0.15) ** 2, rel=1e-12)


def test_nvil_warm_up_learns_the_signal_level_and_freezes():
    """b + c tracks E f = (mu - k)^2 + sigma^2 = 4.25 (from 0). f has standard deviation
    sqrt(4 a^2 sigma^2 + 2 sigma^4) ~ 2, its K = 4 mean ~ 1, and c, a moving average with
    decay 0.8 (about 9 estimates), ~ 0.33: 1.5 is 4.5 of those."""
    problem = problem_of("gaussian_quadratic", {"mu": 1.0, "sigma": 0.5, "k": -1.0})
    estimator = NVIL({"normalize": False})
    state, loss = prepare(problem, estimator, problem.init_params(), 4)
    level = estimator.baseline(problem).item() + state["centre"].item()
    assert level == pytest.approx(4.25, abs=1.5)
    assert all(not w.requires_grad for w in estimator.parameters())
    assert loss is not None and loss < 10


VAE = {"latents": 3, "batch": 4}


def test_nvil_without_normalization_is_unbiased_on_the_vae():
    problem = problem_of("bernoulli_vae", VAE)
    assert_consistent(problem, NVIL({"normalize": False}), 4, 4000, rel=1.0)


def test_nvil_input_dependent_baseline_beats_a_moving_average():
    """On the VAE the examples' costs differ: a baseline per example (NVIL's MLP on the image)
    removes what one moving average for all of them cannot (docs/contract.md)."""
    problem = problem_of("bernoulli_vae", {**VAE, "seed": 1})
    nvil = draw_estimates(problem, NVIL({"normalize": False}), 1, 4000).var(0).sum()
    ema = draw_estimates(problem, get_estimator("reinforce_ema")(), 1, 4000).var(0).sum()
    assert nvil < 0.5 * ema  # measured: about 2 to 8 against 50


def test_nvil_normalization_is_biased_where_the_signal_is_noisy():
    problem = problem_of("gaussian_quadratic", {"mu": 1.0, "sigma": 1.5, "k": -0.5, "d": 2})
    estimator = NVIL()
    state, _ = prepare(problem, estimator, problem.init_params(), 4)
    assert state["variance"].sqrt().item() > 2  # the normalization divides the signal
    assert_rejected(problem, estimator, 4)


def test_nvil_whose_centring_sees_its_own_sample_is_rejected():
    class Twin(NVIL):
        name = "broken_nvil_self"

        def surrogate(self, problem, params, n_samples, state):
            dist = problem.distribution(params)
            z = dist.sample((n_samples,))
            cost = problem.cost(z, params)  # [K, R]
            decay = self.option_values["decay"]
            centre = decay * state["centre"] + (1 - decay) * cost.detach().mean(0)
            signal = cost.detach() - self.baseline(problem).detach() - centre
            return Surrogate(
                loss=(signal * dist.log_prob(z) + cost).mean(0), samples=z, state=state
            )

    problem = problem_of("gaussian_quadratic", {"mu": 1.0, "sigma": 1.5, "k": -0.5, "d": 2})
    assert_rejected(problem, Twin({"normalize": False}), 1)


def test_bench_train_trains_the_nvil_baseline_alongside_the_model(tmp_path, monkeypatch):
    """bench train sets the estimator up and takes one step of its own loss per model step."""
    from bench.training import train as training

    trained = []
    original = NVIL.setup

    def spy(self, problem, point):
        original(self, problem, point)
        trained.append(self)

    monkeypatch.setattr(NVIL, "setup", spy)
    spec = training.make_spec(
        "bernoulli_vae",
        "nvil",
        ["latents=2", "batch=4"],
        steps=5,
        eval_every=5,
        n_samples=2,
        variance_repeats=4,
    )
    table = training.run_training(spec, tmp_path / "run", progress=False)
    assert set(table["estimator"]) == {"nvil"}
    (estimator,) = trained
    assert float(estimator.weights["w2"].detach().abs().sum()) > 0  # moved from its zero start
