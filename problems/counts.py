"""Problems with count latents: x ~ Poisson(rate) per coordinate.

A count latent is discrete but unbounded and ordered, without logits (``LatentKind.COUNT``, no
``Capability.DISCRETE``): the score function applies, and so do estimators that perturb a
count to its neighbour (stochastic triples, measure-valued derivatives). Its cost is defined
and differentiable at real-valued counts (``Capability.DIFFERENTIABLE_COST``), so a relaxed
count (the generalized Gumbel-Softmax, ``estimators.gengs``) can be evaluated too.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import Independent, Poisson

from problems.base import Capability, LatentKind, Params, Problem, StressSetting, Truth
from problems.options import Option
from problems.truth import TruthSource


class PoissonQuadratic(Problem):
    """x_j ~ Poisson(rate_j), f(x) = sum_j (x_j - k)^2, gradient w.r.t. the rates.

    E[x] = Var x = rate, so E[f] = sum_j rate_j + (rate_j - k)^2 and
    dL/drate_j = 1 + 2 (rate_j - k). The score of a rate is x / rate - 1; at d = 1 the
    score-function estimate f(x) (x / rate - 1) has variance 32 at (rate, k) = (2, 3) and 105
    at (1, 0) per sample (derived in tests/test_counts.py).

    References: Mohamed, Rosca, Figurnov, Mnih (2020), "Monte Carlo Gradient Estimation in
    Machine Learning", JMLR, Section 4 (the score function for any log-density); Arya,
    Schauer, Schaefer, Rackauckas (2022), "Automatic Differentiation of Programs with
    Discrete Randomness", NeurIPS (Poisson examples).
    """

    name = "poisson_quadratic"
    example_options: ClassVar[dict] = {"rate": 2.0, "k": 3.0, "d": 2}
    benchmark_options: ClassVar[dict] = {"d": 4}
    verify_settings = (
        StressSetting({"d": 2, "k": 3.0, "rate": 2.0}, quick=True),
        StressSetting({"d": 1, "k": 4.0, "rate": 0.2}),
    )
    description = "x ~ Poisson(rate), f(x) = sum_j (x_j - k)^2; a count latent, closed form"
    latent = LatentKind.COUNT
    provides = frozenset({Capability.EXACT_OBJECTIVE, Capability.DIFFERENTIABLE_COST})
    truth_source = TruthSource.closed_form()
    options: ClassVar[dict[str, Option]] = {
        "rate": Option(2.0, "rate of every coordinate", minimum=0, exclusive=True),
        "k": Option(3.0, "target of the quadratic cost"),
        "d": Option(1, "dimension", minimum=1),
    }

    def init_params(self) -> Params:
        d = self.option_values["d"]
        return {
            "rate": torch.full(
                (d,), self.option_values["rate"], dtype=self.dtype, device=self.device
            )
        }

    def distribution(self, params: Params) -> Independent:
        return Independent(Poisson(params["rate"], validate_args=False), 1)

    def cost(self, z: Tensor, params: Params) -> Tensor:
        return ((z - self.option_values["k"]) ** 2).sum(-1)

    def objective(self, params: Params, n_samples: int = 1) -> Tensor:
        rate = params["rate"]
        return (rate + (rate - self.option_values["k"]) ** 2).sum(-1)

    def truth(self, params: Params, n_samples: int = 1) -> Truth:
        grad = 1 + 2 * (params["rate"] - self.option_values["k"])
        return Truth(grad={"rate": grad.detach()}, kind="closed_form")
