"""The extended problem/estimator contract: per-factor learning signals, multi-sample
objectives, context, trainable estimator state and cost accounting (docs/contract.md)."""

from __future__ import annotations

import itertools
import math
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli

from bench.cell.estimate import expand_state, one_estimate, prepare
from bench.cell.run import run_cell
from bench.cell.spec import CellSpec
from estimators import get_estimator
from estimators.base import Estimator, Surrogate, flatten
from estimators.score_function import score_surrogate
from problems import get_problem
from problems.base import Capability, bernoulli_log_mass, broadcast_factors, repeat_params
from problems.importance import quadrature_points
from problems.options import Option
from tests.stats import compare, draw_estimates, flat_truth, z_threshold

VAE = {"bernoulli_vae": {"latents": 3, "batch": 4}, "categorical_vae": {
    "groups": 2, "categories": 3, "batch": 4}}


# factors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(VAE))
def test_factor_terms_sum_to_the_whole(name):
    problem = get_problem(name)(VAE[name], dtype=torch.float64)
    params = repeat_params(problem.init_params(), 3)
    dist = problem.distribution(params)
    z = dist.sample((5,))
    assert problem.n_factors == 4
    terms, log_q = problem.cost_terms(z, params), problem.log_prob_terms(dist, z)
    assert terms.shape == log_q.shape == (5, 3, 4)
    torch.testing.assert_close(terms.sum(-1), problem.cost(z, params))
    torch.testing.assert_close(log_q.sum(-1), dist.log_prob(z))
    assert problem.context().shape == (4, problem.data.n_pixels)
    whole = get_problem(name)({**VAE[name], "signals": "global"}, dtype=torch.float64)
    assert whole.signals(whole.cost_terms(z, params)).shape == (5, 3, 1)
    assert problem.signals(terms).shape == (5, 3, 4)


