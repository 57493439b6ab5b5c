"""Polynomial programming over independent bits: the ReinMax benchmark (Liu et al. 2023)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Independent

from problems.base import Capability, LatentKind, Params, Problem, Truth
from problems.options import Option


class Polynomial(Problem):
    """d bits b_j ~ Bernoulli(sigmoid(theta_j)), f(b) = mean_j |b_j - c|^p.

    With p_j = sigmoid(theta_j) and the two outcomes a_1 = |1 - c|^p, a_0 = |c|^p,
    E[f] = mean_j [p_j a_1 + (1 - p_j) a_0], so dL/dtheta_j = p_j (1 - p_j) (a_1 - a_0) / d.
    For c < 1/2 the minimum is c^p, every bit at 0: 0.45^1.5 = 0.30187, 0.45^2 = 0.2025 and
    0.45^3 = 0.091125 at the paper's c = 0.45.

    The values at bits are those of any cost with the same two outcomes; the power changes
    what relaxed and straight-through estimators see, f'(b) = p sign(b - c) |b - c|^(p - 1).
    Estimators exact for costs quadratic in b (ReinMax at tau = 1, ZGR) are unbiased at p = 2
    only; p = 1.5 and 3 separate them from the exact ones. The default d = 8 keeps every
    binary estimator applicable (``unordered_set`` enumerates one example's 2^d
    configurations); the paper's 128 bits are ``--set d=128``.

    References: Liu, Dong, Liu, Yu, Gao (2023), "Bridging Discrete and Backpropagation:
    Straight-Through and Beyond (ReinMax)", NeurIPS, polynomial programming; Shekhovtsov
    (2023), "Cold Analysis of Rao-Blackwellized Straight-Through Gumbel-Softmax Gradient
    Estimator", ICML (ZGR, exact for quadratic costs).
    """

    name = "polynomial"
    description = "b_j ~ Bernoulli(sigmoid(theta)), f(b) = mean_j |b_j - c|^p (ReinMax programme)"
    latent = LatentKind.BINARY
    provides = frozenset({
        Capability.DISCRETE, Capability.DIFFERENTIABLE_COST, Capability.ENUMERABLE,
        Capability.EXACT_OBJECTIVE,
    })
    truth_kind = "closed_form"
    options: ClassVar[dict[str, Option]] = {
        "theta": Option(0.0, "initial logit of every bit"),
        "c": Option(0.45, "centre of the cost"),
        "p": Option(2.0, "power of the cost (1.5, 2 and 3 in the paper)", minimum=1),
        "d": Option(8, "number of bits (the paper: 128)", minimum=1),
    }

    def outcomes(self) -> tuple[float, float]:
        """The cost of one bit at 1 and at 0: ``(|1 - c|^p, |c|^p)``."""
        c, power = self.option_values["c"], self.option_values["p"]
        return abs(1 - c) ** power, abs(c) ** power

    def init_params(self) -> Params:
        d = self.option_values["d"]
        return {
            "theta": torch.full(
                (d,), self.option_values["theta"], dtype=self.dtype, device=self.device
            )
        }

    def distribution(self, params: Params) -> Independent:
        return Independent(Bernoulli(logits=params["theta"], validate_args=False), 1)

    def cost(self, z: Tensor, params: Params) -> Tensor:
        return ((z - self.option_values["c"]).abs() ** self.option_values["p"]).mean(-1)

    def objective(self, params: Params, n_samples: int = 1) -> Tensor:
        one, zero = self.outcomes()
        p = torch.sigmoid(params["theta"])
        return (p * one + (1 - p) * zero).mean(-1)

    def train_metrics(self, train: Params) -> dict[str, float]:
        """``objective``: the exact E[f] at the trained logits (its minimum is c^p)."""
        with torch.no_grad():
            return {"objective": float(self.objective({"theta": train["theta"].unsqueeze(0)})[0])}

    def truth(self, params: Params, n_samples: int = 1) -> Truth:
        one, zero = self.outcomes()
        p = torch.sigmoid(params["theta"])
        grad = p * (1 - p) * (one - zero) / p.shape[-1]
        return Truth(grad={"theta": grad.detach()}, kind="closed_form")
