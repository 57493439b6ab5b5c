"""Your own problem in three lines: a problem class from a distribution, its parameters and a
cost (docs/your_problem.md).

``from_callable(name, distribution, params, cost)`` returns a ``Problem`` subclass, so every
registered estimator, ``bench run``, ``bench verify``, ``bench train`` and ``bench.run_sweep``
apply to it; a module that puts it in a ``PROBLEMS`` dict is a ``--plugin``. The pieces:

* ``params``: the parameters theta, ``{name: tensor}`` (numbers and nested lists are made
  tensors); the estimated gradient is w.r.t. all of them.
* ``distribution``: called as ``distribution(**params)`` with every parameter given a leading
  repeat dimension R (only those its signature names, unless it takes ``**kwargs``), it
  returns q_theta (a ``torch.distributions`` class such as
  ``torch.distributions.Normal`` or a function building one); its batch shape must start with
  R, and any further batch dimensions become part of the latent (``Independent``).
* ``cost``: ``cost(z, params)`` maps samples ``[K, R, *event]`` and the parameters
  ``[R, ...]`` to ``[K, R]`` floats of the parameters' dtype; anything else is refused with a
  one-line error naming the expected shape.

What the problem provides is inferred from one probe of q and f: the latent kind (Bernoulli
bits, one-hot categoricals, or continuous; other discrete families are refused), whether q
has ``rsample``, whether f is differentiable in z (at relaxed points for discrete latents;
``differentiable=`` overrides it), enumerability, and the Gaussian form
``Independent(Normal, 1)`` that measure-valued and delta-method estimators need. The truth:

* discrete with at most ``max_configs`` configurations: exact, by enumeration
  (``problems.enumeration``);
* continuous with one coordinate: the trapezoidal rule after a sinh substitution
  (``problems.line_quadrature``, in float64), accepted when its estimated error is below
  ``QUADRATURE_TOLERANCE`` times the gradient's size, else none;
* otherwise ``truth=reference`` by default: the mean of many estimates of an unbiased
  estimator (``reparam`` where q has rsample, else ``reinforce``; ``bench.cell.truth``);
  ``--set truth=none`` reports truth-free metrics only.

References: Schulman, Heess, Weber, Abbeel (2015), "Gradient Estimation Using Stochastic
Computation Graphs", NeurIPS (the surrogate-loss view this builds on); Trefethen & Weideman
(2014), SIAM Review (the quadrature).
"""

from __future__ import annotations

import inspect
import math
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, Independent, Normal, OneHotCategorical

from problems.base import Capability, LatentKind, Params, Problem, Truth, repeat_params
from problems.enumeration import enumeration_truth, exact_objective, support_size
from problems.line_quadrature import line_gradient
from problems.options import MAX_ENUMERATED, Option, resolve_options
from problems.truth import TruthKind, TruthSource

#: a problem name: what ``--problem`` lists can hold
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
#: largest quadrature error accepted, relative to the largest gradient coordinate (or 1)
QUADRATURE_TOLERANCE = 1e-8

DistributionFactory = Callable[..., Distribution]
CostFunction = Callable[[Tensor, Params], Tensor]


def base_of(dist: Distribution) -> Distribution:
    """The distribution inside any ``Independent`` wrappers."""
    while isinstance(dist, Independent):
        dist = dist.base_dist
    return dist