LOGITS = [-120.0, -30.0, -3.0, -1e-3, 0.0, 0.7, 25.0, 120.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bernoulli_log_mass_equals_torch_log_prob_with_its_derivatives(dtype):
    """``bernoulli_log_mass`` (the softplus once per repeat, its gradient from ``probs``) gives
    torch's ``Bernoulli.log_prob`` summed over bits: value, gradient and second derivative
    (RELAX differentiates estimates), at extreme logits too; without ``probs`` in the graph
    the second derivative is lost, and the test sees it."""
    logits = torch.tensor([LOGITS, LOGITS[::-1]], dtype=dtype, requires_grad=True)  # [R=2, D]
    z = torch.bernoulli(torch.full((3, *logits.shape), 0.5, dtype=dtype),
                        generator=torch.Generator().manual_seed(0))  # [K=3, R, D]
    weights = torch.randn(3, 2, dtype=dtype, generator=torch.Generator().manual_seed(1))

    def grads(log_mass):
        (first,) = torch.autograd.grad((weights * log_mass).sum(), logits, create_graph=True)
        if not first.requires_grad:  # nothing of the gradient depends on the logits
            return log_mass.detach(), first.detach(), torch.zeros_like(first)
        (second,) = torch.autograd.grad((first**2).sum(), logits)
        return log_mass.detach(), first.detach(), second

    dist = Bernoulli(logits=logits, validate_args=False)
    ours = grads(bernoulli_log_mass(logits, z, 1, dist.probs))
    torch_ = grads(Bernoulli(logits=logits, validate_args=False).log_prob(z).sum(-1))
    for a, b in zip(ours, torch_, strict=True):
        torch.testing.assert_close(a, b)
    assert ours[2].abs().max() > 0.05  # the second derivative is not vacuously zero

    broken = grads(bernoulli_log_mass(logits, z, 1, dist.probs.detach()))
    torch.testing.assert_close(broken[1], torch_[1])
    with pytest.raises(AssertionError):
        torch.testing.assert_close(broken[2], torch_[2])
    # per unit (no dimension summed), as the factored problems use it
    torch.testing.assert_close(bernoulli_log_mass(logits, z, 0, dist.probs),
                               dist.log_prob(z))


def test_broadcast_factors_gives_each_unit_its_factor():
    values = torch.tensor([[1.0, 2.0, 3.0]])  # [R=1, F=3]
    out = broadcast_factors(values, torch.Size([3, 2]))
    assert out.tolist() == [[[1, 1], [2, 2], [3, 3]]]
    assert broadcast_factors(values[:, :1], torch.Size([3, 2])).tolist() == [[[1] * 2] * 3]


def test_local_signals_replay_by_hand():
    """One draw of REINFORCE with per-example signals equals sum_i f_i grad log q(z_i | x_i)
    + grad f, computed image by image."""
    problem = get_problem("bernoulli_vae")(VAE["bernoulli_vae"], dtype=torch.float64)
    params = repeat_params(problem.init_params(), 1)
    torch.manual_seed(3)
    loss, z, _ = score_surrogate(problem, params, 1, None)
    got = torch.autograd.grad(loss.sum(), list(params.values()))
    by_hand = [torch.zeros_like(p) for p in params.values()]
    logits = problem.encode(params, problem.x)[0]  # [B, L]
    per_image = problem.per_image_cost(z, params, problem.x, 1.0)[0, 0]  # [B]
    for i in range(problem.x.shape[0]):
        log_q = Bernoulli(logits=logits[i]).log_prob(z[0, 0, i]).sum()
        term = per_image[i].detach() / 4 * log_q + per_image[i] / 4
        for acc, g in zip(by_hand, torch.autograd.grad(term, list(params.values()),
                                                       retain_graph=True), strict=True):
            acc += g
    for a, b in zip(got, by_hand, strict=True):
        torch.testing.assert_close(a, b)


def trace_and_se(estimates: np.ndarray) -> tuple[float, float]:
    """Trace of the covariance of ``[R, D]`` estimates and its standard error, from the
    per-estimate squared deviations ||g_r - mean||^2 (whose mean is the trace up to R/(R-1))."""
    deviations = ((estimates - estimates.mean(0)) ** 2).sum(1)
    n = len(deviations)
    return float(deviations.mean() * n / (n - 1)), float(deviations.std(ddof=1) / math.sqrt(n))


@pytest.mark.parametrize("name", list(VAE))
@pytest.mark.parametrize(("estimator", "n_samples"), [("reinforce", 200), ("reinforce_loo", 4)])
def test_local_and_global_signals_are_unbiased_and_local_is_less_noisy(name, estimator, n_samples):
    variances = {}
    for signals in ("local", "global"):
        problem = get_problem(name)({**VAE[name], "signals": signals}, dtype=torch.float64)
        estimates = draw_estimates(problem, get_estimator(estimator)(), n_samples, 4000)
        result = compare(estimates, flat_truth(problem))
        result.guard(rel=1.0)
        assert result.consistent, f"{signals}: max |z| {np.abs(result.z_scores).max():.2f}"
        variances[signals] = trace_and_se(estimates)
    (local, se_l), (whole, se_g) = variances["local"], variances["global"]
    assert whole - local > z_threshold(1) * math.hypot(se_l, se_g), variances


# multi-sample objectives ------------------------------------------------------------------------


def brute_force_iwae(problem, params: dict, n_samples: int) -> torch.Tensor:
    """The negative K-sample bound of a tiny bernoulli_vae from the definitions: per image, every
    K-tuple of configurations, prod_k q(z_k) * -log mean_k p(x, z_k) / q(z_k)."""
    weights = {**problem.decoder, **params}
    total = torch.zeros((), dtype=torch.float64)
    for x in problem.x.double():
        logits = x @ weights["encoder.0.weight"] + weights["encoder.0.bias"]
        configs = [torch.tensor(c, dtype=torch.float64)
                   for c in itertools.product((0.0, 1.0), repeat=problem.option_values["latents"])]
        log_w, log_q = [], []
        for z in configs:
            q = Bernoulli(logits=logits).log_prob(z).sum()
            pixels = z @ weights["decoder.0.weight"] + weights["decoder.0.bias"]
            joint = Bernoulli(logits=pixels).log_prob(x).sum() + len(z) * math.log(0.5)
            log_w.append(joint - q)
            log_q.append(q)
        for tup in itertools.product(range(len(configs)), repeat=n_samples):
            mass = sum(log_q[s] for s in tup).exp()
            bound = torch.logsumexp(torch.stack([log_w[s] for s in tup]), 0) - math.log(n_samples)
            total = total - mass * bound
    return total / problem.x.shape[0]


@pytest.mark.parametrize("n_samples", [1, 2, 3])
def test_vae_bound_enumeration_matches_brute_force(n_samples):
    options = {"latents": 2, "batch": 2, "objective": "iwae"}
    problem = get_problem("bernoulli_vae")(options, dtype=torch.float64)
    point = problem.init_params()
    leaf = {k: v.clone().requires_grad_(True) for k, v in point.items()}
    expected = brute_force_iwae(problem, leaf, n_samples)
    want = torch.autograd.grad(expected, list(leaf.values()))
    truth = problem.truth(point, n_samples)
    for got, w in zip(truth.grad.values(), want, strict=True):
        torch.testing.assert_close(got, w, rtol=1e-9, atol=1e-12)
    if n_samples == 1:  # the one-sample bound is the ELBO
        elbo = get_problem("bernoulli_vae")({**options, "objective": "elbo"}, dtype=torch.float64)
        for got, w in zip(truth.grad.values(), elbo.truth(point).grad.values(), strict=True):
            torch.testing.assert_close(got, w, rtol=1e-9, atol=1e-12)


def finite_difference(objective, point: dict, name: str, index: int, h: float = 1e-6) -> float:
    """Central difference of ``objective(params [1, ...])`` in one coordinate."""
    values = []
    for sign in (1, -1):
        shifted = {k: v.clone() for k, v in point.items()}
        shifted[name].view(-1)[index] += sign * h
        values.append(float(objective(repeat_params(shifted, 1, requires_grad=False))))
    return (values[0] - values[1]) / (2 * h)


@pytest.mark.parametrize(("name", "options"), [
    ("bernoulli_vae", {"latents": 2, "batch": 2, "objective": "iwae"}),
    ("gaussian_elbo", {"d": 1, "n_obs": 2, "m": 0.3, "s": 0.8, "objective": "iwae"}),
    ("bernoulli_iwae", {"theta": 0.4, "d": 2}),
])
@pytest.mark.parametrize("n_samples", [2, 4])
def test_bound_truth_matches_finite_differences(name, options, n_samples):
    problem = get_problem(name)(options, dtype=torch.float64)
    point = problem.init_params()
    truth = problem.truth(point, n_samples)
    assert truth is not None
    checked = 0
    for key, grad in truth.grad.items():
        for index in range(min(grad.numel(), 3)):
            fd = finite_difference(lambda p: problem.objective(p, n_samples), point, key, index)
            assert grad.view(-1)[index].item() == pytest.approx(fd, rel=1e-5, abs=1e-8)
            checked += 1
    assert checked >= 2


def test_bernoulli_bound_matches_brute_force_enumeration():
    """The binomial closed form of bernoulli_iwae against a sum over all 2^K tuples."""
    problem = get_problem("bernoulli_iwae")({"theta": -0.3}, dtype=torch.float64)
    params = repeat_params(problem.init_params(), 1)
    for k in (1, 2, 3, 5):
        tuples = torch.tensor(list(itertools.product((0.0, 1.0), repeat=k)), dtype=torch.float64)
        z = tuples.T.reshape(k, -1, 1)  # [K, 2^K tuples as repeats, d=1]
        theta = params["theta"].expand(z.shape[1], 1)
        log_q = Bernoulli(logits=theta).log_prob(z).sum((0, 2))
        bound = problem.joint_cost_terms(z, {"theta": theta}).sum(-1)
        brute = (log_q.exp() * bound).sum()
        torch.testing.assert_close(problem.objective(params, k)[0], brute)


def test_bounds_tighten_with_k_and_reach_the_evidence():
    problem = get_problem("bernoulli_iwae")({"theta": 0.0}, dtype=torch.float64)
    params = repeat_params(problem.init_params(), 1, requires_grad=False)
    values = [float(problem.objective(params, k)) for k in (1, 2, 4, 16, 256)]
    assert all(a > b for a, b in itertools.pairwise(values))
    evidence = -math.log(math.exp(-1.0) + math.exp(-2.5))
    assert values[-1] == pytest.approx(evidence, abs=1e-3)
    assert values[-1] > evidence


def test_gaussian_bound_quadrature_converges_and_equals_the_elbo_at_one_sample():
    options = {"d": 1, "n_obs": 3, "m": 0.2, "s": 0.7, "objective": "iwae"}
    default = get_problem("gaussian_elbo")(options, dtype=torch.float64)
    fine = get_problem("gaussian_elbo")({**options, "quadrature": 96, "max_nodes": 10**5},
                                        dtype=torch.float64)
    params = repeat_params(default.init_params(), 1, requires_grad=False)
    assert quadrature_points(default.option_values, 2) == 48
    assert quadrature_points(fine.option_values, 2) == 96
    assert float(default.objective(params, 2)) == pytest.approx(
        float(fine.objective(params, 2)), rel=1e-8)
    elbo = get_problem("gaussian_elbo")({**options, "objective": "elbo"}, dtype=torch.float64)
    assert float(default.objective(params, 1)) == pytest.approx(
        float(elbo.objective(params)), rel=1e-10)


@pytest.mark.parametrize(("name", "options", "estimator", "repeats"), [
    ("bernoulli_iwae", {"theta": 0.5, "d": 2}, "reinforce", 20000),
    ("bernoulli_iwae", {"theta": 0.5, "d": 2}, "reinforce_ema", 20000),
    ("bernoulli_vae", {"latents": 2, "batch": 2, "objective": "iwae"}, "reinforce_ema", 20000),
    ("gaussian_elbo", {"d": 1, "n_obs": 2, "objective": "iwae"}, "reparam", 20000),
    ("gaussian_elbo", {"d": 1, "n_obs": 2, "objective": "iwae"}, "reinforce", 100000),
])
@pytest.mark.parametrize("n_samples", [2, 4])
def test_estimators_of_the_bound_are_consistent(name, options, estimator, repeats, n_samples):
    problem = get_problem(name)(options, dtype=torch.float64)
    estimates = draw_estimates(problem, get_estimator(estimator)(), n_samples, repeats)
    result = compare(estimates, flat_truth(problem, n_samples))
    result.guard(rel=1.0)
    assert result.consistent, f"max |z| {np.abs(result.z_scores).max():.2f}"


def test_the_elbo_gradient_is_not_the_bound_gradient():
    """Power: the K = 1 (ELBO) truth differs from the K = 4 bound's truth by far more than the
    test's tolerance, so a harness that passed the wrong K would be caught."""
    problem = get_problem("bernoulli_iwae")({"theta": 0.5, "d": 2}, dtype=torch.float64)
    estimates = draw_estimates(problem, get_estimator("reinforce")(), 4, 20000)
    assert compare(estimates, flat_truth(problem, 4)).consistent
    assert not compare(estimates, flat_truth(problem, 1)).consistent


def test_estimators_without_multi_sample_support_are_skipped_with_a_reason():
    reason = get_estimator("reinforce_loo").incompatibility(
        get_problem("bernoulli_vae"), {"objective": "iwae"})
    assert "multi-sample" in reason
    assert get_estimator("reinforce").incompatibility(
        get_problem("bernoulli_vae"), {"objective": "iwae"}) is None
    with pytest.raises(ValueError, match="kl=analytic"):
        get_problem("bernoulli_vae")({"objective": "iwae", "kl": "analytic"})


# trainable estimator state -----------------------------------------------------------------------


class LearnedBaseline(Estimator):
    """A test estimator: REINFORCE with a learned scalar baseline per factor-free problem, trained
    by squared error on the learning signal (``own_loss``) or on the variance
    (``trains_on_variance``)."""

    name = "test_learned_baseline"
    description = "test"
    requires = frozenset()
    unbiased = True
    options: ClassVar[dict[str, Option]] = {
        "warmup": Option(200, "steps", minimum=0),
        "variance": Option(False, "train on the variance instead of the squared error"),
    }
    warmup_option = "warmup"

    @property
    def trains_on_variance(self) -> bool:  # type: ignore[override]
        return self.option_values["variance"]

    def setup(self, problem, point):
        self.b = torch.zeros((), dtype=problem.dtype, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.b], lr=0.01)

    def parameters(self):
        return [self.b]

    def surrogate(self, problem, params, n_samples, state):
        dist = problem.distribution(params)
        z = dist.sample((n_samples,))
        cost = problem.cost(z, params)
        if self.trains_on_variance:
            loss = ((cost.detach() - self.b) * dist.log_prob(z) + cost).mean(0)
            return Surrogate(loss=loss, samples=z)
        loss = ((cost.detach() - self.b.detach()) * dist.log_prob(z) + cost).mean(0)
        return Surrogate(loss=loss, samples=z, own_loss=((cost.detach() - self.b) ** 2).mean())


