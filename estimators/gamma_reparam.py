"""Reparameterization gradients with a score correction for Gamma latents: ``generalized_reparam``
(G-REP) and ``rsvi`` (rejection-sampler reparameterization), next to ``implicit_reparam``.

Both write z = T(eps; theta) with noise eps whose density q_eps(eps; theta) = q_theta(T(eps;
theta)) |dT/deps| still depends on theta, and split the gradient exactly (Ruiz et al. 2016,
eq. 6; Naesseth et al. 2017, eq. 7):

    dL/dtheta = E_{q_eps}[d/dtheta f(T(eps; theta), theta)]              (pathwise, g_rep)
              + E_{q_eps}[f(T(eps; theta)) d/dtheta log q_eps(eps; theta)]  (score, g_cor),

both at fixed eps. The surrogate is mean_k [f(T(stopgrad eps_k; theta)) + stopgrad(f_k)
log q_eps(stopgrad eps_k; theta)]; eps_k is obtained from an exact sample z_k ~ q_theta as
eps_k = T^{-1}(z_k; theta), so that it has the law q_eps. For z_j ~ Gamma(alpha_j, beta_j)
(shape, rate) per coordinate, with x = beta z ~ Gamma(alpha, 1):

* ``generalized_reparam``: the standardization of log z,
  eps = (log x - digamma(alpha)) / sqrt(trigamma(alpha)), whose mean and variance are 0 and 1
  for every alpha (the transformation of Ruiz et al. 2016, Section 4, for the Gamma);
  T = exp(eps sqrt(trigamma(alpha)) + digamma(alpha)) / beta and
  log |dT/deps| = log x + log sqrt(trigamma(alpha)) (beta cancels from q_eps, so only alpha
  gets a score correction).
* ``rsvi``: Marsaglia and Tsang's (2000) proposal x = h(eps, a) = (a - 1/3)(1 + eps /
  sqrt(9 a - 3))^3, eps ~ N(0, 1), whose accepted eps has density
  q_eps = Gamma(h(eps, a); a) |dh/deps| (Naesseth et al. 2017, Section 4). With shape
  augmentation B (their Section 5), x = h(eps, alpha + B) prod_{i=1}^B u_i^{1 / (alpha + i - 1)}
  with uniforms u_i, which is Gamma(alpha) (Gamma(a + 1) u^{1/a} ~ Gamma(a)); the uniforms do not
  depend on alpha, so the correction is that of eps at a = alpha + B, and it shrinks as B grows
  (q_eps tends to the standard normal). Marsaglia and Tsang's sampler needs a >= 1: B = 0 needs
  alpha >= 1. eps is h^{-1}(x, a) = ((x / (a - 1/3))^{1/3} - 1) sqrt(9 a - 3) of an exact
  Gamma(a) draw, as the authors' code does, which has the accepted eps's law because the sampler
  is exact.

Variance, as Naesseth et al. (2017, Figure 2) report for the shape: G-REP's correction is
larger than RSVI's, and RSVI's shrinks with B (docs/estimators_continuous.md measures it on
``gamma_quadratic``). ``implicit_reparam`` has no correction at all: z = x / beta with
dx/dalpha = -(dF/dalpha) / p(x), the implicit derivative of the CDF F (Figurnov et al. 2018),
which torch computes for its Gamma sampler (``torch._standard_gamma_grad``); it is the
``reparam`` estimate of a Gamma latent, written out.

References: Ruiz, Titsias, Blei (2016), "The Generalized Reparameterization Gradient",
NeurIPS; Naesseth, Ruiz, Linderman, Blei (2017), "Reparameterization Gradients through
Acceptance-Rejection Sampling Algorithms", AISTATS; Marsaglia & Tsang (2000), "A simple
method for generating gamma variables", ACM TOMS 26(3); Figurnov, Mohamed, Mnih (2018),
"Implicit Reparameterization Gradients", NeurIPS.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.distributions import Distribution, Gamma, Independent

from estimators.base import Estimator, State, Surrogate
from problems.base import Capability, Params, Problem, repeat_params
from problems.options import Option

GAMMA_PATHWISE = frozenset({Capability.GAMMA, Capability.DIFFERENTIABLE_COST})


def gamma_of(problem: Problem, dist: Distribution) -> Gamma:
    """The ``Gamma`` inside ``Independent(Gamma(alpha [R, D], beta [R, D]), 1)``."""
    if not (isinstance(dist, Independent) and isinstance(dist.base_dist, Gamma)
            and dist.reinterpreted_batch_ndims == 1):
        raise ValueError(
            f"{problem.name} declares {Capability.GAMMA.value} but its distribution is "
            f"{type(dist).__name__}, not Independent(Gamma, 1)"
        )
    return dist.base_dist


def standard_gamma_log_density(x: Tensor, alpha: Tensor) -> Tensor:
    """log Gamma(x; alpha, 1) = (alpha - 1) log x - x - lgamma(alpha), elementwise."""
    return (alpha - 1) * torch.log(x) - x - torch.lgamma(alpha)


class ScoreCorrected(Estimator):
    """Shared surrogate of G-REP and RSVI (module docstring); subclasses give the noise and
    the transformation of the standard Gamma variable x = beta z."""

    requires = GAMMA_PATHWISE
    unbiased = True

    def draw_noise(self, alpha: Tensor, n_samples: int) -> tuple[Tensor, ...]:
        """The noise (eps, ...) of ``n_samples`` draws, each ``[K, R, D]`` (or with a leading
        dimension), from exact Gamma draws at shape ``alpha`` ``[R, D]``."""
        raise NotImplementedError

    def transform(self, noise: tuple[Tensor, ...], alpha: Tensor) -> tuple[Tensor, Tensor]:
        """x = T(noise; alpha) and log q_eps(eps; alpha), elementwise ``[K, R, D]``."""
        raise NotImplementedError

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        gamma = gamma_of(problem, problem.distribution(params))
        alpha, beta = gamma.concentration, gamma.rate  # [R, D]
        with torch.no_grad():
            noise = self.draw_noise(alpha.detach(), n_samples)
        return self.surrogate_from_noise(problem, params, noise, alpha, beta)

    def surrogate_from_noise(
        self, problem: Problem, params: Params, noise: tuple[Tensor, ...], alpha: Tensor,
        beta: Tensor,
    ) -> Surrogate:
        """The surrogate at given noise (tests replay an estimate from it)."""
        x, log_q_eps = self.transform(noise, alpha)
        z = x / beta  # [K, R, D]
        cost = problem.cost(z, params)  # [K, R]: the pathwise term (and any direct one)
        correction = cost.detach() * log_q_eps.sum(-1)
        return Surrogate(loss=(cost + correction).mean(0), samples=z.detach())


class GeneralizedReparam(ScoreCorrected):
    """G-REP for Gamma latents: eps the standardized log of the sample, the pathwise term
    through T(eps; alpha, beta) = exp(eps sqrt(trigamma(alpha)) + digamma(alpha)) / beta plus
    the score correction f(z) d/dalpha log q_eps(eps; alpha) (module docstring). Unbiased.

    References: Ruiz, Titsias, Blei (2016), "The Generalized Reparameterization Gradient",
    NeurIPS.
    """

    name = "generalized_reparam"
    example_samples = 4
    example_options: ClassVar[dict] = {}
    style = ("orange", "o")
    description = "G-REP: standardized log-Gamma noise, pathwise term plus score correction"

    def draw_noise(self, alpha: Tensor, n_samples: int) -> tuple[Tensor, ...]:
        x = Gamma(alpha, torch.ones_like(alpha)).sample((n_samples,))  # [K, R, D]
        spread = torch.special.polygamma(1, alpha).sqrt()
        return ((torch.log(x) - torch.special.digamma(alpha)) / spread,)

    def transform(self, noise: tuple[Tensor, ...], alpha: Tensor) -> tuple[Tensor, Tensor]:
        (eps,) = noise
        log_spread = 0.5 * torch.log(torch.special.polygamma(1, alpha))
        log_x = eps * log_spread.exp() + torch.special.digamma(alpha)
        x = log_x.exp()
        return x, standard_gamma_log_density(x, alpha) + log_x + log_spread


class RSVI(ScoreCorrected):
    """RSVI for Gamma latents: Marsaglia-Tsang's proposal h(eps, alpha + B) times the shape
    augmentation prod_i u_i^{1/(alpha + i - 1)}, with the score correction of the accepted
    eps's density at alpha + B (module docstring). Unbiased; B = 0 needs alpha >= 1.

    References: Naesseth, Ruiz, Linderman, Blei (2017), "Reparameterization Gradients through
    Acceptance-Rejection Sampling Algorithms", AISTATS; Marsaglia & Tsang (2000), ACM TOMS 26(3).
    """

    name = "rsvi"
    example_samples = 4
    example_options: ClassVar[dict] = {}
    style = ("purple", "o")
    description = "RSVI: Marsaglia-Tsang proposal with shape augmentation B, score-corrected"
    options: ClassVar[dict[str, Option]] = {
        "boost": Option(1, "shape augmentation B (B = 0 needs alpha >= 1)", minimum=0),
    }

    @classmethod
    def options_incompatibility(
        cls, problem: type[Problem] | Problem, problem_options: Mapping[str, Any] | None,
        options: Mapping[str, Any],
    ) -> str | None:
        """B = 0 proposes at the shape alpha itself, which Marsaglia-Tsang needs >= 1: the
        pair is skipped where the problem's initial alpha is below 1."""
        if options.get("boost", cls.options["boost"].default) != 0:
            return None
        instance = (problem if isinstance(problem, Problem)
                    else problem(dict(problem_options or {})))
        point = repeat_params(instance.init_params(), 1, requires_grad=False)
        low = float(gamma_of(instance, instance.distribution(point)).concentration.min())
        if low < 1:
            return (f"rsvi with boost=0 needs every Gamma shape alpha >= 1 (Marsaglia-Tsang); "
                    f"{instance.name} starts at alpha = {low:g}: use boost >= 1")
        return None

    def draw_noise(self, alpha: Tensor, n_samples: int) -> tuple[Tensor, ...]:
        boost = self.option_values["boost"]
        if boost == 0 and bool((alpha < 1).any()):
            raise ValueError(
                f"rsvi with boost=0 needs every shape alpha >= 1 (Marsaglia-Tsang), got "
                f"min alpha = {float(alpha.min()):g}; use boost >= 1"
            )
        a = alpha + boost
        y = Gamma(a, torch.ones_like(a)).sample((n_samples,))  # [K, R, D], ~ Gamma(alpha + B)
        uniforms = torch.rand(boost, *y.shape, dtype=y.dtype, device=y.device)  # [B, K, R, D]
        uniforms = uniforms.clamp_min(torch.finfo(y.dtype).tiny)
        eps = ((y / (a - 1 / 3)) ** (1 / 3) - 1) * torch.sqrt(9 * a - 3)
        return (eps, uniforms)

    def transform(self, noise: tuple[Tensor, ...], alpha: Tensor) -> tuple[Tensor, Tensor]:
        eps, uniforms = noise
        a = alpha + self.option_values["boost"]
        root = torch.sqrt(9 * a - 3)
        base = 1 + eps / root
        y = (a - 1 / 3) * base**3  # h(eps, a) ~ Gamma(a)
        log_slope = torch.log(3 * (a - 1 / 3) * base**2 / root)  # log dh/deps
        log_q_eps = standard_gamma_log_density(y, a) + log_slope
        offsets = torch.arange(uniforms.shape[0], dtype=alpha.dtype, device=alpha.device)
        exponents = 1 / (alpha + offsets.reshape(-1, 1, 1, 1))  # [B, 1, R, D]
        x = y * (uniforms ** exponents).prod(0) if uniforms.shape[0] else y
        return x, log_q_eps


