"""Importance-weighted categorical DisARM (``disarm --set weighting=importance``; Dong, Mnih,
Tucker 2021): g = 1/2 (f(z) - f(z~)) (z - z~) q(z) q(z~) / pi(z, z~) under the antithetic
stick-breaking coupling in ascending order.

Exact mean by enumeration of the noise. Per stick-breaking stage i with s_i = sigmoid(eta_i),
the thresholds s_i and 1 - s_i cut (0, 1) into three intervals on each of which the stage's
pair of bits (1[u < s], 1[1 - u < s]) is constant; the estimate is a function of those states,
so its mean is the sum over the 3^(C-1) combinations of intervals of (product of their
lengths) times the estimate at their midpoints. That sum equals the enumerated gradient to
float64 rounding. Two twins are rejected by the same sum: the weight without the product over
earlier stages, and the descending order, where a class above 1/2 leaves pairs of later
classes unsampled (the reason the estimator uses the ascending order).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from estimators.antithetic import DisARM
from problems import get_problem
from problems.base import repeat_params
from tests.stats import compare, draw_estimates, flat_truth

F64 = torch.float64


class FixedNoise:
    """Mixin: the estimator's uniforms are ``self.u``."""

    u: torch.Tensor

    def uniforms(self, shape, like):
        return self.u.to(like).expand(shape)


class FixedIW(FixedNoise, DisARM):
    def __init__(self):
        super().__init__({"weighting": "importance"})


class NoPrefix(FixedIW):
    """Broken: the pair's weight sigma(|eta_n|) alone, as if every pair differed at stage 0."""

    @staticmethod
    def pair_weight(eta, first):
        at = torch.sigmoid(eta.abs()).expand(*first.shape[:-1], -1)
        return at.gather(-1, first.clamp_max(eta.shape[-1] - 1))


class Descending(FixedIW):
    """Broken: the importance weight under the descending order (pairs with min(z, z~) beyond
    a stage of probability >= 1/2 are never drawn)."""

    def stick_breaking(self, logits, n_pairs, order):
        return super().stick_breaking(logits, n_pairs, "descending")


def stage_probabilities(logits, descending=False):
    probs = torch.softmax(logits, -1).sort(descending=descending).values
    tail = probs.flip(-1).cumsum(-1).flip(-1)
    return (probs / tail)[:-1]


def enumerated_mean(problem, estimator, descending=False):
    """sum over interval combinations of (product of lengths) x estimate (module docstring)."""
    logits = problem.init_params()["logits"][0]
    cuts = []
    for s in stage_probabilities(logits, descending).tolist():
        edges = [0.0, min(s, 1 - s), max(s, 1 - s), 1.0]
        cuts.append([((a + b) / 2, b - a) for a, b in itertools.pairwise(edges) if b > a])
    combos = list(itertools.product(*cuts))
    u = torch.tensor([[m for m, _ in c] for c in combos], dtype=F64)  # [N, C-1]
    weight = torch.tensor([np.prod([w for _, w in c]) for c in combos], dtype=F64)
    estimator.u = u.reshape(1, len(combos), 1, -1)
    params = repeat_params(problem.init_params(), len(combos))
    out = estimator.surrogate(problem, params, 2, {})
    (grads,) = torch.autograd.grad(out.loss.sum(), [params["logits"]])
    return (weight[:, None, None] * grads).sum(0).flatten(), grads


@pytest.mark.parametrize(("classes", "theta"), [(3, 0.4), (4, 1.5), (5, -2.0), (5, 3.0)])
def test_exact_mean_by_enumerating_the_noise(classes, theta):
    problem = get_problem("categorical_toy")(
        {"theta": theta, "d": 1, "classes": classes, "t": 0.3}, dtype=F64)
    mean, grads = enumerated_mean(problem, FixedIW())
    truth = torch.as_tensor(flat_truth(problem))
    torch.testing.assert_close(mean, truth, rtol=1e-10, atol=1e-14)
    assert truth.abs().max() > 1e-3 and grads.abs().max() > 1e-3


def test_the_twins_are_rejected_by_the_same_sum():
    """theta = 3 on 5 classes: the top class has probability 0.83, so the descending order's
    first stage is above 1/2."""
    problem = get_problem("categorical_toy")(
        {"theta": 3.0, "d": 1, "classes": 5, "t": 0.3}, dtype=F64)
    truth = torch.as_tensor(flat_truth(problem))
    assert torch.softmax(problem.init_params()["logits"][0], -1).max() > 0.5
    for twin, descending in ((NoPrefix(), False), (Descending(), True)):
        mean, _ = enumerated_mean(problem, twin, descending)
        assert (mean - truth).abs().max() > 1e-3 * truth.abs().max(), type(twin).__name__


@pytest.mark.parametrize("theta", [0.6, -1.1])
def test_two_classes_are_binary_disarm_sample_by_sample(theta):
    """A 2-class categorical with logits (-theta, theta) is one bit of logit 2 theta (class 1);
    under the same uniforms the ascending stick-breaking pair is the binary pair, maybe swapped,
    and the estimator is symmetric: d/dlogits = (-g, g)."""
    n = 200
    categorical = get_problem("categorical_toy")(
        {"theta": theta, "d": 1, "classes": 2, "t": 0.45}, dtype=F64)
    bit = get_problem("bernoulli_toy")({"theta": 2 * theta, "d": 1, "t": 0.45}, dtype=F64)
    u = torch.rand(1, n, 1, 1, dtype=F64)
    cat_estimator, bit_estimator = FixedIW(), type("FixedBit", (FixedNoise, DisARM), {})()
    cat_estimator.u, bit_estimator.u = u, u.reshape(1, n, 1)
    params = repeat_params(categorical.init_params(), n)
    g_cat = torch.autograd.grad(
        cat_estimator.surrogate(categorical, params, 2, {}).loss.sum(), params["logits"])[0]
    bit_params = repeat_params(bit.init_params(), n)
    g_bit = torch.autograd.grad(
        bit_estimator.surrogate(bit, bit_params, 2, {}).loss.sum(), bit_params["theta"])[0]
    torch.testing.assert_close(g_cat[:, 0, 1], g_bit[:, 0], rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(g_cat[:, 0, 0], -g_bit[:, 0], rtol=1e-12, atol=1e-15)
    assert (g_bit != 0).any()


@pytest.mark.parametrize(("name", "options"), [
    ("categorical_toy", {"theta": 1.0, "d": 2, "classes": 4}),
    ("categorical_vae", {"groups": 2, "categories": 3, "batch": 2}),
])
def test_mean_against_the_enumerated_truth(name, options):
    problem = get_problem(name)(options, dtype=F64)
    result = compare(draw_estimates(problem, DisARM({"weighting": "importance"}), 4, 20_000),
                     flat_truth(problem))
    result.guard()
    assert result.consistent
