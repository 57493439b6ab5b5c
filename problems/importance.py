"""Multi-sample (importance-weighted) objectives: a toy with exact truth at any K, and the
Gauss-Hermite quadrature that gives exact truth for small continuous bounds.

The importance-weighted bound of Burda et al. (2016) with K samples is
``L_K = E_{z_1..z_K iid q}[log (1/K) sum_k w(z_k)]``, w = p(x, z) / q(z | x); problems here
minimize its negative (``problems.base``: the cost is -log w and ``joint_cost_terms`` the
K-sample negative bound). L_1 is the ELBO, and L_K increases to log p(x) as K grows.

References: Burda, Grosse, Salakhutdinov (2016), "Importance Weighted Autoencoders", ICLR;
Mnih & Rezende (2016), "Variational Inference for Monte Carlo Objectives (VIMCO)", ICML;
Tucker, Lawson, Gu, Maddison (2019), "Doubly Reparameterized Gradient Estimators for Monte
Carlo Objectives", ICLR.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from problems.base import Capability, LatentKind, Params, StressSetting, Truth
from problems.bits import IndependentBits
from problems.options import Option
from problems.truth import TruthSource


def gauss_hermite(points: int, dims: int, chunk: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Tensor-product Gauss-Hermite rule for E_{eps ~ N(0, I_dims)}[g(eps)], in chunks.

    Yields ``(eps [N, dims], weight [N])`` in float64 with the weights summing to 1 over all
    chunks, so that ``sum weight * g(eps)`` is the rule (exact for polynomials of degree
    < 2 * points in each coordinate).
    """
    nodes, weights = np.polynomial.hermite.hermgauss(points)
    nodes = torch.as_tensor(nodes * math.sqrt(2), dtype=torch.float64)
    weights = torch.as_tensor(weights / math.sqrt(math.pi), dtype=torch.float64)
    grid = itertools.product(range(points), repeat=dims)
    while block := list(itertools.islice(grid, chunk)):
        index = torch.tensor(block)  # [N, dims]
        yield nodes[index], weights[index].prod(-1)


def quadrature_bound(
    neg_log_w: Callable[[Tensor], Tensor],
    mean: Tensor,
    std: Tensor,
    n_samples: int,
    points: int,
    chunk: int = 2**14,
) -> Tensor:
    """The K-sample negative bound ``E[-log (1/K) sum_k w(z_k)]`` for z_k = mean + std * eps_k,
    eps_k ~ N(0, I), by Gauss-Hermite quadrature over the K * d noise coordinates.

    Args:
        neg_log_w: ``z [K, N, R, d] -> [K, N, R]``, differentiable in the parameters.
        mean, std: ``[R, d]``.

    Returns:
        ``[R]``, differentiable w.r.t. ``mean``, ``std`` and whatever ``neg_log_w`` uses.
    """
    d = mean.shape[-1]
    total = mean.new_zeros(mean.shape[0])
    for eps, weight in gauss_hermite(points, n_samples * d, chunk):
        eps = eps.to(mean).reshape(-1, n_samples, 1, d).transpose(0, 1)  # [K, N, 1, d]
        log_w = -neg_log_w(mean + std * eps)  # [K, N, R]
        bound = torch.logsumexp(log_w, 0) - math.log(n_samples)  # [N, R]
        total = total - (weight.to(mean).unsqueeze(-1) * bound).sum(0)
    return total