class ImplicitReparam(Estimator):
    """Implicit reparameterization of a Gamma latent, written out: x ~ Gamma(alpha, 1) drawn
    without a graph, dx/dalpha = -(dF(x; alpha)/dalpha) / p(x; alpha) (torch's
    ``_standard_gamma_grad``, the derivative its ``rsample`` uses), z = x / beta, and the
    surrogate mean_k f(z_k) with z_k = (x_k + (alpha - stopgrad alpha) dx_k/dalpha) / beta, whose
    value is the sample and whose derivative is the implicit one. Unbiased, no correction
    term; the same estimates as ``reparam`` on a Gamma latent (tests/test_gamma_reparam.py).

    References: Figurnov, Mohamed, Mnih (2018), "Implicit Reparameterization Gradients",
    NeurIPS.
    """

    name = "implicit_reparam"
    example_samples = 4
    example_options: ClassVar[dict] = {}
    style = ("wine", "^")
    description = "implicit reparameterization of Gamma latents, dz/dalpha = -(dF/dalpha) / q"
    requires = GAMMA_PATHWISE
    unbiased = True

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        gamma = gamma_of(problem, problem.distribution(params))
        alpha, beta = gamma.concentration, gamma.rate  # [R, D]
        with torch.no_grad():
            x = Gamma(alpha, torch.ones_like(alpha)).sample((n_samples,))  # [K, R, D]
            slope = torch._standard_gamma_grad(alpha.expand_as(x), x)  # dx / dalpha
        z = (x + (alpha - alpha.detach()) * slope) / beta
        return Surrogate(loss=problem.cost(z, params).mean(0), samples=z.detach())
