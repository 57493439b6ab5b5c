"""Invertible Gaussian reparameterization (IGR): ``igr``, a biased relaxation of discrete latents.

Instead of Gumbel noise through a softmax, IGR pushes Gaussian noise through an invertible map
onto the interior of the simplex (Potapczynski, Loaiza-Ganem, Cunningham 2020; "IGR-I" of
the authors' code, cunningham-lab/igr): for one categorical variable with C classes,

    y = mu + sigma * eps,  eps ~ N(0, I_{C-1}),
    z = softmax++(y / tau),  softmax++(x)_k = exp(x_k) / (sum_{j<C} exp(x_j) + delta)  (k < C),
    z_C = 1 - sum_{k<C} z_k = delta / (sum_{j<C} exp(x_j) + delta).

softmax++ is a bijection from R^{C-1} onto the open simplex (its inverse is
x_k = log z_k - log z_C + log delta), so the law of z has a density, and as tau -> 0 the
sample tends to the vertex argmax(y_1, ..., y_{C-1}, 0): IGR is a relaxation of the
categorical variable with P(class k) = P(y_k > max of the others and 0), not of
Cat(softmax(l)). Because KL divergence is invariant under a bijection applied to both
arguments, the KL from IGR(mu, sigma, tau) to an IGR prior (mu_0, sigma_0) at the same tau
and delta is the Gaussian one (the closed-form KL the paper's abstract announces),

    KL = sum_k log(sigma_0k / sigma_k) + (sigma_k^2 + (mu_k - mu_0k)^2) / (2 sigma_0k^2) - 1/2,

in closed form where the Gumbel-Softmax's KL needs Monte Carlo (``gaussian_kl``; the test
checks it against a Monte Carlo estimate on the simplex by the change of variables).

On this suite's problems the latent is given by logits l, so ``igr`` sets mu_k = l_k - l_C
(a bit with logit theta is the 2-class (theta, 0): mu = theta and
z = sigmoid((theta + sigma eps) / tau - log delta)), with sigma and delta fixed options; the
paper's encoders output mu and log sigma directly. The estimate is the pathwise gradient
mean_k d/dtheta f(z_k(theta), theta): biased for the gradient of E_q[f] at every tau (also
in the limit, whose category probabilities are Gaussian orthant probabilities, not
softmax(l)), and unbiased for that of its own relaxed objective E_eps[f(z(eps, theta))]
(``targets.IGRGradient``). The authors' code uses delta = 0.1; the default here is 1, for
which a bit's relaxation is the Gaussian analogue of the binary Concrete.

References: Potapczynski, Loaiza-Ganem, Cunningham (2020), "Invertible Gaussian
Reparameterization: Revisiting the Gumbel-Softmax", NeurIPS.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from estimators.base import Estimator, State, Surrogate
from estimators.discrete import harden
from estimators.relaxed import DISCRETE_DIFFERENTIABLE, TAU
from estimators.straight_through import categorical_logits
from estimators.targets import IGRGradient
from problems.base import Params, Problem
from problems.options import Option

SIGMA = Option(1.0, "std sigma of the Gaussian noise", minimum=0, exclusive=True)
DELTA = Option(1.0, "the constant delta of softmax++ (the last class's weight)", minimum=0,
               exclusive=True)


def softmax_pp(x: Tensor, delta: float) -> Tensor:
    """softmax++ along the last dimension: ``[..., C-1]`` -> the simplex point ``[..., C]``,
    exp(x_k) / (sum_j exp(x_j) + delta) and the last class delta / (sum_j exp(x_j) + delta)."""
    last = torch.full_like(x[..., :1], math.log(delta))
    return torch.softmax(torch.cat([x, last], -1), -1)


def gaussian_kl(mu: Tensor, sigma: Tensor, prior_mu: Tensor | float = 0.0,
                prior_sigma: Tensor | float = 1.0) -> Tensor:
    """KL(IGR(mu, sigma) || IGR(prior_mu, prior_sigma)) at a shared tau and delta: the KL of
    the diagonal Gaussians before the invertible map, summed over the last dimension."""
    prior_mu = torch.as_tensor(prior_mu).to(mu)
    prior_sigma = torch.as_tensor(prior_sigma).to(mu)
    ratio = (sigma / prior_sigma) ** 2
    terms = (ratio + ((mu - prior_mu) / prior_sigma) ** 2 - 1 - torch.log(ratio)) / 2
    return terms.sum(-1)


class IGR(Estimator):
    """Pathwise gradient of f at the IGR sample z = softmax++((mu + sigma eps) / tau),
    mu_k = l_k - l_C (module docstring). Biased; unbiased for its relaxed objective.

    References: Potapczynski, Loaiza-Ganem, Cunningham (2020), "Invertible Gaussian
    Reparameterization: Revisiting the Gumbel-Softmax", NeurIPS.
    """

    name = "igr"
    style = ("black", "s")
    example_samples = 4
    example_options: ClassVar[dict] = {"tau": 1.0}
    description = "invertible Gaussian reparameterization: Gaussian noise, softmax++ (biased)"
    requires = DISCRETE_DIFFERENTIABLE
    unbiased = False
    target = IGRGradient()
    options: ClassVar[dict[str, Option]] = {"tau": TAU, "sigma": SIGMA, "delta": DELTA}

    def relaxed(self, logits: Tensor, n_samples: int) -> Tensor:
        """IGR samples ``[K, R, *groups, C]`` for categorical logits ``[R, *groups, C]``."""
        mu = logits[..., :-1] - logits[..., -1:]  # [R, *groups, C-1]
        eps = torch.randn((n_samples, *mu.shape), dtype=mu.dtype, device=mu.device)
        values = self.option_values
        return softmax_pp((mu + values["sigma"] * eps) / values["tau"], values["delta"])

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        logits, binary = categorical_logits(problem, params)  # [R, *groups, C]
        z = self.relaxed(logits, n_samples)  # [K, R, *groups, C]
        z = z[..., 0] if binary else z  # a bit is class 0 of (theta, 0)
        dist = problem.distribution(params)
        return Surrogate(loss=problem.cost(z, params).mean(0),
                         samples=harden(dist, z.detach()), relaxed=z.detach())
