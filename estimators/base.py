"""The estimator contract.

An estimator turns ``K`` samples from q_theta into a *surrogate loss* whose autograd
gradient w.r.t. theta is the gradient estimate (the stochastic-computation-graph view of
Schulman et al. 2015, as in Pyro's ``TraceGraph_ELBO``). ``surrogate`` is called with
params of shape ``[R, ...]`` (one leaf copy per repeat, see ``problems.base``) and returns a
loss of shape ``[R]``; the estimate for repeat ``r`` is ``d loss[r] / d params[r]``.

Stateful estimators (moving-average baselines) keep explicit per-repeat state: a dict of
tensors with a leading ``R`` dimension, created by ``init_state`` and returned updated by
every call, so that nothing is hidden in the object.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor

from problems.base import Capability, Params, Problem
from problems.options import Option, OptionValue, resolve_options

State = dict[str, Tensor]


@dataclass
class Surrogate:
    """What one call of an estimator returns.

    Attributes:
        loss: ``[R]``; its gradient w.r.t. the params of repeat r is that repeat's estimate.
        samples: the latent samples used, ``[K, R, *event]`` (hard samples where both exist),
            so that tests can replay the estimate by hand.
        state: the updated state (empty for stateless estimators).
        relaxed: the relaxed samples ``[K, R, *event]`` of relaxed estimators, else None.
    """

    loss: Tensor
    samples: Tensor
    state: State = field(default_factory=dict)
    relaxed: Tensor | None = None


class Estimator(ABC):
    """Base class: subclasses set the class attributes and implement ``surrogate``."""

    name: ClassVar[str]
    description: ClassVar[str]
    requires: ClassVar[frozenset[Capability]]
    unbiased: ClassVar[bool]
    options: ClassVar[dict[str, Option]] = {}
    #: fewest samples per estimate the estimator works with
    min_samples: ClassVar[int] = 1

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.opts: dict[str, OptionValue] = resolve_options(
            f"estimator {self.name!r}", self.options, options or {}
        )

    @classmethod
    def incompatibility(cls, problem: type[Problem] | Problem) -> str | None:
        """Why this estimator cannot run on ``problem``, or None if it can."""
        missing = sorted(cls.requires - problem.provides)
        if missing:
            return f"{cls.name} requires {', '.join(missing)}, which {problem.name} lacks"
        return None

    def init_state(self, params: Params) -> State:
        """Initial state for params of shape ``[R, ...]``."""
        return {}

    def warm_up(self, problem: Problem, params: Params, n_samples: int, state: State) -> State:
        """Bring the state to where it would be mid-training at ``params``; default: as is."""
        return state

    @abstractmethod
    def surrogate(
        self, problem: Problem, params: Params, n_samples: int, state: State
    ) -> Surrogate:
        """The surrogate loss of one estimate per repeat, from ``n_samples`` samples each."""
