"""Discrete latents as estimators see them: logits, hard samples, relaxations.

A problem with ``Capability.DISCRETE`` returns from ``distribution`` an ``Independent``
wrapper (possibly none) around ``Bernoulli(logits=...)`` or ``OneHotCategorical(logits=...)``
(``problems.base``). Estimators that draw their own noise (antithetic pairs, conditional
Gumbels, relaxations) read the logits here, build hard samples from their own uniforms and
evaluate the problem's cost at hard and, with ``Capability.DIFFERENTIABLE_COST``, relaxed
inputs. Gradients flow from the logits back to the problem's parameters, so an estimator that
computes d(loss)/d(logits) writes its surrogate as ``(stopgrad(g) * logits).sum()``.

A bit with logit theta is the 2-class categorical with logits (theta, 0): estimators of the
categorical family treat binary latents that way (``binary_as_categorical``).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import (
    Bernoulli,
    Distribution,
    Independent,
    OneHotCategorical,
    RelaxedBernoulli,
    RelaxedOneHotCategorical,
)


def unwrap(dist: Distribution) -> tuple[Distribution, int]:
    """The base distribution and the number of batch dims ``Independent`` reinterprets."""
    if isinstance(dist, Independent):
        return dist.base_dist, dist.reinterpreted_batch_ndims
    return dist, 0


def relax(dist: Distribution, tau: float) -> Distribution:
    """The Concrete relaxation of a Bernoulli or one-hot categorical ``dist`` at temperature tau."""
    base, ndims = unwrap(dist)
    temperature = torch.as_tensor(tau, dtype=base.logits.dtype, device=base.logits.device)
    if isinstance(base, Bernoulli):
        relaxed: Distribution = RelaxedBernoulli(
            temperature, logits=base.logits, validate_args=False
        )
    elif isinstance(base, OneHotCategorical):
        relaxed = RelaxedOneHotCategorical(temperature, logits=base.logits, validate_args=False)
    else:
        raise TypeError(
            f"cannot relax {type(base).__name__}: expected Bernoulli or OneHotCategorical"
        )
    return Independent(relaxed, ndims) if ndims else relaxed


def harden(dist: Distribution, relaxed: Tensor) -> Tensor:
    """The discrete sample the relaxed one rounds to: threshold 1/2 or one-hot argmax."""
    base, _ = unwrap(dist)
    if isinstance(base, Bernoulli):
        return (relaxed > 0.5).to(relaxed.dtype)
    return torch.zeros_like(relaxed).scatter_(-1, relaxed.argmax(-1, keepdim=True), 1.0)


def mean_of(dist: Distribution) -> Tensor:
    """E[z] of a Bernoulli or one-hot categorical: the probabilities."""
    base, _ = unwrap(dist)
    return base.probs


def is_binary(dist: Distribution) -> bool:
    """Whether ``dist`` is (an ``Independent`` of) Bernoulli; else one-hot categorical."""
    base, _ = unwrap(dist)
    if isinstance(base, Bernoulli):
        return True
    if isinstance(base, OneHotCategorical):
        return False
    raise TypeError(f"expected Bernoulli or OneHotCategorical latents, got {type(base).__name__}")


def logits_of(dist: Distribution) -> Tensor:
    """The logits, differentiable w.r.t. the problem's parameters: ``[R, *event]`` for bits,
    ``[R, *groups, C]`` for one-hot categoricals (the event shape)."""
    is_binary(dist)
    return unwrap(dist)[0].logits


def binary_as_categorical(logits: Tensor) -> Tensor:
    """Bit logits theta ``[...]`` as 2-class logits (theta, 0) ``[..., 2]``; class 0 is 'one'."""
    return torch.stack([logits, torch.zeros_like(logits)], -1)


def by_factor(x: Tensor, event_shape: torch.Size, n_factors: int, binary: bool) -> Tensor:
    """A latent-shaped tensor ``[..., *event]`` viewed per factor and variable: ``[..., F, U]``
    for bits, ``[..., F, U, C]`` for one-hot categoricals, with U the binary or categorical
    variables of one factor (F = 1 for problems without factors, see ``problems.base``)."""
    lead = x.shape[: x.dim() - len(event_shape)]
    return x.reshape(*lead, n_factors, -1) if binary else (
        x.reshape(*lead, n_factors, -1, event_shape[-1]))
