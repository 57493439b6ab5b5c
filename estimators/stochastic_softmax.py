"""Stochastic softmax tricks (SST): ``sst`` and its straight-through variant ``st_sst``.

A discrete latent X that is the maximizer of random utilities, X = argmax_{x in S} <U, x> with
U = theta + G (Gumbels G) and S a finite set of vertices, is relaxed by regularizing the
argmax over the convex hull of S: X_tau = argmax_{x in conv S} <U, x> - tau Omega(x), with
Omega strongly convex; X_tau is a differentiable function of theta, and the pathwise gradient
of f(X_tau) is the SST estimate (Paulus et al. 2020, Section 3). It is biased for the gradient
of E[f(X)] (unbiased for that of the relaxed objective E[f(X_tau)]), its bias vanishing as
tau -> 0 while its variance grows.

* One-hot latents (S the simplex's vertices) with the negative entropy Omega(x) = sum x log x:
  X_tau = softmax(U / tau), the Gumbel-Softmax (for a bit, U_1 - U_0 is Logistic and
  X_tau = sigmoid((theta + L) / tau), the binary Concrete). ``sst`` draws its own Gumbels with
  the arithmetic of torch's relaxed distributions, so that it equals ``gumbel_softmax`` float
  for float (tests/test_sst.py).
* k-subsets (S the k-hot vectors, ``Capability.SUBSET``; X = top-k of U is Gumbel-top-k, k
  items without replacement from softmax(theta)) with the binary entropy
  Omega(x) = sum_i x_i log x_i + (1 - x_i) log(1 - x_i) on {0 <= x <= 1, sum x = k}: the
  stationarity conditions give X_tau,i = sigmoid((U_i - nu) / tau) with the one multiplier nu
  that makes sum_i X_tau,i = k (Paulus et al. 2020, Section 6.1 and Appendix). nu is found by
  bisection, outside the graph; its derivative is the implicit one,
  d nu / d U_j = w_j / sum_i w_i with w_i = X_tau,i (1 - X_tau,i), attached by a first-order
  term whose value is zero.

``st_sst`` is the straight-through variant: the hard X forward, X_tau's derivative backward
(X + X_tau - stopgrad(X_tau)); biased for both objectives.

References: Paulus, Choi, Tarlow, Krause, Maddison (2020), "Gradient Estimation with
Stochastic Softmax Tricks", NeurIPS; Jang, Gu, Poole (2017), ICLR; Maddison, Mnih, Teh (2017),
ICLR.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.distributions import Bernoulli
from torch.distributions.utils import clamp_probs

from estimators.base import Estimator, State, Surrogate
from estimators.discrete import harden, unwrap
from estimators.targets import RelaxedGradient
from problems.base import Capability, Params, Problem
from problems.options import Option
from problems.subsets import GumbelTopK, top_k_hot

TAU = Option(1.0, "temperature of the regularized argmax", minimum=0, exclusive=True)
#: bisection steps for the multiplier nu (each halves its bracket of width ~ range + 100 tau)
BISECTION_STEPS = 80


def relaxed_top_k(scores: Tensor, k: int, tau: float) -> Tensor:
    """X_tau = sigmoid((scores - nu) / tau) with sum_i X_tau,i = k (module docstring), along the
    last dimension, differentiable in ``scores`` through the implicit derivative of nu."""
    free = scores.detach()
    with torch.no_grad():
        low = free.min(-1, keepdim=True).values - 50 * tau  # sum above k at low
        high = free.max(-1, keepdim=True).values + 50 * tau  # sum below k at high
        for _ in range(BISECTION_STEPS):
            middle = (low + high) / 2
            above = torch.sigmoid((free - middle) / tau).sum(-1, keepdim=True) > k
            low, high = torch.where(above, middle, low), torch.where(above, high, middle)
        nu = (low + high) / 2
        x = torch.sigmoid((free - nu) / tau)
        weights = x * (1 - x)
    # value nu, derivative d nu / d scores_j = w_j / sum_i w_i
    nu = nu + (weights * (scores - free)).sum(-1, keepdim=True) / weights.sum(-1, keepdim=True)
    return torch.sigmoid((scores - nu) / tau)


def one_hot_relaxation(dist, tau: float, n_samples: int) -> Tensor:
    """The entropy-regularized argmax of Gumbel utilities for Bernoulli or one-hot latents,
    ``[K, R, *event]``, with the noise and arithmetic of torch's ``RelaxedBernoulli`` and
    ``RelaxedOneHotCategorical`` (the same floats under the same seed)."""
    base, _ = unwrap(dist)
    shape = (n_samples, *base.logits.shape)
    if isinstance(base, Bernoulli):
        # theta as log p - log(1 - p) of the clamped probabilities, as torch computes it
        p = clamp_probs(torch.sigmoid(base.logits).expand(shape))
        u = clamp_probs(torch.rand(shape, dtype=p.dtype, device=p.device))
        return torch.sigmoid((u.log() - (-u).log1p() + p.log() - (-p).log1p()) / tau)
    log_probs = base.logits - base.logits.logsumexp(-1, keepdim=True)
    u = clamp_probs(torch.rand(shape, dtype=log_probs.dtype, device=log_probs.device))
    scores = (log_probs - (-u.log()).log()) / tau  # (log theta + G) / tau
    return (scores - scores.logsumexp(-1, keepdim=True)).exp()


class SST(Estimator):
    """Pathwise gradient of f at the regularized argmax X_tau of Gumbel utilities: softmax for
    one-hot latents (``gumbel_softmax``), the binary-entropy relaxed top-k for k-subsets
    (module docstring). Biased; unbiased for the relaxed objective E[f(X_tau)].

    References: Paulus, Choi, Tarlow, Krause, Maddison (2020), "Gradient Estimation with
    Stochastic Softmax Tricks", NeurIPS.
    """

    name = "sst"
    example_samples = 4
    example_options: ClassVar[dict] = {"tau": 1.0}
    style = ("indigo", "s")
    description = "stochastic softmax trick: pathwise gradient at the regularized argmax (biased)"
    requires = frozenset({Capability.DIFFERENTIABLE_COST})
    unbiased = False
    #: what the estimate is unbiased for: the gradient of E[f(X_tau)] at its temperature
    target = RelaxedGradient()
    options: ClassVar[dict[str, Option]] = {"tau": TAU}

    @classmethod
    def incompatibility(
        cls, problem: type[Problem] | Problem, options: Mapping[str, Any] | None = None
    ) -> str | None:
        reason = super().incompatibility(problem, options)
        provided = (problem.provided if isinstance(problem, Problem)
                    else problem.capabilities(options or {}))
        if reason is None and not provided & {Capability.DISCRETE, Capability.SUBSET}:
            return f"{cls.name} requires discrete or k-subset latents, which {problem.name} lacks"
        return reason

    def relaxed_and_hard(self, problem: Problem, params: Params, n_samples: int):
        """(X_tau, X) per sample, ``[K, R, *event]`` each; X_tau on theta's graph."""
        dist = problem.distribution(params)
        tau = self.option_values["tau"]
        if isinstance(dist, GumbelTopK):
            scores = dist.logits + dist.gumbels((n_samples,))  # U = theta + G
            return relaxed_top_k(scores, dist.k, tau), top_k_hot(scores.detach(), dist.k)
        relaxed = one_hot_relaxation(dist, tau, n_samples)
        return relaxed, harden(dist, relaxed.detach())

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        relaxed, hard = self.relaxed_and_hard(problem, params, n_samples)
        return Surrogate(loss=problem.cost(relaxed, params).mean(0), samples=hard,
                         relaxed=relaxed.detach())


class STSST(SST):
    """Straight-through SST: forward at the hard X, backward through X_tau
    (X + X_tau - stopgrad(X_tau)); on one-hot latents ``st_gumbel_softmax``. Biased, for the
    relaxed objective too.

    References: Paulus, Choi, Tarlow, Krause, Maddison (2020), NeurIPS; Bengio, Leonard,
    Courville (2013), arXiv:1308.3432.
    """

    name = "st_sst"
    example_samples = 4
    example_options: ClassVar[dict] = {"tau": 1.0}
    style = ("blue", "^")
    description = "straight-through SST: hard argmax forward, regularized argmax backward (biased)"
    target = RelaxedGradient(straight_through=True)

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        relaxed, hard = self.relaxed_and_hard(problem, params, n_samples)
        z = hard + relaxed - relaxed.detach()
        return Surrogate(loss=problem.cost(z, params).mean(0), samples=hard,
                         relaxed=relaxed.detach())
