"""The parts of the GAN-critic problems (``problems.gan_critic``) that are not the Problem
contract: the continuous generator's distribution and the discrete targets (prototype
sequences with token noise, or binarized digits), their log-probabilities, exact total
variation and mode regions.

References: Lin et al. (2018), "PacGAN", NeurIPS (packs); Metz et al. (2017), ICLR; Alpaydin
& Kaynak (1998), UCI optical recognition of handwritten digits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

from problems.base import LatentKind, Params, batched_linear
from problems.critic import seeded
from problems.enumeration import enumerate_support


class NoisyGenerator(Distribution):
    """The joint law of the generator's noise and output: z = (eps, x) with

        eps ~ N(0, I_k),   x | eps ~ N(G_theta(eps), s^2 I_d),

    G_theta(eps) = W2 tanh(W1 eps + b1) + b2, so that
    ``log q_theta(eps, x) = log N(eps; 0, I) + log N(x; G_theta(eps), s^2 I)`` is exact and
    ``rsample`` is the reparameterization x = G_theta(eps) + s xi, xi ~ N(0, I). Event shape
    ``[pack, k + d]``: a pack of iid draws, each the concatenation (eps, x).

    Args:
        params: ``w1 [R, k, h]``, ``b1 [R, h]``, ``w2 [R, h, d]``, ``b2 [R, d]``.
        pack: draws per latent sample.
        output_std: s.
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real
    has_rsample = True

    def __init__(self, params: Params, pack: int, output_std: float) -> None:
        self.params = params
        self.pack = pack
        self.output_std = output_std
        self.noise_dim = params["w1"].shape[1]
        self.dim = params["w2"].shape[2]
        super().__init__(
            batch_shape=params["w1"].shape[:1],
            event_shape=torch.Size([pack, self.noise_dim + self.dim]),
            validate_args=False,
        )

    def mean_output(self, eps: Tensor) -> Tensor:
        """G_theta(eps): ``[R, N, k]`` -> ``[R, N, d]``."""
        p = self.params
        return batched_linear(torch.tanh(batched_linear(eps, p["w1"], p["b1"])), p["w2"], p["b2"])

    def rsample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        n = math.prod(sample_shape)
        n_repeats = self.batch_shape[0]
        w1 = self.params["w1"]
        eps = torch.randn(
            n_repeats, n * self.pack, self.noise_dim, dtype=w1.dtype, device=w1.device
        )  # [R, N*m, k]
        mean = self.mean_output(eps)  # [R, N*m, d]
        x = mean + self.output_std * torch.randn_like(mean)
        z = torch.cat([eps, x], -1).reshape(n_repeats, n, *self.event_shape)  # [R, N, m, k+d]
        return z.movedim(0, 1).reshape(*sample_shape, n_repeats, *self.event_shape)

    def sample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        lead = value.shape[:-2]  # [*S, R]
        n_repeats = self.batch_shape[0]
        flat = value.reshape(-1, n_repeats, *self.event_shape).movedim(1, 0)  # [R, N, m, k+d]
        flat = flat.reshape(n_repeats, -1, self.noise_dim + self.dim)
        eps, x = flat[..., : self.noise_dim], flat[..., self.noise_dim :]
        resid = (x - self.mean_output(eps)) / self.output_std
        log_norm = -0.5 * math.log(2 * math.pi)
        per_draw = (
            (log_norm - 0.5 * eps**2).sum(-1)
            + (log_norm - math.log(self.output_std) - 0.5 * resid**2).sum(-1)
        )  # [R, N*m]
        per_pack = per_draw.reshape(n_repeats, -1, self.pack).sum(-1)  # [R, N]
        return per_pack.movedim(0, 1).reshape(lead)


