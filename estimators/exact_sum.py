"""Estimators that sum exactly over the values of one variable with the others sampled.

IndeCateR. For independent categorical (or binary) variables z_1..z_D with probabilities
p_i(c; theta) and L(theta) = E[f(z, theta)],

    dL/dtheta = sum_i E_{z_{-i}}[ sum_c (d p_i(c) / dtheta) f(z_{-i}, z_i = c) ]
                + E_z[ df/dtheta (z, theta) ],

since z_i is independent of z_{-i}. Replacing the outer expectation by K samples and keeping
the inner sum over the C values exact gives an unbiased estimate that costs K * D * C
evaluations of f. Every variable's term only sees its own variable's randomness through the
exact sum, so on a cost that is a sum of per-variable terms (bernoulli_toy) the estimate is
the exact gradient, with zero variance. Bits are variables with the two values 1 and 0.

Factors. On a problem with factors (a minibatch of examples, each with its own latent;
``problems.base``), setting variable u of every example to c at once changes only example i's
term f_i in its own term, so one evaluation of the cost per (u, c) serves every example: the
cost of one estimate is K * U * C evaluations of the minibatch's cost, U the variables per
example (``cost_evals``). The direct term df/dtheta is read from the evaluations where the
first variable takes its sampled value (no extra evaluation).

References: De Smet, Sansone, Zuidberg Dos Martires (2023), "Differentiable Sampling of
Categorical Distributions Using the CatLog-Derivative Trick", NeurIPS.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from estimators.base import Estimator, State, Surrogate
from estimators.discrete import by_factor, is_binary, logits_of
from problems.base import Capability, Params, Problem, repeat_params


def variables_and_values(problem: Problem) -> tuple[int, int]:
    """(U, C): the variables of one factor of ``problem``'s latent and the values of each."""
    dist = problem.distribution(repeat_params(problem.init_params(), 1, requires_grad=False))
    event = dist.event_shape
    if is_binary(dist):
        return math.prod(event) // problem.n_factors, 2
    return math.prod(event[:-1]) // problem.n_factors, event[-1]


class IndeCateR(Estimator):
    """IndeCateR: per variable, the exact sum over its C values, the others sampled:
    g = (1/K) sum_k sum_i sum_c (d p_i(c) / dtheta) f(z^k_{-i}, c) + (1/K) sum_k df/dtheta(z^k).
    Unbiased; zero variance on a cost that is a sum of per-variable terms.

    References: De Smet, Sansone, Zuidberg Dos Martires (2023), "Differentiable Sampling of
    Categorical Distributions Using the CatLog-Derivative Trick", NeurIPS.
    """

    name = "indecater"
    example_samples = 2
    example_options: ClassVar[dict] = {}
    style = ("blue", ">")
    description = "IndeCateR: exact sum over each variable's values, the others sampled"
    requires = frozenset({Capability.DISCRETE})
    unbiased = True
    cost_formula = "K·U·C"

    def cost_evals(self, n_samples: int, problem: Problem) -> int:
        n_vars, n_values = variables_and_values(problem)
        return n_samples * n_vars * n_values

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        dist = problem.distribution(params)
        binary, event, n_factors = is_binary(dist), dist.event_shape, problem.n_factors
        logits = by_factor(logits_of(dist), event, n_factors, binary)  # [R, F, U(, C)]
        if binary:  # the values of a bit: 1 (index 0) and 0 (index 1)
            probs = torch.stack([torch.sigmoid(logits), torch.sigmoid(-logits)], -1)
        else:
            probs = torch.softmax(logits, -1)  # [R, F, U, C]
        n_values = probs.shape[-1]
        z = dist.sample((n_samples,))  # [K, R, *event]
        by_var = by_factor(z, event, n_factors, binary)  # [K, R, F, U(, C)]
        values = (
            torch.tensor([1.0, 0.0], dtype=z.dtype, device=z.device)
            if binary
            else torch.eye(n_values, dtype=z.dtype, device=z.device)
        )  # [C(, C)]
        score = z.new_zeros(z.shape[1])
        direct = z.new_zeros(z.shape[1])
        for u in range(probs.shape[2]):
            varied = by_var.unsqueeze(0).repeat(n_values, *[1] * by_var.dim())
            varied[:, :, :, :, u] = values.reshape(n_values, 1, 1, 1, *values.shape[1:])
            terms = problem.cost_terms(varied.reshape(-1, *z.shape[1:]), params)
            terms = terms.reshape(n_values, *z.shape[:2], n_factors)  # [C, K, R, F]
            p_u = probs[:, :, u].movedim(-1, 0).unsqueeze(1)  # [C, 1, R, F]
            score = score + (p_u * terms.detach()).sum((0, 3)).mean(0)
            if u == 0:  # the sampled value's evaluation: f(z^k) with its direct dependence
                at = by_var[..., 0] if binary else by_var[..., 0, :]
                chosen = torch.stack([at, 1 - at]) if binary else at.movedim(-1, 0)
                direct = (chosen * terms).sum((0, 3)).mean(0)
        return Surrogate(loss=score + direct, samples=z)
