"""Stochastic triples: derivatives of discrete samples as weighted jumps to a neighbour
(Arya, Schauer, Schaefer, Rackauckas 2022, StochasticAD).

A discrete variable X(theta) drawn by inversion, X = F_theta^{-1}(u), jumps when a boundary
F_theta(x) of its interval moves across u. For an infinitesimal step d theta > 0 the
derivative of E f(X) is carried by the jump's probability per unit step (the weight w) and
the cost difference at the alternative value Y: per variable, given X,

    g = w (f(Y) - f(X)),   E[g] = d/dtheta E[f(X)],

the triple (value, 0 continuous part, (Y, w)); with one variable per parameter direction the
jump is certain to be found, so the estimate needs no pruning. Per latent kind:

* Bernoulli with logit theta, p = sigmoid(theta), X = 1[u < p]: p moves up by p (1 - p) dtheta,
  so X = 0 jumps to 1 with weight p (1 - p) / (1 - p) = p; X = 1 never jumps:
  g = 1[X = 0] p (f(X with this bit 1) - f(X)). On one bit with Delta = f(1) - f(0):
  mean p (1 - p) Delta, variance p^3 (1 - p) Delta^2 per sample.
* Categorical with logits l, p = softmax(l), classes in index order, boundaries
  B_c = sum_{i <= c} p_i, dB_c / dl_m = p_m (1[m <= c] - B_c): X = c jumps up to c + 1 when
  its upper boundary moves down, weight max(-dB_c / dl_m, 0) / p_c, and down to c - 1 when its
  lower boundary moves up, weight max(dB_{c-1} / dl_m, 0) / p_c. Summing by parts,
  sum_c p_c E[g_m | c] = sum_c (dB_c / dl_m) (f(c) - f(c + 1)) = d/dl_m E f: unbiased.
* Poisson with rate lambda: dF(x; lambda) / dlambda = -P(X = x), so X always jumps up by one
  with weight 1: g = f(X + 1) - f(X) (E[f(X + 1) - f(X)] = d/dlambda E f(X), the Poisson
  identity). At f = (x - k)^2: g = 2 (x - k) + 1, variance 4 lambda per sample.

The estimate depends on the sample only, not on the uniform, so the samples are the
problem's own draws (``reinforce``'s under the same seed). Every variable is perturbed alone,
the others held at their sampled values: K (1 + U) evaluations of the cost for bits and counts,
K (1 + 2U) for categoricals, U the variables per factor (on a problem with factors one
evaluation per variable serves every example, as in ``indecater``). The cost's direct
dependence on theta is its autograd derivative at the samples. Binomial latents would be the
same with the binomial CDF's derivative; no problem has one.

References: Arya, Schauer, Schaefer, Rackauckas (2022), "Automatic Differentiation of
Programs with Discrete Randomness", NeurIPS.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.distributions import Poisson

from estimators.base import Estimator, State, Surrogate
from estimators.discrete import by_factor, is_binary, logits_of, unwrap
from problems.base import Capability, LatentKind, Params, Problem, repeat_params


def variables(problem: Problem) -> tuple[int, int]:
    """(U, C) of one factor: variables and values (bits 2, counts 1 neighbour, else C)."""
    dist = problem.distribution(repeat_params(problem.init_params(), 1, requires_grad=False))
    event = dist.event_shape
    if problem.latent is LatentKind.CATEGORICAL:
        return math.prod(event[:-1]) // problem.n_factors, event[-1]
    return math.prod(event) // problem.n_factors, 2


class StochasticTriples(Estimator):
    """Stochastic triples: per variable, the weighted cost difference to the neighbour its
    sample jumps to under an infinitesimal step of the parameter (module docstring); for
    Bernoulli, one-hot categorical and Poisson latents. Unbiased.

    References: Arya, Schauer, Schaefer, Rackauckas (2022), "Automatic Differentiation of
    Programs with Discrete Randomness", NeurIPS.
    """

    name = "stochastic_triples"
    example_samples = 4
    example_options: ClassVar[dict] = {}
    style = ("black", "o")
    description = "stochastic triples (StochasticAD): weighted jumps to neighbouring values"
    requires = frozenset()
    unbiased = True
    cost_formula = "K (1 + U) (bits, counts), K (1 + 2U) (categoricals)"

    @classmethod
    def incompatibility(
        cls, problem: type[Problem] | Problem, options: Mapping[str, Any] | None = None
    ) -> str | None:
        """Also: latents other than bits, one-hot categoricals (with logits) and counts."""
        reason = super().incompatibility(problem, options)
        if reason is not None:
            return reason
        provided = problem.provided if isinstance(problem, Problem) else problem.capabilities(
            options or {})
        if problem.latent is LatentKind.COUNT or Capability.DISCRETE in provided:
            return None
        return (f"{cls.name} needs Bernoulli, categorical or Poisson latents; {problem.name} "
                f"has {problem.latent.value} ones")

    def cost_evals(self, n_samples: int, problem: Problem) -> int:
        n_vars, _ = variables(problem)
        jumps = 2 if problem.latent is LatentKind.CATEGORICAL else 1
        return n_samples * (1 + jumps * n_vars)

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        z = problem.distribution(params).sample((n_samples,))  # [K, R, *event]
        return self.surrogate_from_samples(problem, params, z)

    def surrogate_from_samples(self, problem: Problem, params: Params, z: Tensor) -> Surrogate:
        """The surrogate at given samples ``z`` ``[K, R, *event]`` (tests replay it)."""
        dist = problem.distribution(params)
        cost = problem.cost_terms(z, params)  # [K, R, F]
        direct = cost.sum(-1).mean(0)
        base, event, n_factors = cost.detach(), dist.event_shape, problem.n_factors
        if isinstance(unwrap(dist)[0], Poisson):
            rate = unwrap(dist)[0].rate
            g = self.jumps(problem, params, z, base, lambda x: x + 1)  # [K, R, F, U]
            return self.finish(g.mean(0), rate, event, direct, z)
        logits = logits_of(dist)
        if is_binary(dist):
            p = torch.sigmoid(logits.detach())
            diff = self.jumps(problem, params, z, base, torch.ones_like)
            bits = by_factor(z, event, n_factors, True)
            g = (1 - bits) * by_factor(p, event, n_factors, True) * diff
            return self.finish(g.mean(0), logits, event, direct, z)
        return self.categorical(problem, params, z, base, logits, direct)

    def categorical(self, problem: Problem, params: Params, z: Tensor, base: Tensor,
                    logits: Tensor, direct: Tensor) -> Surrogate:
        """The two jumps of each categorical variable (module docstring)."""
        event, n_factors = z.shape[2:], problem.n_factors
        n_classes = event[-1]
        p = torch.softmax(by_factor(logits.detach(), event, n_factors, False), -1)  # [R,F,U,C]
        c = by_factor(z, event, n_factors, False).argmax(-1)  # [K, R, F, U]
        eye = torch.eye(n_classes, dtype=z.dtype, device=z.device)

        def shifted(step: int):
            return lambda x: eye[(x.argmax(-1) + step).clamp(0, n_classes - 1)]

        up = self.jumps(problem, params, z, base, shifted(1), categorical=True)
        down = self.jumps(problem, params, z, base, shifted(-1), categorical=True)
        bounds = p.cumsum(-1)  # B_c [R, F, U, C]
        below = (torch.arange(n_classes, device=z.device).unsqueeze(-1)
                 <= torch.arange(n_classes, device=z.device)).to(p.dtype)  # [m, c]: m <= c
        slope = p.unsqueeze(-1) * (below - bounds.unsqueeze(-2))  # dB_c/dl_m: [R,F,U,m,c]
        slope = slope.unsqueeze(0).expand(c.shape[0], *slope.shape)
        at = c[..., None, None].expand(*c.shape, n_classes, 1)
        upper = slope.gather(-1, at).squeeze(-1)  # dB_c/dl_m: [K, R, F, U, m]
        lower = slope.gather(-1, (at - 1).clamp(min=0)).squeeze(-1) * (c > 0).unsqueeze(-1)
        p_c = p.unsqueeze(0).expand(*c.shape, n_classes).gather(-1, c.unsqueeze(-1))
        g = (self.weight_up(upper) * up.unsqueeze(-1)
             + self.weight_down(lower) * down.unsqueeze(-1)) / p_c
        return self.finish(g.mean(0), logits, event, direct, z)

    @staticmethod
    def weight_up(upper: Tensor) -> Tensor:
        """The up-jump's rate (times p_c): the upper boundary moving down."""
        return (-upper).clamp(min=0)

    @staticmethod
    def weight_down(lower: Tensor) -> Tensor:
        """The down-jump's rate (times p_c): the lower boundary moving up."""
        return lower.clamp(min=0)

    @staticmethod
    def jumps(problem: Problem, params: Params, z: Tensor, base: Tensor, move,
              categorical: bool = False) -> Tensor:
        """f(z with variable u moved) - f(z) per factor and variable ``[K, R, F, U]``, every
        example's variable u moved at once (one evaluation per variable)."""
        event, n_factors = z.shape[2:], problem.n_factors
        by_var = by_factor(z, event, n_factors, not categorical)  # [K, R, F, U(, C)]
        frozen = {name: value.detach() for name, value in params.items()}
        diffs = []
        with torch.no_grad():
            for u in range(by_var.shape[3]):
                moved = by_var.clone()
                moved[:, :, :, u] = move(by_var[:, :, :, u])
                diffs.append(problem.cost_terms(moved.reshape(z.shape), frozen) - base)
        return torch.stack(diffs, -1)

    @staticmethod
    def finish(gradient: Tensor, wrt: Tensor, event: torch.Size, direct: Tensor,
               z: Tensor) -> Surrogate:
        """The surrogate whose gradient is ``gradient`` ``[R, F, U(, C)]`` w.r.t. ``wrt``
        ``[R, *event]`` plus the direct term."""
        loss = (gradient.reshape(wrt.shape).detach() * wrt).flatten(1).sum(-1) + direct
        return Surrogate(loss=loss, samples=z)
