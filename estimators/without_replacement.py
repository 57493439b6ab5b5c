"""Estimators from samples drawn without replacement.

The unordered-set estimator. Draw K distinct configurations S = {s_1..s_K} of a discrete
latent without replacement, with probabilities proportional to p(s) (Gumbel-top-k: the K
largest of log p(s) + G_s, G iid Gumbel). With P(S) the probability of the unordered set and
P^{D\\A}(T) that of drawing the set T without replacement from the domain without A (each
element with probability p(t) / (1 - p(A)) at the first draw), the leave-one-out ratio
R(S, s) = P^{D\\s}(S \\ s) / P(S) makes

    E_S[ sum_{s in S} p(s) R(S, s) h(s) ] = sum_s p(s) h(s)

for any h (Kool et al. 2020, Theorem 1), so that
g = sum_{s in S} grad p(s) R(S, s) f(s) + sum_{s in S} p(s) R(S, s) grad f(s) is unbiased. At
K = 1, R = 1 / p(s) and g is REINFORCE.

Built-in baseline (K >= 2). For each s the other K - 1 elements are a without-replacement
sample from D \\ s, so sum_{s' in S \\ s} p(s') R^{D\\s}(S, s') f(s'), with the second-order
ratio R^{D\\s}(S, s') = P^{D\\{s,s'}}(S \\ {s, s'}) / P^{D\\s}(S \\ s), estimates
sum_{s' != s} p(s') f(s') = E[f] - p(s) f(s); adding the diagonal term p(s) f(s) gives
b_s with conditional mean E[f] given s in S, a constant, so that
sum_{s in S} grad p(s) R(S, s) (f(s) - b_s) stays unbiased (Kool et al. 2020, Theorem 4).
Without the diagonal term the estimate is biased by grad (sum_s p(s)^2 f(s)) / 2.

Set probabilities. For U a subset of S, Q(U) = P^{D\\U}(S \\ U) satisfies
Q(U) = sum_{t in S \\ U} p(t) / (1 - p(U)) Q(U + t), Q(S) = 1: a sum over the 2^K subsets
(exact, no numerical integration), which gives P(S) = Q({}), P^{D\\s}(S \\ s) = Q({s}) and
P^{D\\{s,s'}}(S \\ {s, s'}) = Q({s, s'}). The masses 1 - p(U) are taken as the mass outside S
plus that of S \\ U, without cancellation.

The domain. The estimator enumerates the configurations of one example's latent (all bits, or
all groups jointly) and samples from them, so it applies where that space has at most
``MAX_CONFIGS`` (4096) elements; on a problem with factors each example draws its own set and its
term f_i gets its own estimate (the examples are independent). Where K exceeds the N
configurations, the set is the whole space, K_eff = min(K, N) evaluations, and the estimate
is the exact gradient.

References: Kool, van Hoof, Welling (2020), "Estimating Gradients for Discrete Random Variables
by Sampling without Replacement", ICLR; Kool, van Hoof, Welling (2019), "Stochastic Beams and
Where to Find Them: The Gumbel-Top-k Trick for Sampling Sequences Without Replacement", ICML.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from estimators.base import Estimator, State, Surrogate
from estimators.discrete import by_factor, is_binary, logits_of
from problems.base import Capability, LatentKind, Params, Problem, repeat_params
from problems.enumeration import enumerate_support, support_size
from problems.options import Option

#: the largest K: the set probabilities sum over the 2^K subsets of the sample
MAX_SET = 8
#: the largest latent space of one example it samples from (it holds log q of all of them)
MAX_CONFIGS = 2**12


def domain(problem: Problem) -> tuple[LatentKind, torch.Size, int]:
    """The kind of one example's latent, its event shape and its number of configurations."""
    dist = problem.distribution(repeat_params(problem.init_params(), 1, requires_grad=False))
    event = dist.event_shape
    unit = event[1:] if problem.n_factors > 1 else event
    kind = LatentKind.BINARY if is_binary(dist) else LatentKind.CATEGORICAL
    return kind, unit, support_size(kind, unit)


def subset_log_probs(log_p: Tensor, log_rest: Tensor) -> Tensor:
    """log Q(U) for every subset U of a sampled set (bit i of the index: element i in U).

    Args:
        log_p: ``[..., K]`` log-probabilities of the K distinct sampled elements.
        log_rest: ``[...]`` log of the probability mass outside the set (-inf if none).

    Returns:
        ``[..., 2^K]``: log P^{D\\U}(S \\ U), with Q(S) = 1.
    """
    k = log_p.shape[-1]
    masks = torch.arange(2**k, device=log_p.device)
    member = ((masks.unsqueeze(-1) >> torch.arange(k, device=log_p.device)) & 1).bool()
    # log(1 - p(U)) = log(mass outside S + mass of S \ U), for every U: [..., 2^K]
    rest_of_set = log_p.unsqueeze(-2).masked_fill(member, -torch.inf).logsumexp(-1)
    log_remaining = torch.logaddexp(rest_of_set, log_rest.unsqueeze(-1))
    log_q = torch.full(
        (*log_p.shape[:-1], 2**k), -torch.inf, dtype=log_p.dtype, device=log_p.device
    )
    log_q[..., -1] = 0.0
    size = member.sum(-1)
    for level in range(k - 1, -1, -1):
        at = masks[size == level]  # [M]
        children = at.unsqueeze(-1) | (1 << torch.arange(k, device=log_p.device))  # [M, K]
        terms = log_p.unsqueeze(-2) - log_remaining[..., at].unsqueeze(-1) + log_q[..., children]
        terms = terms.masked_fill(member[at], -torch.inf)  # only t outside U
        log_q[..., at] = terms.logsumexp(-1)
    return log_q