@pytest.mark.parametrize("variance", [False, True])
def test_warm_up_trains_the_estimators_own_parameters(variance):
    """One bit, f(b) = (b - t)^2, p = sigmoid(1): squared error drives the baseline to
    E[f] = p f(1) + (1 - p) f(0); the variance objective to the variance-optimal
    E[f s^2] / E[s^2] = (1 - p) f(1) + p f(0) (s = b - p the score), where the estimate
    (f - b) s = p (1 - p) (f(1) - f(0)) is constant. Either way the warmed-up estimator is
    less noisy than the cold one (b = 0), and it is frozen for measuring."""
    problem = get_problem("bernoulli_toy")({"theta": 1.0}, dtype=torch.float64)
    p, t = torch.sigmoid(torch.tensor(1.0)).item(), 0.45
    f1, f0 = (1 - t) ** 2, t**2
    results = {}
    for steps in (0, 400):
        torch.manual_seed(0)
        estimator = LearnedBaseline({"warmup": steps, "variance": variance})
        results[steps] = trace_and_se(draw_estimates(problem, estimator, 2, 4000))
    target = (1 - p) * f1 + p * f0 if variance else p * f1 + (1 - p) * f0
    assert float(estimator.b) == pytest.approx(target, abs=0.02)
    assert not estimator.b.requires_grad
    (cold, se_cold), (warm, se_warm) = results[0], results[400]
    assert cold - warm > z_threshold(1) * math.hypot(se_cold, se_warm), results


