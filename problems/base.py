"""The problem contract.

A problem is a stochastic objective ``L(theta) = E_{z ~ q_theta}[f(z, theta)]`` whose
gradient ``dL/dtheta`` the estimators estimate. It supplies:

* ``init_params()``: the parameters ``theta`` at which the gradient is evaluated, a dict of
  named tensors without a repeat dimension;
* ``distribution(params)``: ``q_theta`` as a ``torch.distributions`` object;
* ``cost(z, params)``: ``f(z, theta)``;
* ``truth(params, n_samples)``: the exact gradient (closed form, quadrature or enumeration)
  when one exists;
* ``truth_source`` / ``truth_of(options, n_samples)``: how that truth is obtained, one typed
  declaration (``problems.truth.TruthSource``: closed form, quadrature, enumeration with its
  size, a reference estimator with its sample sizes, or none) that the harness reads.

What a problem provides beyond that is declared as capabilities (``Capability``), which may
depend on its options (``Problem.capabilities(options)``); estimators declare what they
require of them (``estimators.base``). docs/contract.md shows one example of each extension.

Factors (per-example learning signals). A minibatch problem whose latent is made of
independent factors (the examples of a minibatch, each with its own latent z_i) says so with
``n_factors`` F > 1. Its event shape is then ``[F, *unit]``: factor i owns ``z[..., i, ...]``,
q factorizes as ``prod_i q_theta(z_i | x_i)``, and the cost is a sum of per-factor terms
``f(z) = sum_i f_i(z_i, theta)`` where f_i depends on z only through z_i. ``cost_terms``
gives the f_i ``[K, R, F]`` and ``log_prob_terms`` the log q_theta(z_i | x_i) ``[K, R, F]``,
so a score-function estimator can multiply each example's score by its *own* learning
signal f_i instead of the whole minibatch's f (the cross terms f_j grad log q(z_i), j != i,
have mean zero and only add variance). Estimators pass both through ``signals``, which sums
them into one factor where a problem's option asks for whole-cost signals
(``local_signals``). Problems without factors have F = 1 and these default to the whole
cost and log-probability.

Multi-sample objectives. A problem with ``Capability.MULTI_SAMPLE`` differentiates the
importance-weighted bound of Burda et al. (2016) instead of an expectation of a per-sample
cost: with log-weights ``log w(z_i) = log p(x_i, z_i) - log q(z_i | x_i)`` (its per-factor
costs are ``scale * (-log w)``, ``Capability.LOG_WEIGHTS``, ``log_weights``), per factor,

    L_K(theta) = scale * E_{z_1..z_K iid q}[ -log (1/K) sum_k w(z_k) ],

a function of all K samples jointly (``joint_cost_terms``), with scale = ``factor_scale``
(1/B for a minibatch mean). On such a problem the harness's K
is the number of importance samples of the bound, and the truth depends on K
(``truth(params, n_samples)``). At K = 1 it is the ordinary negative ELBO.

Context. A problem with ``Capability.CONTEXT`` gives per-factor features
(``context()``: ``[F, C]``, e.g. each example's image), for input-dependent baselines.

Discrete latents and estimator-drawn noise. A problem with ``Capability.DISCRETE`` returns
from ``distribution`` an ``Independent`` wrapper around ``Bernoulli(logits=...)`` or
``OneHotCategorical(logits=...)``; estimators read its logits (``estimators.discrete``), may
draw their own uniforms or Gumbels and build hard samples, and, with
``Capability.DIFFERENTIABLE_COST``, evaluate the cost at relaxed samples (in [0, 1] or on the
simplex) as well as at hard ones.

Shapes. The harness evaluates ``R`` independent estimates at once by giving every repeat
its own copy of the parameters: each tensor in ``params`` has a leading repeat dimension,
``[R, *shape]``. ``distribution(params)`` then has ``batch_shape == (R,)`` and the latent
as its event shape, so ``log_prob(z)`` of ``z: [K, R, *event]`` is ``[K, R]``, and
``cost(z, params)`` maps ``[K, R, *event]`` to ``[K, R]``. Because repeat ``r`` only ever
touches ``params[...][r]``, one backward pass of the summed surrogate yields all ``R``
gradient estimates.

Training (``bench.training``). A problem whose parameters can be trained overrides these hooks;
the defaults describe a fixed problem whose trained parameters are its evaluation point:

* ``train_params()``: every trained tensor at the start of training, without a repeat
  dimension (default ``init_params()``). It may hold more than the estimated parameters (a
  VAE's decoder); ``distribution`` and ``cost`` accept such a superset with a repeat
  dimension and then use those tensors, so a training step estimates the gradient of all
  of them with one surrogate.
* ``load_train_params(train)``: make the problem's own copies of the trained but not
  estimated tensors take their values from ``train`` and return the evaluation point
  (the ``init_params()`` subset) at which gradient variance is measured (default: ``train``).
* ``next_batch(step, generator)``: make ``distribution`` and ``cost`` use the minibatch of
  training step ``step``, drawn only with ``generator`` so every estimator sees the same
  minibatch order (default: nothing to change).
* ``reset_batch()``: back to the fixed minibatch of ``bench run`` cells (default: nothing).
* ``before_step(train, step, generator)``: extra updates of the problem's own state before
  each estimator step, e.g. a GAN critic's optimizer steps (default: none).
* ``train_metrics(train)``: evaluation metrics of the trained model, e.g. a test-set negative
  ELBO, as ``{name: value}`` (default: none).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, Independent

from problems.options import Option, OptionValue, resolve_options
from problems.truth import TruthSource

Params = dict[str, Tensor]


class LatentKind(StrEnum):
    """What the latent variable z is."""

    CONTINUOUS = "continuous"
    BINARY = "binary"
    CATEGORICAL = "categorical"
    SEQUENCE = "sequence"  # variable-length token sequences (problems.policy)
    SUBSET = "subset"  # a k-hot vector: k of n items
    COUNT = "count"  # non-negative integers (Poisson), no logits


class Capability(StrEnum):
    """What a problem provides, and so what an estimator may require of it."""

    RSAMPLE = "rsample"  # q_theta has a reparameterized sampler
    DISCRETE = "discrete"  # z is binary or one-hot categorical
    DIFFERENTIABLE_COST = "differentiable_cost"  # f is differentiable in z, defined on relaxed z
    ENUMERABLE = "enumerable"  # the latent space can be enumerated for exact truth
    EXACT_OBJECTIVE = "exact_objective"  # objective() gives E_q[f] exactly (per factor)
    MULTI_SAMPLE = "multi_sample"  # the objective is a K-sample importance-weighted bound
    LOG_WEIGHTS = "log_weights"  # f = -log w = log q(z) - log p(x, z); cost_terms(detach_q=)
    CONTEXT = "context"  # per-factor features: context()
    GAUSSIAN = "gaussian"  # q is Independent(Normal(loc, scale), 1) over a vector latent
    SEQUENCE = "sequence"  # each factor is a token sequence: lengths(z), token_log_probs
    GAMMA = "gamma"  # q is Independent(Gamma(concentration, rate), 1) over a vector latent
    SUBSET = "subset"  # z is a k-hot k-subset of Gumbel-top-k (problems.subsets.GumbelTopK)


@dataclass(frozen=True)
class Truth:
    """A reference gradient.

    Attributes:
        grad: the gradient per parameter, shapes as in ``init_params()``.
        kind: a ``problems.truth.TruthKind`` value: ``closed_form``, ``quadrature``,
            ``enumeration`` or ``reference``, the kind the problem declares (``truth_of``).
        se: for ``reference`` truth, the standard error of each coordinate; else None.
    """

    grad: Params
    kind: str
    se: Params | None = None


@dataclass(frozen=True)
class StressSetting:
    """Options at which ``bench verify`` checks estimators against the problem's exact truth
    (``bench.verify.settings``); ``quick``: part of ``--quick`` (one per objective)."""

    options: Mapping[str, OptionValue]
    quick: bool = False


class Problem(ABC):
    """Base class: subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    description: ClassVar[str]
    latent: ClassVar[LatentKind]
    provides: ClassVar[frozenset[Capability]]
    options: ClassVar[dict[str, Option]]
    #: how the truth is obtained whatever the options (``problems.truth``); a problem whose
    #: truth depends on its options or on K overrides ``truth_of`` instead
    truth_source: ClassVar[TruthSource]
    # what the tests, the asv suites and bench verify run the problem at; every registered
    # class states its own (tests/test_registry.py names one that does not):
    #: options of the test example, where every applicable estimator is checked against the
    #: exact truth (small and fast; ``tests/examples.py``)
    example_options: ClassVar[dict[str, OptionValue]]
    #: options of the asv suites' instance (``benchmarks/common.py``): a small member
    benchmark_options: ClassVar[dict[str, OptionValue]]
    #: ``bench verify``'s stress settings, with exact truth at each
    verify_settings: ClassVar[tuple[StressSetting, ...]]
    #: the float columns that ``diagnostics`` writes into cells.parquet (``bench.schema``
    #: collects them from the registry); empty: none
    diagnostic_columns: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        options: Mapping[str, Any] | None = None,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.option_values: dict[str, OptionValue] = resolve_options(
            f"problem {self.name!r}", self.options, options or {}
        )
        self.device = torch.device(device)
        self.dtype = dtype

    @classmethod
    def capabilities(cls, options: Mapping[str, Any] | None = None) -> frozenset[Capability]:
        """What the problem provides with ``options`` (defaults fill in what is not given);
        ``provides`` unless some capability depends on an option."""
        return cls.provides

    @classmethod
    def truth_of(cls, options: Mapping[str, Any] | None = None,
                 n_samples: int = 1) -> TruthSource:
        """How the truth of a cell with ``options`` and K = ``n_samples`` is obtained (K
        matters only on multi-sample objectives); ``truth_source`` unless it depends on them.
        ``truth`` returns a gradient of this kind, or None where an exact method's own error
        check fails."""
        return cls.truth_source

    @classmethod
    def validation_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` with the expensive work of construction switched off (a VAE's
        pretraining), for checking before a sweep starts that the problem can be built: what
        only construction checks (data files, options that contradict each other) must be
        checked all the same. The real construction happens in the first cell that needs
        the problem, under that cell's timeout. Default: ``options`` unchanged."""
        return dict(options)

    @property
    def provided(self) -> frozenset[Capability]:
        """The capabilities of this instance (its options resolved)."""
        return type(self).capabilities(self.option_values)

    @property
    def multi_sample(self) -> bool:
        """Whether the objective is the K-sample bound (see the module docstring)."""
        return Capability.MULTI_SAMPLE in self.provided

    def tensor(self, value: Any) -> Tensor:
        """A constant on the problem's device and dtype."""
        return torch.as_tensor(value, dtype=self.dtype, device=self.device)

    @abstractmethod
    def init_params(self) -> Params:
        """The evaluation point theta: named tensors without a repeat dimension."""

    @abstractmethod
    def distribution(self, params: Params) -> Distribution:
        """q_theta with ``batch_shape == (R,)`` for params of shape ``[R, ...]``."""

    @abstractmethod
    def cost(self, z: Tensor, params: Params) -> Tensor:
        """f(z, theta): ``[K, R, *event]`` -> ``[K, R]``."""

    def truth(self, params: Params, n_samples: int = 1) -> Truth | None:
        """The exact gradient at ``params`` (no repeat dimension), or None if unknown.
        ``n_samples`` is the K of a multi-sample objective; expectations ignore it."""
        return None

    def objective(self, params: Params, n_samples: int = 1) -> Tensor | None:
        """The exact objective at ``params`` (repeat dimension ``[R, ...]``): ``[R]``, if known.
        E_q[f], or L_K for a multi-sample objective with K = ``n_samples``."""
        return None

    def objective_terms(self, params: Params, n_samples: int = 1) -> Tensor | None:
        """The exact objective per factor ``[R, F]`` (``objective`` is its sum), if known."""
        total = self.objective(params, n_samples)
        return None if total is None else total.unsqueeze(-1)

    # factors, multi-sample objectives and context: see the module docstring -----------------

    @property
    def n_factors(self) -> int:
        """F, the number of independent factors of the latent (1: none)."""
        return 1

    @property
    def factor_scale(self) -> float:
        """The weight of each factor's term in the objective: ``f = scale * sum_i f_i(z_i)``
        with f_i = -log w(z_i) on ``LOG_WEIGHTS`` problems (1/B for a minibatch mean)."""
        return 1.0

    @property
    def local_signals(self) -> bool:
        """Whether score-function estimators give each factor its own learning signal (an
        option of some problems, so that the whole-cost signal can be measured too)."""
        return True

    def signals(self, terms: Tensor) -> Tensor:
        """Per-factor terms ``[..., F]`` as the learning signals (or scores) that estimators
        pair up: unchanged with local signals, else summed into one factor ``[..., 1]``."""
        return terms if self.local_signals else terms.sum(-1, keepdim=True)

    def cost_terms(self, z: Tensor, params: Params, *, detach_q: bool = False) -> Tensor:
        """Per-factor costs ``scale * f_i(z_i, theta)``: ``[K, R, *event]`` -> ``[K, R, F]``,
        summing to ``cost``. With ``detach_q`` (``Capability.LOG_WEIGHTS`` only), the log q term
        is evaluated at parameters cut from the graph, as "sticking the landing" (Roeder et al.
        2017) and DReG (Tucker et al. 2019) need."""
        if detach_q:
            raise NotImplementedError(f"{self.name} does not separate log q in its cost")
        return self.cost(z, params).unsqueeze(-1)

    def log_weights(self, z: Tensor, params: Params, *, detach_q: bool = False) -> Tensor:
        """Per-factor log importance weights log w(z_i) = log p(x_i, z_i) - log q(z_i | x_i):
        ``[K, R, *event]`` -> ``[K, R, F]`` (``Capability.LOG_WEIGHTS``)."""
        return -self.cost_terms(z, params, detach_q=detach_q) / self.factor_scale

    def joint_cost_terms(self, z: Tensor, params: Params, *, detach_q: bool = False) -> Tensor:
        """The K-sample negative bound per factor, ``-scale * log (1/K) sum_k w(z_k)``:
        ``[K, R, *event]`` -> ``[R, F]`` (``Capability.MULTI_SAMPLE``)."""
        log_w = self.log_weights(z, params, detach_q=detach_q)  # [K, R, F]
        return -self.factor_scale * (torch.logsumexp(log_w, 0) - math.log(log_w.shape[0]))

    def log_prob_terms(self, dist: Distribution, z: Tensor) -> Tensor:
        """Per-factor log q_theta(z_i | x_i): ``[K, R, *event]`` -> ``[K, R, F]``. Bernoulli
        latents take ``bernoulli_log_mass`` (the same values, K times less work)."""
        base, summed = dist, 0
        while isinstance(base, Independent):
            summed += base.reinterpreted_batch_ndims
            base = base.base_dist
        if self.n_factors == 1:
            if isinstance(base, Bernoulli):
                return bernoulli_log_mass(base.logits, z, summed, base.probs).unsqueeze(-1)
            return dist.log_prob(z).unsqueeze(-1)
        if isinstance(base, Bernoulli):
            return bernoulli_log_mass(base.logits, z, z.dim() - 3, base.probs)
        per_unit = base.log_prob(z)  # [K, R, F, ...]: the units not already summed by base
        return per_unit.flatten(3).sum(-1) if per_unit.dim() > 3 else per_unit

    def context(self) -> Tensor | None:
        """Per-factor features ``[F, C]`` of the current minibatch (``Capability.CONTEXT``)."""
        return None

    def diagnostics(self, params: Params) -> dict[str, float]:
        """Problem-specific measurements at ``params`` (no repeat dimension) that the harness
        writes as extra columns of the cell; keys must be among ``diagnostic_columns``."""
        return {}

    # training hooks: see the module docstring ------------------------------------------------

    def train_params(self) -> Params:
        """Every trained tensor at the start of training (no repeat dimension)."""
        return self.init_params()

    def load_train_params(self, train: Params) -> Params:
        """Adopt the trained-but-not-estimated tensors of ``train``; return the evaluation point."""
        return {name: value.detach().clone() for name, value in train.items()}

    def next_batch(self, step: int, generator: torch.Generator) -> None:
        """Use the minibatch of training step ``step``, drawn with ``generator``."""
        return None

    def reset_batch(self) -> None:
        """Use the fixed evaluation minibatch again."""
        return None

    def before_step(self, train: Params, step: int, generator: torch.Generator) -> None:
        """Extra updates of the problem's own state before training step ``step``."""
        return None

    def train_metrics(self, train: Params) -> dict[str, float]:
        """Evaluation metrics of the model with trained tensors ``train`` (no repeat dimension)."""
        return {}


class _LogNormalizer(torch.autograd.Function):
    """softplus(logits), the Bernoulli's log normalizer, whose gradient sigmoid(logits) is the
    distribution's ``probs``: passed in (sampling has computed them), it is not recomputed.
    ``probs`` is an input so that a second derivative flows through it."""

    @staticmethod
    def forward(ctx: Any, logits: Tensor, probs: Tensor) -> Tensor:
        ctx.save_for_backward(probs)
        return F.softplus(logits)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (probs,) = ctx.saved_tensors
        return grad * probs, None


def bernoulli_log_mass(logits: Tensor, z: Tensor, n_dims: int, probs: Tensor) -> Tensor:
    """log Bernoulli(z; sigmoid(logits)) = z logits - softplus(logits), summed over the last
    ``n_dims`` dimensions: ``z [K, R, ...]`` against ``logits [R, ...]`` -> ``[K, R, ...]``.

    Equal to torch's ``Bernoulli.log_prob`` (to rounding), which broadcasts the logits to the
    K samples and evaluates a log-sigmoid per sample and bit: here the softplus is evaluated
    once per repeat and summed before broadcasting, and its gradient is ``probs``, so K
    samples cost one multiply-add per bit (a quarter less time per REINFORCE-LOO estimate on
    bernoulli_toy, d = 200, K = 2: docs/sweeps.md)."""
    normalizer = _LogNormalizer.apply(logits, probs)
    dims = tuple(range(-n_dims, 0))
    if not dims:
        return z * logits - normalizer
    return (z * logits).sum(dims) - normalizer.sum(dims)


def repeat_params(params: Params, n_repeats: int, requires_grad: bool = True) -> Params:
    """Give each of ``n_repeats`` repeats its own leaf copy: ``[*shape]`` -> ``[R, *shape]``
    (a contiguous copy of a broadcast view: the values of ``repeat``, in a third of its time
    on small tensors, a fixed cost of every chunk of a cell; docs/sweeps.md)."""
    return {
        name: value.detach()
        .expand(n_repeats, *value.shape)
        .clone(memory_format=torch.contiguous_format)
        .requires_grad_(requires_grad)
        for name, value in params.items()
    }


def batched_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """A linear layer with per-repeat weights.

    Args:
        x: ``[R, ..., n_in]`` (any dims between R and the features).
        weight: ``[R, n_in, n_out]``.
        bias: ``[R, n_out]`` or None.

    Returns:
        ``[R, ..., n_out]``.
    """
    lead = x.shape[1:-1]
    flat = x.reshape(x.shape[0], -1, x.shape[-1])  # [R, N, n_in]
    out = torch.bmm(flat, weight)  # [R, N, n_out]
    if bias is not None:
        out = out + bias.unsqueeze(1)
    return out.reshape(x.shape[0], *lead, weight.shape[-1])


def broadcast_factors(values: Tensor, event_shape: torch.Size) -> Tensor:
    """Give every unit of the latent its factor's value: ``[..., F]`` -> ``[..., *event]``.

    With F = 1 (no factors, or signals summed by ``Problem.signals``) the one value covers the
    whole event; else the event is ``[F, *unit]`` and factor i's value covers ``z[..., i, ...]``.
    """
    lead, n_factors = values.shape[:-1], values.shape[-1]
    if n_factors == 1:
        view = values.reshape(*lead, *([1] * len(event_shape)))
    else:
        view = values.reshape(*lead, n_factors, *([1] * (len(event_shape) - 1)))
    return view.expand(*lead, *event_shape)
