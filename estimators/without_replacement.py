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

Sampling without enumerating (stochastic beam search, Kool et al. 2019). One example's latent is
U variables of C classes (bits: C = 2), and the perturbed log-probability of a prefix
(c_1..c_j), G = max over its completions of log p(s) + G_s, is Gumbel(log p(c_1..c_j)). So the
top K of the whole space come from a beam over the variables: each of the beam's prefixes with
value G extends to its C children, whose Gumbels are drawn given that their maximum is G
(G~_c = -log(e^-G - e^-Z + e^-G_c) for free Gumbels G_c with maximum Z), and the K largest
children stay. U steps of K C draws, whatever the C^U configurations.

Set probabilities by one-dimensional quadrature. e^-(log p(s) + G_s) are independent
exponential clocks of rates p(s); S is the set of the K first to ring, so with
lambda = 1 - p(S) the rate of the first clock outside S,

    P(S) = int_0^inf lambda e^(-lambda t) prod_{s in S} (1 - e^(-p(s) t)) dt,

and P^{D\\A}(S \\ A) is the same integral without the factors of A (the rates need no
renormalization: the integral is invariant to scaling them all). With t = e^x the integrand
is smooth and decays at both ends (doubly exponentially on the right, as e^((m + 1) x) with m
factors on the left), so the trapezoid rule on a grid of step h is exponentially accurate
(error about e^(-pi^2 / (2 h)) relative). The grid starts 40 / (m + 1) below
x = -log max(p(s), lambda) and reaches past the right tail of the Gamma(K + 1) law of lambda t;
lambda is floored at e^-36, about the rounding error of 1 - p(S). Where the set is the whole
domain (K >= C^U), lambda = 0 and every probability is 1.

