"""Local DisARM (Dong, Mnih, Tucker 2020, Section 5) on multi-sample bounds: its exact mean,
by enumerating every (sample, partner) pair of every bit of the K samples weighted by the
pair law of one uniform, equals the K-sample bound's gradient; a twin that adds the two
bounds is off by the same enumeration; means against the truth on the VAE's iwae bound."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from estimators.local_disarm import LocalDisARM
from problems import get_problem
from problems.base import repeat_params
from tests.stats import compare, draw_estimates, flat_truth

F64 = torch.float64


def pair_law(p: float) -> dict[tuple[float, float], float]:
    """P(z, z~) for z = 1[u < p], z~ = 1[1 - u < p], u ~ U(0, 1)."""
    low = min(p, 1 - p)
    return {(1.0, 1.0): max(0.0, 2 * p - 1), (1.0, 0.0): low, (0.0, 1.0): low,
            (0.0, 0.0): max(0.0, 1 - 2 * p)}


def exact_mean(problem, n_samples, estimator=None):
    """sum over all pair configurations of their probability times the estimate."""
    estimator = estimator or LocalDisARM()
    theta = problem.init_params()["theta"]
    d = theta.shape[0]
    laws = [pair_law(torch.sigmoid(t).item()) for t in theta]
    cells = [(k, j) for k in range(n_samples) for j in range(d)]
    configs = list(itertools.product(*[list(laws[j]) for _, j in cells]))
    weights = torch.tensor([np.prod([laws[j][c] for (_, j), c in zip(cells, cfg, strict=True)])
                            for cfg in configs], dtype=F64)
    pairs = torch.tensor(configs, dtype=F64).reshape(len(configs), n_samples, d, 2)
    z, partner = pairs[..., 0].movedim(1, 0), pairs[..., 1].movedim(1, 0)  # [K, N, d]
    params = repeat_params(problem.init_params(), len(configs))
    out = estimator.surrogate_from_pairs(problem, params, z, partner)
    (grads,) = torch.autograd.grad(out.loss.sum(), [params["theta"]])
    return (weights.unsqueeze(-1) * grads).sum(0).numpy()


@pytest.mark.parametrize(("theta", "d", "n_samples"),
                         [(0.5, 1, 1), (0.5, 1, 2), (-1.2, 1, 3), (2.0, 2, 2), (0.0, 2, 3)])
def test_exact_mean_is_the_bound_gradient(theta, d, n_samples):
    problem = get_problem("bernoulli_iwae")({"theta": theta, "d": d}, dtype=F64)
    truth = flat_truth(problem, n_samples)
    assert np.abs(truth).max() > 1e-3
    np.testing.assert_allclose(exact_mean(problem, n_samples), truth, rtol=1e-10, atol=1e-14)


class SummedLocalDisARM(LocalDisARM):
    """Broken: the two bounds added instead of subtracted."""

    name = "broken_local_disarm_sum"

    @staticmethod
    def difference(bound, replaced):
        return bound + replaced


def test_adding_the_bounds_is_rejected_exactly():
    problem = get_problem("bernoulli_iwae")({"theta": 0.5, "d": 1}, dtype=F64)
    truth = flat_truth(problem, 2)
    gap = np.abs(exact_mean(problem, 2, SummedLocalDisARM()) - truth)
    assert gap.max() > 0.1 * np.abs(truth).max()


def test_mean_matches_the_iwae_bound_of_the_vae():
    problem = get_problem("bernoulli_vae")({"latents": 3, "batch": 2, "objective": "iwae"},
                                           dtype=F64)
    result = compare(draw_estimates(problem, LocalDisARM(), 3, 20_000), flat_truth(problem, 3))
    result.guard()
    assert result.consistent


def test_applies_to_binary_multi_sample_bounds_only():
    assert LocalDisARM.incompatibility(get_problem("bernoulli_iwae")) is None
    assert LocalDisARM.incompatibility(get_problem("bernoulli_toy")) is not None
    iwae_cat = get_problem("categorical_vae")({"objective": "iwae"})
    assert "binary" in LocalDisARM.incompatibility(iwae_cat)
    assert LocalDisARM().cost_evals(4, get_problem("bernoulli_iwae")({})) == 8