def accepted(factory: DistributionFactory, params: Params) -> Params:
    """The parameters that ``factory`` takes by name: all of them if it takes ``**kwargs``
    (or its signature is unknown), else those its signature names (an encoder need not take
    a decoder's weights)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return params
    names = signature.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in names.values()):
        return params
    return {k: v for k, v in params.items() if k in names}


def build_distribution(owner: str, factory: DistributionFactory, params: Params) -> Distribution:
    """``factory(**params)`` with batch shape ``(R,)``: batch dimensions after the first
    become event dimensions.

    Raises:
        ValueError: when the factory returns no distribution or a batch shape not starting
            with R.
    """
    dist = factory(**accepted(factory, params))
    n_repeats = next(iter(params.values())).shape[0]
    if not isinstance(dist, Distribution):
        raise ValueError(f"distribution of problem {owner!r} returned a {type(dist).__name__}, "
                         "expected a torch.distributions.Distribution")
    batch = dist.batch_shape
    if len(batch) == 0 or batch[0] != n_repeats:
        raise ValueError(
            f"distribution of problem {owner!r} has batch shape {list(batch)}, expected it to "
            f"start with the number of repeats R = {n_repeats} (each parameter is given a "
            "leading repeat dimension)"
        )
    return Independent(dist, len(batch) - 1) if len(batch) > 1 else dist


def checked_cost(owner: str, value: Any, z: Tensor, event_ndim: int) -> Tensor:
    """``value`` if it is the cost of samples ``z`` ``[K, R, *event]``: a tensor ``[K, R]`` of
    z's dtype; else a one-line ValueError naming the expected shape."""
    expected = list(z.shape[: z.dim() - event_ndim])
    if (not isinstance(value, Tensor) or list(value.shape) != expected
            or value.dtype != z.dtype):
        got = (f"a {value.dtype} tensor of shape {list(value.shape)}"
               if isinstance(value, Tensor) else f"a {type(value).__name__}")
        raise ValueError(
            f"cost of problem {owner!r} returned {got} for samples of shape {list(z.shape)}; "
            f"expected a {z.dtype} tensor of shape [K, R] = {expected}: one value per sample "
            "and repeat, summed or averaged over the latent's own dimensions"
        )
    return value


def latent_kind(owner: str, dist: Distribution) -> LatentKind:
    """Bits, one-hot categoricals or continuous; other discrete families are refused."""
    base = base_of(dist)
    if isinstance(base, Bernoulli):
        return LatentKind.BINARY
    if isinstance(base, OneHotCategorical):
        return LatentKind.CATEGORICAL
    if dist.support.is_discrete:
        raise ValueError(
            f"distribution of problem {owner!r} is a {type(base).__name__}: discrete latents "
            "must be Bernoulli or OneHotCategorical (the forms discrete estimators read "
            "logits from); write a Categorical as OneHotCategorical"
        )
    return LatentKind.CONTINUOUS


def cost_is_differentiable(cost: CostFunction, dist: Distribution, kind: LatentKind,
                           params: Params) -> bool:
    """Whether f has a finite, non-None gradient in z at a probe point: a sample for a
    continuous latent, the probabilities (a relaxed point) for a discrete one."""
    if kind is LatentKind.CONTINUOUS:
        z = dist.sample((1,))
    else:
        z = base_of(dist).probs.detach().unsqueeze(0)
    z = z.clone().requires_grad_(True)
    try:
        value = cost(z, params)
        (grad,) = torch.autograd.grad(value.sum(), z, allow_unused=True)
    except (RuntimeError, TypeError, ValueError):
        return False
    return grad is not None and bool(torch.isfinite(grad).all())


def probe(name: str, factory: DistributionFactory, point: Params, cost: CostFunction,
          differentiable: bool | None, max_configs: int) -> dict[str, Any]:
    """The class attributes inferred from q and f at ``point`` (float64, one repeat); the
    random state is restored afterwards, so building a problem never moves a seeded stream."""
    with torch.random.fork_rng(devices=[]):
        return _probe(name, factory, point, cost, differentiable, max_configs)