def leave_out_ratios(log_p: Tensor, log_rest: Tensor) -> tuple[Tensor, Tensor]:
    """log R(S, s) ``[..., K]`` and the second-order log R^{D\\s}(S, s') ``[..., K, K]``
    (0 on the diagonal) of the sampled set (see the module docstring)."""
    k = log_p.shape[-1]
    log_q = subset_log_probs(log_p, log_rest)
    single = 1 << torch.arange(k, device=log_p.device)
    first = log_q[..., single]  # log P^{D\s}(S \ s)
    pairs = log_q[..., single.unsqueeze(-1) | single]  # [..., K, K], diagonal = first
    return first - log_q[..., :1], pairs - first.unsqueeze(-1)


class UnorderedSet(Estimator):
    """The unordered-set estimator: K configurations per example without replacement
    (Gumbel-top-k over the enumerated latent space), g = sum_{s in S} grad p(s) R(S, s)
    (f(s) - b_s) + sum_{s in S} p(s) R(S, s) grad f(s), with the built-in baseline b_s
    (K >= 2; b = 0 with ``baseline=none`` or K = 1, where it is REINFORCE). Unbiased.

    References: Kool, van Hoof, Welling (2020), "Estimating Gradients for Discrete Random
    Variables by Sampling without Replacement", ICLR.
    """

    name = "unordered_set"
    description = "unordered-set estimator: K samples without replacement, built-in baseline"
    requires = frozenset({Capability.DISCRETE})
    unbiased = True
    cost_formula = "min(K, N)"
    options: ClassVar[dict[str, Option]] = {
        "baseline": Option(
            "builtin", "builtin (Kool et al. 2020, Theorem 4) or none", choices=("builtin", "none")
        ),
    }

    @classmethod
    def incompatibility(
        cls, problem: type[Problem] | Problem, options: Mapping[str, Any] | None = None
    ) -> str | None:
        """Also: a problem instance whose latent per example has more than ``MAX_CONFIGS``
        configurations (a class is only checked when its cell runs, by ``surrogate``)."""
        reason = super().incompatibility(problem, options)
        if reason is None and isinstance(problem, Problem):
            size = domain(problem)[2]
            if size > MAX_CONFIGS:
                return (
                    f"{cls.name} enumerates one example's latent, and {problem.name} has "
                    f"{size:,} configurations per example, more than {MAX_CONFIGS:,}"
                )
        return reason

    @classmethod
    def sample_rule(cls, n_samples: int) -> str | None:
        if n_samples > MAX_SET:
            return (
                f"{cls.name} needs K <= {MAX_SET} (its set probabilities sum over the "
                f"2^K subsets), got K={n_samples}"
            )
        return super().sample_rule(n_samples)

    def cost_evals(self, n_samples: int, problem: Problem) -> int:
        return min(n_samples, domain(problem)[2])

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        dist = problem.distribution(params)
        kind, unit, size = domain(problem)
        binary, event, n_factors = kind is LatentKind.BINARY, dist.event_shape, problem.n_factors
        if size > MAX_CONFIGS:
            raise ValueError(self.incompatibility(problem))
        logits = logits_of(dist)
        configs = next(
            enumerate_support(kind, unit, size, dtype=logits.dtype, device=logits.device)
        )  # [N, *unit]
        flat = configs.reshape(size, -1)  # [N, U] or [N, U * C]
        if binary:
            per_var = by_factor(logits, event, n_factors, True)  # [R, F, U]
            log_q = (
                torch.nn.functional.logsigmoid(per_var) @ flat.T
                + torch.nn.functional.logsigmoid(-per_var) @ (1 - flat).T
            )
        else:
            log_pi = torch.log_softmax(by_factor(logits, event, n_factors, False), -1)
            log_q = log_pi.flatten(-2) @ flat.T  # [R, F, N]
        k = min(n_samples, size)
        gumbel = -torch.log(torch.empty_like(log_q).exponential_())
        index = (log_q.detach() + gumbel).topk(k, -1).indices  # [R, F, K]
        log_p = log_q.gather(-1, index)  # differentiable
        outside = log_q.detach().scatter(-1, index, -torch.inf).logsumexp(-1)  # [R, F]
        log_r1, log_r2 = leave_out_ratios(log_p.detach(), outside)
        z = configs[index].movedim(2, 0).reshape(k, *index.shape[:1], *event)  # [K, R, *event]
        cost = problem.cost_terms(z, params).movedim(0, -1)  # [R, F, K]
        weight = (log_p.detach() + log_r1).exp()  # p(s) R(S, s)
        baseline = self.baseline(log_p.detach(), log_r2, cost.detach())
        loss = log_p.exp() * log_r1.exp() * (cost.detach() - baseline) + weight * cost
        return Surrogate(loss=loss.sum((1, 2)), samples=z)

    def baseline(self, log_p: Tensor, log_r2: Tensor, cost: Tensor) -> Tensor:
        """b_s = sum_{s' in S} p(s') R^{D\\s}(S, s') f(s'), diagonal included (0 at K = 1 or
        with ``baseline=none``).

        Args:
            log_p: ``[R, F, K]`` log p(s); log_r2: ``[R, F, K, K]`` second-order log ratios
                (row s, column s'); cost: ``[R, F, K]`` f(s).

        Returns:
            ``[R, F, K]``.
        """
        if self.opts["baseline"] == "none" or log_p.shape[-1] < 2:
            return torch.zeros_like(cost)
        return ((log_p.unsqueeze(-2) + log_r2).exp() * cost.unsqueeze(-2)).sum(-1)
