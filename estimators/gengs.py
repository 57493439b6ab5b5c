"""Generalized Gumbel-Softmax (GenGS): a relaxed, reparameterized count.

Joo, Kim, Shin, Yang, Moon (2020) relax a generic discrete variable in three steps; for a
count x ~ Poisson(rate) per coordinate, with the truncation level n (``truncation``):

1. Truncation. The count is replaced by the finite variable x_n = min(x, n - 1) on the
   support c = (0, 1, ..., n - 1): pi_i = P(x = i) for i < n - 1, and the last category
   absorbs the tail, pi_{n-1} = P(x >= n - 1) = P(Gamma(n - 1, 1) <= rate) (the regularized
   incomplete gamma function; d/drate P(x >= m) = P(x = m - 1)), with n large enough that
   the mass beyond is negligible. We give the remainder to the last category rather than
   renormalize over {0, ..., n - 1}, because x_n is then a function of x itself: E f(x_n)
   and E f(x) differ only on the event {x >= n - 1}, so the truncation's bias (in the
   objective and, by d/drate P(x >= m) = P(x = m - 1), in its gradient) is of the order of
   that tail, where renormalizing would also scale every category by 1 / P(x <= n - 1) (both
   vanish as n grows; a renormalized twin is rejected in tests/test_gengs.py). Source: the
   paper's abstract (truncation, the Gumbel-Softmax trick and a special linear
   transformation); its method section could not be read here, so how the tail is treated
   is our choice, not a quotation.
2. Gumbel-Softmax over the n categories at temperature tau:
   w = softmax((log pi + G) / tau), G_i = -log(-log u_i), u_i ~ U(0, 1) (Jang et al. 2017).
3. The linear transformation to a relaxed count: z = sum_i w_i c_i with c_i = i, so that as
   tau -> 0, w tends to the one-hot of argmax(log pi + G), a draw of x_n, and z to x_n.

The estimate is the pathwise gradient mean_k d/drate f(z_k(rate), theta) at the relaxed count
(the cost must be defined at real counts: ``Capability.DIFFERENTIABLE_COST``). It is biased
for the gradient of E f(x) at every tau > 0 (the relaxation) and every finite n (the
truncation), and unbiased for the gradient of its own relaxed objective
E_u[f(z(u, rate), theta)] (``targets.RelaxedCountGradient``, computed by ``bench verify``).
As tau -> 0 with n large the relaxed gradient tends to the exact one while the estimate's
variance grows (tests/test_gengs.py shows both).

The default n = 12 leaves a tail P(x >= 11) of 8.3e-6 at the problem's default rate 2
(rate + 6 sqrt(rate) = 10.5 < 11): the truncation's share of the bias is negligible next to
the temperature's.

References: Joo, Kim, Shin, Yang, Moon (2020), "Generalized Gumbel-Softmax Gradient Estimator
for Generic Discrete Random Variables", arXiv:2003.01847; Jang, Gu, Poole (2017),
"Categorical Reparameterization with Gumbel-Softmax", ICLR.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.distributions.utils import clamp_probs

from estimators.base import Estimator, State, Surrogate
from estimators.measure_valued import poisson_of
from estimators.relaxed import TAU
from estimators.targets import RelaxedCountGradient
from problems.base import Capability, LatentKind, Params, Problem
from problems.options import Option

TRUNCATION = Option(12, "support size n of the truncated count: {0, ..., n - 1}, the last "
                    "category holding P(x >= n - 1)", minimum=2, maximum=1000)


def truncated_log_probs(rate: Tensor, n: int) -> Tensor:
    """log pi ``[..., n]`` of min(x, n - 1), x ~ Poisson(rate ``[...]``): log P(x = i) for
    i < n - 1, and log P(x >= n - 1) = log gammainc(n - 1, rate) for the last category."""
    support = torch.arange(n - 1, dtype=rate.dtype, device=rate.device)  # [n - 1]
    head = torch.xlogy(support, rate[..., None]) - rate[..., None] - torch.lgamma(support + 1)
    tail = torch.special.gammainc(torch.full_like(rate, n - 1), rate)  # [...]
    tiny = torch.finfo(rate.dtype).tiny
    return torch.cat([head, tail.clamp_min(tiny).log()[..., None]], -1)


def relaxed_counts(log_pi: Tensor, u: Tensor, tau: float) -> tuple[Tensor, Tensor]:
    """The relaxed count sum_i i softmax((log pi + G(u)) / tau)_i ``[...]`` and the hard
    count argmax_i (log pi_i + G_i) ``[...]`` at uniforms ``u`` ``[..., n]``."""
    scores = (log_pi - (-u.log()).log()) / tau
    w = (scores - scores.logsumexp(-1, keepdim=True)).exp()
    support = torch.arange(log_pi.shape[-1], dtype=w.dtype, device=w.device)
    return (w * support).sum(-1), scores.detach().argmax(-1).to(w.dtype)


class GenGS(Estimator):
    """Generalized Gumbel-Softmax: pathwise gradient of f at the relaxed count
    z = sum_i i softmax((log pi + G) / tau)_i over the truncated support {0, ..., n - 1}
    (module docstring). Biased; unbiased for its relaxed objective.

    References: Joo, Kim, Shin, Yang, Moon (2020), "Generalized Gumbel-Softmax Gradient
    Estimator for Generic Discrete Random Variables", arXiv:2003.01847.
    """

    name = "gengs"
    style = ("wine", "D")
    example_samples = 4
    example_options: ClassVar[dict] = {"tau": 1.0, "truncation": 12}
    description = "generalized Gumbel-Softmax: truncated count, relaxed one-hot, z = sum_i i w_i"
    requires = frozenset({Capability.DIFFERENTIABLE_COST})
    unbiased = False
    target = RelaxedCountGradient()
    options: ClassVar[dict[str, Option]] = {"tau": TAU, "truncation": TRUNCATION}

    @classmethod
    def incompatibility(
        cls, problem: type[Problem] | Problem, options: Mapping[str, Any] | None = None
    ) -> str | None:
        reason = super().incompatibility(problem, options)
        if reason is None and problem.latent is not LatentKind.COUNT:
            return f"{cls.name} needs count latents; {problem.name} has {problem.latent} ones"
        return reason

    def relaxed(self, rate: Tensor, n_samples: int) -> tuple[Tensor, Tensor]:
        """The relaxed counts ``[K, R, D]`` (on rate's graph) and the hard ones at rates
        ``[R, D]``."""
        log_pi = truncated_log_probs(rate, int(self.option_values["truncation"]))  # [R, D, n]
        u = clamp_probs(torch.rand((n_samples, *log_pi.shape), dtype=rate.dtype,
                                   device=rate.device))  # [K, R, D, n]
        return relaxed_counts(log_pi, u, self.option_values["tau"])

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        rate = poisson_of(problem, problem.distribution(params)).rate  # [R, D]
        z, hard = self.relaxed(rate, n_samples)  # [K, R, D]
        return Surrogate(loss=problem.cost(z, params).mean(0), samples=hard,
                         relaxed=z.detach())