def _probe(name: str, factory: DistributionFactory, point: Params, cost: CostFunction,
           differentiable: bool | None, max_configs: int) -> dict[str, Any]:
    params = repeat_params(point, 1, requires_grad=False)
    dist = build_distribution(name, factory, params)
    kind = latent_kind(name, dist)
    z = dist.sample((2,))
    checked_cost(name, cost(z, params), z, len(dist.event_shape))
    provides = set()
    if kind is LatentKind.CONTINUOUS:
        provides |= {Capability.RSAMPLE} if dist.has_rsample else set()
        if isinstance(base_of(dist), Normal) and len(dist.event_shape) == 1:
            provides.add(Capability.GAUSSIAN)
        exact = TruthSource.quadrature() if math.prod(dist.event_shape) == 1 else None
    else:
        provides.add(Capability.DISCRETE)
        enumerable = support_size(kind, dist.event_shape) <= max_configs
        provides |= {Capability.ENUMERABLE, Capability.EXACT_OBJECTIVE} if enumerable else set()
        size = support_size(kind, dist.event_shape)
        exact = TruthSource.enumeration(size) if size <= max_configs else None
    if differentiable is None:
        differentiable = cost_is_differentiable(cost, dist, kind, params)
    if differentiable:
        provides.add(Capability.DIFFERENTIABLE_COST)
    return {
        "latent": kind,
        "provides": frozenset(provides),
        "exact_truth": exact,
        "reference_with": "reparam" if Capability.RSAMPLE in provides else "reinforce",
        "event_size": math.prod(dist.event_shape),
    }


class CallableProblem(Problem):
    """The base of ``from_callable``'s classes (module docstring); not registered itself.

    References: Schulman et al. (2015), NeurIPS.
    """

    factory: ClassVar[DistributionFactory]
    cost_function: ClassVar[CostFunction]
    point: ClassVar[Params]
    max_configs: ClassVar[int]
    event_size: ClassVar[int]
    #: the exact truth found by the probe (quadrature, enumeration), or None
    exact_truth: ClassVar[TruthSource | None]
    #: the unbiased estimator of ``truth=reference``: reparam where q has rsample, else reinforce
    reference_with: ClassVar[str]

    @classmethod
    def truth_of(cls, options: Mapping[str, Any] | None = None,
                 n_samples: int = 1) -> TruthSource:
        """``auto``: the probe's exact truth, or none; ``reference``: the mean of
        ``reference_with`` estimates; ``none``."""
        values = resolve_options(f"problem {cls.name!r}", cls.options, options or {})
        if values["truth"] == "reference":
            return TruthSource.reference(cls.reference_with, values["reference_samples"],
                                         values["reference_repeats"])
        if values["truth"] == "none" or cls.exact_truth is None:
            return TruthSource.none()
        return cls.exact_truth

    def init_params(self) -> Params:
        return {k: v.to(device=self.device, dtype=self.dtype).clone()
                for k, v in self.point.items()}

    def distribution(self, params: Params) -> Distribution:
        return build_distribution(self.name, type(self).factory, params)

    def cost(self, z: Tensor, params: Params) -> Tensor:
        event_ndim = z.dim() - 2
        return checked_cost(self.name, type(self).cost_function(z, params), z, event_ndim)

    def objective(self, params: Params, n_samples: int = 1) -> Tensor | None:
        if Capability.EXACT_OBJECTIVE not in self.provided:
            return None
        return exact_objective(self, params)

    def train_metrics(self, train: Params) -> dict[str, float]:
        """``objective``, the exact E_q[f] at the trained parameters, where it is enumerable."""
        with torch.no_grad():
            exact = self.objective(repeat_params(train, 1, requires_grad=False))
        return {} if exact is None else {"objective": float(exact[0])}

    def truth(self, params: Params, n_samples: int = 1) -> Truth | None:
        kind = self.truth_of(self.option_values, n_samples).kind
        if kind is TruthKind.ENUMERATION:
            return enumeration_truth(self, params, self.max_configs)
        return self.quadrature_truth(params) if kind is TruthKind.QUADRATURE else None

    def quadrature_truth(self, params: Params) -> Truth | None:
        """The one-coordinate truth, computed in float64 whatever the problem's dtype (the
        rule's accuracy is that of its arithmetic), or None where its error estimate exceeds
        ``QUADRATURE_TOLERANCE``."""
        wide = self if self.dtype == torch.float64 else type(self)(
            self.option_values, device=self.device, dtype=torch.float64)
        leaf = repeat_params({k: v.double() for k, v in params.items()}, 1)
        found = line_gradient(lambda: wide.distribution(leaf), lambda z: wide.cost(z, leaf),
                              list(leaf.values()))
        if found is None:
            return None
        grads, error = found
        size = max(1.0, *(float(g.abs().max()) for g in grads))
        if error > QUADRATURE_TOLERANCE * size:
            return None
        return Truth(grad={k: g[0].detach().to(self.dtype)
                           for k, g in zip(leaf, grads, strict=True)}, kind="quadrature")


