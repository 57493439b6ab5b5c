"""Control variates for discrete latents: MuProp, and the helpers REBAR and RELAX share.

All three subtract a control variate c from the learning signal of the score function and
add back its expectation's gradient, so that they stay unbiased for any c:

    g = [f(b) - c] d/dtheta log q(b) + (a term whose mean is E[c d log q(b)]) + d_theta f(b),

where the last term is the cost's direct dependence on theta (a VAE's log q). They differ in
what c is and how its correction is computed.

MuProp (Gu et al. 2016): c is the first-order Taylor expansion of f around the mean
mu = E_q[b] (the probabilities), c(b) = f(mu) + f'(mu) . (b - mu). Its correction is
analytic, E[c(b) d log q(b)] = f'(mu) . d mu / d theta (since E[d log q(b)] = 0 and
E[b d log q(b)] = d mu / d theta), so

    g = [f(b) - f(mu) - f'(mu) . (b - mu)] d log q(b) + stopgrad(f'(mu)) . d mu / d theta
        + d_theta f(b).

It needs the cost at relaxed inputs and its gradient there (``DIFFERENTIABLE_COST``). Gu et
al. ran it with learned parts as well: scalings of the Taylor terms and NVIL's input-dependent
baseline with variance normalization (Section 4 of the paper; the REBAR authors' code does the
same). With ``learn``, ``muprop`` learns the two scalings, a0 of the constant term and a1 of the
linear one, c(b) = a0 f(mu) + a1 f'(mu) . (b - mu), with the correction
a1 stopgrad(f'(mu)) . d mu / d theta: unbiased for every (a0, a1) (a0 f(mu) is a constant
baseline, and the linear term's mean is corrected exactly), trained in the warm-up by the
variance objective (estimators.base), then frozen; a0 = a1 = 1 is the plain estimator. It has no
NVIL baseline, so it measures the Taylor control variate alone.

REBAR and RELAX (Tucker et al. 2017, Grathwohl et al. 2018) take c from a continuous
relaxation of a conditional reparameterization; they live in ``estimators.rebar_relax``,
which shares ``per_factor`` and ``detached`` from here.

Per-example signals. On a problem with factors (minibatch examples, ``problems.base``), every
control variate is per factor: factor i's score d log q(b_i) is multiplied by
f_i(b) - c_i(z~_i), c_i its own term (MuProp's Taylor expansion of f_i, REBAR's eta f_i, RELAX's
network on example i's relaxed latent and context), so each example's signal is centred by
its own control variate. The pathwise corrections are the gradients of sum_i c_i.

Cost. ``muprop`` evaluates f at K hard samples and once at mu (with its gradient):
K + 1; ``rebar`` and ``relax`` at K hard samples and 2K relaxed ones: 3K.

References: Gu, Levine, Sutskever, Mnih (2016), "MuProp: Unbiased Backpropagation for
Stochastic Neural Networks", ICLR; Tucker, Mnih, Maddison, Lawson, Sohl-Dickstein (2017),
"REBAR: Low-variance, unbiased gradient estimates for discrete latent variable models",
NeurIPS; Grathwohl, Choi, Wu, Roeder, Duvenaud (2018), "Backpropagation through the Void:
Optimizing control variates for black-box gradient estimation", ICLR; Maddison, Tarlow,
Minka (2014), "A* Sampling", NeurIPS.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from estimators.base import Estimator, State, Surrogate
from estimators.discrete import mean_of
from problems.base import Capability, Params, Problem
from problems.options import Option

DISCRETE_DIFFERENTIABLE = frozenset({Capability.DISCRETE, Capability.DIFFERENTIABLE_COST})
COUPLINGS = ("common", "independent")


def per_factor(problem: Problem, units: Tensor) -> Tensor:
    """Sum per-unit values over each factor's units: ``[K, R, *event]`` -> ``[K, R, F]``."""
    return units.reshape(*units.shape[:2], problem.n_factors, -1).sum(-1)


def detached(params: Params) -> Params:
    """The parameters cut from the graph (for coefficients of the score)."""
    return {name: value.detach() for name, value in params.items()}


