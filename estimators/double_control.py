"""Double control variates for binary latents (Titsias & Shi 2022).

K independent samples b_k ~ Bernoulli(mu), mu = sigmoid(theta), x_k = b_k - mu the score of
the logits. The leave-one-out estimator (``reinforce_loo``) centres f(b_k) by the mean of the
other samples' costs. Double control variates add a second, Taylor-based one: with
g_j = f'(b_j) the cost's gradient at sample j (the cost at relaxed inputs) and
gbar_{-k} = mean_{j != k} g_j,

    lin_k = x_k . gbar_{-k},   h_k = f(b_k) + alpha lin_k,   hbar_{-k} = mean_{j != k} h_j,

    g = (1 / K) sum_k [f(b_k) - hbar_{-k} + alpha lin_k] x_k - alpha gbar . d mu / d theta

with gbar = mean_k g_k (per coordinate d mu / d theta = mu (1 - mu)). Unbiased for every
alpha: given the other samples, alpha lin_k x_k is a linear function of b_k times its score,
with mean alpha gbar_{-k} mu (1 - mu), and the average of gbar_{-k} over k is gbar; hbar_{-k}
depends on b_k only through products (b_j - mu) g_k with j != k, whose mean is 0. At alpha = 0
it is ``reinforce_loo``. alpha is one scalar, learned in the warm-up by the variance objective
(estimators.base), then frozen.

On a problem with factors every term is per factor, as the leave-one-out baseline: factor i's
lin_k sums over its own units, and its signal pairs with its own score.

A negative result, derived in closed form (tests/test_double_control.py). On bernoulli_toy,
f(b) = mean_j (b_j - t)^2, at mu = 1/2, K = 2, with Delta = 1 - 2t, v = 1/4: f' = (2/d)(b - t),
the two linear terms cancel but for (Delta/d)(S_1 - S_2) (S_k = sum_j x_kj), so
g = (1 + alpha) g_LOO - alpha v (2/d)(xbar + Delta/2), uncorrelated parts, and

    Var g_i = (1 + alpha)^2 V + alpha^2 B,   V = (Delta/d)^2 v^2 d,   B = 2 v^3 / d^2,

minimized at alpha = -V / (V + B) with V B / (V + B): at d = 200, t = 0.499 that is
1.24800e-9 against the leave-one-out's 1.25000e-9 (0.16% less) -- the Taylor term's
correction costs almost as much variance as it removes.

References: Titsias, Shi (2022), "Double Control Variates for Gradient Estimation in Discrete
Latent Variable Models", AISTATS.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from estimators.antithetic import BinaryOnly
from estimators.base import Estimator, State, Surrogate
from estimators.control_variate import DISCRETE_DIFFERENTIABLE, detached, per_factor
from estimators.discrete import mean_of
from problems.base import Params, Problem
from problems.options import Option


class DoubleCV(BinaryOnly, Estimator):
    """Double control variates: the leave-one-out baseline plus a learned multiple alpha of a
    Taylor control variate built from the other samples' cost gradients (module docstring).
    Unbiased for every alpha; alpha = 0 is ``reinforce_loo``.

    References: Titsias, Shi (2022), "Double Control Variates for Gradient Estimation in
    Discrete Latent Variable Models", AISTATS.
    """

    name = "double_cv"
    example_samples = 4
    example_options: ClassVar[dict] = {"warmup": 20}
    warmup_option = "warmup"
    style = ("blue", "s")
    description = "leave-one-out baseline plus a learned Taylor control variate (K >= 2)"
    requires = DISCRETE_DIFFERENTIABLE
    unbiased = True
    min_samples = 2
    trains_on_variance = True
    options: ClassVar[dict[str, Option]] = {
        "alpha": Option(0.0, "scale of the Taylor control variate (initial value when learned)"),
        "learn": Option(True, "learn alpha in the warm-up by the variance objective"),
        "warmup": Option(100, "steps that learn alpha before measuring", minimum=0,
                         applies=("learn", (True,))),
        "lr": Option(0.01, "Adam learning rate of alpha", minimum=0, exclusive=True,
                     applies=("learn", (True,))),
    }

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.alpha: Tensor | None = None

    def warmup_steps(self) -> int:
        return int(self.option_values["warmup"]) if self.option_values["learn"] else 0

    def setup(self, problem: Problem, point: Params) -> None:
        if not self.option_values["learn"]:
            return
        self.alpha = problem.tensor(self.option_values["alpha"]).clone().requires_grad_()
        self.optimizer = torch.optim.Adam([self.alpha], lr=self.option_values["lr"])

    def parameters(self) -> list[Tensor]:
        return [self.alpha] if self.alpha is not None else []

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        dist = problem.distribution(params)
        b = dist.sample((n_samples,))  # [K, R, *event], the draw of reinforce_loo
        return self.surrogate_from_samples(problem, params, b)

    def surrogate_from_samples(self, problem: Problem, params: Params, b: Tensor) -> Surrogate:
        """The surrogate at given bits ``b`` ``[K, R, *event]`` (tests replay it)."""
        n_samples = b.shape[0]
        if n_samples < 2:
            raise ValueError(f"{self.name} needs n_samples >= 2, got {n_samples}")
        dist = problem.distribution(params)
        mu = mean_of(dist)  # [R, *event]
        alpha = self.alpha if self.alpha is not None else mu.new_tensor(self.option_values["alpha"])
        with torch.enable_grad():
            at = b.detach().requires_grad_()
            (slope,) = torch.autograd.grad(problem.cost_terms(at, detached(params)).sum(), at)
        others = (slope.sum(0, keepdim=True) - slope) / (n_samples - 1)  # gbar_{-k}
        lin = per_factor(problem, others * (b - mu.detach()))  # [K, R, F]
        cost = problem.cost_terms(b, params)  # [K, R, F]
        free = cost.detach()
        control = self.control(free, alpha * lin)
        signal = problem.signals(control)
        log_q = problem.signals(problem.log_prob_terms(dist, b))
        correction = self.correction(alpha, slope.mean(0), mu)  # [R]
        loss = ((signal * log_q).sum(-1) + cost.sum(-1)).mean(0) + correction
        return Surrogate(loss=loss, samples=b)

    @staticmethod
    def control(cost: Tensor, scaled_lin: Tensor) -> Tensor:
        """f(b_k) - hbar_{-k} + alpha lin_k per factor ``[K, R, F]``."""
        h = cost + scaled_lin
        return cost - (h.sum(0, keepdim=True) - h) / (h.shape[0] - 1) + scaled_lin

    def correction(self, alpha: Tensor, mean_slope: Tensor, mu: Tensor) -> Tensor:
        """The surrogate of -alpha gbar . d mu / d theta ``[R]``."""
        return -alpha * (mean_slope * mu).flatten(1).sum(-1)
