"""The declared targets of ``estimators.targets``, computed from their definitions.

* ``ExactGradient``: the problem's exact truth (on expectation objectives only, with
  ``expectation_only``).
* ``RelaxedGradient``: d/dtheta E_u[f(z(u, theta), theta)] over the uniforms u of the Concrete
  relaxation, one per bit or per class, with z = y_tau(u) (the relaxed sample) or
  z = hard(y) + y - stopgrad(y) (straight-through). The expectation is a tensor-product
  composite Gauss-Legendre rule on [0, 1]^n (``NODES`` nodes per panel, at most
  ``MAX_POINTS`` points), the gradient the autograd gradient of the weighted sum. For a bit
  the relaxed sample's transition (and the hard sample's jump) sits at u = sigmoid(-l), where
  every rule puts a panel edge. Its error is estimated as the difference from the rule with
  half the panels, and the bias test treats the target as known to within that error.
* ``IGRGradient``: d/dtheta E_eps[f(z(eps, theta), theta)] with eps = Phi^-1(u), one Gaussian
  per class but the last, z = softmax++((mu + sigma eps) / tau), mu_k = l_k - l_C
  (Potapczynski et al. 2020), by the same quadrature over u.
* ``DecoupledStraightThrough``: E_u[d/dtheta f(h + y_b - stopgrad(y_b), theta)] with
  h = onehot(argmax(l / tau_f + G(u))) and y_b = softmax(l / tau_b + G(u)) (bits:
  h = 1[theta / tau_f + L(u) > 0], y_b = sigmoid(theta / tau_b + L(u))), by the same
  quadrature, the bit's rule split at its jump u = sigmoid(-theta / tau_f).
* ``RelaxedCountGradient``: d/dtheta E_u[f(z(u, theta), theta)] with the relaxed count
  z = sum_i i softmax((log pi + G(u)) / tau)_i, one uniform per category and coordinate, over
  the truncated support {0, ..., n - 1} (pi_i = q(i) for i < n - 1, pi_{n-1} = 1 - sum of the
  others, from the problem's own pmf; Joo et al. 2020). Up to four noise dimensions it is the
  tensor-product rule above; beyond (D n of them, 24 at the default n = 12 and d = 2) it is
  randomized quasi-Monte Carlo: ``QMC_REPLICATES`` independently scrambled Sobol rules of
  ``QMC_POINTS`` points each (Owen 1997), the value their mean and the error ``QMC_Z`` times
  its standard error over the replicates.
* ``StraightThroughMean``: sum_z q(z) d/dtheta f(z + p - stopgrad(p), theta) with q(z)
  detached, over the enumerated support (at most ``MAX_SUPPORT`` configurations).

None of these calls the estimator.

References: Maddison, Mnih, Teh (2017), "The Concrete Distribution", ICLR; Davis, Rabinowitz
(1984), "Methods of Numerical Integration" (composite Gauss-Legendre rules); Owen (1997),
"Scrambled Net Variance for Integrals of Smooth Functions", Annals of Statistics; Joo, Kim,
Shin, Yang, Moon (2020), arXiv:2003.01847.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import qmc
from torch import Tensor

from estimators.base import flatten, leaf_grads
from estimators.discrete import is_binary, logits_of, mean_of
from estimators.targets import (
    DecoupledStraightThrough,
    ExactGradient,
    IGRGradient,
    NoTarget,
    RelaxedCountGradient,
    RelaxedGradient,
    StraightThroughMean,
    Target,
)
from problems.base import Capability, LatentKind, Params, Problem, repeat_params
from problems.enumeration import enumerate_support, support_size

#: Gauss-Legendre nodes per panel, quadrature points at most, panels of a 1-D rule at most
NODES = 8
MAX_POINTS = 2**18
MAX_PANELS = 512
#: points per batch of cost evaluations
CHUNK = 2**14
#: standard normal quantiles at which the rules of Gaussian noise split their panels
TAILS = (-8.0, -6.0, -4.0, -2.0, 2.0, 4.0, 6.0, 8.0)
#: largest latent space enumerated
MAX_SUPPORT = 2**16
#: randomized QMC: scrambled Sobol replicates, points per replicate, and the multiple of the
#: replicates' standard error taken as the error (a miss of 5 standard errors has
#: probability about 1e-5 under Student's t with 31 degrees of freedom)
QMC_REPLICATES = 32
QMC_POINTS = 2**15
QMC_Z = 5.0


@dataclass(frozen=True)
class TargetValue:
    """A computed target: the value per coordinate (flattened like the estimates) and a bound
    on its numerical error (zero for exact targets)."""

    value: Tensor
    error: Tensor
    kind: str


def compute(
    target: Target, problem: Problem, point: Params, truth: Tensor, options: Mapping[str, Any]
) -> TargetValue | str:
    """The target at ``point``, or why it cannot be computed here (a phrase).

    Args:
        truth: the exact gradient there, flattened.
        options: the estimator's resolved options (the temperature of relaxed targets).
    """
    if isinstance(target, NoTarget):
        return target.reason
    if isinstance(target, ExactGradient):
        if target.expectation_only and problem.multi_sample:
            return "the target is declared for expectation objectives only"
        return TargetValue(truth, torch.zeros_like(truth), "exact gradient")
    if isinstance(target, RelaxedCountGradient):
        if problem.latent is not LatentKind.COUNT or problem.multi_sample:
            return "the target is defined for count latents of expectation objectives only"
        return _relaxed_count(problem, point, float(options["tau"]),
                              int(options["truncation"]))
    if Capability.DISCRETE not in problem.provided:
        return "the target is defined for discrete latents only"
    if problem.multi_sample:
        return "the target is defined for expectation objectives only"
    if isinstance(target, StraightThroughMean):
        return _straight_through_mean(problem, point)
    if isinstance(target, RelaxedGradient):
        return _relaxed(problem, point, float(options[target.tau_option]),
                        target.straight_through)
    if isinstance(target, DecoupledStraightThrough):
        return _decoupled(problem, point, float(options["tau_forward"]),
                          float(options["tau_backward"]))
    if isinstance(target, IGRGradient):
        return _igr(problem, point, {k: float(options[k]) for k in ("tau", "sigma", "delta")})
    return f"bench verify cannot compute a {type(target).__name__}"


def _straight_through_mean(problem: Problem, point: Params) -> TargetValue | str:
    leaf = repeat_params(point, 1)
    dist = problem.distribution(leaf)
    if support_size(problem.latent, dist.event_shape) > MAX_SUPPORT:
        return f"the latent space has more than {MAX_SUPPORT} configurations"
    probs = mean_of(dist)  # [1, *event]
    total = 0.0
    for z in enumerate_support(problem.latent, dist.event_shape, CHUNK,
                               dtype=problem.dtype, device=problem.device):
        z = z.unsqueeze(1)  # [N, 1, *event]
        weight = dist.log_prob(z).exp().detach()  # [N, 1]
        total = total + (weight * problem.cost(z + probs - probs.detach(), leaf)).sum()
    value = flatten(leaf_grads(total, leaf), repeated=False).double().cpu()
    return TargetValue(value, torch.zeros_like(value), "enumeration")


def _rule(panels: int, breaks: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss-Legendre nodes and weights on [0, 1] with ``panels`` equal panels,
    further split at ``breaks``."""
    edges = np.unique(np.concatenate([np.linspace(0, 1, panels + 1),
                                      [b for b in breaks if 0 < b < 1]]))
    x, w = np.polynomial.legendre.leggauss(NODES)
    left, width = edges[:-1, None], np.diff(edges)[:, None]
    return (left + width * (x + 1) / 2).ravel(), (width * w / 2).ravel()