class BernoulliIWAE(IndependentBits):
    """The importance-weighted bound of a one-bit model, exact at every K.

    Each of ``d`` independent factors has one latent bit b ~ q = Bernoulli(sigmoid(theta))
    and a fixed joint log p(x, b) (``log_p0``, ``log_p1``); the log-weight is
    log w(b) = log p(x, b) - log q(b), and the objective is the negative K-sample bound
    summed over factors. With p = sigmoid(theta), only the number m of ones among the K
    samples matters, so per factor

        L_K = -sum_{m=0}^{K} C(K, m) p^m (1 - p)^(K - m) log( (m w(1) + (K - m) w(0)) / K ),

    with w(1) = p(x, 1) / p and w(0) = p(x, 0) / (1 - p): a finite sum whose autograd
    gradient is the exact gradient at any K (and whose K = 1 term is the negative ELBO). At
    theta = logit of the posterior p(b = 1 | x) the weights are constant (w = p(x)), the
    bound equals -log p(x) for every K and its gradient vanishes.

    References: Burda et al. (2016), ICLR; Mnih & Rezende (2016), VIMCO, ICML (the
    multi-sample objectives it is a one-bit instance of).
    """

    name = "bernoulli_iwae"
    example_options: ClassVar[dict] = {"theta": 0.5, "d": 2}
    benchmark_options: ClassVar[dict] = {"d": 4}
    verify_settings = (
        StressSetting({"d": 2, "theta": 2.0}, quick=True),
        StressSetting({"d": 1, "theta": 0.0}),
    )
    description = "one-bit importance-weighted bound, exact at any K (multi-sample objective)"
    latent = LatentKind.BINARY
    provides = frozenset({
        Capability.DISCRETE, Capability.DIFFERENTIABLE_COST, Capability.ENUMERABLE,
        Capability.EXACT_OBJECTIVE, Capability.MULTI_SAMPLE, Capability.LOG_WEIGHTS,
    })
    truth_source = TruthSource.closed_form()
    options: ClassVar[dict[str, Option]] = {
        "theta": Option(0.0, "logit of q(b = 1) in every factor"),
        "log_p0": Option(-1.0, "log p(x, b = 0)"),
        "log_p1": Option(-2.5, "log p(x, b = 1)"),
        "d": Option(1, "independent factors (one bit each)", minimum=1),
    }

    @property
    def n_factors(self) -> int:
        return self.option_values["d"]


    def cost_terms(self, z: Tensor, params: Params, *, detach_q: bool = False) -> Tensor:
        """-log w(b) = log q(b) - log p(x, b) per factor, ``[K, R, d]``; linear in b, so it
        is defined on relaxed b in [0, 1] too."""
        theta = params["theta"].detach() if detach_q else params["theta"]
        log_q = z * F.logsigmoid(theta) + (1 - z) * F.logsigmoid(-theta)
        log_joint = z * self.option_values["log_p1"] + (1 - z) * self.option_values["log_p0"]
        return log_q - log_joint

    def cost(self, z: Tensor, params: Params) -> Tensor:
        return self.cost_terms(z, params).sum(-1)

    def objective_terms(self, params: Params, n_samples: int = 1) -> Tensor:
        """The exact L_K per factor ``[R, d]`` (class docstring)."""
        theta, k = params["theta"], n_samples
        m = torch.arange(k + 1, dtype=theta.dtype, device=theta.device)  # [K + 1]
        log_choose = torch.lgamma(theta.new_tensor(k + 1.0)) - torch.lgamma(m + 1) - torch.lgamma(
            k - m + 1)
        log_p1, log_p0 = F.logsigmoid(theta).unsqueeze(-1), F.logsigmoid(-theta).unsqueeze(-1)
        log_mass = log_choose.to(theta) + m * log_p1 + (k - m) * log_p0  # [R, d, K + 1]
        log_w1 = self.option_values["log_p1"] - log_p1
        log_w0 = self.option_values["log_p0"] - log_p0
        ones = torch.where(m > 0, torch.log(m.clamp_min(1)) + log_w1, -math.inf)
        zeros = torch.where(m < k, torch.log((k - m).clamp_min(1)) + log_w0, -math.inf)
        log_mean = torch.logsumexp(torch.stack([ones, zeros]), 0) - math.log(k)
        return -(log_mass.exp() * log_mean).sum(-1)

    def objective(self, params: Params, n_samples: int = 1) -> Tensor:
        return self.objective_terms(params, n_samples).sum(-1)

    def truth(self, params: Params, n_samples: int = 1) -> Truth:
        theta = params["theta"].detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.objective({"theta": theta}, n_samples).sum(), theta)
        return Truth(grad={"theta": grad.detach()}, kind="closed_form")


#: fewest Gauss-Hermite points per coordinate for a quadrature truth (see GaussianElbo)
MIN_QUADRATURE = 16


def quadrature_points(values: dict, n_samples: int) -> int | None:
    """Gauss-Hermite points per coordinate of ``gaussian_elbo``'s iwae bound with option
    ``values`` at K = ``n_samples``, or None if too few fit in ``max_nodes``."""
    dims = n_samples * values["d"]
    points = min(values["quadrature"], int(values["max_nodes"] ** (1 / dims) + 1e-9))
    return points if points >= MIN_QUADRATURE else None
