"""GAN-critic problems: the generator's gradient through a fixed, partly trained critic.

In GAN training the generator follows the gradient of ``E_{x ~ p_theta}[c(D(x))]`` through
the critic D, with ``c(D) = softplus(-D)`` (non-saturating GAN) or ``c(D) = -D`` (WGAN). Here
the critic (``problems.critic``) is an MLP trained for ``critic_steps`` steps, with a fixed
seed, against the generator at its initial parameters; it is then held fixed, and the
problem is the generator's gradient at that snapshot.

This module holds their shared base, ``GanCritic``, and ``gan_continuous``;
``gan_discrete`` is ``problems.gan_discrete``'s.

Training (``bench train``, hooks of ``problems.base``): before each generator step the
critic takes ``critic_updates`` Adam steps on ``critic_batch`` real packs (drawn with the
trainer's minibatch generator, so every estimator sees the same real data) and as many
packs from the current generator; it starts from the snapshot critic. ``train_metrics``
reports the generator's distance to the target, the number of target modes it covers (the
criterion is ``COVERAGE_FRACTION``, see each problem's ``mode_coverage``) and the critic
diagnostics, from a fixed-seed evaluation sample.

Packing (PacGAN, ``pack = m``). One latent sample is one *pack* of m independent generator
draws, which the critic scores jointly, so the cost of K samples uses K * m generator draws
and the objective is ``E_{x_1..x_m iid p_theta}[c(D(x_1, ..., x_m))]``; its gradient is what
the generator follows in PacGAN. m = 1 is the ordinary GAN.

References: Goodfellow et al. (2014), NeurIPS; Arjovsky et al. (2017), ICML; Gulrajani et
al. (2017), NeurIPS; Lin et al. (2018), "PacGAN", NeurIPS; Metz et al. (2017), "Unrolled
Generative Adversarial Networks", ICLR (the ring of 8 Gaussians); Yu et al. (2017),
"SeqGAN", AAAI, and Jang et al. (2017), ICLR (score-function and Gumbel-Softmax gradients
for discrete GANs).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from problems.base import (
    Capability,
    LatentKind,
    Params,
    Problem,
    StressSetting,
    Truth,
    repeat_params,
)
from problems.critic import (
    CRITIC_OPTIONS,
    N_EVAL,
    Critic,
    CriticConfig,
    energy_distance,
    generator_cost,
    seeded,
)
from problems.gan_parts import (
    NoisyGenerator,
    disk_shares,
    ring_centres,
)
from problems.gan_quadrature import grid_quadrature_gradient
from problems.options import Option, resolve_options
from problems.truth import TruthSource

#: a mode counts as covered when the generator puts at least this fraction of the target's
#: mass into the mode's region (see ``mode_coverage``)
COVERAGE_FRACTION = 0.25


class GanCritic(Problem):
    """Shared machinery: the cached critic, the cost through it, diagnostics.

    Subclasses define how a latent sample becomes the critic's input (``critic_input``), the
    number of features of one generator draw (``features``), how to draw from the target
    (``target_draws``) and the training metrics (``generator_metrics``).

    Random streams, each under its own seed so that none depends on another: ``seed`` draws
    the generator's initial parameters, ``seed + 1`` the critic's weights and training data,
    ``seed + 2`` the evaluation samples of the diagnostics and metrics, ``seed + 3`` the
    target's prototypes; all run under a forked RNG (``problems.critic.seeded``).
    """

    diagnostic_columns = ("critic_dead_fraction", "critic_lipschitz")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pack: int = self.option_values["pack"]
        self._critic: Critic | None = None

    @property
    @abstractmethod
    def features(self) -> int:
        """Critic input features of one generator draw."""

    @abstractmethod
    def critic_input(self, z: Tensor) -> Tensor:
        """Latent packs ``[..., *event]`` -> critic inputs ``[..., pack * features]``."""

    @abstractmethod
    def target_draws(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws from the target as critic features ``[n, features]``, drawn with
        ``generator`` (default: the global RNG)."""

    @abstractmethod
    def generator_metrics(self, params: Params) -> dict[str, float]:
        """The generator's distance to the target and the modes it covers at ``params``."""

    def target_packs(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` packs of ``pack`` iid target draws: ``[n, pack * features]``."""
        draws = self.target_draws(n * self.pack, generator)
        return draws.reshape(n, self.pack * self.features)

    def generator_packs(self, params: Params, n: int) -> Tensor:
        """``n`` exact generator packs at ``params`` (no repeat dim): ``[n, pack * features]``."""
        with torch.no_grad():
            z = self.distribution(repeat_params(params, 1, False)).sample((n,))  # [n, 1, *event]
        return self.critic_input(z)[:, 0]

    @property
    def critic(self) -> Critic:
        """The critic, trained on first use (deterministic given ``seed``) and cached.

        The snapshot is defined in float64 on the CPU: on another device or dtype the problem
        trains the critic on such a twin and casts it, so every device and dtype measures the
        same problem."""
        if self._critic is None and (self.device.type != "cpu" or self.dtype != torch.float64):
            twin = type(self)(self.option_values, device="cpu", dtype=torch.float64)
            self._critic = twin.critic.to(self.device, self.dtype)
        if self._critic is None:
            config = CriticConfig.from_options(self.option_values)
            point = self.init_params()
            with seeded(self.option_values["seed"] + 1, self.device):
                critic = Critic(
                    self.pack * self.features, config, dtype=self.dtype, device=self.device
                )
                for _ in range(self.option_values["critic_steps"]):
                    critic.step(
                        self.target_packs(config.batch), self.generator_packs(point, config.batch)
                    )
            self._critic = critic
        return self._critic

    def cost(self, z: Tensor, params: Params) -> Tensor:
        return generator_cost(
            self.critic(self.critic_input(z)), self.option_values["loss"]
        )  # [K, R]

    def diagnostics(self, params: Params) -> dict[str, float]:
        """``critic_dead_fraction``: fraction of the critic's hidden units inactive on all of
        ``N_EVAL`` generator packs at ``params`` (see ``Critic.dead_fraction``);
        ``critic_lipschitz``: the largest input-gradient norm of the critic over those packs
        and their interpolates with as many target packs (see ``Critic.lipschitz_estimate``),
        a lower bound of its Lipschitz constant. Fixed seed: the same samples every call."""
        critic = self.critic
        with seeded(self.option_values["seed"] + 2, self.device):
            fake = self.generator_packs(params, N_EVAL)
            real = self.target_packs(N_EVAL)
            return {
                "critic_dead_fraction": critic.dead_fraction(fake),
                "critic_lipschitz": critic.lipschitz_estimate(fake, real),
            }


    def before_step(self, train: Params, step: int, generator: torch.Generator) -> None:
        """``critic_updates`` critic steps against the generator at ``train``."""
        batch = self.option_values["critic_batch"]
        for _ in range(self.option_values["critic_updates"]):
            self.critic.step(
                self.target_packs(batch, generator), self.generator_packs(train, batch)
            )

    def train_metrics(self, train: Params) -> dict[str, float]:
        """``generator_metrics`` and ``diagnostics`` at ``train``."""
        with seeded(self.option_values["seed"] + 2, self.device):
            metrics = self.generator_metrics(train)
        return metrics | self.diagnostics(train)


class GanContinuous(GanCritic):
    """A continuous generator's gradient through a partly trained critic; 2-D ring target.

    Generator: eps ~ N(0, I_k), x = G_theta(eps) + s xi with G_theta a one-hidden-layer tanh
    MLP (``NoisyGenerator``). The latent is z = (eps, x), whose density
    q_theta(eps, x) = N(eps; 0, I) N(x; G_theta(eps), s^2 I) is exact, so both the pathwise
    estimator (x = G_theta(eps) + s xi) and score-function estimators
    (d/dtheta log q_theta(z) = d/dtheta log N(x; G_theta(eps), s^2 I)) are unbiased for

        L(theta) = E_{z ~ q_theta}[c(D(x_1, ..., x_m))],

    c the generator cost of ``loss``, D the fixed critic, x_i the outputs of the pack. The
    target is a mixture of ``modes`` isotropic Gaussians (std ``mode_std``) with means
    equally spaced on a circle of radius ``radius``. No closed form exists: ``truth`` is
    ``reference`` (the harness estimates it with the pathwise estimator, so a ``reparam`` cell
    is marked as compared with itself), ``none``, or, at ``noise_dim=1`` and ``pack=1``,
    ``quadrature`` (``problems.gan_quadrature``), the independent check of ``reparam``.

    References: Goodfellow et al. (2014); Metz et al. (2017), ICLR (8-Gaussian ring);
    Mohamed et al. (2020), JMLR, Sections 4-5.
    """

    name = "gan_continuous"
    # tested in tests/test_gan.py (enumeration and grid-quadrature truth)
    example_options: ClassVar[dict] = {
        "noise_dim": 1, "gen_width": 4, "critic_width": 16, "critic_steps": 100,
    }
    benchmark_options: ClassVar[dict] = {}
    # the exact quadrature truth: the independent check of the reparam reference
    verify_settings = (StressSetting({"noise_dim": 1, "gen_width": 4, "critic_width": 16,
                                      "critic_steps": 20, "truth": "quadrature"}),)
    description = "generator x = G(eps) + s*xi through a trained MLP critic; ring of Gaussians"
    latent = LatentKind.CONTINUOUS
    provides = frozenset({Capability.RSAMPLE, Capability.DIFFERENTIABLE_COST})
    options: ClassVar[dict[str, Option]] = {
        **CRITIC_OPTIONS,
        "modes": Option(8, "Gaussians on the target ring", minimum=1),
        "radius": Option(2.0, "radius of the target ring", minimum=0, exclusive=True),
        "mode_std": Option(0.05, "std of each target Gaussian", minimum=0, exclusive=True),
        "noise_dim": Option(2, "generator noise dimension k", minimum=1),
        "gen_width": Option(32, "hidden units of the generator", minimum=1),
        "output_std": Option(0.1, "generator output noise s", minimum=0, exclusive=True),
        "truth": Option("reference", "reference (harness estimate of reparam), quadrature "
                        "(exact, noise_dim=1 and pack=1 only) or none",
                        choices=("reference", "quadrature", "none")),
    }

    @classmethod
    def truth_of(cls, options: Mapping[str, Any] | None = None,
                 n_samples: int = 1) -> TruthSource:
        """``reference``: the mean of ``reparam`` estimates, which ``truth=quadrature``
        checks (``problems.gan_quadrature``); ``quadrature``; ``none``."""
        values = resolve_options(f"problem {cls.name!r}", cls.options, options or {})
        if values["truth"] == "none":
            return TruthSource.none()
        if values["truth"] == "quadrature":
            return TruthSource.quadrature()
        return TruthSource.reference(
            "reparam", checked_by="truth=quadrature at noise_dim=1, pack=1 (tests/test_gan.py)")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        values = self.option_values
        if values["truth"] == "quadrature" and (values["noise_dim"], values["pack"]) != (1, 1):
            raise ValueError(
                f"invalid option truth=quadrature for problem {self.name!r}: it needs "
                f"noise_dim=1 and pack=1, got noise_dim={values['noise_dim']}, "
                f"pack={values['pack']}; use truth=reference or none")
        self.centres = self.tensor(ring_centres(values["modes"], values["radius"]))  # [C, 2]

    @property
    def features(self) -> int:
        return 2

    def init_params(self) -> Params:
        """Weights drawn like PyTorch's ``nn.Linear`` default, from ``seed``."""
        k, h = self.option_values["noise_dim"], self.option_values["gen_width"]
        with seeded(self.option_values["seed"], torch.device("cpu")):
            def uniform(fan_in: int, *shape: int) -> Tensor:  # same draws on every device/dtype
                draw = torch.rand(*shape, dtype=torch.float64).to(self.device, self.dtype)
                return (2 * draw - 1) / math.sqrt(fan_in)

            return {
                "w1": uniform(k, k, h), "b1": uniform(k, h),
                "w2": uniform(h, h, 2), "b2": uniform(h, 2),
            }

    def distribution(self, params: Params) -> NoisyGenerator:
        return NoisyGenerator(params, self.pack, self.option_values["output_std"])

    def critic_input(self, z: Tensor) -> Tensor:
        x = z[..., self.option_values["noise_dim"] :]  # [..., m, 2]
        return x.reshape(*x.shape[:-2], self.pack * 2)

    def target_draws(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        index = torch.randint(len(self.centres), (n,), generator=generator)
        noise = torch.randn(n, 2, dtype=self.dtype, generator=generator)
        return self.centres[index.to(self.device)] + self.option_values["mode_std"] * noise.to(
            self.device
        )

    def generator_metrics(self, params: Params) -> dict[str, float]:
        """``energy_distance`` between ``N_EVAL * pack`` generator and as many target draws
        (``problems.critic.energy_distance``) and ``modes_covered`` (``mode_coverage``)."""
        x = self.generator_packs(params, N_EVAL).reshape(-1, 2)
        y = self.target_draws(len(x))
        return {
            "energy_distance": energy_distance(x, y),
            "modes_covered": float(self.mode_coverage(x, y)),
        }

    def truth(self, params: Params, n_samples: int = 1) -> Truth | None:
        """``truth=quadrature``: the grid quadrature of ``problems.gan_quadrature``; else
        None (the reference is the harness's, ``bench.cell.truth``)."""
        if self.option_values["truth"] != "quadrature":
            return None
        grad = grid_quadrature_gradient(self, params)
        return Truth(grad={k: g.to(self.dtype) for k, g in grad.items()}, kind="quadrature")

    def coverage_radius(self) -> float:
        """rho = 3 sqrt(mode_std^2 + s^2): 3 std of a generator that outputs a mode's centre."""
        return 3 * math.hypot(self.option_values["mode_std"], self.option_values["output_std"])

    def mode_coverage(self, x: Tensor, y: Tensor) -> int:
        """Modes covered by generator draws ``x`` ``[N, 2]``, judged against target draws ``y``.

        Mode c's region is the disk of radius ``coverage_radius()`` around its centre; c is
        covered when the fraction of x in it is at least ``COVERAGE_FRACTION`` times the
        fraction of y in it.
        """
        radius = self.coverage_radius()
        shares = [disk_shares(points, self.centres, radius) for points in (x, y)]
        return int((shares[0] >= COVERAGE_FRACTION * shares[1]).sum())
