"""The GAN critic: an MLP discriminator, its losses, Lipschitz constraints and diagnostics.

The critic ``D: R^n -> R`` is a fully connected network with ``depth`` hidden layers of
``width`` units (ReLU or LeakyReLU) and a scalar output logit. With PacGAN packing the
input is the concatenation of ``m`` samples, so ``n = m * features``.

Losses (x real, x~ generated, D the logit):

* ``gan`` (non-saturating GAN): the critic minimises softplus(-D(x)) + softplus(D(x~)),
  the binary cross-entropy of sigmoid(D); the generator cost is -log sigmoid(D(x~)) =
  softplus(-D(x~)).
* ``wgan`` (Wasserstein GAN): the critic minimises D(x~) - D(x); the generator cost is
  -D(x~).

Lipschitz constraints: ``clip`` clamps every critic weight and bias to ``[-c, c]`` after each
step (WGAN); ``gp`` adds ``lambda * (||grad_x D(x^)||_2 - 1)^2`` at random interpolates
``x^ = a x + (1 - a) x~``, ``a ~ U(0, 1)`` (WGAN-GP); ``none`` adds nothing.

References: Goodfellow et al. (2014), "Generative Adversarial Nets", NeurIPS; Arjovsky,
Chintala, Bottou (2017), "Wasserstein GAN", ICML; Gulrajani et al. (2017), "Improved
Training of Wasserstein GANs", NeurIPS; Lin et al. (2018), "PacGAN: The power of two
samples in generative adversarial networks", NeurIPS; Maas, Hannun, Ng (2013), "Rectifier
Nonlinearities Improve Neural Network Acoustic Models" (LeakyReLU), ICML workshop.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from problems.options import Option

LOSSES = ("gan", "wgan")
LIPSCHITZ = ("none", "clip", "gp")
ACTIVATIONS = ("relu", "leaky_relu")

#: options shared by every GAN-critic problem
CRITIC_OPTIONS: dict[str, Option] = {
    "loss": Option("gan", "gan: non-saturating -log D(x); wgan: -D(x)", choices=LOSSES),
    "lipschitz": Option(
        "none", "critic constraint: none, clip (weight clipping), gp (gradient penalty)",
        choices=LIPSCHITZ,
    ),
    "clip": Option(0.01, "weight-clipping bound c (lipschitz=clip)", minimum=0, exclusive=True),
    "gp_weight": Option(10.0, "gradient-penalty weight lambda (lipschitz=gp)", minimum=0),
    "activation": Option("relu", "critic hidden activation", choices=ACTIVATIONS),
    "slope": Option(0.2, "negative slope of leaky_relu", minimum=0, exclusive=True, maximum=1),
    "pack": Option(1, "PacGAN packing m: the critic scores m samples jointly", minimum=1),
    "critic_steps": Option(200, "critic training steps before the snapshot", minimum=0),
    "critic_width": Option(64, "hidden units per critic layer", minimum=1),
    "critic_depth": Option(2, "hidden layers of the critic", minimum=1),
    "critic_lr": Option(1e-3, "critic Adam learning rate", minimum=0, exclusive=True),
    "critic_batch": Option(128, "real and generated packs per critic step", minimum=1),
    "critic_updates": Option(
        1, "critic steps before each generator step in bench train", minimum=0
    ),
    "seed": Option(
        0, "seed of the target, the generator's initial weights and the critic", minimum=0
    ),
}

#: samples drawn for the diagnostics and the training metrics
N_EVAL = 1024


@dataclass(frozen=True)
class CriticConfig:
    """The critic options of a problem, typed."""

    loss: str
    lipschitz: str
    clip: float
    gp_weight: float
    activation: str
    slope: float
    width: int
    depth: int
    lr: float
    batch: int

    @classmethod
    def from_options(cls, values: dict) -> CriticConfig:
        return cls(
            loss=values["loss"], lipschitz=values["lipschitz"], clip=values["clip"],
            gp_weight=values["gp_weight"], activation=values["activation"], slope=values["slope"],
            width=values["critic_width"], depth=values["critic_depth"], lr=values["critic_lr"],
            batch=values["critic_batch"],
        )


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run the block under ``torch.manual_seed(seed)`` and restore the caller's RNG state after,
    so that building a problem neither depends on nor disturbs the global random stream."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def energy_distance(x: Tensor, y: Tensor) -> float:
    """The energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` between the samples
    ``x`` ``[N, d]`` and ``y`` ``[M, d]`` (Euclidean norm; U-statistics, i != j in the
    within-sample terms). Zero iff the laws are equal; no kernel or bandwidth to choose.

    References: Szekely & Rizzo (2013), "Energy statistics: A class of statistics based on
    distances", Journal of Statistical Planning and Inference 143(8).
    """
    x, y = x.double(), y.double()

    def within(a: Tensor) -> Tensor:
        n = a.shape[0]
        return torch.cdist(a, a).sum() / (n * (n - 1))

    return (2 * torch.cdist(x, y).mean() - within(x) - within(y)).item()


def generator_cost(logit: Tensor, loss: str) -> Tensor:
    """The generator's cost of a generated pack with critic logit D: softplus(-D) or -D."""
    return F.softplus(-logit) if loss == "gan" else -logit


class Critic:
    """The MLP critic with its own Adam optimiser, so it can keep training (``bench train``).

    Args:
        n_in: input features (``pack * features per sample``).
        config: the critic options.
    """

    def __init__(
        self, n_in: int, config: CriticConfig, *, dtype: torch.dtype, device: torch.device
    ) -> None:
        self.config = config
        sizes = [n_in] + [config.width] * config.depth + [1]
        self.weights: list[Tensor] = []
        self.biases: list[Tensor] = []
        for fan_in, fan_out in itertools.pairwise(sizes):
            bound = 1 / math.sqrt(fan_in)  # PyTorch's nn.Linear default initialisation
            weight = (torch.rand(fan_in, fan_out, dtype=dtype, device=device) * 2 - 1) * bound
            bias = (torch.rand(fan_out, dtype=dtype, device=device) * 2 - 1) * bound
            self.weights.append(weight.requires_grad_())
            self.biases.append(bias.requires_grad_())
        self.optimizer = torch.optim.Adam(self.parameters(), lr=config.lr, betas=(0.5, 0.9))
        self.steps = 0

    def parameters(self) -> list[Tensor]:
        return self.weights + self.biases

    def to(self, device: torch.device, dtype: torch.dtype) -> Critic:
        """A copy with the weights cast to ``device`` and ``dtype`` and a fresh optimiser."""
        copy = Critic.__new__(Critic)
        copy.config, copy.steps = self.config, self.steps
        copy.weights = [w.detach().to(device, dtype).requires_grad_() for w in self.weights]
        copy.biases = [b.detach().to(device, dtype).requires_grad_() for b in self.biases]
        copy.optimizer = torch.optim.Adam(copy.parameters(), lr=self.config.lr, betas=(0.5, 0.9))
        return copy

    def state(self) -> list[Tensor]:
        """A detached copy of the weights (to compare two critics)."""
        return [p.detach().clone() for p in self.parameters()]

    def _act(self, pre: Tensor) -> Tensor:
        if self.config.activation == "relu":
            return F.relu(pre)
        return F.leaky_relu(pre, self.config.slope)

    def forward(self, x: Tensor, trainable: bool = False) -> tuple[Tensor, list[Tensor]]:
        """The logit ``[...]`` of inputs ``[..., n_in]`` and the hidden pre-activations
        (one ``[..., width]`` per layer). Unless ``trainable``, the weights are constants."""
        hidden = []
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            if not trainable:
                weight, bias = weight.detach(), bias.detach()
            x = x @ weight + bias
            if i < len(self.weights) - 1:
                hidden.append(x)
                x = self._act(x)
        return x.squeeze(-1), hidden

    def __call__(self, x: Tensor) -> Tensor:
        """The logit D(x) ``[...]`` of packs ``[..., n_in]``, with the critic held fixed."""
        return self.forward(x)[0]

    def loss(self, real: Tensor, fake: Tensor) -> Tensor:
        """The critic's training loss on packs ``[B, n_in]`` (penalty included)."""
        real_logit = self.forward(real, trainable=True)[0]
        fake_logit = self.forward(fake, trainable=True)[0]
        if self.config.loss == "gan":
            loss = F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean()
        else:
            loss = fake_logit.mean() - real_logit.mean()
        if self.config.lipschitz == "gp":
            alpha = torch.rand(real.shape[0], 1, dtype=real.dtype, device=real.device)
            mix = (alpha * real + (1 - alpha) * fake).requires_grad_()
            (grad,) = torch.autograd.grad(
                self.forward(mix, trainable=True)[0].sum(), mix, create_graph=True
            )
            loss = loss + self.config.gp_weight * ((grad.norm(dim=-1) - 1) ** 2).mean()
        return loss

    @torch.enable_grad()
    def step(self, real: Tensor, fake: Tensor) -> float:
        """One Adam step on real and generated packs ``[B, n_in]``; clips after it if asked.

        Returns:
            the critic loss before the step.
        """
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(real.detach(), fake.detach())
        loss.backward()
        self.optimizer.step()
        if self.config.lipschitz == "clip":
            with torch.no_grad():
                for p in self.parameters():
                    p.clamp_(-self.config.clip, self.config.clip)
        self.steps += 1
        return loss.item()

    def dead_fraction(self, x: Tensor) -> float:
        """Fraction of hidden units inactive on every one of the packs ``x`` ``[N, n_in]``.

        A ReLU unit is inactive on a pack when its output is exactly 0 (pre-activation
        <= 0); a LeakyReLU unit when its pre-activation is < 0 (it then passes only
        ``slope`` times the gradient). Units of all hidden layers count equally.
        """
        with torch.no_grad():
            _, hidden = self.forward(x)
        dead = [
            (h <= 0 if self.config.activation == "relu" else h < 0).all(0) for h in hidden
        ]  # each [width]
        return torch.cat(dead).to(torch.float64).mean().item()

    @torch.enable_grad()
    def lipschitz_estimate(self, fake: Tensor, real: Tensor) -> float:
        """max ||grad_x D(x)||_2 over the generated packs ``fake`` ``[N, n_in]`` and the
        interpolates ``a real + (1 - a) fake`` (a ~ U(0, 1), one per pair): an empirical
        lower bound of the critic's Lipschitz constant in the Euclidean norm of its input."""
        alpha = torch.rand(fake.shape[0], 1, dtype=fake.dtype, device=fake.device)
        x = torch.cat([fake, alpha * real + (1 - alpha) * fake]).detach().requires_grad_()
        (grad,) = torch.autograd.grad(self(x).sum(), x)
        return grad.norm(dim=-1).max().item()
