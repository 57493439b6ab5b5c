"""E_q[f] for a one-dimensional continuous q by the trapezoidal rule after a sinh substitution.

The support of q is mapped onto the real line u (``z = m + s u`` on the reals, ``z = lb +
exp(b + u)`` on ``(lb, inf)``, ``z = lb + (ub - lb) sigmoid(u)`` on an interval) and u onto t
by ``u = sinh(t)``, so that the integrand in t decays at least exponentially for the tails of
the usual families (Gaussian, Student, Cauchy, Gamma, Beta, Uniform, ...). For an integrand
analytic in a strip around the real t axis and decaying that fast, the trapezoidal rule with
step h converges like exp(-c / h) (Trefethen & Weideman 2014); ``line_objective`` is the sum
over the nodes, differentiable in theta both through q and through the substitution (whose
bounds may depend on theta, as a Uniform's do), so its autograd gradient is the gradient of
the objective. Nodes whose weight is below ``exp(-CUTOFF)`` of the largest are dropped before
the cost is evaluated, so the cost never sees points where q underflows.

References: Trefethen & Weideman (2014), "The Exponentially Convergent Trapezoidal Rule",
SIAM Review 56(3); Takahasi & Mori (1974), "Double exponential formulas for numerical
integration", Publ. RIMS 9.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution, constraints

#: the range of t: sinh(T) = 1100 scale units on each side
T_MAX = 7.6
#: relative weight (log) below which a node is dropped
CUTOFF = 60.0


def _location(dist: Distribution) -> tuple[Tensor, Tensor]:
    """A centre and a scale of q for the substitution (detached; 0 and 1 where q has no
    finite moments, as a Cauchy)."""
    try:
        mean, std = dist.mean.detach(), dist.stddev.detach()
    except NotImplementedError:
        mean, std = torch.zeros(dist.batch_shape), torch.ones(dist.batch_shape)
    good = torch.isfinite(mean) & torch.isfinite(std) & (std > 0)
    return torch.where(good, mean, 0.0), torch.where(good, std, 1.0)


def substitution(dist: Distribution, u: Tensor) -> tuple[Tensor, Tensor, Tensor] | None:
    """The points ``z(u)`` ``[N, R]``, log |dz/du| and whether z lies strictly inside the
    support in floating point, for the support of ``dist`` (batch ``(R,)``, scalar event);
    None for a support without a substitution here."""
    support = dist.support
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    mean, std = _location(dist)
    if support is constraints.real:
        z = mean + std * u
        return z, torch.log(std).expand_as(u), torch.isfinite(z)
    if isinstance(support, constraints.greater_than | constraints.greater_than_eq):
        lower = torch.as_tensor(support.lower_bound, dtype=u.dtype).reshape(-1)
        centre = torch.log(torch.clamp(mean - lower.detach(), min=1e-12))
        offset = torch.exp(centre + u)
        z = lower + offset
        return z, centre + u, (offset > 0) & torch.isfinite(z) & (z > lower)
    if isinstance(support, constraints.interval | constraints.half_open_interval):
        lower = torch.as_tensor(support.lower_bound, dtype=u.dtype).reshape(-1)
        upper = torch.as_tensor(support.upper_bound, dtype=u.dtype).reshape(-1)
        z = lower + (upper - lower) * torch.sigmoid(u)
        log_jac = torch.log(upper - lower) + F.logsigmoid(u) + F.logsigmoid(-u)
        return z, log_jac, (z > lower) & (z < upper)
    return None


def line_objective(
    dist_of: Callable[[], Distribution], cost: Callable[[Tensor], Tensor], step: float,
    dtype: torch.dtype,
) -> tuple[Tensor, Tensor] | None:
    """``E_q[f]`` ``[R]`` by the trapezoidal rule in t with step ``step``, and the mass of q
    that the rule sees ``[R]`` (1 up to the rule's error).

    Args:
        dist_of: builds q (batch ``(R,)``, one scalar coordinate per repeat: event shape
            ``()`` or ``(1,)``), differentiable in theta.
        cost: maps z ``[N, R, *event]`` to ``[N, R]``.

    Returns:
        The objective and the mass, or None if the support has no substitution here.
    """
    dist = dist_of()
    event = dist.event_shape
    t = torch.arange(-T_MAX, T_MAX + step / 2, step, dtype=dtype)
    u = torch.sinh(t).unsqueeze(-1)  # [N, 1]
    log_dudt = torch.log(torch.cosh(t)).unsqueeze(-1)
    with torch.no_grad():
        mapped = substitution(dist, u)
        if mapped is None:
            return None
        inside = mapped[2].all(-1)  # [N]: nodes inside the support for every repeat
        z = mapped[0][inside]
        z = z.reshape(*z.shape, *event)
        log_w = dist.log_prob(z) + mapped[1][inside] + log_dudt[inside]  # [N, R]
        log_w = torch.nan_to_num(log_w, nan=-math.inf)
        keep = inside.clone()
        keep[inside] = (log_w > log_w.max(0).values - CUTOFF).any(-1)  # nodes that matter
    z, log_jac, _ = substitution(dist, u[keep])
    z = z.reshape(*z.shape, *event)
    log_w = dist.log_prob(z) + log_jac + log_dudt[keep]  # [N, R]
    weight = torch.exp(log_w) * step
    return (weight * cost(z)).sum(0), weight.detach().sum(0)


def line_gradient(
    dist_of: Callable[[], Distribution], cost: Callable[[Tensor], Tensor], leaves: list[Tensor],
    step: float = 1 / 32,
) -> tuple[list[Tensor], float] | None:
    """The gradient of ``line_objective`` w.r.t. ``leaves`` at step ``step``, and its
    estimated absolute error: the larger of the largest change from the rule at step
    ``2 * step`` (the rule converges exponentially, so the finer one's error is far smaller)
    and the mass of q it misses, |1 - sum of weights| (tails beyond the range, as a Cauchy's
    beyond 1100 scales). None where the support has no substitution."""
    grads, defect = [], 0.0
    for h in (2 * step, step):
        found = line_objective(dist_of, cost, h, leaves[0].dtype)
        if found is None:
            return None
        objective, mass = found
        defect = float((1 - mass).abs().max())
        raw = torch.autograd.grad(objective.sum(), leaves, allow_unused=True)
        grads.append([torch.zeros_like(x) if g is None else g
                      for x, g in zip(leaves, raw, strict=True)])
    error = max(defect, *(float((a - b).abs().max()) for a, b in zip(*grads, strict=True)))
    return grads[1], error if math.isfinite(error) else math.inf