Sequences (``Capability.SEQUENCE``, the ``policy`` problem). Each prompt (factor) is one
categorical variable over its N responses (sequences ended by EOS or cut at the most tokens);
where they are enumerable (N <= the problem's ``max_configs``) the K responses are the
Gumbel-top-k of their enumerated log-probabilities, an exact without-replacement draw, and the
estimator is the same. Beyond that a sequence policy is a skipped cell with the reason: the
beam above runs over independent variables, and a stochastic beam over an autoregressive tree
with variable lengths (Kool et al. 2019) is not implemented.

References: Kool, van Hoof, Welling (2020), "Estimating Gradients for Discrete Random Variables
by Sampling without Replacement", ICLR; Kool, van Hoof, Welling (2019), "Stochastic Beams and
Where to Find Them: The Gumbel-Top-k Trick for Sampling Sequences Without Replacement", ICML.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from estimators.base import Estimator, State, Surrogate
from estimators.discrete import binary_as_categorical, by_factor, is_binary, logits_of
from problems.base import Capability, Params, Problem, repeat_params
from problems.options import Option

#: log of the smallest mass outside the set the quadrature resolves: about the rounding error
#: of 1 - p(S), below which the set holds all the mass to working precision
LOG_REST_FLOOR = -36.0


def log1mexp(x: Tensor) -> Tensor:
    """log(1 - e^x) for x <= 0, accurate at both ends (-inf at x = 0)."""
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def log_clock_factor(log_y: Tensor) -> Tensor:
    """log(1 - e^-y) from log y: the log-probability that a clock of rate p rang before t,
    y = p t; log y - y / 2 where y < e^-20 (exp would underflow long before log y does)."""
    y = log_y.clamp(min=-20).exp()
    return torch.where(log_y < -20, log_y - log_y.exp() / 2, log1mexp(-y))


def domain(problem: Problem) -> tuple[int, int]:
    """The variables U and classes C of one example's latent (bits: C = 2)."""
    dist = problem.distribution(repeat_params(problem.init_params(), 1, requires_grad=False))
    binary = is_binary(dist)
    shape = by_factor(logits_of(dist), dist.event_shape, problem.n_factors, binary).shape
    return (shape[-1], 2) if binary else (shape[-2], shape[-1])


def truncated_gumbels(top: Tensor, free: Tensor) -> Tensor:
    """Gumbels given their maximum: -log(e^-T - e^-Z + e^-G) for free Gumbels G ``[..., C]``
    with maximum Z and the target maximum T ``[..., 1]``, as T - log1p(e^v),
    v = T - G + log(1 - e^(G - Z)) (Kool et al. 2019, Appendix B)."""
    gap = top - free + log1mexp(free - free.max(-1, keepdim=True).values)
    return top - gap.clamp(min=0) - torch.log1p(torch.exp(-gap.abs()))


def gumbel_top_k(log_pi: Tensor, k: int) -> Tensor:
    """The K largest perturbed configurations of independent categorical variables, by
    stochastic beam search (module docstring).

    Args:
        log_pi: ``[..., U, C]`` log-probabilities of the U variables' classes (no graph needed).
        k: the number of configurations; all C^U of them where that is fewer.

    Returns:
        ``[..., min(k, C^U), U]``: the classes of each configuration, in decreasing order of
        their perturbed log-probability.
    """
    *lead, n_vars, n_classes = log_pi.shape
    phi = log_pi.new_zeros(*lead, 1)  # log p of each prefix: [..., B]
    top = log_pi.new_zeros(*lead, 1)  # its perturbed value (the root's is arbitrary)
    classes = torch.zeros(*lead, 1, 0, dtype=torch.long, device=log_pi.device)
    for j in range(n_vars):
        child = phi.unsqueeze(-1) + log_pi[..., j, :].unsqueeze(-2)  # [..., B, C]
        free = child - torch.log(torch.empty_like(child).exponential_())
        given = truncated_gumbels(top.unsqueeze(-1), free).flatten(-2)  # [..., B C]
        keep = given.topk(min(k, given.shape[-1]), -1).indices  # [..., B']
        parent = (keep // n_classes).unsqueeze(-1).expand(*keep.shape, j)
        classes = torch.cat([classes.gather(-2, parent), (keep % n_classes).unsqueeze(-1)], -1)
        phi, top = child.flatten(-2).gather(-1, keep), given.gather(-1, keep)
    return classes


def set_log_probs(
    log_p: Tensor, log_rest: Tensor, step: float = 0.25
) -> tuple[Tensor, Tensor, Tensor]:
    """log P(S), log P^{D\\s}(S \\ s) and log P^{D\\{s,s'}}(S \\ {s, s'}) by the trapezoid rule
    (module docstring).

    Args:
        log_p: ``[..., K]`` log-probabilities of the K distinct elements of the set.
        log_rest: ``[...]`` log of the mass outside the set (-inf: the set is the domain).
        step: the largest grid step in x = log t.

    Returns:
        ``[...]``, ``[..., K]`` and ``[..., K, K]`` (the diagonal: the first-order ones).
    """
    k = log_p.shape[-1]
    whole = torch.isneginf(log_rest)
    log_lam = torch.where(whole, torch.zeros_like(log_rest), log_rest.clamp(min=LOG_REST_FLOOR))
    left = 40 / (max(k - 2, 0) + 1) + 1
    lo = -torch.maximum(log_p.max(-1).values, log_lam) - left
    # the widest span, at lambda = e^LOG_REST_FLOOR: one grid length for every element, so that
    # no element's quadrature depends on another's
    span = left - LOG_REST_FLOOR + math.log(k + 46 + 10 * math.sqrt(k + 1))
    n = math.ceil(span / step) + 1
    grid = torch.arange(n, dtype=log_p.dtype, device=log_p.device) * step
    x = lo.unsqueeze(-1) + grid  # [..., n]
    log_h = math.log(step)
    factor = log_clock_factor(log_p.unsqueeze(-2) + x.unsqueeze(-1))  # [..., n, K]
    base = log_lam.unsqueeze(-1) + x - (log_lam.unsqueeze(-1) + x).exp() + factor.sum(-1)
    full = base.logsumexp(-1) + log_h
    without = base.unsqueeze(-1) - factor  # [..., n, K]
    first = without.logsumexp(-2) + log_h
    second = torch.stack(
        [(without - factor[..., s : s + 1]).logsumexp(-2) for s in range(k)], -2
    ) + log_h  # [..., K, K]
    second = torch.where(torch.eye(k, dtype=torch.bool, device=log_p.device), first.unsqueeze(-1),
                         second)
    zero = torch.zeros((), dtype=log_p.dtype, device=log_p.device)
    return (
        torch.where(whole, zero, full),
        torch.where(whole.unsqueeze(-1), zero, first),
        torch.where(whole.unsqueeze(-1).unsqueeze(-1), zero, second),
    )


def leave_out_ratios(log_p: Tensor, log_rest: Tensor, step: float = 0.25) -> tuple[Tensor, Tensor]:
    """log R(S, s) ``[..., K]`` and the second-order log R^{D\\s}(S, s') ``[..., K, K]``
    (0 on the diagonal) of the sampled set (see the module docstring)."""
    full, first, second = set_log_probs(log_p, log_rest, step)
    return first - full.unsqueeze(-1), second - first.unsqueeze(-1)


class UnorderedSet(Estimator):
    """The unordered-set estimator: K configurations per example without replacement
    (Gumbel-top-k by stochastic beam search), g = sum_{s in S} grad p(s) R(S, s)
    (f(s) - b_s) + sum_{s in S} p(s) R(S, s) grad f(s), with the built-in baseline b_s
    (K >= 2; b = 0 with ``baseline=none`` or K = 1, where it is REINFORCE), the set
    probabilities by quadrature. Unbiased (up to the quadrature's error, about
    e^(-pi^2 / (2 step)) relative).

    References: Kool, van Hoof, Welling (2020), "Estimating Gradients for Discrete Random
    Variables by Sampling without Replacement", ICLR.
    """

    name = "unordered_set"
    # K = 2 < the 4 configurations of bernoulli_toy's two bits (K = 4 would be exact)
    example_samples = 2
    example_options: ClassVar[dict] = {}
    style = ("orange", "^")
    description = "unordered-set estimator: K samples without replacement, built-in baseline"
    requires = frozenset()
    unbiased = True
    cost_formula = "min(K, N)"
    options: ClassVar[dict[str, Option]] = {
        "baseline": Option(
            "builtin", "builtin (Kool et al. 2020, Theorem 4) or none", choices=("builtin", "none")
        ),
        "step": Option(
            0.25, "grid step of the set probabilities' quadrature in log t", minimum=0,
            exclusive=True, maximum=1,
        ),
    }

    @classmethod
    def incompatibility(
        cls, problem: type[Problem] | Problem, options: Mapping[str, Any] | None = None
    ) -> str | None:
        """Discrete latents, or a sequence policy whose responses are enumerable."""
        reason = super().incompatibility(problem, options)
        provided = problem.provided if isinstance(problem, Problem) else problem.capabilities(
            options or {})
        if reason is not None or Capability.DISCRETE in provided:
            return reason
        if Capability.SEQUENCE not in provided:
            return f"{cls.name} requires discrete, which {problem.name} lacks"
        if Capability.EXACT_OBJECTIVE not in provided:
            return (f"{cls.name} draws a sequence policy's responses without replacement from "
                    f"their enumeration; {problem.name} has more than max_configs per prompt "
                    "(a stochastic beam over sequences is not implemented)")
        return None

    def cost_evals(self, n_samples: int, problem: Problem) -> int:
        if Capability.SEQUENCE in problem.provided:
            return min(n_samples, problem.responses().shape[0])
        n_vars, n_classes = domain(problem)
        return min(n_samples, n_classes**n_vars)

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        if Capability.SEQUENCE in problem.provided:
            return self.sequence_surrogate(problem, params, n_samples)
        dist = problem.distribution(params)
        binary, event, n_factors = is_binary(dist), dist.event_shape, problem.n_factors
        per_var = by_factor(logits_of(dist), event, n_factors, binary)
        log_pi = torch.log_softmax(binary_as_categorical(per_var) if binary else per_var, -1)
        n_vars, n_classes = log_pi.shape[-2:]  # [R, F, U, C]
        classes = gumbel_top_k(log_pi.detach(), n_samples)  # [R, F, K, U]
        k = classes.shape[-2]
        log_p = (
            log_pi.unsqueeze(-3).expand(*classes.shape, n_classes)
            .gather(-1, classes.unsqueeze(-1)).squeeze(-1).sum(-1)
        )  # [R, F, K], differentiable
        hard = (classes == 0).to(log_p.dtype) if binary else torch.nn.functional.one_hot(
            classes, n_classes).to(log_p.dtype)
        z = hard.movedim(2, 0).reshape(k, log_p.shape[0], *event)  # [K, R, *event]
        return self.finish(problem, params, log_p, z, whole=k == n_classes**n_vars)

    def sequence_surrogate(self, problem: Problem, params: Params, n_samples: int) -> Surrogate:
        """Per prompt, the Gumbel-top-k of its enumerated responses (module docstring)."""
        responses = problem.responses()  # [N, L]
        n, r = responses.shape[0], next(iter(params.values())).shape[0]
        grid = responses.reshape(n, 1, 1, -1).expand(n, r, problem.n_factors, -1)
        log_all = problem.distribution(params).token_log_probs(grid).sum(-1)  # [N, R, P]
        k = min(n_samples, n)
        perturbed = log_all.detach() + self.gumbels(log_all)
        chosen = perturbed.topk(k, 0).indices  # [K, R, P]
        z = responses[chosen]  # [K, R, P, L]
        log_p = log_all.gather(0, chosen).movedim(0, -1)  # [R, P, K], differentiable
        return self.finish(problem, params, log_p, z, whole=k == n)

    @staticmethod
    def gumbels(like: Tensor) -> Tensor:
        """Standard Gumbels shaped like ``like``: -log E, E ~ Exp(1)."""
        return -torch.log(torch.empty_like(like).exponential_())

    def finish(
        self, problem: Problem, params: Params, log_p: Tensor, z: Tensor, whole: bool
    ) -> Surrogate:
        """The surrogate from the sets' log-probabilities ``[R, F, K]`` and samples ``z``
        ``[K, R, *event]`` (``whole``: each set is its factor's whole domain)."""
        if whole:
            outside = torch.full_like(log_p[..., 0], -torch.inf).detach()
        else:
            rest = -torch.expm1(log_p.detach().logsumexp(-1))
            outside = torch.where(rest > 0, rest, 0.0).log()
        log_r1, log_r2 = leave_out_ratios(log_p.detach(), outside, self.option_values["step"])
        cost = problem.cost_terms(z, params).movedim(0, -1)  # [R, F, K]
        weight = (log_p.detach() + log_r1).exp()  # p(s) R(S, s), in logs: p(s) may underflow
        baseline = self.baseline(log_p.detach(), log_r2, cost.detach())
        loss = weight * (log_p * (cost.detach() - baseline) + cost)  # grad p = p grad log p
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
        if self.option_values["baseline"] == "none" or log_p.shape[-1] < 2:
            return torch.zeros_like(cost)
        return ((log_p.unsqueeze(-2) + log_r2).exp() * cost.unsqueeze(-2)).sum(-1)