def _relaxed(problem: Problem, point: Params, tau: float, straight: bool) -> TargetValue | str:
    dist = problem.distribution(repeat_params(point, 1))
    logits, binary = logits_of(dist).detach()[0], is_binary(dist)  # [*event]
    breaks = ([[float(b)] for b in torch.sigmoid(-logits).reshape(-1)] if binary
              else [[] for _ in range(logits.numel())])
    return _quadrature(problem, point, logits.shape, breaks,
                       lambda logit, u: _relaxed_sample(logit, u, tau, straight, binary))


def _decoupled(problem: Problem, point: Params, forward: float,
               backward: float) -> TargetValue | str:
    dist = problem.distribution(repeat_params(point, 1))
    logits, binary = logits_of(dist).detach()[0], is_binary(dist)  # [*event]
    breaks = ([[float(b)] for b in torch.sigmoid(-logits / forward).reshape(-1)] if binary
              else [[] for _ in range(logits.numel())])
    return _quadrature(problem, point, logits.shape, breaks,
                       lambda logit, u: _decoupled_sample(logit, u, forward, backward, binary))


def _igr(problem: Problem, point: Params, values: dict[str, float]) -> TargetValue | str:
    dist = problem.distribution(repeat_params(point, 1))
    logits, binary = logits_of(dist).detach()[0], is_binary(dist)  # [*event]
    shape = logits.shape if binary else (*logits.shape[:-1], logits.shape[-1] - 1)
    # panels graded towards the ends, where Phi^-1 diverges, and for a bit split where its
    # sample crosses 1/2 (theta + sigma eps = tau log delta)
    tails = [float(norm_cdf) for norm_cdf in torch.special.ndtr(torch.tensor(TAILS))]
    breaks = ([[float(b), *tails] for b in torch.special.ndtr(
        (values["tau"] * math.log(values["delta"]) - logits.reshape(-1)) / values["sigma"])]
        if binary else [tails for _ in range(math.prod(shape))])
    return _quadrature(problem, point, torch.Size(shape), breaks,
                       lambda logit, u: _igr_sample(logit, u, values, binary))