def from_callable(
    name: str,
    distribution: DistributionFactory,
    params: Mapping[str, Any],
    cost: CostFunction,
    *,
    description: str | None = None,
    differentiable: bool | None = None,
    max_configs: int = 2**16,
) -> type[Problem]:
    """A problem class for L(theta) = E_{z ~ q_theta}[f(z, theta)] (module docstring).

    Args:
        name: the registry name (letters, digits, ``_``, ``.``, ``-``).
        distribution: ``distribution(**params)`` -> q_theta, batch shape starting with R.
        params: theta, ``{name: tensor or number}``; the evaluation point.
        cost: ``cost(z, params)``: ``[K, R, *event]`` -> ``[K, R]``.
        description: one line for ``bench list`` (default: from the distribution).
        differentiable: whether f is differentiable in z (and, for discrete latents, defined
            at relaxed points); None infers it from a probe.
        max_configs: the largest discrete latent space enumerated for exact truth.

    Returns:
        A ``Problem`` subclass named ``name``, with options ``truth``, ``reference_samples``
        and ``reference_repeats``.

    Raises:
        ValueError: one line, for a bad name or parameters, a distribution without batch
            dimension R or of an unsupported discrete family, or a cost of the wrong shape.
    """
    _check_arguments(name, params, max_configs)
    point = {k: torch.as_tensor(v, dtype=torch.float64).detach().clone()
             for k, v in params.items()}
    found = probe(name, distribution, point, cost, differentiable, max_configs)
    default_truth = "auto" if found["exact_truth"] is not None else "reference"
    label = getattr(distribution, "__name__", type(distribution).__name__)
    attrs = found | {
        "name": name,
        "description": description or f"user problem: z ~ {label}, f = {cost.__name__}",
        "factory": staticmethod(distribution),
        "cost_function": staticmethod(cost),
        "point": point,
        "max_configs": max_configs,
        "options": _options(default_truth),
        "__module__": sys._getframe(1).f_globals.get("__name__", __name__),
        "__doc__": f"{description or name} (``problems.custom.from_callable``).\n\n"
                   "References: user-defined.",
    }
    return type(re.sub(r"\W", "_", name), (CallableProblem,), attrs)


def _check_arguments(name: str, params: Mapping[str, Any], max_configs: int) -> None:
    """Fail with one line for a bad registry name, no parameters or a bad ``max_configs``."""
    if not isinstance(name, str) or not NAME.fullmatch(name) or name == "all":
        raise ValueError(f"invalid problem name {name!r}: expected letters, digits, '_', '.' "
                         "or '-', and not 'all'")
    if not params:
        raise ValueError(f"problem {name!r} has no parameters: give params={{name: tensor}}")
    if not 1 <= max_configs <= MAX_ENUMERATED:
        raise ValueError(f"invalid max_configs={max_configs} for problem {name!r}: expected "
                         f"an int in [1, {MAX_ENUMERATED}]")


def _options(default_truth: str) -> dict[str, Option]:
    """The options of a user's problem: ``truth`` (default ``default_truth``) and the size
    of a reference truth."""
    return {
        "truth": Option(default_truth, "auto (enumeration or quadrature), reference or none",
                        choices=("auto", "reference", "none")),
        "reference_samples": Option(100, "samples per estimate of the truth=reference "
                                    "gradient", minimum=1),
        "reference_repeats": Option(1000, "estimates averaged for the truth=reference "
                                    "gradient", minimum=2),
    }
