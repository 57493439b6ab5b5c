"""ARSM: Augment-REINFORCE-Swap-Merge for categorical (and binary) latents.

Augment. A categorical z with logits phi (C classes) is z = argmin_i pi_i exp(-phi_i) with
pi ~ Dirichlet(1_C): pi is a normalized vector of C independent Exp(1) draws, and the
argmin of Exp(1)_i / exp(phi_i) is an exponential race won by class i with probability
softmax(phi)_i. Differentiating the Dirichlet density of the rescaled race gives (Yin, Yue,
Zhou 2019, Theorem 1)

    dL/dphi_c = E_pi[f(z) (1 - C pi_c)].

Swap and merge. Swapping the entries c and j of pi leaves its law unchanged, so z^{c<->j} =
argmin_i (pi^{c<->j})_i exp(-phi_i) is another sample of q (z^{c<->c} = z). Writing the
identity at the swapped vector for every reference j and subtracting the mean over c of the
same swaps (a control variate of mean zero) gives, averaged over the references,

    g_c = sum_j (f(z^{c<->j}) - (1/C) sum_m f(z^{m<->j})) (1/C - pi_j),

an unbiased estimate that needs the cost at the C (C - 1) / 2 distinct swaps besides z. With
several variables each gets its own pi; the estimate of variable v swaps v only, the others
keep their sample. A cost term that does not depend on v cancels exactly in the bracket, so on
a problem with factors one evaluation with variable u swapped in every example at once serves
all examples, and the per-example signals need no option. A bit with logit theta is the
2-class categorical with logits (theta, 0) (``estimators.discrete``): pi = (u, 1 - u), and on
one bit ARSM is ARM sample for sample, g = (f(b) - f(b')) (1/2 - u) with b = 1[u < p],
b' = 1[1 - u < p] (with several bits ARM's partner flips all of them, ARSM one at a time).
The direct term df/dtheta is the mean over the K unswapped samples.

Cost: K (1 + U C (C - 1) / 2) evaluations of the cost per estimate, U the variables of one
example (K independent pi per variable).

References: Yin, Yue, Zhou (2019), "ARSM: Augment-REINFORCE-Swap-Merge Estimator for Gradient
Backpropagation Through Categorical Variables", ICML.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from estimators.base import Estimator, State, Surrogate
from estimators.discrete import binary_as_categorical, by_factor, is_binary, logits_of
from estimators.exact_sum import variables_and_values
from problems.base import Capability, Params, Problem


def swap_actions(log_pi: Tensor, phi: Tensor) -> Tensor:
    """The class argmin_i (pi^{c<->j})_i exp(-phi_i) for every ordered pair (c, j):
    ``log_pi``, ``phi`` ``[..., C]`` -> ``[..., C (c), C (j)]`` (the diagonal is z)."""
    n = phi.shape[-1]
    score = (log_pi - phi)[..., None, None, :]
    score = score.expand(*score.shape[:-3], n, n, n)
    i = torch.arange(n, device=phi.device)
    at_c = (i[None, None, :] == i[:, None, None])  # [c, j, i]: i == c
    at_j = (i[None, None, :] == i[None, :, None])  # i == j
    swapped_c = log_pi[..., None, :, None] - phi[..., :, None, None]  # log pi_j - phi_c
    swapped_j = log_pi[..., :, None, None] - phi[..., None, :, None]  # log pi_c - phi_j
    score = torch.where(at_c, swapped_c, torch.where(at_j, swapped_j, score))
    return score.argmin(-1)


class ARSM(Estimator):
    """Augment-REINFORCE-Swap-Merge: g_c = sum_j (f(z^{c<->j}) - mean_m f(z^{m<->j}))
    (1/C - pi_j) per variable, pi ~ Dirichlet(1) (module docstring). Unbiased.

    References: Yin, Yue, Zhou (2019), "ARSM: Augment-REINFORCE-Swap-Merge Estimator for
    Gradient Backpropagation Through Categorical Variables", ICML.
    """

    name = "arsm"
    example_samples = 2
    example_options: ClassVar[dict] = {}
    style = ("green", "*")
    description = "ARSM: Dirichlet-augmented REINFORCE with swapped pseudo-actions merged"
    requires = frozenset({Capability.DISCRETE})
    unbiased = True
    cost_formula = "K·(1 + U·C·(C−1)/2)"

    def cost_evals(self, n_samples: int, problem: Problem) -> int:
        n_vars, n_values = variables_and_values(problem)
        return n_samples * (1 + n_vars * n_values * (n_values - 1) // 2)

    def dirichlet(self, shape: torch.Size, like: Tensor) -> Tensor:
        """``shape[:-1]`` independent Dirichlet(1) vectors of length ``shape[-1]`` (a method,
        so that tests can fix the noise)."""
        exp = torch.empty(shape, dtype=like.dtype, device=like.device).exponential_()
        return exp / exp.sum(-1, keepdim=True)

    def merge_weights(self, pi: Tensor) -> Tensor:
        """The weight of each swap (c, j) in the merge, ``[..., C] -> [..., 1, C]``: that of its
        reference j, 1/C - pi_j."""
        return (1 / pi.shape[-1] - pi).unsqueeze(-2)

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        dist = problem.distribution(params)
        binary, event, n_factors = is_binary(dist), dist.event_shape, problem.n_factors
        logits = logits_of(dist)  # [R, *event]
        phi = binary_as_categorical(logits.detach()) if binary else logits.detach()
        phi = by_factor(phi, phi.shape[1:], n_factors, False)  # [R, F, U, C]
        n_vars, n_values = phi.shape[2], phi.shape[3]
        pi = self.dirichlet(torch.Size((n_samples, *phi.shape)), phi)  # [K, R, F, U, C]
        actions = swap_actions(pi.log(), phi)  # [K, R, F, U, C, C]
        base = actions.diagonal(dim1=-2, dim2=-1)[..., 0]  # [K, R, F, U]: z
        first, second = torch.triu_indices(n_values, n_values, 1, device=phi.device)
        swapped = actions[..., first, second]  # [K, R, F, U, P]: the pairs c < j

        def latent(classes: Tensor) -> Tensor:
            """Class indices ``[..., R, F, U]`` as the problem's latent ``[..., R, *event]``
            (class 0 of a bit is 'one')."""
            one_hot = torch.nn.functional.one_hot(classes, n_values).to(phi.dtype)
            z = one_hot[..., 0] if binary else one_hot
            return z.reshape(*classes.shape[:-2], *event)

        z = latent(base)  # [K, R, *event]
        terms = problem.cost_terms(z, params)  # [K, R, F], with its direct dependence
        direct = terms.sum(-1).mean(0)
        # f(z^{c<->j}) per variable: [K, R, F, U, C, C], the diagonal the unswapped cost
        table = terms.detach()[..., None, None, None]
        table = table.expand(*terms.shape, n_vars, n_values, n_values).clone()
        with torch.no_grad():  # the swapped costs are signals only: no graph to keep
            for u in range(n_vars):  # variable u swapped in every example at once
                variants = base.unsqueeze(0).repeat(len(first), *[1] * base.dim())
                variants[..., u] = swapped[..., u, :].movedim(-1, 0)  # [P, K, R, F, U]
                pairs = problem.cost_terms(
                    latent(variants).flatten(0, 1), params
                ).reshape(len(first), *terms.shape).movedim(0, -1)  # [K, R, F, P]
                table[..., u, first, second] = pairs
                table[..., u, second, first] = pairs
        centred = table - table.mean(-2, keepdim=True)  # minus (1/C) sum_m f(z^{m<->j})
        gradient = (centred * self.merge_weights(pi)).sum(-1).mean(0)  # [R, F, U, C]
        if binary:
            gradient = gradient[..., 0].reshape(logits.shape)  # d/dtheta = d/dphi_0
        else:
            gradient = gradient.reshape(logits.shape)
        loss = (gradient.detach() * logits).flatten(1).sum(-1) + direct
        return Surrogate(loss=loss, samples=z)