def test_frozen_state_gives_identical_estimates():
    problem = get_problem("bernoulli_toy")({"theta": 1.0}, dtype=torch.float64)
    point = problem.init_params()
    torch.manual_seed(0)
    estimator = LearnedBaseline({"warmup": 50})
    state, _ = prepare(problem, estimator, point, 2)
    draws = []
    for _ in range(2):
        torch.manual_seed(7)
        grads, _ = one_estimate(problem, estimator, repeat_params(point, 100), 2,
                                expand_state(state, 100))
        draws.append(flatten(grads))
    assert torch.equal(draws[0], draws[1])
    b = float(estimator.b)
    torch.manual_seed(7)
    one_estimate(problem, estimator, repeat_params(point, 100), 2, expand_state(state, 100))
    assert float(estimator.b) == b  # measuring does not train


def test_cells_record_cost_and_warm_up():
    spec = CellSpec(problem="bernoulli_toy", problem_options=(("d", 1), ("t", 0.45),
                    ("theta", 0.0)), estimator="reinforce_ema",
                    estimator_options=(("decay", 0.9), ("warmup", 100)), n_samples=3,
                    n_repeats=50, seed=0, n_bootstrap=0)
    row, _ = run_cell(spec)
    assert row["status"] == "ok", row.get("reason")
    assert (row["cost_evals"], row["warmup_steps"], row["estimator_loss"]) == (3, 100, None)
    skipped, _ = run_cell(CellSpec(problem="bernoulli_iwae", problem_options=(
        ("d", 1), ("log_p0", -1.0), ("log_p1", -2.5), ("theta", 0.0)),
        estimator="reinforce_loo", estimator_options=(), n_samples=2, n_repeats=10, seed=0))
    assert skipped["status"] == "skipped" and "multi-sample" in skipped["reason"]


def test_capabilities_follow_the_options():
    vae = get_problem("bernoulli_vae")
    assert Capability.MULTI_SAMPLE in vae.capabilities({"objective": "iwae"})
    assert Capability.MULTI_SAMPLE not in vae.capabilities({})
    assert Capability.LOG_WEIGHTS not in vae.capabilities({"kl": "analytic"})
    assert Capability.EXACT_OBJECTIVE not in vae.capabilities({"latents": 20})
