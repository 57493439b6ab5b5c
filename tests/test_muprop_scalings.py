"""MuProp's learned scalings (Gu et al. 2016): c(b) = a0 f(mu) + a1 f'(mu) . (b - mu) with the
correction a1 f'(mu) . d mu / d theta. The estimate's exact mean, by enumerating every bit
configuration, is the gradient for any (a0, a1); scalings fixed at 1 are the plain ``muprop``
sample by sample; learned scalings move and stay unbiased on the VAE; a twin without the
correction is rejected by the same enumeration.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from estimators import get_estimator
from estimators.control_variate import MuProp
from problems import get_problem
from problems.base import repeat_params
from tests.examples import PROBLEM_EXAMPLES
from tests.stats import compare, draw_estimates, flat_truth

F64 = torch.float64
D, T = 3, 0.3
THETA = torch.tensor([0.4, -1.0, 1.5], dtype=F64)


def with_scalings(a0, a1, estimator=None):
    """A learning muprop set up on the toy, its scalings set to (a0, a1) and frozen."""
    estimator = estimator or MuProp({"learn": True})
    estimator.setup(get_problem("bernoulli_toy")({"d": D}, dtype=F64), {"theta": THETA})
    with torch.no_grad():
        estimator.scalings.copy_(torch.tensor([a0, a1], dtype=F64))
    estimator.freeze()
    return estimator


def enumerated_mean(estimator):
    """sum_b q(b) g(b) over the 2^d configurations of one sample (K = 1)."""
    problem = get_problem("bernoulli_toy")({"d": D, "t": T}, dtype=F64)
    bits = torch.tensor(list(itertools.product([0.0, 1.0], repeat=D)), dtype=F64)  # [N, d]
    params = {"theta": THETA.expand(bits.shape[0], D).clone().requires_grad_()}
    out = estimator.surrogate_from_samples(problem, params, bits.unsqueeze(0))
    (grads,) = torch.autograd.grad(out.loss.sum(), [params["theta"]])
    p = torch.sigmoid(THETA)
    weight = (bits * p + (1 - bits) * (1 - p)).prod(-1)
    return (weight[:, None] * grads).sum(0), grads


TRUTH = torch.sigmoid(THETA) * (1 - torch.sigmoid(THETA)) * (1 - 2 * T) / D


@pytest.mark.parametrize("scalings", [(1.0, 1.0), (0.0, 0.0), (0.3, -2.0), (4.0, 0.5)])
def test_unbiased_for_every_scaling_by_enumeration(scalings):
    mean, grads = enumerated_mean(with_scalings(*scalings))
    torch.testing.assert_close(mean, TRUTH, rtol=1e-10, atol=1e-15)
    plain = enumerated_mean(MuProp())[1]
    assert (scalings == (1.0, 1.0)) == torch.allclose(grads, plain, rtol=1e-12, atol=1e-15)


class NoCorrectionMuProp(MuProp):
    """Broken: the linear Taylor term without its analytic correction."""

    name = "broken_muprop_no_correction"

    def correction(self, a1, slope, mu):
        return torch.zeros(mu.shape[0], dtype=mu.dtype)


def test_without_the_correction_enumeration_rejects_it():
    mean, _ = enumerated_mean(with_scalings(0.3, -2.0, NoCorrectionMuProp({"learn": True})))
    assert (mean - TRUTH).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["bernoulli_toy", "bernoulli_vae"])
def test_scalings_at_one_are_plain_muprop_sample_by_sample(name):
    problem = get_problem(name)(PROBLEM_EXAMPLES[name], dtype=F64)
    params = repeat_params(problem.init_params(), 20)
    b = problem.distribution(params).sample((3,))
    learned = MuProp({"learn": True, "warmup": 0})
    learned.setup(problem, problem.init_params())
    grads = []
    for estimator in (get_estimator("muprop")(), learned):
        out = estimator.surrogate_from_samples(problem, params, b)
        grads.append(torch.cat([g.flatten(1) for g in torch.autograd.grad(
            out.loss.sum(), list(params.values()))], -1))
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=0)


def test_learned_scalings_move_and_stay_unbiased_on_the_vae():
    problem = get_problem("bernoulli_vae")(PROBLEM_EXAMPLES["bernoulli_vae"], dtype=F64)
    estimator = MuProp({"learn": True, "warmup": 50})
    result = compare(draw_estimates(problem, estimator, 4, 20_000), flat_truth(problem))
    result.guard()
    assert result.consistent
    assert not torch.allclose(estimator.scalings, torch.ones(2, dtype=F64))
