"""Measure-valued derivatives (weak derivatives) for Gaussian q and Poisson counts.

The derivative of a density w.r.t. one of its parameters is a signed measure, and can be
written as c (p+ - p-) with two probability densities p+, p- and a constant c > 0; then
d/dtheta E_p[f] = c (E_{p+}[f] - E_{p-}[f]), estimated by evaluating f at one sample of each
(Pflug 1989; Mohamed et al. 2020, Section 6). For x ~ N(mu, sigma^2) in one coordinate, with
eps = (x - mu) / sigma:

* mean: d/dmu N = (eps / sigma) N; its positive and negative parts (eps > 0, eps < 0) are
  the Rayleigh (= Weibull(sqrt 2, 2)) density eps exp(-eps^2 / 2) reflected around mu, each
  of mass 1 / (sigma sqrt(2 pi)):
  dE f / dmu = 1 / (sigma sqrt(2 pi)) (E f(mu + sigma W) - E f(mu - sigma W')).
* scale: d/dsigma N = ((eps^2 - 1) / sigma) N = (1 / sigma) (M - N) with M the double-sided
  Maxwell density eps^2 phi(eps):
  dE f / dsigma = (1 / sigma) (E f(mu + sigma M) - E f(mu + sigma eps')), eps' ~ N(0, 1).

With ``coupled=true`` the two parts share their randomness (common random numbers, Mohamed et
al. 2020, Section 6.3): W' = W for the mean, and eps' = U M with U ~ U(0, 1) for the scale
(if M is double-sided Maxwell, U M is standard normal). Both choices are unbiased; coupling
removes the variance of the difference that comes from independent draws.

For a vector latent, coordinate j's derivative perturbs x_j only, the other coordinates held
at a common sample x_{-j} ~ q, so each sample costs 4 evaluations per coordinate (2 for the
mean, 2 for the scale) plus one at x itself for the cost's own dependence on theta
(E[d/dtheta f(x, theta)], e.g. log q in an ELBO): K (4 D + 1) in all. The mean and scale
derivatives reach theta by the chain rule through the loc and scale of q.

Closed-form variances on f(x) = (x - k)^2, a = mu - k (derived in tests/test_continuous.py):
mean, uncoupled a^2 (8/pi - 2) + 4 sigma^2 / pi, coupled a^2 (16/pi - 4); scale, uncoupled
16 a^2 + 8 sigma^2, coupled 4 a^2 + 4 sigma^2 (per sample).

Poisson counts (``LatentKind.COUNT``). d/drate Poisson(x; rate) = Poisson(x - 1; rate) -
Poisson(x; rate) (with Poisson(-1) = 0): the weak derivative is c = 1 times (the Poisson
shifted up by one) minus (the Poisson), so d/drate E f(x) = E[f(x + 1)] - E[f(x)] exactly.
Coordinate j's positive part moves x_j to x'_j + 1, the others held at the common sample x,
and the negative part is f(x) itself: with ``coupled`` x'_j = x_j (then it is
``stochastic_triples`` on counts, sample by sample), else x'_j is a fresh independent count;
K (D + 1) evaluations. On f = (x - k)^2 at d = 1 per sample: coupled
g = 2 (x - k) + 1 with variance 4 rate; uncoupled V(rate - k + 1) + V(rate - k) with
V(a) = rate + 2 rate^2 + 4 a rate + 4 a^2 rate the variance of (x - c)^2, a = rate - c: 8 and
20 at (rate, k) = (2, 3), against the score function's 32 (tests/test_mvd_counts.py).

References: Mohamed, Rosca, Figurnov, Mnih (2020), "Monte Carlo Gradient Estimation in
Machine Learning", JMLR 21(132), Section 6 and Table 1; Pflug (1989), "Sampling
derivatives of probabilities", Computing 42.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal, Poisson

from estimators.base import Estimator, State, Surrogate
from problems.base import Capability, LatentKind, Params, Problem, repeat_params
from problems.options import Option


def gaussian_of(problem: Problem, dist: Distribution) -> Normal:
    """The ``Normal`` inside ``Independent(Normal(loc [R, D], scale [R, D]), 1)``."""
    if not (
        isinstance(dist, Independent)
        and isinstance(dist.base_dist, Normal)
        and dist.reinterpreted_batch_ndims == 1
        and len(dist.event_shape) == 1
    ):
        raise ValueError(
            f"{problem.name} declares {Capability.GAUSSIAN.value} but its distribution is "
            f"{dist!r}; expected Independent(Normal(loc [R, D], scale [R, D]), 1)"
        )
    return dist.base_dist


def weak_derivative_noise(shape: torch.Size, coupled: bool, like: Tensor) -> Tensor:
    """Standardized evaluation points of the four parts, ``[4, *shape]``: mean +, mean -,
    scale + (double-sided Maxwell), scale - (standard normal), coupled or independent."""
    kw = {"dtype": like.dtype, "device": like.device}
    rayleigh = torch.sqrt(-2 * torch.log1p(-torch.rand(2, *shape, **kw)))  # Weibull(sqrt 2, 2)
    if coupled:
        rayleigh = rayleigh[:1].expand(2, *shape)
    sign = torch.randint(0, 2, shape, device=like.device).to(like) * 2 - 1
    maxwell = sign * torch.randn(3, *shape, **kw).pow(2).sum(0).sqrt()  # sqrt(chi^2_3)
    normal = maxwell * torch.rand(shape, **kw) if coupled else torch.randn(shape, **kw)
    return torch.stack([rayleigh[0], -rayleigh[1], maxwell, normal])


class MeasureValued(Estimator):
    """Measure-valued derivative of Gaussian q and of Poisson counts (module docstring).
    Unbiased.

    References: Mohamed et al. (2020), JMLR, Section 6; Pflug (1989), Computing 42.
    """

    name = "mvd"
    example_samples = 4
    example_options: ClassVar[dict] = {}
    paper_order = 13
    style = ("sky", "^")
    description = "measure-valued derivative: Gaussian q (Weibull, Maxwell), Poisson (x + 1)"
    requires = frozenset()
    unbiased = True
    cost_formula = "K (4 D + 1) (Gaussian), K (D + 1) (Poisson)"
    options: ClassVar[dict[str, Option]] = {
        "coupled": Option(True, "common random numbers between the positive and negative parts"),
    }

    @classmethod
    def incompatibility(
        cls, problem: type[Problem] | Problem, options: Mapping[str, Any] | None = None
    ) -> str | None:
        """Also: latents other than Gaussian q and counts."""
        reason = super().incompatibility(problem, options)
        if reason is not None:
            return reason
        provided = problem.provided if isinstance(problem, Problem) else problem.capabilities(
            options or {})
        if Capability.GAUSSIAN in provided or problem.latent is LatentKind.COUNT:
            return None
        return (f"{cls.name} needs Gaussian q or Poisson counts; {problem.name} has "
                f"{problem.latent.value} latents without {Capability.GAUSSIAN.value}")

    def cost_evals(self, n_samples: int, problem: Problem) -> int:
        dim = problem.distribution(repeat_params(problem.init_params(), 1, False)).event_shape
        per_coordinate = 1 if problem.latent is LatentKind.COUNT else 4
        return n_samples * (per_coordinate * dim[-1] + 1)

    def combine(self, values: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """The mean and scale derivatives ``[R, D]`` from the averages of f over the four
        parts (mean +, mean -, Maxwell, Gaussian) ``[4, R, D]``: c (E f+ - E f-)."""
        grad_mu = (values[0] - values[1]) / (sigma * math.sqrt(2 * math.pi))
        grad_sigma = (values[2] - values[3]) / sigma
        return grad_mu, grad_sigma

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        if problem.latent is LatentKind.COUNT:
            return self.poisson_surrogate(problem, params, n_samples)
        normal = gaussian_of(problem, problem.distribution(params))
        loc, scale = normal.loc, normal.scale  # [R, D], differentiable in theta
        mu, sigma = loc.detach(), scale.detach()
        dim = mu.shape[-1]
        x = mu + sigma * torch.randn(n_samples, *mu.shape, dtype=mu.dtype, device=mu.device)
        noise = weak_derivative_noise(x.shape, self.option_values["coupled"], mu)  # [4, K, R, D]
        own = torch.eye(dim, dtype=torch.bool, device=mu.device).reshape(1, dim, 1, 1, dim)
        # [4, D (perturbed coordinate), K, R, D]: x with coordinate j moved to its part's point
        points = torch.where(own, (mu + sigma * noise).unsqueeze(1), x[None, None])
        fixed = {name: value.detach() for name, value in params.items()}
        values = (
            problem.cost(points.reshape(-1, *mu.shape), fixed)
            .reshape(4, dim, n_samples, -1)
            .mean(2)
            .transpose(1, 2)
        )  # [4, R, D]
        grad_mu, grad_sigma = self.combine(values, sigma)
        direct = problem.cost(x, params).mean(0)  # the cost's own dependence on theta
        loss = (grad_mu * loc).sum(-1) + (grad_sigma * scale).sum(-1) + direct
        return Surrogate(loss=loss, samples=x)

    def poisson_surrogate(self, problem: Problem, params: Params, n_samples: int) -> Surrogate:
        """d/drate_j E f = E[f(x with x_j -> x'_j + 1)] - E[f(x)] (module docstring)."""
        dist = problem.distribution(params)
        rate = poisson_of(problem, dist).rate  # [R, D], differentiable in theta
        x = dist.sample((n_samples,))  # [K, R, D]
        fresh = x if self.option_values["coupled"] else Poisson(rate.detach()).sample(
            (n_samples,))
        dim = x.shape[-1]
        own = torch.eye(dim, dtype=torch.bool, device=x.device).reshape(dim, 1, 1, dim)
        points = torch.where(own, self.jump(fresh)[None], x[None])  # [D, K, R, D]
        fixed = {name: value.detach() for name, value in params.items()}
        plus = problem.cost(points.reshape(-1, *rate.shape), fixed).reshape(dim, *x.shape[:2])
        grad = (plus - problem.cost(x, fixed)).mean(1).transpose(0, 1)  # [R, D]
        direct = problem.cost(x, params).mean(0)
        return Surrogate(loss=(grad * rate).sum(-1) + direct, samples=x)

    @staticmethod
    def jump(x: Tensor) -> Tensor:
        """The positive part of the Poisson weak derivative: the count shifted up by one."""
        return x + 1


def poisson_of(problem: Problem, dist: Distribution) -> Poisson:
    """The ``Poisson`` inside ``Independent(Poisson(rate [R, D]), 1)``."""
    if not (isinstance(dist, Independent) and isinstance(dist.base_dist, Poisson)
            and dist.reinterpreted_batch_ndims == 1 and len(dist.event_shape) == 1):
        raise ValueError(f"{problem.name} has count latents but its distribution is {dist!r}; "
                         "expected Independent(Poisson(rate [R, D]), 1)")
    return dist.base_dist
