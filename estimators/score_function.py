"""Score-function (REINFORCE) estimators and their baselines.

For L(theta) = E_q[f(z, theta)], the score-function identity gives

    dL/dtheta = E_q[(f(z, theta) - b) d/dtheta log q_theta(z)] + E_q[d/dtheta f(z, theta)]

for any baseline b independent of z. The surrogate
``mean_k[stopgrad(f_k - b_k) log q(z_k) + f(z_k, theta)]`` with detached samples z_k has this
estimate as its gradient; the second term is the direct dependence of the cost on theta
(zero for costs that do not depend on theta).

References: Williams (1992), "Simple statistical gradient-following algorithms for
connectionist reinforcement learning", Machine Learning 8; Mohamed et al. (2020), JMLR,
Section 4.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from estimators.base import Estimator, State, Surrogate
from problems.base import Params, Problem
from problems.options import Option


def score_surrogate(
    problem: Problem, params: Params, n_samples: int, baseline: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """REINFORCE surrogate with an optional baseline.

    Args:
        baseline: ``[R]`` (shared by the K samples), ``[K, R]`` (per sample) or None.

    Returns:
        loss ``[R]``, samples ``[K, R, *event]``, costs ``[K, R]`` (detached).
    """
    dist = problem.distribution(params)
    z = dist.sample((n_samples,))  # [K, R, *event]
    cost = problem.cost(z, params)  # [K, R]
    centred = cost.detach() if baseline is None else cost.detach() - baseline
    loss = (centred * dist.log_prob(z) + cost).mean(0)  # [R]
    return loss, z, cost.detach()


class Reinforce(Estimator):
    """Plain score-function estimator: b = 0. Unbiased; variance grows with E[f^2].

    References: Williams (1992), Machine Learning 8.
    """

    name = "reinforce"
    description = "score function (REINFORCE), no baseline"
    requires = frozenset()
    unbiased = True

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        loss, z, _ = score_surrogate(problem, params, n_samples, None)
        return Surrogate(loss=loss, samples=z)


class ReinforceEMA(Estimator):
    """Score function with an exponential-moving-average baseline.

    b_t = decay * b_{t-1} + (1 - decay) * mean_k f(z_k) is updated *after* each estimate, so
    the baseline used at step t is independent of step t's samples and the estimate stays
    unbiased. Before measuring, the harness runs ``warmup`` estimates at the evaluation
    point so that b has settled near E[f], as it would be mid-training.

    References: Williams (1992); Mnih & Gregor (2014), "Neural Variational Inference and
    Learning in Belief Networks (NVIL)", ICML, Section 3.3.
    """

    name = "reinforce_ema"
    description = "score function with an exponential-moving-average baseline"
    requires = frozenset()
    unbiased = True
    options: ClassVar[dict[str, Option]] = {
        "decay": Option(0.9, "moving-average decay", minimum=0, maximum=1, exclusive=False),
        "warmup": Option(100, "estimates run to settle the baseline before measuring", minimum=0),
    }

    def init_state(self, params: Params) -> State:
        first = next(iter(params.values()))
        return {"baseline": first.new_zeros(first.shape[0]).detach()}

    def warm_up(self, problem: Problem, params: Params, n_samples: int, state: State) -> State:
        for _ in range(self.opts["warmup"]):
            with torch.no_grad():
                state = self.surrogate(problem, params, n_samples, state).state
        return state

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        baseline = state["baseline"]  # [R]
        loss, z, cost = score_surrogate(problem, params, n_samples, baseline)
        decay = self.opts["decay"]
        updated = decay * baseline + (1 - decay) * cost.mean(0)
        return Surrogate(loss=loss, samples=z, state={"baseline": updated})


class ReinforceLOO(Estimator):
    """Score function with the leave-one-out baseline over the K samples.

    b_k = (1 / (K - 1)) sum_{j != k} f(z_j), independent of z_k, hence unbiased; the
    score term equals K / (K - 1) times that of the sample-mean baseline.

    References: Kool, van Hoof, Welling (2019), "Buy 4 REINFORCE Samples, Get a Baseline
    for Free!", ICLR Workshop DeepRLStructPred; Mnih & Rezende (2016), "VIMCO", ICML.
    """

    name = "reinforce_loo"
    description = "score function with the leave-one-out baseline (K >= 2)"
    requires = frozenset()
    unbiased = True
    min_samples = 2

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        if n_samples < 2:
            raise ValueError(f"reinforce_loo needs n_samples >= 2, got {n_samples}")
        dist = problem.distribution(params)
        z = dist.sample((n_samples,))  # [K, R, *event]
        cost = problem.cost(z, params)  # [K, R]
        free = cost.detach()
        baseline = (free.sum(0, keepdim=True) - free) / (n_samples - 1)  # [K, R]
        loss = ((free - baseline) * dist.log_prob(z) + cost).mean(0)
        return Surrogate(loss=loss, samples=z)
