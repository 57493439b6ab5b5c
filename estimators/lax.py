"""LAX: the score function with a learned control variate through the reparameterized sample.

For a latent with a reparameterization z = T(theta, eps), eps ~ p(eps), and any function
c_phi of z, Grathwohl et al. (2018, eq. 5) write

    g = [f(z) - c_phi(z)] d/dtheta log q_theta(z) + d/dtheta c_phi(T(theta, eps))
        + d_theta f(z, theta)|_z,

where the score is taken at fixed z, the coefficient f - c_phi is cut from theta's graph, the
second term differentiates c_phi along the sampling path and the last is the cost's direct
dependence on theta (a variational cost's log q). It is unbiased for every c_phi: by the
score-function identity E[c_phi(z) d log q(z)] = d E[c_phi(z)] = E[d c_phi(T(theta, eps))]
(the reparameterization identity), so the two c_phi terms cancel in expectation. f itself is
never differentiated: LAX is the continuous, black-box member of the RELAX family
(``estimators.control_variate``). Two settings are identities: c_phi = 0 gives the plain
score function (``reinforce``) and c_phi = f gives the pathwise gradient (``reparam``),
estimate for estimate under the same noise.

Here c_phi(z) = eta f(z, stopgrad theta) + r_phi(z [, context]), with r_phi one tanh hidden
layer of ``width`` units on each factor's z (and the example's features where the problem has
``Capability.CONTEXT``) whose output layer starts at zero, and eta a fixed option: eta = 0 (the
default) is the paper's black-box LAX, a network of z alone; eta != 0 puts the cost itself in
the control variate and needs a differentiable cost. phi is trained during the ``warmup``
steps on the squared norm of the estimate, whose gradient w.r.t. phi is that of the variance
for an unbiased estimator (Section 3.3 of the paper, ``estimators.base``), then frozen. With
``warmup=0`` the network stays at zero, so eta = 0 is ``reinforce`` and eta = 1 is
``reparam``.

Per-example signals: on a problem with factors every factor's score is multiplied by its own
f_i - c_i (``Problem.signals``), as the other control-variate estimators do.

Cost: K evaluations of f at the hard samples, and K more inside the control variate when
eta != 0 (the same points, differentiated along the path).

References: Grathwohl, Choi, Wu, Roeder, Duvenaud (2018), "Backpropagation through the Void:
Optimizing control variates for black-box gradient estimation", ICLR, Sections 3.1 and 3.3.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from estimators.base import Estimator, State, Surrogate
from estimators.control_variate import detached
from estimators.rebar_relax import apply_network, control_network
from problems.base import Capability, Params, Problem, repeat_params
from problems.options import Option


class Lax(Estimator):
    """LAX: g = [f(z) - c_phi(z)] d log q(z) + d c_phi(T(theta, eps)) + d_theta f, with
    c_phi = eta f + r_phi trained on the variance objective in the warm-up (module docstring).
    Unbiased for any c_phi; c_phi = 0 is ``reinforce``, c_phi = f is ``reparam``.

    References: Grathwohl, Choi, Wu, Roeder, Duvenaud (2018), "Backpropagation through the
    Void", ICLR.
    """

    name = "lax"
    example_samples = 4
    example_options: ClassVar[dict] = {"warmup": 20}
    warmup_option = "warmup"
    style = ("green", "o")
    description = (
        "LAX: score function with a learned control variate differentiated through "
        "the reparameterized sample (continuous RELAX), variance-trained"
    )
    requires = frozenset({Capability.RSAMPLE})
    unbiased = True
    trains_on_variance = True
    cost_formula = "K (2K with eta != 0)"
    options: ClassVar[dict[str, Option]] = {
        "eta": Option(
            0.0,
            "fixed weight of the cost itself in the control variate (0: a network of z "
            "alone, the black-box LAX; otherwise the cost must be differentiable)",
        ),
        "width": Option(32, "hidden units of the control variate's network", minimum=1),
        "warmup": Option(200, "training steps of the control variate before measuring", minimum=0),
        "lr": Option(0.01, "Adam learning rate of the control variate", minimum=0, exclusive=True),
    }

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.network: dict[str, Tensor] | None = None
        self.with_context = False

    def cost_evals(self, n_samples: int, problem: Problem) -> int:
        return n_samples if self.option_values["eta"] == 0 else 2 * n_samples

    def setup(self, problem: Problem, point: Params) -> None:
        if (
            self.option_values["eta"] != 0
            and Capability.DIFFERENTIABLE_COST not in problem.provided
        ):
            raise ValueError(
                f"lax with eta={self.option_values['eta']} differentiates the cost, which "
                f"{problem.name} does not allow (use eta=0)"
            )
        sample = problem.distribution(repeat_params(point, 1, requires_grad=False)).sample()
        unit = sample.numel() // problem.n_factors  # sample: [1, *event]
        self.network, self.with_context = control_network(
            problem, unit, self.option_values["width"]
        )
        self.optimizer = torch.optim.Adam(self.parameters(), lr=self.option_values["lr"])

    def parameters(self) -> list[Tensor]:
        return [] if self.network is None else list(self.network.values())

    def control_variate(self, problem: Problem, z: Tensor, params: Params) -> Tensor:
        """c_phi per factor at ``z`` ``[K, R, *event]``: ``[K, R, F]``; theta enters only
        through z (the cost's own parameters are cut)."""
        if self.network is None:
            raise RuntimeError(
                "lax: call setup(problem, point) before estimating (the control "
                "variate's network is sized for the problem)"
            )
        features = z.reshape(*z.shape[:2], problem.n_factors, -1)  # [K, R, F, U]
        learned = apply_network(self.network, problem, features, self.with_context)  # [K, R, F]
        if self.option_values["eta"] == 0:
            return learned
        return self.option_values["eta"] * problem.cost_terms(z, detached(params)) + learned

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        dist = problem.distribution(params)
        z = dist.rsample((n_samples,))  # [K, R, *event], on theta's graph
        fixed = z.detach()
        cost = problem.cost_terms(fixed, params)  # [K, R, F]: the direct term's graph
        # the score's coefficient keeps the graph of phi (trained on the variance), not theta's
        coefficient = self.control_variate(problem, fixed, detached(params))
        signal = problem.signals(cost.detach() - coefficient)
        log_q = problem.signals(problem.log_prob_terms(dist, fixed))
        path = self.control_variate(problem, z, params)  # [K, R, F]
        loss = ((signal * log_q).sum(-1) + cost.sum(-1) + path.sum(-1)).mean(0)
        return Surrogate(loss=loss, samples=fixed)
