"""REINFORCE with the variance-minimising constant baseline of each coordinate.

For the score s_j = d/dtheta_j log q(z) of coordinate j and a constant b_j, the per-sample
estimate (f - b_j) s_j has mean E[f s_j] (E[s_j] = 0) and second moment
E[f^2 s_j^2] - 2 b_j E[f s_j^2] + b_j^2 E[s_j^2], minimised by

    b_j* = E[f s_j^2] / E[s_j^2]

(Mohamed et al. 2020, Section 7.4.1). The estimate is g_j = mean_k (f(z_k) - b_j) s_j(z_k) +
the direct term, with f the whole cost. The moments come from

* ``exact``: the problem's support enumerated (bits and classes, or a policy's responses of
  all prompts jointly) where it has at most ``MAX_NODES`` configurations, weights q(z); or,
  for a Gaussian q over at most ``MAX_GAUSSIAN_DIM`` coordinates, a tensor-product
  Gauss-Hermite rule of ``HERMITE_POINTS`` points per coordinate at z = mu + sigma x, exact
  for costs polynomial in z up to degree 2 ``HERMITE_POINTS`` - 5 (s_sigma^2 has degree 4);
* ``pilot``: otherwise (or with ``moments=pilot``), ``pilot`` further samples per estimate,
  independent of its K samples, so the baseline does not depend on them.

Either way b is independent of the K samples and the estimate is unbiased. A cell's
``cost_evals`` says which was used: K with exact moments, K + pilot with a pilot batch.

References: Mohamed, Rosca, Figurnov, Mnih (2020), "Monte Carlo Gradient Estimation in
Machine Learning", JMLR 21(132), Section 7.4.1 and Figure 8 (Gaussian quadratic variances);
Weaver & Tao (2001), "The Optimal Reward Baseline for Gradient-Based Reinforcement
Learning", UAI.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from estimators.base import Estimator, State, Surrogate, flatten, leaf_grads
from estimators.measure_valued import gaussian_of
from problems.base import Capability, LatentKind, Params, Problem, repeat_params
from problems.enumeration import enumerate_support, support_size
from problems.options import Option

MAX_NODES = 4096
MAX_GAUSSIAN_DIM = 3
HERMITE_POINTS = 16


def moment_source(problem: Problem) -> str:
    """``exact`` where the support or a Gauss-Hermite rule gives the moments, else ``pilot``."""
    return "exact" if _node_count(problem) is not None else "pilot"


def _node_count(problem: Problem) -> int | None:
    point = repeat_params(problem.init_params(), 1, requires_grad=False)
    provided = problem.provided
    if problem.latent is LatentKind.SEQUENCE:
        size = problem.responses().shape[0] ** problem.n_factors
    elif problem.latent in (LatentKind.BINARY, LatentKind.CATEGORICAL) and (
        Capability.ENUMERABLE in provided
    ):
        size = support_size(problem.latent, problem.distribution(point).event_shape)
    elif Capability.GAUSSIAN in provided:
        dim = problem.distribution(point).event_shape[0]
        size = HERMITE_POINTS**dim if dim <= MAX_GAUSSIAN_DIM else MAX_NODES + 1
    else:
        return None
    return size if size <= MAX_NODES else None


def _nodes(problem: Problem, params: Params) -> tuple[Tensor, Tensor | None]:
    """The moments' nodes ``[N, *event]`` at one repeat's ``params`` (``[1, ...]``) and
    their fixed log-weights ``[N]`` (None: the weights are q(z) itself)."""
    if problem.latent is LatentKind.SEQUENCE:
        responses = problem.responses()  # [N, L]
        index = torch.cartesian_prod(*[torch.arange(responses.shape[0])] * problem.n_factors)
        return responses[index.reshape(-1, problem.n_factors)], None  # [N^P, P, L]
    dist = problem.distribution(params)
    if problem.latent is not LatentKind.CONTINUOUS:
        size = support_size(problem.latent, dist.event_shape)
        return next(enumerate_support(problem.latent, dist.event_shape, size,
                                      dtype=problem.dtype, device=problem.device)), None
    normal = gaussian_of(problem, dist)
    x, w = np.polynomial.hermite_e.hermegauss(HERMITE_POINTS)
    dim = dist.event_shape[0]
    grid = torch.cartesian_prod(*[torch.as_tensor(x)] * dim).reshape(-1, dim)
    log_w = torch.cartesian_prod(*[torch.as_tensor(np.log(w / math.sqrt(2 * math.pi)))] * dim)
    log_w = log_w.reshape(-1, dim).sum(-1)
    z = normal.loc.detach() + normal.scale.detach() * grid.to(normal.loc)  # [N, D]
    return z, log_w.to(normal.loc)


def per_sample_scores(
    problem: Problem, params: Params, z: Tensor | None = None, n_draws: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """Scores s(z_m) ``[R, M, D]``, costs f(z_m) ``[R, M]`` and log q(z_m) ``[R, M]`` of M
    samples per repeat of ``params`` ``[R, ...]``, each sample with its own copy of the
    parameters: the given nodes ``z [M, *event]`` (shared by the repeats), or ``n_draws``
    fresh draws per repeat."""
    repeats = next(iter(params.values())).shape[0]
    m = z.shape[0] if z is not None else n_draws
    copies = {k: v.detach().repeat_interleave(m, 0).requires_grad_(True)
              for k, v in params.items()}  # [R * M, ...]
    dist = problem.distribution(copies)
    shared = None if z is None else z.repeat(repeats, *[1] * (z.dim() - 1)).unsqueeze(0)
    z = dist.sample((1,)) if shared is None else shared  # [1, R * M, *event]
    log_q = problem.log_prob_terms(dist, z).sum(-1)[0]  # [R * M]
    scores = flatten(leaf_grads(log_q.sum(), copies)).reshape(repeats, m, -1)  # [R, M, D]
    with torch.no_grad():
        cost = problem.cost(z, copies)[0].reshape(repeats, m)
    return scores.detach(), cost.detach(), log_q.detach().reshape(repeats, m)


def optimal_baseline(f: Tensor, scores: Tensor, weights: Tensor) -> Tensor:
    """b_j = sum_m w_m f_m s_mj^2 / sum_m w_m s_mj^2 ``[R, D]`` (0 where the denominator is 0).

    Args:
        f: ``[R, M]``; scores: ``[R, M, D]``; weights: ``[R, M]`` (summing to 1, or 1/M for a
            pilot batch).
    """
    second = (weights.unsqueeze(-1) * scores**2).sum(1)
    first = (weights.unsqueeze(-1) * f.unsqueeze(-1) * scores**2).sum(1)
    return torch.where(second > 0, first / second.clamp_min(torch.finfo(f.dtype).tiny), 0.0)


class ReinforceOptimalBaseline(Estimator):
    """Score function with the variance-minimising constant baseline per coordinate,
    b_j = E[f s_j^2] / E[s_j^2], from exact moments where the problem allows, else from a
    pilot batch (module docstring). Unbiased. On the Gaussian quadratic at mu = sigma = 1 its
    per-sample variances (d mu, d sigma) are (14, 64) at k = 0, (6, 24) at k = 1, (38, 184) at
    k = 3 and (134, 664) at k = -3 (derived in ``tests/test_optimal_baseline.py``).

    References: Mohamed et al. (2020), JMLR 21(132), Section 7.4.1; Weaver & Tao (2001), UAI.
    """

    name = "reinforce_optimal_baseline"
    example_samples = 4
    example_options: ClassVar[dict] = {}
    style = ("sky", "*")
    description = "score function with the variance-minimising baseline E[f s^2]/E[s^2]"
    requires = frozenset()
    unbiased = True
    cost_formula = "K with exact moments, K + pilot with a pilot batch"
    options: ClassVar[dict[str, Option]] = {
        "moments": Option("auto", "exact moments where available (auto) or a pilot batch",
                          choices=("auto", "pilot")),
        "pilot": Option(100, "samples of the pilot batch", minimum=2),
    }

    def source(self, problem: Problem) -> str:
        return "pilot" if self.option_values["moments"] == "pilot" else moment_source(problem)

    def cost_evals(self, n_samples: int, problem: Problem) -> int:
        return n_samples + (self.option_values["pilot"] if self.source(problem) == "pilot" else 0)

    def baselines(self, problem: Problem, params: Params) -> Tensor:
        """b ``[R, D]``, one per repeat: exact moments (computed once where all repeats share
        their parameters, as in a cell), or each repeat's own pilot batch."""
        repeats = next(iter(params.values())).shape[0]
        if self.source(problem) == "pilot":
            scores, f, _ = per_sample_scores(problem, params, n_draws=self.option_values["pilot"])
            return optimal_baseline(f, scores, torch.full_like(f, 1 / f.shape[1]))
        shared = all(torch.equal(v, v[:1].expand_as(v)) for v in params.values())
        rows = []
        for r in range(1 if shared else repeats):
            one = {k: v[r : r + 1].detach() for k, v in params.items()}
            z, log_w = _nodes(problem, one)
            scores, f, log_q = per_sample_scores(problem, one, z)
            weights = (log_q if log_w is None else log_w.unsqueeze(0)).exp()
            rows.append(optimal_baseline(f, scores, weights))
        return torch.cat(rows).expand(repeats, -1) if shared else torch.cat(rows)

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        baseline = self.baselines(problem, params)  # [R, D]
        dist = problem.distribution(params)
        z = dist.sample((n_samples,))  # [K, R, *event]
        cost = problem.cost(z, params)  # [K, R]
        log_q = problem.log_prob_terms(dist, z).sum(-1)  # [K, R]
        mean_log_q = log_q.mean(0)
        score = torch.autograd.grad(mean_log_q.sum(), list(params.values()), retain_graph=True,
                                    allow_unused=True)  # mean_k s(z_k), per repeat
        loss = (cost.detach() * log_q + cost).mean(0)
        offset = 0
        for value, grad in zip(params.values(), score, strict=True):
            size = value[0].numel()
            if grad is not None:
                b = baseline[:, offset : offset + size].reshape(value.shape)
                loss = loss - (b * grad.detach() * value).flatten(1).sum(-1)
            offset += size
        return Surrogate(loss=loss, samples=z)