#: the differentiable parameters of the relaxed sample at leaf params ``[1, ...]``: the
#: logits of discrete latents, the truncated log-probabilities of count latents
Weights = Callable[[Params], Tensor]
#: a point set over the uniforms: chunks of nodes ``[P, n]`` and weights ``[P]``
PointSet = Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]


def _quadrature(
    problem: Problem, point: Params, noise_shape: torch.Size, breaks: list[list[float]],
    sample: Callable[[Tensor, Tensor], Tensor], weights: Weights | None = None,
) -> TargetValue | str:
    """The relaxed target by tensor-product rules over uniforms of ``noise_shape`` (one 1-D
    rule per noise dimension, split at its ``breaks``), with its error from halved panels;
    ``weights``: the sample's parameters (default: the distribution's logits)."""
    n_dims = math.prod(noise_shape)
    per_dim = min(MAX_PANELS, int(MAX_POINTS ** (1 / n_dims) + 1e-9) // NODES)
    if per_dim < 2:
        return (f"the relaxation has {n_dims} noise dimensions, more than quadrature on "
                f"{MAX_POINTS} points resolves")
    values = [_integrate(problem, point, noise_shape, sample,
                         _tensor_rule([_rule(panels, b) for b in breaks]), weights)
              for panels in (per_dim, per_dim // 2)]
    return TargetValue(values[0], (values[0] - values[1]).abs(), "quadrature")


def _tensor_rule(rules: list[tuple[np.ndarray, np.ndarray]]) -> PointSet:
    """The tensor product of 1-D rules (one per noise dimension), in chunks."""
    shape = tuple(len(nodes) for nodes, _ in rules)

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, math.prod(shape), CHUNK):
            index = np.unravel_index(np.arange(start, min(start + CHUNK, math.prod(shape))),
                                     shape)
            yield (np.stack([rule[0][i] for rule, i in zip(rules, index, strict=True)], 1),
                   np.prod([rule[1][i] for rule, i in zip(rules, index, strict=True)], 0))
    return chunks


def _sobol(n_dims: int, seed: int) -> PointSet:
    """One scrambled Sobol rule of ``QMC_POINTS`` equally weighted points, in chunks (away
    from 0 and 1 by float64's resolution, where the Gumbels diverge)."""
    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        nodes = qmc.Sobol(n_dims, scramble=True, seed=seed).random(QMC_POINTS)
        nodes = np.clip(nodes, np.finfo(float).eps, 1 - np.finfo(float).eps)
        for start in range(0, QMC_POINTS, CHUNK):
            part = nodes[start:start + CHUNK]
            yield part, np.full(len(part), 1 / QMC_POINTS)
    return chunks


def _integrate(
    problem: Problem, point: Params, noise_shape: torch.Size,
    sample: Callable[[Tensor, Tensor], Tensor], points: PointSet, weights: Weights | None,
) -> Tensor:
    """The gradient of sum_p w_p f(sample(weights, u_p)) over a point set, flattened."""
    leaf = repeat_params(point, 1)
    grads = [torch.zeros_like(v) for v in leaf.values()]
    for u, w in points():
        params = (logits_of(problem.distribution(leaf)) if weights is None
                  else weights(leaf))  # [1, *event], differentiable
        noise = torch.as_tensor(u).to(params).reshape(len(w), 1, *noise_shape)
        z = sample(params, noise)
        loss = (torch.as_tensor(w).to(params) * problem.cost(z, leaf)[:, 0]).sum()
        parts = torch.autograd.grad(loss, list(leaf.values()), allow_unused=True)
        grads = [g if part is None else g + part for g, part in zip(grads, parts, strict=True)]
    return flatten(dict(zip(leaf, grads, strict=True)), repeated=False).double().cpu()


def _relaxed_count(problem: Problem, point: Params, tau: float, n: int) -> TargetValue | str:
    """The generalized Gumbel-Softmax target of a count latent (module docstring)."""
    event = problem.distribution(repeat_params(point, 1)).event_shape
    noise_shape = torch.Size((*event, n))

    def log_pi(leaf: Params) -> Tensor:
        dist = problem.distribution(leaf)
        counts = torch.arange(n - 1, dtype=problem.dtype, device=problem.device)
        head = dist.base_dist.log_prob(counts.reshape(-1, *([1] * (1 + len(event)))))
        head = head.movedim(0, -1)  # [1, *event, n - 1]
        tail = (1 - head.exp().sum(-1, keepdim=True)).clamp_min(torch.finfo(head.dtype).tiny)
        return torch.cat([head, tail.log()], -1)

    def sample(log_probs: Tensor, u: Tensor) -> Tensor:
        w = torch.softmax((log_probs - torch.log(-torch.log(u))) / tau, -1)
        return (w * torch.arange(n, dtype=w.dtype, device=w.device)).sum(-1)

    if math.prod(noise_shape) <= 4:
        return _quadrature(problem, point, noise_shape, [[] for _ in range(n * event.numel())],
                           sample, log_pi)
    values = torch.stack([_integrate(problem, point, noise_shape, sample,
                                     _sobol(math.prod(noise_shape), seed), log_pi)
                          for seed in range(QMC_REPLICATES)])
    error = QMC_Z * values.std(0) / math.sqrt(QMC_REPLICATES)
    return TargetValue(values.mean(0), error, "randomized quasi-Monte Carlo")


def _decoupled_sample(logits: Tensor, u: Tensor, forward: float, backward: float,
                      binary: bool) -> Tensor:
    """The decoupled straight-through input h + y_b - stopgrad(y_b) at uniforms ``u``."""
    if binary:
        noise = torch.log(u) - torch.log1p(-u)
        hard = (logits / forward + noise > 0).to(u.dtype)
        y = torch.sigmoid(logits / backward + noise)
    else:
        gumbels = -torch.log(-torch.log(u))
        index = (logits.detach() / forward + gumbels).argmax(-1)
        hard = torch.nn.functional.one_hot(index, logits.shape[-1]).to(u.dtype)
        y = torch.softmax(logits / backward + gumbels, -1)
    return hard + y - y.detach()


def _igr_sample(logits: Tensor, u: Tensor, values: dict[str, float], binary: bool) -> Tensor:
    """The IGR sample at uniforms ``u`` (one per class but the last; one per bit)."""
    eps = torch.special.ndtri(u)
    if binary:
        return torch.sigmoid((logits + values["sigma"] * eps) / values["tau"]
                             - math.log(values["delta"]))
    x = (logits[..., :-1] - logits[..., -1:] + values["sigma"] * eps) / values["tau"]
    x = torch.cat([x, torch.full_like(x[..., :1], math.log(values["delta"]))], -1)
    return torch.exp(x - torch.logsumexp(x, -1, keepdim=True))


def _relaxed_sample(logits: Tensor, u: Tensor, tau: float, straight: bool,
                    binary: bool) -> Tensor:
    """The Concrete sample at uniforms ``u`` (one per logit), or its straight-through form."""
    harden: Callable[[Tensor], Tensor]
    if binary:
        x = (logits + torch.log(u) - torch.log1p(-u)) / tau
        y = torch.sigmoid(x)
        harden = lambda _: (x > 0).to(x.dtype)  # noqa: E731
    else:
        y = torch.softmax((logits - torch.log(-torch.log(u))) / tau, -1)
        harden = lambda v: torch.nn.functional.one_hot(  # noqa: E731
            v.argmax(-1), v.shape[-1]).to(v.dtype)
    if not straight:
        return y
    return harden(y) + y - y.detach()