def mode_prototypes(
    name: str, vocab: int, length: int, modes: int, seed: int, device: torch.device
) -> Tensor:
    """``modes`` distinct prototype sequences ``[M, L]`` of token ids below ``vocab``, drawn
    from ``seed`` (redrawn until distinct)."""
    if modes > vocab**length:
        raise ValueError(
            f"invalid option modes={modes} for problem {name!r}: expected at most "
            f"vocab**length = {vocab**length} distinct prototypes"
        )
    with seeded(seed, device):
        prototypes = torch.randint(vocab, (modes, length))
        while len(torch.unique(prototypes, dim=0)) < modes:
            prototypes = torch.randint(vocab, (modes, length))
    return prototypes.to(device)


def digit_images(device: torch.device) -> tuple[Tensor, Tensor]:
    """The 1797 scikit-learn 8 x 8 digits thresholded at half the maximum grey level, as
    binary token ids ``[1797, 64]``, and the 10 prototypes ``[10, 64]``: the thresholded class
    means."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.as_tensor(digits.data > 8).long()  # [1797, 64] grey levels 0..16
    labels = torch.as_tensor(digits.target)
    prototypes = torch.stack(
        [(images[labels == c].double().mean(0) > 0.5).long() for c in range(10)]
    )
    return images.to(device), prototypes.to(device)


def noisy_modes_log_prob(tokens: Tensor, prototypes: Tensor, vocab: int, eps: float) -> Tensor:
    """log p(x) of sequences ``[N, L]`` under the mixture of the prototypes ``[M, L]``, each
    token kept with probability 1 - eps, else one of the ``vocab - 1`` others: ``[N]``."""
    match = tokens.unsqueeze(1) == prototypes  # [N, M, L]
    keep = torch.tensor(1 - eps, dtype=torch.float64).log()
    swap = torch.tensor(eps / (vocab - 1), dtype=torch.float64).log()
    per_mode = torch.where(match, keep, swap).sum(-1)  # [N, M]
    return torch.logsumexp(per_mode, -1) - math.log(len(prototypes))


def total_variation(
    log_q_table: Tensor, target_log_prob: Callable[[Tensor], Tensor], chunk_size: int
) -> float:
    """TV(q, p) = 1/2 sum_x |q(x) - p(x)| over the V^L sequences, q the independent tokens
    of ``log_q_table`` ``[L, V]``, p given by ``target_log_prob`` of token ids."""
    length, vocab = log_q_table.shape
    total = 0.0
    for x in enumerate_support(
        LatentKind.CATEGORICAL, torch.Size([length, vocab]), chunk_size,
        dtype=torch.float64, device=log_q_table.device,
    ):
        log_q = (x * log_q_table).sum((-1, -2))
        p = target_log_prob(x.argmax(-1)).exp()
        total += (log_q.exp() - p).abs().sum().item()
    return 0.5 * total


def hamming_shares(tokens: Tensor, prototypes: Tensor, radius: int) -> Tensor:
    """Fraction of the sequences ``[N, L]`` in each prototype's region ``[M]``: those whose
    nearest prototype (Hamming distance, ties to the lower index) is it and lies within
    ``radius``."""
    distance = (tokens.unsqueeze(1) != prototypes).sum(-1)  # [N, M]
    nearest = distance.min(-1)
    inside = (nearest.values <= radius).to(torch.float64)  # [N]
    one_hot = torch.nn.functional.one_hot(nearest.indices, len(prototypes))
    return (one_hot.to(torch.float64) * inside.unsqueeze(-1)).mean(0)


def disk_shares(points: Tensor, centres: Tensor, radius: float) -> Tensor:
    """Fraction of the points ``[N, 2]`` within ``radius`` of each centre ``[C, 2]``: ``[C]``."""
    inside = torch.cdist(points, centres) <= radius  # [N, C]
    return inside.to(torch.float64).mean(0)


def ring_centres(modes: int, radius: float) -> Tensor:
    """``modes`` points equally spaced on the circle of ``radius``, from angle 0: ``[C, 2]``
    in float64."""
    angles = 2 * math.pi * torch.arange(modes, dtype=torch.float64)
    angles = angles / modes
    return radius * torch.stack([angles.cos(), angles.sin()], -1)
