"""The estimator contract.

An estimator turns ``K`` samples from q_theta into a *surrogate loss* whose autograd
gradient w.r.t. theta is the gradient estimate (the stochastic-computation-graph view of
Schulman et al. 2015, as in Pyro's ``TraceGraph_ELBO``). ``surrogate`` is called with
params of shape ``[R, ...]`` (one leaf copy per repeat, see ``problems.base``) and returns a
loss of shape ``[R]``; the estimate for repeat ``r`` is ``d loss[r] / d params[r]``.

What an estimator needs of a problem it declares in ``requires`` (capabilities, see
``problems.base``), and in ``supports_multi_sample`` whether it handles multi-sample
objectives; ``incompatibility`` turns both into the reason a pair is skipped. On problems with
factors, score-function-type estimators use per-factor learning signals
(``Problem.cost_terms`` and ``Problem.log_prob_terms``).

State. Stateful estimators keep two kinds of state, both explicit:

* per-repeat tensors (a moving-average baseline): a dict with a leading ``R`` dimension,
  created by ``init_state`` and returned updated by every call;
* trainable parameters of their own (a baseline network, a learned control variate,
  REBAR's eta and temperature), built by ``setup`` with the problem in hand and trained by
  ``step`` against the estimator's own loss: ``Surrogate.own_loss`` when the surrogate's
  forward pass gives it (e.g. a baseline's squared error), or, with
  ``trains_on_variance``, the estimate's squared norm sum_r ||g_r||^2, whose gradient
  w.r.t. the estimator's parameters is that of the variance for an unbiased estimator
  (Grathwohl et al. 2018, Section 3.3).

In ``bench run`` an estimator is warmed up for ``warmup_steps()`` steps at the evaluation
point (``warm_up``; one repeat, the state carried from step to step as in training), then
frozen while bias and variance are measured; in ``bench train`` it is trained alongside the
model, one own step per model step.

Cost. ``cost_evals(K, problem)`` is the number of evaluations of the cost per estimate (hard
plus relaxed), so that estimators can be compared at equal compute; ``sample_rule`` says which
K an estimator accepts. docs/contract.md documents what K means for each estimator.

Coordinates. ``leaf_grads`` (d loss / d params, zeros for unused parameters), ``flatten`` and
``unflatten`` (a params dict to one vector of coordinates ``[R, D]`` or ``[D]`` and back) are
the one way every layer, from the estimators up, reads an estimate's coordinates.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from estimators.targets import ExactGradient, NoTarget, Target
from problems.base import Capability, Params, Problem, repeat_params
from problems.options import Option, OptionValue, resolve_options

State = dict[str, Tensor]


@dataclass
class Surrogate:
    """What one call of an estimator returns.

    Attributes:
        loss: ``[R]``; its gradient w.r.t. the params of repeat r is that repeat's estimate.
        samples: the latent samples used, ``[K, R, *event]`` (hard samples where both exist),
            so that tests can replay the estimate by hand.
        state: the updated per-repeat state (empty for stateless estimators).
        relaxed: the relaxed samples ``[K, R, *event]`` of relaxed estimators, else None.
        own_loss: a scalar loss of the estimator's own trainable parameters, differentiable
            w.r.t. them, when the forward pass gives it; else None.
    """

    loss: Tensor
    samples: Tensor
    state: State = field(default_factory=dict)
    relaxed: Tensor | None = None
    own_loss: Tensor | None = None


@dataclass
class Step:
    """One gradient estimate per repeat and what the estimator's own training made of it.

    Attributes:
        grads: the estimates, shaped like the params (detached).
        state: the updated per-repeat state.
        own_loss: the value of the estimator's own loss at this step, or None.
    """

    grads: Params
    state: State
    own_loss: float | None


class Estimator(ABC):
    """Base class: subclasses set the class attributes and implement ``surrogate``."""

    name: ClassVar[str]
    description: ClassVar[str]
    requires: ClassVar[frozenset[Capability]]
    unbiased: ClassVar[bool]
    options: ClassVar[dict[str, Option]] = {}
    #: fewest samples per estimate the estimator works with
    min_samples: ClassVar[int] = 1
    #: K must be a multiple of this (2 for estimators built from antithetic pairs)
    samples_multiple: ClassVar[int] = 1
    #: whether it estimates the gradient of multi-sample objectives (``problems.base``)
    supports_multi_sample: ClassVar[bool] = False
    #: whether its own parameters are trained on the estimate's squared norm (needs the
    #: estimate's graph: ``step`` differentiates it w.r.t. those parameters)
    trains_on_variance: ClassVar[bool] = False
    #: ``cost_evals`` in words, for ``bench list`` and the docs (K samples, D coordinates)
    cost_formula: ClassVar[str] = "K"
    #: what the estimator's mean equals (``estimators.targets``; checked by ``bench verify``):
    #: None means the exact gradient when ``unbiased``, else nothing checkable
    target: ClassVar[Target | None] = None
    #: the option that counts ``warm_up``'s steps (``warmup_steps``), or None: no warm-up
    warmup_option: ClassVar[str | None] = None
    #: the statistical tests' example (``tests/examples.py``): K and options at which the
    #: bias, if any, is large on the problems' examples. Every registered class states its
    #: own (``tests/test_registry.py`` names one that does not)
    example_samples: ClassVar[int]
    example_options: ClassVar[dict[str, OptionValue]]
    #: problems on whose example this biased estimator is exact in mean, with the reason:
    #: the statistical tests expect it to match the truth there
    exact_in_mean: ClassVar[dict[str, str]] = {}
    #: position in ``bench paper``'s default estimator set and legend; None: not in it
    paper_order: ClassVar[int | None] = None
    #: how figures draw it: (colour name, marker) of ``bench.report.theme`` (COLOURS,
    #: SHAPES), distinct among the suite's estimators and declared by each class itself
    #: (not inherited: a subclass is another estimator); plugins leave it None and get a
    #: marker no built-in uses (theme.PLUGIN_SHAPES)
    style: ClassVar[tuple[str, str] | None] = None

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.option_values: dict[str, OptionValue] = resolve_options(
            f"estimator {self.name!r}", self.options, options or {}
        )
        self.optimizer: torch.optim.Optimizer | None = None

    @classmethod
    def declared_target(cls) -> Target:
        """``target``, or its default: the exact gradient if unbiased, else ``NoTarget``."""
        if cls.target is not None:
            return cls.target
        return ExactGradient() if cls.unbiased else NoTarget()

    @classmethod
    def declaration_errors(cls) -> list[str]:
        """What is wrong with the class attributes, one phrase each (empty when valid)."""
        errors = []
        for attr in ("description", "requires", "unbiased"):
            if not hasattr(cls, attr):
                errors.append(f"{attr} is not set")
        for attr in ("min_samples", "samples_multiple"):
            value = getattr(cls, attr)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                errors.append(f"{attr} = {value!r}: expected an integer >= 1")
        requires = getattr(cls, "requires", frozenset())
        if not isinstance(requires, (set, frozenset)):
            errors.append(f"requires = {requires!r}: expected a frozenset of capabilities")
        else:
            unknown = sorted(str(c) for c in requires if c not in set(Capability))
            if unknown:
                errors.append(f"requires names unknown capabilities {', '.join(unknown)}; "
                              f"valid: {', '.join(c.value for c in Capability)}")
        if hasattr(cls, "unbiased") and not isinstance(cls.unbiased, bool):
            errors.append(f"unbiased = {cls.unbiased!r}: expected True or False")
        if cls.target is not None and not isinstance(cls.target, Target):
            errors.append(f"target = {cls.target!r}: expected an estimators.targets.Target")
        if not isinstance(cls.options, dict) or not all(
                isinstance(o, Option) for o in cls.options.values()):
            errors.append("options: expected a dict of name -> problems.options.Option")
        elif cls.warmup_option is not None and cls.warmup_option not in cls.options:
            errors.append(f"warmup_option = {cls.warmup_option!r} is not among its options; "
                          f"valid: {', '.join(cls.options) or 'none'}")
        return errors

    # what applies where ----------------------------------------------------------------------

    @classmethod
    def incompatibility(
        cls, problem: type[Problem] | Problem, options: Mapping[str, Any] | None = None
    ) -> str | None:
        """Why this estimator cannot run on ``problem`` (an instance, or a class with its
        ``options``), or None if it can."""
        if isinstance(problem, Problem):
            provided = problem.provided
        else:
            provided = problem.capabilities(options or {})
        missing = sorted(cls.requires - provided)
        if missing:
            return f"{cls.name} requires {', '.join(missing)}, which {problem.name} lacks"
        if Capability.MULTI_SAMPLE in provided and not cls.supports_multi_sample:
            return (f"{cls.name} does not estimate multi-sample objectives "
                    f"(the objective of {problem.name} is the K-sample bound)")
        return None

    @classmethod
    def options_incompatibility(
        cls, problem: type[Problem] | Problem, problem_options: Mapping[str, Any] | None,
        options: Mapping[str, Any],
    ) -> str | None:
        """Why the estimator with its ``options`` cannot run on ``problem`` (an instance, or a
        class with its ``problem_options``) where ``incompatibility`` lets the pair run (e.g. a
        sampler that needs a parameter range at the problem's initial point), or None; a cell
        is then skipped with the reason instead of failing."""
        return None

    @classmethod
    def reference(cls) -> str:
        """The first paper of the ``References:`` line of the class docstring, e.g.
        ``Williams (1992)``."""
        found = re.search(r"References:\s*(.+?\(\d{4}\))", " ".join((cls.__doc__ or "").split()))
        return found.group(1) if found else "no reference"

    @classmethod
    def sample_rule(cls, n_samples: int) -> str | None:
        """Why ``n_samples`` samples per estimate do not work, or None if they do."""
        if n_samples < cls.min_samples or n_samples % cls.samples_multiple:
            return f"{cls.name} needs {cls.samples_text()}, got K={n_samples}"
        return None

    @classmethod
    def options_rule(cls, options: Mapping[str, Any], n_samples: int) -> str | None:
        """Why the estimator's ``options`` do not work with ``n_samples`` samples (e.g. a
        group std's degrees of freedom), or None; checked where ``sample_rule`` passes."""
        return None

    @classmethod
    def samples_text(cls) -> str:
        """The K the estimator takes, in words (``bench list``): e.g. ``K >= 2, even``."""
        text = f"K >= {cls.min_samples}"
        if cls.samples_multiple == 2:
            return f"{text}, even"
        if cls.samples_multiple > 2:
            return f"{text}, a multiple of {cls.samples_multiple}"
        return text

    def cost_evals(self, n_samples: int, problem: Problem) -> int:
        """Evaluations of the cost per estimate (hard plus relaxed); default: one per sample."""
        return n_samples

    # state ------------------------------------------------------------------------------------

    def init_state(self, params: Params) -> State:
        """Initial per-repeat state for params of shape ``[R, ...]``."""
        return {}

    def setup(self, problem: Problem, point: Params) -> None:
        """Build the estimator's own trainable parameters and ``self.optimizer`` for
        ``problem`` at ``point`` (no repeat dimension). The caller seeds torch first, so the
        initialization is deterministic. Default: no parameters of its own."""
        return None

    def parameters(self) -> list[Tensor]:
        """The estimator's own trainable tensors (empty for most estimators)."""
        return []

    def warmup_steps(self) -> int:
        """Steps of ``warm_up`` before measuring: the ``warmup_option``'s value, else 0."""
        return 0 if self.warmup_option is None else int(self.option_values[self.warmup_option])

    def freeze(self, frozen: bool = True) -> None:
        """Stop (or resume) tracking gradients of the estimator's own parameters."""
        for tensor in self.parameters():
            tensor.requires_grad_(not frozen)

    # one estimate -----------------------------------------------------------------------------

    @abstractmethod
    def surrogate(
        self, problem: Problem, params: Params, n_samples: int, state: State
    ) -> Surrogate:
        """The surrogate loss of one estimate per repeat, from ``n_samples`` samples each."""

    def step(
        self, problem: Problem, params: Params, n_samples: int, state: State, train: bool = True
    ) -> Step:
        """One estimate per repeat for leaf ``params`` ``[R, ...]``, and, with ``train`` and
        trainable parameters, one optimizer step of the estimator's own loss at it."""
        return self.backward(self.surrogate(problem, params, n_samples, state), params, train)

    def backward(self, out: Surrogate, params: Params, train: bool = True) -> Step:
        """The estimates of the surrogate ``out`` built at leaf ``params`` and, with ``train``
        and trainable parameters, one optimizer step of the estimator's own loss at them (the
        second half of ``step``, for callers that need the surrogate itself)."""
        own = self.parameters() if train and self.optimizer is not None else []
        grads = tuple(leaf_grads(out.loss.sum(), params,
                                 create_graph=bool(own) and self.trains_on_variance).values())
        loss = out.own_loss
        if self.trains_on_variance and own:
            loss = sum((g**2).sum() for g in grads)
        value = None
        if own and loss is not None:
            self.optimizer.zero_grad()
            loss.backward(inputs=own)
            self.optimizer.step()
            value = float(loss.detach())
        return Step(
            grads={k: g.detach() for k, g in zip(params, grads, strict=True)},
            state={k: v.detach() for k, v in out.state.items()},
            own_loss=value,
        )

    def warm_up(
        self, problem: Problem, point: Params, n_samples: int, state: State | None = None
    ) -> tuple[State, float | None]:
        """Bring the estimator to where it would be mid-training at ``point`` (no repeat
        dimension): ``warmup_steps()`` steps on one repeat from ``state`` (default: a cold
        ``init_state``; a training state mid-run), carrying the per-repeat state and training
        the own parameters. Returns the state ``[1, ...]`` and the last own loss."""
        params = repeat_params(point, 1, requires_grad=False)
        state = self.init_state(params) if state is None else state
        trainable = bool(self.parameters())
        last = None
        for _ in range(self.warmup_steps()):
            if trainable:
                step = self.step(problem, repeat_params(point, 1), n_samples, state)
                state, last = step.state, step.own_loss
            else:
                with torch.no_grad():
                    state = self.surrogate(problem, params, n_samples, state).state
        return state, last


# the coordinates of a params dict ------------------------------------------------------------


def leaf_grads(loss: Tensor, params: Params, **options: Any) -> Params:
    """d loss / d params, ``{name: tensor shaped like params[name]}``, zeros for the
    parameters ``loss`` does not depend on; ``options`` go to ``torch.autograd.grad``
    (``create_graph``, ``retain_graph``)."""
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True, **options)
    return {k: torch.zeros_like(p) if g is None else g
            for (k, p), g in zip(params.items(), grads, strict=True)}


def flatten(tensors: Params, repeated: bool = True) -> Tensor:
    """``{name: [R, *shape]}`` -> ``[R, D]`` (a view, not a copy, of a single parameter's
    gradient), or without ``repeated`` ``{name: shape}`` -> ``[D]`` (a copy); parameters in
    insertion order."""
    if not repeated:  # a copy: callers keep it past changes of the tensors
        return torch.cat([t.reshape(-1) for t in tensors.values()])
    flat = [g.reshape(g.shape[0], -1) for g in tensors.values()]
    return flat[0] if len(flat) == 1 else torch.cat(flat, 1)


def unflatten(flat: Tensor, like: Params) -> Params:
    """``[D]`` -> ``{name: shape}`` with the names and shapes of ``like`` (``flatten``'s
    inverse)."""
    out, offset = {}, 0
    for name, value in like.items():
        out[name] = flat[offset : offset + value.numel()].reshape(value.shape)
        offset += value.numel()
    return out
