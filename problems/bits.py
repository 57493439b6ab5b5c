"""Independent bits with one logit each: the shared part of the binary toys.

``IndependentBits`` is q_theta(b) = prod_j Bernoulli(b_j; sigmoid(theta_j)) over ``d`` bits
with every logit starting at the option ``theta``. ``OutcomeBits`` adds the closed form of a
cost that is the mean over bits of a per-bit cost with two outcomes a_1 (bit at 1) and a_0
(bit at 0): with p_j = sigmoid(theta_j), E[f] = mean_j [p_j a_1 + (1 - p_j) a_0], so
dL/dtheta_j = p_j (1 - p_j) (a_1 - a_0) / d (``bernoulli_toy``, ``polynomial``).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Independent

from problems.base import Capability, LatentKind, Params, Problem


class IndependentBits(Problem):
    """d bits b_j ~ Bernoulli(sigmoid(theta_j)), every theta_j starting at option ``theta``."""

    def init_params(self) -> Params:
        d = self.option_values["d"]
        return {
            "theta": torch.full(
                (d,), self.option_values["theta"], dtype=self.dtype, device=self.device
            )
        }

    def distribution(self, params: Params) -> Independent:
        return Independent(Bernoulli(logits=params["theta"], validate_args=False), 1)


class OutcomeBits(IndependentBits):
    """Independent bits whose cost is the mean of a two-outcome per-bit cost (module
    docstring); subclasses give ``outcomes``. The cost is differentiable (defined at relaxed
    bits too), the support enumerable and the expectation in closed form."""

    latent = LatentKind.BINARY
    provides = frozenset({
        Capability.DISCRETE, Capability.DIFFERENTIABLE_COST, Capability.ENUMERABLE,
        Capability.EXACT_OBJECTIVE,
    })

    def outcomes(self) -> tuple[float, float]:
        """The cost of one bit at 1 and at 0: ``(a_1, a_0)``."""
        raise NotImplementedError

    def outcome_difference(self) -> float:
        """a_1 - a_0, the slope of a bit's expected cost in p."""
        one, zero = self.outcomes()
        return one - zero

    def objective(self, params: Params, n_samples: int = 1) -> Tensor:
        one, zero = self.outcomes()
        p = torch.sigmoid(params["theta"])
        return (p * one + (1 - p) * zero).mean(-1)

    def outcome_gradient(self, params: Params) -> Tensor:
        """dL/dtheta = p (1 - p) (a_1 - a_0) / d, detached: ``[R, d]``."""
        p = torch.sigmoid(params["theta"])
        return (p * (1 - p) * self.outcome_difference() / p.shape[-1]).detach()