class MuProp(Estimator):
    """MuProp: the first-order Taylor expansion of f at the mean as control variate.

    g = [f(b) - a0 f(mu) - a1 f'(mu) . (b - mu)] d log q(b) + a1 stopgrad(f'(mu)) . d mu / d theta
    + d_theta f(b), per factor on problems with factors; a0 = a1 = 1 unless ``learn``, which
    learns the two scalings in the warm-up by the variance objective (module docstring).

    References: Gu, Levine, Sutskever, Mnih (2016), "MuProp", ICLR.
    """

    name = "muprop"
    example_samples = 4
    example_options: ClassVar[dict] = {}
    style = ("blue", "D")
    description = "score function with MuProp's Taylor control variate at the mean"
    requires = DISCRETE_DIFFERENTIABLE
    unbiased = True
    trains_on_variance = True
    cost_formula = "K + 1"
    options: ClassVar[dict[str, Option]] = {
        "learn": Option(False, "learn the scalings of the Taylor terms (variance objective)"),
        "scale": Option(1.0, "scaling of both Taylor terms (initial value when learned)"),
        "warmup": Option(100, "steps that learn the scalings before measuring", minimum=0,
                         applies=("learn", (True,))),
        "lr": Option(0.01, "Adam learning rate of the scalings", minimum=0, exclusive=True,
                     applies=("learn", (True,))),
    }

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.scalings: Tensor | None = None

    def cost_evals(self, n_samples: int, problem: Problem) -> int:
        return n_samples + 1

    def warmup_steps(self) -> int:
        return int(self.option_values["warmup"]) if self.option_values["learn"] else 0

    def setup(self, problem: Problem, point: Params) -> None:
        if not self.option_values["learn"]:
            return
        self.scalings = problem.tensor([self.option_values["scale"]] * 2).clone().requires_grad_()
        self.optimizer = torch.optim.Adam([self.scalings], lr=self.option_values["lr"])

    def parameters(self) -> list[Tensor]:
        return [self.scalings] if self.scalings is not None else []

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        b = problem.distribution(params).sample((n_samples,))  # [K, R, *event]
        return self.surrogate_from_samples(problem, params, b)

    def surrogate_from_samples(self, problem: Problem, params: Params, b: Tensor) -> Surrogate:
        """The surrogate at given hard samples ``b`` ``[K, R, *event]`` (tests replay it)."""
        dist = problem.distribution(params)
        mu = mean_of(dist)  # [R, *event]
        with torch.enable_grad():
            at = mu.detach().unsqueeze(0).requires_grad_()  # [1, R, *event]
            at_mean = problem.cost_terms(at, detached(params))  # [1, R, F]
            (slope,) = torch.autograd.grad(at_mean.sum(), at)
        a0, a1 = self.scales(mu)
        linear = per_factor(problem, slope * (b - at.detach()))  # [K, R, F]
        taylor = a0 * at_mean.detach() + a1 * linear
        cost = problem.cost_terms(b, params)  # [K, R, F]
        signal = problem.signals(self.centre(cost.detach(), taylor))
        log_q = problem.signals(problem.log_prob_terms(dist, b))
        analytic = self.correction(a1, slope[0], mu)  # [R]
        loss = ((signal * log_q).sum(-1) + cost.sum(-1)).mean(0) + analytic
        return Surrogate(loss=loss, samples=b)

    def scales(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """(a0, a1): the learned scalings after ``setup`` with ``learn``, else ``scale``."""
        if self.scalings is not None:
            return self.scalings[0], self.scalings[1]
        fixed = like.new_tensor(self.option_values["scale"])
        return fixed, fixed

    def correction(self, a1: Tensor, slope: Tensor, mu: Tensor) -> Tensor:
        """The surrogate of a1 stopgrad(f'(mu)) . d mu / d theta ``[R]``."""
        return a1 * (slope * mu).flatten(1).sum(-1)

    def centre(self, cost: Tensor, control: Tensor) -> Tensor:
        """The learning signal: the cost minus the control variate."""
        return cost - control
