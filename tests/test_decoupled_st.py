"""Decoupled straight-through Gumbel-Softmax (``decoupled_st``): equal temperatures 1 give
``st_gumbel_softmax`` float for float; one draw replayed by hand on bits and on one-hot latents
at tau_f != tau_b; the forward temperature alone sets the hard sample's law,
Cat(softmax(l / tau_f)); the declared target (verify's quadrature) equals the straight-through
Gumbel-Softmax target at 1 = tau_f = tau_b; the mean is on it, off the exact gradient, and a
twin with the temperatures swapped is rejected. See tests/stats.py for the tolerances.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.verify.targets import compute
from estimators import get_estimator
from estimators.relaxed import DecoupledSTGumbelSoftmax, tempered_relaxations
from estimators.targets import DecoupledStraightThrough, RelaxedGradient
from problems import get_problem
from problems.base import repeat_params
from tests.stats import compare, draw_estimates, flat_truth, z_threshold

R = 20_000
DECOUPLED = {"tau_forward": 0.5, "tau_backward": 2.0}
CASES = [("bernoulli_toy", {"theta": 1.0, "d": 2}),
         ("categorical_toy", {"theta": 1.0, "d": 1, "classes": 3})]


def problem_of(name: str, options: dict):
    return get_problem(name)(options, dtype=torch.float64)


def replayed(problem, estimator, n_samples: int, n_repeats: int = 2):
    """One step's estimates and samples, and the RNG state it started from."""
    params = repeat_params(problem.init_params(), n_repeats)
    start = torch.random.get_rng_state()
    out = estimator.surrogate(problem, params, n_samples, {})
    step = estimator.backward(out, params)
    return step.grads, out.samples, start, params


@pytest.mark.parametrize(("name", "options"), [
    *CASES, ("categorical_vae", {"groups": 2, "categories": 3, "batch": 2})])
def test_equal_temperatures_one_are_st_gumbel_softmax_float_for_float(name, options):
    problem = problem_of(name, options)
    decoupled = DecoupledSTGumbelSoftmax({"tau_forward": 1.0, "tau_backward": 1.0})
    grads, samples, start, _ = replayed(problem, decoupled, 5)
    torch.random.set_rng_state(start)
    reference = get_estimator("st_gumbel_softmax")({"tau": 1.0})
    other, other_samples, _, _ = replayed(problem, reference, 5)
    assert torch.equal(samples, other_samples)
    for key in grads:
        assert torch.equal(grads[key], other[key]), key
    assert any(g.abs().max() > 0 for g in grads.values())  # not vacuous


def test_one_bit_draw_by_hand():
    """h_j = 1[theta / tau_f + L_j > 0], y_j = sigmoid(theta / tau_b + L_j),
    g_j = mean_k 2 (h_kj - t) / d * y_kj (1 - y_kj) / tau_b."""
    problem = problem_of("bernoulli_toy", {"theta": 0.4, "d": 3, "t": 0.3})
    grads, samples, start, _ = replayed(problem, DecoupledSTGumbelSoftmax(DECOUPLED), 4)
    torch.random.set_rng_state(start)
    u = torch.rand((4, 2, 3), dtype=torch.float64)
    noise = u.log() - torch.log1p(-u)
    hard = (0.4 / 0.5 + noise > 0).double()
    y = torch.sigmoid(0.4 / 2.0 + noise)
    torch.testing.assert_close(samples, hard, rtol=0, atol=0)
    expected = (2 * (hard - 0.3) / 3 * y * (1 - y) / 2.0).mean(0)
    torch.testing.assert_close(grads["theta"], expected, rtol=1e-12, atol=1e-15)


