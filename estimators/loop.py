"""The estimators in your own training loop: one surrogate loss to call ``.backward()`` on.

``surrogate_loss(distribution, params, cost, estimator)`` builds q_theta from ``params`` (the
user's own tensors: ``nn.Parameter``s or an encoder's outputs, still attached to their graph),
lets the named estimator draw its samples and returns a scalar whose gradient w.r.t. every
tensor that ``params`` depend on is the estimate of dE_q[f]/dtheta, chained through the user's
model by autograd: what Pyro's ``TraceGraph_ELBO`` and storchastic give their users. It is
the same computation as the harness's (the problem is ``problems.custom.from_callable``'s, one
repeat), so under the same seed it gives the gradients that ``bench run`` measures
(``tests/test_custom.py`` checks this).

Estimators that train parameters of their own (``estimators.base``: RELAX's control
variate, NVIL's baseline network, REBAR with ``tune``) are refused here: their own training
belongs to ``bench train``. Estimators with per-repeat state (``reinforce_ema``) take a
``state`` dict, which is updated in place.

References: Schulman, Heess, Weber, Abbeel (2015), "Gradient Estimation Using Stochastic
Computation Graphs", NeurIPS; Bingham et al. (2019), "Pyro: Deep Universal Probabilistic
Programming", JMLR (TraceGraph_ELBO).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from torch import Tensor

from estimators import get_estimator
from estimators.base import Estimator, State
from problems.base import Params, Problem
from problems.custom import CostFunction, DistributionFactory, from_callable


@dataclass(frozen=True)
class _Point:
    """Parameter shapes as a cache key, with the values of the first call for the probe."""

    shapes: tuple[tuple[str, tuple[int, ...]], ...]
    values: Params = field(compare=False, hash=False)


@lru_cache(maxsize=64)
def _problem_class(distribution: DistributionFactory, cost: CostFunction,
                   point: _Point) -> type[Problem]:
    """One problem class per distribution, cost and parameter shapes (probing is not free)."""
    return from_callable("surrogate_loss", distribution, point.values, cost)


def _estimator(estimator: str | Estimator, options: Mapping[str, Any] | None) -> Estimator:
    built = get_estimator(estimator)(options) if isinstance(estimator, str) else estimator
    if type(built).setup is not Estimator.setup or built.parameters():
        raise ValueError(
            f"estimator {built.name!r} trains parameters of its own; surrogate_loss takes "
            "estimators without them (train it with bench train)"
        )
    return built


def surrogate_loss(
    distribution: DistributionFactory,
    params: Mapping[str, Tensor],
    cost: Callable[[Tensor, Params], Tensor],
    estimator: str | Estimator = "reinforce_loo",
    n_samples: int = 2,
    *,
    options: Mapping[str, Any] | None = None,
    state: State | None = None,
) -> Tensor:
    """The surrogate loss of one gradient estimate of E_{z ~ q}[f(z, params)].

    Args:
        distribution: ``distribution(**params)`` -> q, as in ``problems.custom.from_callable``,
            but called with the tensors of ``params`` as they are plus a leading dimension of
            one repeat (batch shape ``(1, ...)``).
        params: the tensors q and f depend on (``{name: tensor}``), attached to the user's
            graph.
        cost: ``cost(z, params)``: ``[K, 1, *event]`` -> ``[K, 1]`` (params with the repeat
            dimension, as q gets them).
        estimator: a registered estimator name or an ``Estimator`` instance.
        n_samples: K, the samples of the estimate.
        options: the estimator's options, with a name.
        state: per-repeat state of a stateful estimator, updated in place.

    Returns:
        A scalar; ``.backward()`` puts the estimate into the gradients of whatever ``params``
        were computed from.

    Raises:
        ValueError: one line, for an unknown estimator or option, one that does not apply to
            q and f (naming what it lacks), a bad K, one with trainable parameters, or the
            errors of ``from_callable`` (a cost of the wrong shape).
    """
    if not params:
        raise ValueError("surrogate_loss needs params: {name: tensor}")
    point = _Point(tuple((name, tuple(value.shape)) for name, value in params.items()),
                   {name: value.detach() for name, value in params.items()})
    first = next(iter(params.values()))
    problem = _problem_class(distribution, cost, point)(device=first.device, dtype=first.dtype)
    built = _estimator(estimator, options)
    reason = built.incompatibility(problem) or built.sample_rule(n_samples)
    if reason is not None:
        raise ValueError(reason)
    repeated = {name: value.unsqueeze(0) for name, value in params.items()}  # [1, *shape]
    if state is not None and not state:
        state.update(built.init_state(repeated))
    out = built.surrogate(problem, repeated, n_samples, {} if state is None else dict(state))
    if state is not None:
        state.update({k: v.detach() for k, v in out.state.items()})
    return out.loss.sum()
