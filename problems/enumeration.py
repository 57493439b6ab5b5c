"""Exact expectations and gradients by enumerating a discrete latent space.

For a discrete q_theta with finite support S, ``L(theta) = sum_{z in S} q_theta(z) f(z, theta)``
is a finite sum; its autograd gradient is the exact gradient (up to floating point). The sum
is taken in chunks of configurations so that memory stays bounded.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import torch
from torch import Tensor

from problems.base import LatentKind, Params, Problem, Truth, repeat_params


def support_size(kind: LatentKind, event_shape: torch.Size) -> int:
    """Number of configurations: ``2^d`` for d bits, ``C^G`` for G groups of C classes."""
    if kind is LatentKind.BINARY:
        return 2 ** math.prod(event_shape)
    if kind is LatentKind.CATEGORICAL:
        *groups, classes = event_shape
        return classes ** math.prod(groups)
    raise ValueError(f"cannot enumerate a {kind.value} latent")


def enumerate_support(
    kind: LatentKind,
    event_shape: torch.Size,
    chunk_size: int,
    *,
    dtype: torch.dtype,
    device: torch.device,
) -> Iterator[Tensor]:
    """Yield all configurations in chunks of ``[N, *event_shape]`` (N <= chunk_size)."""
    if kind is LatentKind.BINARY:
        n_bits = math.prod(event_shape)
        bit_values = 2 ** torch.arange(n_bits, device=device)
        for start in range(0, 2**n_bits, chunk_size):
            index = torch.arange(start, min(start + chunk_size, 2**n_bits), device=device)
            bits = (index.unsqueeze(-1) // bit_values) % 2  # [N, n_bits]
            yield bits.to(dtype).reshape(-1, *event_shape)
    elif kind is LatentKind.CATEGORICAL:
        *groups, classes = event_shape
        n_groups = math.prod(groups)
        eye = torch.eye(classes, dtype=dtype, device=device)
        configs = itertools.product(range(classes), repeat=n_groups)
        while chunk := list(itertools.islice(configs, chunk_size)):
            index = torch.tensor(chunk, device=device)  # [N, G]
            yield eye[index].reshape(-1, *event_shape)
    else:
        raise ValueError(f"cannot enumerate a {kind.value} latent")


def exact_objective(problem: Problem, params: Params, chunk_size: int = 4096) -> Tensor:
    """``sum_z q(z) f(z, theta)`` for params ``[R, ...]`` (repeat dimension): returns ``[R]``."""
    dist = problem.distribution(params)
    total = torch.zeros(dist.batch_shape, dtype=problem.dtype, device=problem.device)
    for z in enumerate_support(
        problem.latent, dist.event_shape, chunk_size, dtype=problem.dtype, device=problem.device
    ):
        z = z.unsqueeze(1).expand(-1, *dist.batch_shape, *dist.event_shape)  # [N, R, *event]
        total = total + (dist.log_prob(z).exp() * problem.cost(z, params)).sum(0)
    return total


def enumeration_truth(
    problem: Problem, params: Params, max_configs: int, chunk_size: int = 4096
) -> Truth | None:
    """The exact gradient by enumeration, or None if the support exceeds ``max_configs``."""
    leaf = repeat_params(params, 1)
    event_shape = problem.distribution(leaf).event_shape
    if support_size(problem.latent, event_shape) > max_configs:
        return None
    objective = exact_objective(problem, leaf, chunk_size).sum()
    grads = torch.autograd.grad(objective, list(leaf.values()), allow_unused=True)
    return Truth(
        grad={
            name: (torch.zeros_like(value[0]) if grad is None else grad[0]).detach()
            for (name, value), grad in zip(leaf.items(), grads, strict=True)
        },
        kind="enumeration",
    )