def test_one_categorical_draw_by_hand():
    """h = onehot(argmax(l / tau_f + G)), y = softmax(l / tau_b + G),
    g = mean_k (diag(y) - y y^T) / tau_b grad f(h)."""
    problem = problem_of("categorical_toy", {"theta": 0.8, "d": 2, "classes": 3, "t": 0.3})
    grads, samples, start, params = replayed(problem, DecoupledSTGumbelSoftmax(DECOUPLED), 3,
                                             n_repeats=1)
    torch.random.set_rng_state(start)
    gumbels = -(-torch.rand((3, 1, 2, 3), dtype=torch.float64).log()).log()[:, 0]
    logits = params["logits"].detach()[0]  # [d, C]
    hard = torch.nn.functional.one_hot((logits / 0.5 + gumbels).argmax(-1), 3).double()
    y = torch.softmax(logits / 2.0 + gumbels, -1)  # [K, d, C]
    v = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    df_dz = 2 * ((hard @ v).mean(-1) - 0.3)[:, None, None] * v / 2  # [K, d, C]
    jacobian = (torch.diag_embed(y) - y[..., :, None] * y[..., None, :]) / 2.0
    expected = torch.einsum("kgc,kgcj->kgj", df_dz, jacobian).mean(0)
    torch.testing.assert_close(samples[:, 0], hard, rtol=0, atol=0)
    torch.testing.assert_close(grads["logits"][0], expected, rtol=1e-12, atol=1e-15)


def test_forward_temperature_sets_the_sample_law():
    """P(h = 1) = sigmoid(theta / tau_f), whatever tau_b; 200000 draws, z-test per tau_f."""
    problem = problem_of("bernoulli_toy", {"theta": 1.0, "d": 1})
    dist = problem.distribution(repeat_params(problem.init_params(), 1, False))
    n = 200_000
    for tau in (0.5, 1.0, 3.0):
        forward, _ = tempered_relaxations(dist, (tau, 7.0), n)
        frequency = float((forward > 0.5).double().mean())
        p = float(torch.sigmoid(torch.tensor(1.0 / tau)))
        assert abs(frequency - p) <= z_threshold(3) * (p * (1 - p) / n) ** 0.5, (tau, frequency)


@pytest.mark.parametrize(("name", "options"), CASES)
def test_target_at_equal_temperatures_one_is_the_straight_through_gumbel_softmax_target(
        name, options):
    problem = problem_of(name, options)
    point = problem.init_params()
    truth = torch.as_tensor(flat_truth(problem))
    ours = compute(DecoupledStraightThrough(), problem, point, truth,
                   {"tau_forward": 1.0, "tau_backward": 1.0})
    theirs = compute(RelaxedGradient(straight_through=True), problem, point, truth, {"tau": 1.0})
    np.testing.assert_allclose(ours.value.numpy(), theirs.value.numpy(), rtol=1e-9, atol=1e-12)


class Swapped(DecoupledSTGumbelSoftmax):
    """Broken: the two temperatures swapped (forward at tau_b, backward at tau_f)."""

    name = "test_decoupled_swapped"

    def surrogate(self, problem, params, n_samples, state):
        values = dict(self.option_values)
        self.option_values = {"tau_forward": values["tau_backward"],
                              "tau_backward": values["tau_forward"]}
        try:
            return super().surrogate(problem, params, n_samples, state)
        finally:
            self.option_values = values


@pytest.mark.parametrize(("name", "options"), CASES)
def test_mean_is_the_declared_target_and_a_swapped_twin_is_not(name, options):
    problem = problem_of(name, options)
    truth = flat_truth(problem)
    target = compute(DecoupledStraightThrough(), problem, problem.init_params(),
                     torch.as_tensor(truth), DECOUPLED)
    estimates = draw_estimates(problem, DecoupledSTGumbelSoftmax(DECOUPLED), 4, R)
    on_target = compare(estimates, target.value.numpy())
    on_target.guard(rel=0.1)
    # the categorical hard sample jumps across the quadrature's panels: its error estimate
    # (halved panels) is part of the tolerance, and small next to it
    error = target.error.numpy()
    assert np.all(error < 0.2 * on_target.se)
    gap = np.abs(on_target.mean - on_target.truth)
    assert np.all(gap <= on_target.z * on_target.se + error), on_target.z_scores
    assert not compare(estimates, truth).consistent  # biased for the exact gradient
    swapped = compare(draw_estimates(problem, Swapped(DECOUPLED), 4, R), target.value.numpy())
    assert not swapped.consistent, swapped.z_scores
