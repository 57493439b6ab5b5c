"""RODEO: REINFORCE leave-one-out with discrete Stein operator control variates (Shi et al. 2022).

K independent samples x_k ~ q = prod_i Bernoulli(mu_i), mu = sigmoid(theta), with the score of
the logits s(y) = y - mu. The Gibbs Stein operator of q picks a coordinate i uniformly and
resamples it from q(. | x_{-i}) = q_i; for bits only the flip x^(i) (bit i changed) moves, with
probability q(not x_i) = mu_i (1 - x_i) + (1 - mu_i) x_i, so for any function h

    (A h)(x) = (1 / d) sum_i q(not x_i) [h(x^(i)) - h(x)],   E_q[(A h)(x)] = 0

(q is stationary for the Gibbs kernel). The estimator (the authors' ``discrete_stein_avg``)
adds two such control variates to ``reinforce_loo``, built from a surrogate h_k = (h1_k, h2_k)
that depends on x_k and on the *other* samples only:

    g = (1 / K) sum_k [ (f(x_k) - mean_{j != k} (f(x_j) + (A h1_j)(x_j))) s(x_k)
                        + (A [h2_k s])(x_k) ].

The first is inside the leave-one-out baseline (given x_{-j} it has mean 0, so the baseline of
sample k stays uncorrelated with s(x_k)); the second is a vector control variate for the score
term, (A [h2 s])_m(x) = (1/d) sum_i q(not x_i) [h2(x^(i)) s_m(x^(i)) - h2(x) s_m(x)]. Both
have mean exactly 0 for any frozen surrogate, so the estimator is unbiased; with h = 0 it is
``reinforce_loo`` sample by sample.

The surrogate is a small network (one tanh hidden layer of ``width`` units plus a linear skip)
of two inputs, the leave-one-out Taylor increment u_k(y) = mean_{j != k} f'(x_j) . (y - x_j) and
the leave-one-out mean cost fbar_{-k} (f' the cost's gradient at the hard sample, the cost at
relaxed inputs); its two outputs are h1 and h2. At a neighbour x^(i),
u_k(x^(i)) = u_k(x) + gbar_{-k,i} (1 - 2 x_i), so the d neighbours cost no evaluations of f: K
evaluations of f and its gradient per estimate. The output layers start at 0 (the estimator
is then ``reinforce_loo``) and are trained in the warm-up by the variance objective
(estimators.base), then frozen. The paper also scales the two control variates by learned
scalars (alpha, beta); here the output layers carry that scale.

On a problem with factors every term is per factor: factor i's operator averages over its own
units and its baseline and surrogate use the other samples' factor i.

References: Shi, Zhou, Hwang, Titsias, Mackey (2022), "Gradient Estimation with Discrete Stein
Operators", NeurIPS; Titsias, Shi (2022), "Double Control Variates for Gradient Estimation in
Discrete Latent Variable Models", AISTATS.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from estimators.antithetic import BinaryOnly
from estimators.base import Estimator, State, Surrogate
from estimators.control_variate import DISCRETE_DIFFERENTIABLE, detached
from estimators.discrete import logits_of, mean_of
from problems.base import Params, Problem
from problems.options import Option


def leave_one_out(values: Tensor) -> Tensor:
    """The mean over the other samples, along dim 0: ``[K, ...]`` -> ``[K, ...]``."""
    return (values.sum(0, keepdim=True) - values) / (values.shape[0] - 1)


class Rodeo(BinaryOnly, Estimator):
    """RODEO: ``reinforce_loo`` plus two Gibbs Stein operator control variates of a learned
    surrogate network (module docstring); unbiased for every surrogate, ``reinforce_loo`` when
    the surrogate is 0.

    References: Shi, Zhou, Hwang, Titsias, Mackey (2022), "Gradient Estimation with Discrete
    Stein Operators", NeurIPS.
    """

    name = "rodeo"
    style = ("sky", "s")
    example_samples = 4
    example_options: ClassVar[dict] = {"warmup": 20}
    warmup_option = "warmup"
    description = "leave-one-out baseline plus discrete Stein operator control variates (K >= 2)"
    requires = DISCRETE_DIFFERENTIABLE
    unbiased = True
    min_samples = 2
    trains_on_variance = True
    options: ClassVar[dict[str, Option]] = {
        "width": Option(16, "hidden units of the surrogate network", minimum=1),
        "warmup": Option(100, "steps that train the surrogate before measuring", minimum=0),
        "lr": Option(0.01, "Adam learning rate of the surrogate", minimum=0, exclusive=True),
    }

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.network: dict[str, Tensor] | None = None

    def setup(self, problem: Problem, point: Params) -> None:
        width = self.option_values["width"]
        self.network = {
            "weight": problem.tensor((torch.rand(2, width) * 2 - 1) / math.sqrt(2)),
            "bias": problem.tensor(torch.zeros(width)),
            "out": problem.tensor(torch.zeros(width, 2)),  # h = 0 at the start: reinforce_loo
            "skip": problem.tensor(torch.zeros(2, 2)),
            "out_bias": problem.tensor(torch.zeros(2)),
        }
        for tensor in self.network.values():
            tensor.requires_grad_()
        self.optimizer = torch.optim.Adam(self.parameters(), lr=self.option_values["lr"])

    def parameters(self) -> list[Tensor]:
        return list(self.network.values()) if self.network is not None else []

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        b = problem.distribution(params).sample((n_samples,))  # [K, R, *event]
        return self.surrogate_from_samples(problem, params, b)

    def surrogate_from_samples(self, problem: Problem, params: Params, b: Tensor) -> Surrogate:
        """The surrogate at given bits ``b`` ``[K, R, *event]`` (tests replay it)."""
        if b.shape[0] < 2:
            raise ValueError(f"{self.name} needs n_samples >= 2, got {b.shape[0]}")
        dist = problem.distribution(params)
        cost = problem.cost_terms(b, params)  # [K, R, F]: the direct term's graph
        free = problem.signals(cost.detach())  # [K, R, G]
        baseline_cv, score_cv = self.controls(problem, params, b, free)
        signal = free - leave_one_out(free + baseline_cv)
        log_q = problem.signals(problem.log_prob_terms(dist, b))
        logits = logits_of(dist)  # [R, *event]
        stein = (score_cv.mean(0).reshape(logits.shape) * logits).flatten(1).sum(-1)  # [R]
        loss = ((signal * log_q).sum(-1) + cost.sum(-1)).mean(0) + stein
        return Surrogate(loss=loss, samples=b)

    def controls(
        self, problem: Problem, params: Params, b: Tensor, free: Tensor
    ) -> tuple[Tensor, Tensor]:
        """(A h1)(x_k) ``[K, R, G]`` and (A [h2 s])(x_k) ``[K, R, G, U]`` per signal group G
        (the factors, or one group without local signals) of U units each, cut from the
        problem's parameters' graph (the network's kept)."""
        n, groups = b.shape[0], free.shape[-1]
        mu = mean_of(problem.distribution(detached(params)))  # [R, *event]
        with torch.enable_grad():
            at = b.detach().requires_grad_()
            (slope,) = torch.autograd.grad(problem.cost_terms(at, detached(params)).sum(), at)
        x, slope = (t.reshape(n, b.shape[1], groups, -1) for t in (b.detach(), slope))
        mu = mu.reshape(1, b.shape[1], groups, -1)
        others = leave_one_out(slope)  # gbar_{-k} [K, R, G, U]
        u_x = (others * x).sum(-1) - leave_one_out((slope * x).sum(-1))  # u_k(x_k) [K, R, G]
        u_nb = u_x.unsqueeze(-1) + others * (1 - 2 * x)  # u_k(x^(i)) [K, R, G, U]
        fbar = leave_one_out(free)
        h_x = self.surrogate_net(u_x, fbar)  # [K, R, G, 2]
        h_nb = self.surrogate_net(u_nb, fbar.unsqueeze(-1).expand_as(u_nb))  # [K, R, G, U, 2]
        w = self.flip_weight(mu, x)  # q(not x_i) [K, R, G, U]
        score = x - mu
        baseline_cv = (w * (h_nb[..., 0] - h_x[..., 0:1])).mean(-1)
        change = (w * (h_nb[..., 1] - h_x[..., 1:2])).mean(-1, keepdim=True) * score
        score_cv = change + w * h_nb[..., 1] * (1 - 2 * x) / x.shape[-1]
        return baseline_cv, score_cv

    @staticmethod
    def flip_weight(mu: Tensor, x: Tensor) -> Tensor:
        """The Gibbs kernel's probability of flipping bit i: q(not x_i)."""
        return mu * (1 - x) + (1 - mu) * x

    def surrogate_net(self, u: Tensor, fbar: Tensor) -> Tensor:
        """(h1, h2) at inputs ``u``, ``fbar`` ``[...]``: ``[..., 2]`` (zeros before ``setup``)."""
        features = torch.stack([u, fbar], -1)
        if self.network is None:
            return torch.zeros_like(features)
        net = self.network
        hidden = torch.tanh(features @ net["weight"] + net["bias"])
        return hidden @ net["out"] + features @ net["skip"] + net["out_bias"]
