"""Relaxed and straight-through estimators for discrete latents.

Gumbel-Softmax / Concrete: a one-hot z ~ Cat(softmax(l)) equals onehot(argmax_c(l_c + g_c))
with g_c ~ Gumbel(0, 1); replacing argmax by softmax((l + g) / tau) gives a reparameterized
relaxed sample y whose pathwise gradient is a biased estimate (the bias vanishes as
tau -> 0 while the variance grows). For a bit with logit theta, the binary Concrete
y = sigmoid((theta + log u - log(1 - u)) / tau), u ~ U(0, 1), is exactly the first
coordinate of a 2-class Gumbel-Softmax with logits (theta, 0), since the difference of two
Gumbels is Logistic. Both come from ``torch.distributions`` (``RelaxedOneHotCategorical``,
``RelaxedBernoulli``).

Decoupled straight-through (Shah, Yan, Mozer, Liu 2024) gives the forward and the backward pass
their own temperatures, in the paper's parameterization y_tau = softmax(l / tau + G) (the
temperature divides the logits, not the noise): the hard sample is onehot(argmax(l / tau_f +
G)), a draw from Cat(softmax(l / tau_f)), and the backward pass is that of
y_b = softmax(l / tau_b + G) with the same Gumbels, z = hard + y_b - stopgrad(y_b). Source:
we could not read the paper's method section; the definition is its abstract (separate
forward and backward temperatures, the forward one controlling the sampling's stochasticity)
and a public review of its ICLR 2025 submission, which says that the paper samples with
softmax(l / tau + g), in place of the original softmax((l + g) / tau), and that a footnote of
the paper says so; that both temperatures see the same Gumbels is our reading of "a minimal
modification" (the review does not say). At tau_f = tau_b = 1 both
parameterizations coincide and ``decoupled_st`` is ``st_gumbel_softmax`` at tau = 1, float for
float; at tau_f = tau_b = tau != 1 it is ST-Gumbel-Softmax at temperature 1 on the logits
l / tau (its samples are not draws from q), not ``st_gumbel_softmax`` at tau.

References: Jang, Gu, Poole (2017), "Categorical Reparameterization with Gumbel-Softmax",
ICLR; Maddison, Mnih, Teh (2017), "The Concrete Distribution", ICLR; Bengio, Leonard,
Courville (2013), "Estimating or Propagating Gradients Through Stochastic Neurons",
arXiv:1308.3432; Shah, Yan, Mozer, Liu (2024), "Improving Discrete Optimisation Via
Decoupled Straight-Through Gumbel-Softmax", arXiv:2410.13331.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import Bernoulli
from torch.distributions.utils import clamp_probs

from estimators.base import Estimator, State, Surrogate
from estimators.discrete import harden, mean_of, relax, unwrap
from estimators.targets import DecoupledStraightThrough, RelaxedGradient, StraightThroughMean
from problems.base import Capability, Params, Problem
from problems.options import Option

TAU = Option(1.0, "temperature of the relaxation", minimum=0, exclusive=True)


DISCRETE_DIFFERENTIABLE = frozenset({Capability.DISCRETE, Capability.DIFFERENTIABLE_COST})


class GumbelSoftmax(Estimator):
    """Pathwise gradient of f at the relaxed sample y: mean_k d/dtheta f(y_k(theta), theta).

    Biased for any tau > 0 unless f is linear; the cost is evaluated at relaxed inputs.

    References: Jang et al. (2017), ICLR; Maddison et al. (2017), ICLR.
    """

    name = "gumbel_softmax"
    example_samples = 4
    example_options: ClassVar[dict] = {"tau": 1.0}
    paper_order = 3
    style = ("purple", "v")
    description = "relaxed Gumbel-Softmax / Concrete pathwise gradient (biased)"
    requires = DISCRETE_DIFFERENTIABLE
    unbiased = False
    target = RelaxedGradient()
    options: ClassVar[dict[str, Option]] = {"tau": TAU}

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        dist = problem.distribution(params)
        y = relax(dist, self.option_values["tau"]).rsample((n_samples,))  # [K, R, *event]
        return Surrogate(
            loss=problem.cost(y, params).mean(0),
            samples=harden(dist, y.detach()),
            relaxed=y.detach(),
        )


class STGumbelSoftmax(Estimator):
    """Straight-through Gumbel-Softmax: forward at the hard sample h = harden(y), backward
    through the relaxed y (z = h + y - stopgrad(y)). The forward value is an exact sample of
    q; the gradient is biased.

    References: Jang et al. (2017), ICLR, Section 2.2.
    """

    name = "st_gumbel_softmax"
    example_samples = 4
    example_options: ClassVar[dict] = {"tau": 1.0}
    paper_order = 4
    style = ("sky", "<")
    description = "straight-through Gumbel-Softmax: hard forward, relaxed backward (biased)"
    requires = DISCRETE_DIFFERENTIABLE
    unbiased = False
    target = RelaxedGradient(straight_through=True)
    options: ClassVar[dict[str, Option]] = {"tau": TAU}

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        dist = problem.distribution(params)
        y = relax(dist, self.option_values["tau"]).rsample((n_samples,))  # [K, R, *event]
        hard = harden(dist, y.detach())
        z = hard + y - y.detach()
        return Surrogate(
            loss=problem.cost(z, params).mean(0), samples=hard, relaxed=y.detach()
        )


class StraightThrough(Estimator):
    """Straight-through: forward at an exact sample z, backward as if dz/dtheta = dE[z]/dtheta
    (z_st = z + p - stopgrad(p), p the probabilities). Biased unless f is linear.

    References: Bengio, Leonard, Courville (2013), arXiv:1308.3432.
    """

    name = "straight_through"
    example_samples = 4
    example_options: ClassVar[dict] = {}
    paper_order = 5
    style = ("black", ">")
    description = "straight-through: hard sample forward, gradient of the probabilities backward"
    requires = DISCRETE_DIFFERENTIABLE
    unbiased = False
    target = StraightThroughMean()

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        dist = problem.distribution(params)
        z = dist.sample((n_samples,))  # [K, R, *event]
        probs = mean_of(dist)
        return Surrogate(loss=problem.cost(z + probs - probs.detach(), params).mean(0), samples=z)


def tempered_relaxations(dist, taus: tuple[float, ...], n_samples: int) -> list[Tensor]:
    """softmax(l / tau + G) for each tau, with one draw of the noise shared by all: ``[K, R,
    *event]`` each; for bits sigmoid(logit(p_tau) + L), L = log u - log(1 - u). The arithmetic
    is torch's ``RelaxedBernoulli`` / ``RelaxedOneHotCategorical`` at temperature 1 on the
    tempered logits, so tau = 1 gives their floats."""
    base, _ = unwrap(dist)
    shape = (n_samples, *base.logits.shape)
    u = clamp_probs(torch.rand(shape, dtype=base.logits.dtype, device=base.logits.device))
    if isinstance(base, Bernoulli):
        out = []
        for tau in taus:
            p = clamp_probs(torch.sigmoid(base.logits / tau).expand(shape))
            out.append(torch.sigmoid(u.log() - (-u).log1p() + p.log() - (-p).log1p()))
        return out
    gumbels = -(-u.log()).log()
    return [(scores - scores.logsumexp(-1, keepdim=True)).exp() for scores in
            (torch.log_softmax(base.logits / tau, -1) + gumbels for tau in taus)]


class DecoupledSTGumbelSoftmax(Estimator):
    """Decoupled straight-through Gumbel-Softmax: forward at onehot(argmax(l / tau_f + G)),
    backward through y_b = softmax(l / tau_b + G) with the same Gumbels (module docstring for
    the parameterization and its source). At tau_f = tau_b = 1, ``st_gumbel_softmax`` at
    tau = 1. Biased (for tau_f != 1 its samples are not even drawn from q).

    References: Shah, Yan, Mozer, Liu (2024), "Improving Discrete Optimisation Via Decoupled
    Straight-Through Gumbel-Softmax", arXiv:2410.13331.
    """

    name = "decoupled_st"
    style = ("vermillion", "^")
    example_samples = 4
    example_options: ClassVar[dict] = {"tau_forward": 0.5, "tau_backward": 2.0}
    description = "decoupled straight-through Gumbel-Softmax: own forward and backward temperatures"
    requires = DISCRETE_DIFFERENTIABLE
    unbiased = False
    target = DecoupledStraightThrough()
    options: ClassVar[dict[str, Option]] = {
        "tau_forward": Option(1.0, "temperature of the hard sample's logits", minimum=0,
                              exclusive=True),
        "tau_backward": Option(1.0, "temperature of the relaxation differentiated backward",
                               minimum=0, exclusive=True),
    }

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        dist = problem.distribution(params)
        values = self.option_values
        forward, backward = tempered_relaxations(
            dist, (values["tau_forward"], values["tau_backward"]), n_samples)
        hard = harden(dist, forward.detach())  # [K, R, *event]
        z = hard + backward - backward.detach()
        return Surrogate(loss=problem.cost(z, params).mean(0), samples=hard,
                         relaxed=backward.detach())
