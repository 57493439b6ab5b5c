"""DisARM for multi-sample objectives, one sample at a time (Dong, Mnih, Tucker 2020, Section 5).

The negative K-sample bound J(z_1..z_K) = -scale log (1/K) sum_k w(z_k) couples the samples.
With the other samples held fixed, J is a function of the bits of z_k alone, so each sample
gets its own antithetic partner, z_k = 1[u_k < p] and z~_k = 1[1 - u_k < p] (one uniform per
bit), and DisARM's estimate for the bits of sample k is

    g_k = 1/2 (J(z) - J^(k)) (z_k - z~_k) sigma(|theta|),
    J^(k) = -scale log (1/K) (sum_{j != k} w(z_j) + w(z~_k)),

the bound with z_k replaced by its partner. Given z_{-k}, g_k is DisARM for the function
b -> J(z_1..b..z_K) of the independent bits of z_k: unbiased for the part of dE[J]/dtheta
that flows through z_k's distribution; summing over k gives all of it (the samples are
independent), and the bound's direct dependence on theta (log q in w, the model) is added by
autograd at z. At K = 1 it is DisARM on the one-sample objective (the ELBO). On a problem with
factors each example's bits pair with its own bound's difference (``Problem.signals``).
Cost: the weights at the K samples and at their K partners, 2K evaluations.

Adding the two bounds instead of subtracting them (the published bug of DisARM's family)
gives a biased estimate (tests/test_local_disarm.py).

References: Dong, Mnih, Tucker (2020), "DisARM: An Antithetic Gradient Estimator for Binary
Latent Variables", NeurIPS, Section 5.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from estimators.antithetic import BinaryOnly, logit_surrogate
from estimators.base import Estimator, State, Surrogate
from estimators.discrete import logits_of
from problems.base import Capability, Params, Problem, broadcast_factors


def replaced_bounds(log_w: Tensor, log_partner: Tensor, scale: float) -> Tensor:
    """J^(k) for every k: the negative bound with weight k replaced by its partner's,
    ``[K, R, F]`` from log-weights ``[K, R, F]`` each."""
    k = log_w.shape[0]
    eye = torch.eye(k, dtype=torch.bool, device=log_w.device)
    eye = eye.reshape(k, k, *[1] * (log_w.dim() - 1))
    others = log_w.unsqueeze(0).masked_fill(eye, -torch.inf).logsumexp(1)  # [K, R, F]
    return -scale * (torch.logaddexp(others, log_partner) - math.log(k))


class LocalDisARM(BinaryOnly, Estimator):
    """Local DisARM: per sample of the K-sample bound, DisARM with its own antithetic partner,
    the other samples held fixed (module docstring). Unbiased for the bound's gradient.

    References: Dong, Mnih, Tucker (2020), "DisARM: An Antithetic Gradient Estimator for
    Binary Latent Variables", NeurIPS, Section 5.
    """

    name = "local_disarm"
    example_samples = 4
    example_options: ClassVar[dict] = {}
    style = ("olive", "D")
    description = "DisARM per sample of a multi-sample bound, the others held fixed"
    requires = frozenset({Capability.DISCRETE, Capability.MULTI_SAMPLE, Capability.LOG_WEIGHTS})
    unbiased = True
    supports_multi_sample = True
    cost_formula = "2K"

    def cost_evals(self, n_samples: int, problem: Problem) -> int:
        return 2 * n_samples

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        logits = logits_of(problem.distribution(params))
        p = torch.sigmoid(logits.detach())
        u = torch.rand((n_samples, *logits.shape), dtype=p.dtype, device=p.device)
        z, partner = (u < p).to(p.dtype), (1 - u < p).to(p.dtype)
        return self.surrogate_from_pairs(problem, params, z, partner)

    def surrogate_from_pairs(self, problem: Problem, params: Params, z: Tensor,
                             partner: Tensor) -> Surrogate:
        """The surrogate at given samples and partners ``[K, R, *event]`` (tests enumerate
        them)."""
        logits = logits_of(problem.distribution(params))
        joint = problem.joint_cost_terms(z, params)  # [R, F], with the direct term's graph
        log_w = problem.log_weights(z, params).detach()
        log_partner = problem.log_weights(partner, params).detach()
        replaced = replaced_bounds(log_w, log_partner, problem.factor_scale)  # [K, R, F]
        diff = problem.signals(self.difference(joint.detach().unsqueeze(0), replaced))
        spread = broadcast_factors(diff, logits.shape[1:])  # [K, R, *event]
        gradient = (0.5 * spread * (z - partner) * torch.sigmoid(logits.detach().abs())).sum(0)
        return Surrogate(loss=logit_surrogate(gradient, logits, joint.sum(-1)), samples=z)

    @staticmethod
    def difference(bound: Tensor, replaced: Tensor) -> Tensor:
        """J(z) - J^(k): one sample's bound is the other's baseline."""
        return bound - replaced
