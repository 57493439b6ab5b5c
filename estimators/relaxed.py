"""Relaxed and straight-through estimators for discrete latents.

Gumbel-Softmax / Concrete: a one-hot z ~ Cat(softmax(l)) equals onehot(argmax_c(l_c + g_c))
with g_c ~ Gumbel(0, 1); replacing argmax by softmax((l + g) / tau) gives a reparameterized
relaxed sample y whose pathwise gradient is a biased estimate (the bias vanishes as
tau -> 0 while the variance grows). For a bit with logit theta, the binary Concrete
y = sigmoid((theta + log u - log(1 - u)) / tau), u ~ U(0, 1), is exactly the first
coordinate of a 2-class Gumbel-Softmax with logits (theta, 0), since the difference of two
Gumbels is Logistic. Both come from ``torch.distributions`` (``RelaxedOneHotCategorical``,
``RelaxedBernoulli``).

References: Jang, Gu, Poole (2017), "Categorical Reparameterization with Gumbel-Softmax",
ICLR; Maddison, Mnih, Teh (2017), "The Concrete Distribution", ICLR; Bengio, Leonard,
Courville (2013), "Estimating or Propagating Gradients Through Stochastic Neurons",
arXiv:1308.3432.
"""

from __future__ import annotations

from typing import ClassVar

from estimators.base import Estimator, State, Surrogate
from estimators.discrete import harden, mean_of, relax
from estimators.targets import RelaxedGradient, StraightThroughMean
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
