"""The problem contract.

A problem is a stochastic objective ``L(theta) = E_{z ~ q_theta}[f(z, theta)]`` whose
gradient ``dL/dtheta`` the estimators estimate. It supplies:

* ``init_params()``: the parameters ``theta`` at which the gradient is evaluated, a dict of
  named tensors without a repeat dimension;
* ``distribution(params)``: ``q_theta`` as a ``torch.distributions`` object;
* ``cost(z, params)``: ``f(z, theta)``;
* ``truth(params)``: the exact gradient (closed form or enumeration) when one exists.

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

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.distributions import Distribution

from problems.options import Option, OptionValue, resolve_options

Params = dict[str, Tensor]


class LatentKind(StrEnum):
    """What the latent variable z is."""

    CONTINUOUS = "continuous"
    BINARY = "binary"
    CATEGORICAL = "categorical"


class Capability(StrEnum):
    """What a problem provides, and so what an estimator may require of it."""

    RSAMPLE = "rsample"  # q_theta has a reparameterized sampler
    DISCRETE = "discrete"  # z is binary or one-hot categorical
    DIFFERENTIABLE_COST = "differentiable_cost"  # f is differentiable in z, defined on relaxed z
    ENUMERABLE = "enumerable"  # the latent space can be enumerated for exact truth


@dataclass(frozen=True)
class Truth:
    """A reference gradient.

    Attributes:
        grad: the gradient per parameter, shapes as in ``init_params()``.
        kind: ``closed_form``, ``enumeration`` or ``reference``.
        se: for ``reference`` truth, the standard error of each coordinate; else None.
    """

    grad: Params
    kind: str
    se: Params | None = None


class Problem(ABC):
    """Base class: subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    description: ClassVar[str]
    latent: ClassVar[LatentKind]
    provides: ClassVar[frozenset[Capability]]
    options: ClassVar[dict[str, Option]]
    #: how the exact gradient is obtained (``closed_form``, ``enumeration``, ``none``)
    truth_kind: ClassVar[str]
    #: registry name of the unbiased estimator used for ``truth=reference`` (see
    #: ``bench.cell.truth``); problems whose options include ``truth`` set it
    reference_estimator: ClassVar[str | None] = None

    def __init__(
        self,
        options: Mapping[str, Any] | None = None,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.opts: dict[str, OptionValue] = resolve_options(
            f"problem {self.name!r}", self.options, options or {}
        )
        self.device = torch.device(device)
        self.dtype = dtype

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

    def truth(self, params: Params) -> Truth | None:
        """The exact gradient at ``params`` (no repeat dimension), or None if unknown."""
        return None

    def objective(self, params: Params) -> Tensor | None:
        """The exact objective E_q[f] at ``params`` (repeat dimension ``[R, ...]``), if known."""
        return None

    def sample_elements(self) -> int:
        """Roughly how many tensor elements evaluating one latent sample of one repeat
        allocates (the sample, the cost's intermediates and their gradients); the harness
        sizes its chunks of repeats from it (``bench.cell.estimate.default_chunk_size``).
        Problems with large costs (networks, minibatches) override it."""
        return 256

    def diagnostics(self, params: Params) -> dict[str, float]:
        """Problem-specific measurements at ``params`` (no repeat dimension) that the harness
        writes as extra columns of the cell; keys must be in ``bench.schema.DIAGNOSTICS``."""
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


def repeat_params(params: Params, n_repeats: int, requires_grad: bool = True) -> Params:
    """Give each of ``n_repeats`` repeats its own leaf copy: ``[*shape]`` -> ``[R, *shape]``."""
    return {
        name: value.detach().unsqueeze(0).repeat(n_repeats, *([1] * value.dim()))
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
