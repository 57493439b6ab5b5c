"""Exact mean and variance of an estimator by enumerating every K-tuple of samples.

For an estimator whose surrogate can be replayed at given samples (``surrogate_at``), and a
latent whose support S is small, the estimate g(z_1..z_K) is a deterministic function of the
K-tuple, so E[g] = sum_{tuples} prod_k q(z_k) g(z_1..z_K) and Var g likewise, exactly (to
float64 rounding): |S|^K surrogates, one per repeat. This is how the exact bias of the group
baselines is derived (``docs/group_baselines.md``) and tested (``tests/test_group.py``).

References: Mohamed et al. (2020), "Monte Carlo Gradient Estimation in Machine Learning",
JMLR 21(132), Section 3 (bias and variance of an estimator as expectations).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from estimators.base import Estimator, flatten, leaf_grads
from problems.base import LatentKind, Params, Problem, repeat_params
from problems.enumeration import enumerate_support, support_size

#: the most K-tuples enumerated at once
MAX_TUPLES = 2**20


def support(problem: Problem) -> Tensor:
    """Every configuration of the problem's whole latent ``[N, *event]``: bits and classes
    (``problems.enumeration``), or the responses of a one-prompt ``policy``."""
    if problem.latent is LatentKind.SEQUENCE:
        if problem.n_factors != 1:
            raise ValueError("enumerating K-tuples of a policy needs prompts=1")
        return problem.responses().unsqueeze(1)  # [N, 1, L]
    dist = problem.distribution(repeat_params(problem.init_params(), 1, requires_grad=False))
    size = support_size(problem.latent, dist.event_shape)
    return next(enumerate_support(problem.latent, dist.event_shape, size, dtype=problem.dtype,
                                  device=problem.device))


def exact_moments(
    problem: Problem, estimator: Estimator, point: Params, n_samples: int
) -> tuple[Tensor, Tensor]:
    """E[g] and Var[g] per coordinate ``[D]`` (flattened in the order of ``point``) of the
    estimator's estimate from K = ``n_samples`` samples, by enumeration.

    Raises:
        ValueError: where the |S|^K tuples exceed ``MAX_TUPLES``.
    """
    configs = support(problem)  # [N, *event]
    n = configs.shape[0]
    if n**n_samples > MAX_TUPLES:
        raise ValueError(f"{n}^{n_samples} tuples of {problem.name} exceed {MAX_TUPLES}")
    index = torch.cartesian_prod(*[torch.arange(n)] * n_samples).reshape(-1, n_samples)
    z = configs[index.T]  # [K, T, *event]
    params = repeat_params(point, index.shape[0])
    dist = problem.distribution(params)
    with torch.no_grad():
        weight = problem.log_prob_terms(dist, z).sum((0, -1)).exp()  # [T]
    out = estimator.surrogate_at(problem, params, dist, z)
    flat = flatten(leaf_grads(out.loss.sum(), params)).double()  # [T, D]
    weight = weight.double()
    if not math.isclose(float(weight.sum()), 1.0, rel_tol=1e-9):
        raise ValueError(f"the enumerated tuples of {problem.name} do not cover its support")
    mean = (weight.unsqueeze(-1) * flat).sum(0)
    variance = (weight.unsqueeze(-1) * (flat - mean) ** 2).sum(0)
    return mean, variance
