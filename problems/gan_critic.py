"""GAN-critic problems: the generator's gradient through a fixed, partly trained critic.

In GAN training the generator follows the gradient of ``E_{x ~ p_theta}[c(D(x))]`` through
the critic D, with ``c(D) = softplus(-D)`` (non-saturating GAN) or ``c(D) = -D`` (WGAN). Here
the critic (``problems.critic``) is an MLP trained for ``critic_steps`` steps, with a fixed
seed, against the generator at its initial parameters; it is then held fixed, and the
problem is the generator's gradient at that snapshot.

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
from torch.distributions import Independent, OneHotCategorical

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
from problems.enumeration import enumeration_truth, support_size
from problems.gan_parts import (
    NoisyGenerator,
    digit_images,
    disk_shares,
    hamming_shares,
    mode_prototypes,
    noisy_modes_log_prob,
    ring_centres,
    total_variation,
)
from problems.gan_quadrature import grid_quadrature_gradient
from problems.options import Option, resolve_options
from problems.truth import TruthSource

#: a mode counts as covered when the generator puts at least this fraction of the target's
#: mass into the mode's region (see ``mode_coverage``)
COVERAGE_FRACTION = 0.25
#: pixels of the scikit-learn digits (8 x 8), ``gan_discrete``'s L with target=digits
DIGIT_PIXELS = 64


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


class GanDiscrete(GanCritic):
    """A discrete generator's gradient through a partly trained critic on one-hot sequences.

    Generator: L independent tokens, x_l ~ Cat(softmax(logits_l)) over V symbols, as one-hot
    vectors; the logits are drawn N(0, logit_std^2) from ``seed``. A latent sample is a pack
    of m sequences, event ``[m * L, V]`` (rows ``i*L .. (i+1)*L - 1`` are sequence i), and the
    critic reads the flattened ``m * L * V`` one-hot (or relaxed) entries, so the cost is
    defined on relaxed inputs:

        L(logits) = E_{x ~ q}[c(D(x_1, ..., x_m))] = sum_x q(x) c(D(x)).

    Targets (``target``):

    * ``modes``: a mixture of ``modes`` prototype sequences s_c (distinct, drawn from
      ``seed``), each token kept with probability 1 - eps and otherwise replaced by one of
      the V - 1 others uniformly:

          p(x) = (1/M) sum_c prod_l [(1 - eps) 1{x_l = s_cl} + eps / (V - 1) 1{x_l != s_cl}].

    * ``digits``: binary images, the 1797 scikit-learn 8 x 8 digits (bundled, no download)
      thresholded at half the maximum grey level, as L = 64 pixels of V = 2 symbols
      (``length``, ``vocab``, ``modes`` and ``target_noise`` do not apply); p is the
      empirical distribution of the images and its 10 modes are the digit classes, with
      prototypes the thresholded class means.

    Truth: the exact gradient by enumerating the V^(m L) packs when that is at most
    ``max_configs`` (``auto`` or ``enumeration``), else ``reference`` (the harness estimates
    it with REINFORCE-LOO) or ``none``.

    References: Goodfellow et al. (2014); Yu et al. (2017), "SeqGAN", AAAI; Jang et al.
    (2017), ICLR; Lin et al. (2018), NeurIPS; Alpaydin & Kaynak (1998), UCI optical
    recognition of handwritten digits.
    """

    name = "gan_discrete"
    example_options: ClassVar[dict] = {}
    benchmark_options: ClassVar[dict] = {}
    verify_settings = (
        StressSetting({"critic_steps": 20}),
    )
    description = "L tokens of V (one-hot) through a trained MLP critic; multi-modal target"
    latent = LatentKind.CATEGORICAL
    provides = frozenset(
        {Capability.DISCRETE, Capability.DIFFERENTIABLE_COST, Capability.ENUMERABLE}
    )
    options: ClassVar[dict[str, Option]] = {
        **CRITIC_OPTIONS,
        "target": Option("modes", "modes (noisy prototype sequences) or digits (8x8 binary)",
                         choices=("modes", "digits")),
        "length": Option(4, "tokens per sequence L (target=modes)", minimum=1),
        "vocab": Option(4, "vocabulary size V (target=modes)", minimum=2),
        "modes": Option(3, "prototype sequences of the target (target=modes)", minimum=1),
        "target_noise": Option(0.1, "probability eps that a target token is replaced",
                               minimum=0, maximum=1),
        "logit_std": Option(1.0, "std of the generator's initial logits", minimum=0),
        "truth": Option("auto", "auto: enumeration if at most max_configs packs, else none",
                        choices=("auto", "enumeration", "reference", "none")),
        "max_configs": Option(2**16, "largest pack space enumerated for exact truth", minimum=1),
    }

    @classmethod
    def truth_of(cls, options: Mapping[str, Any] | None = None,
                 n_samples: int = 1) -> TruthSource:
        """``auto``/``enumeration``: the V^(m L) packs within ``max_configs``, else none;
        ``reference``: the mean of ``reinforce_loo`` estimates; ``none``."""
        values = resolve_options(f"problem {cls.name!r}", cls.options, options or {})
        if values["truth"] == "reference":
            return TruthSource.reference("reinforce_loo")
        digits = values["target"] == "digits"
        vocab, length = (2, DIGIT_PIXELS) if digits else (values["vocab"], values["length"])
        size = vocab ** (values["pack"] * length)
        if values["truth"] == "none" or size > values["max_configs"]:
            return TruthSource.none()
        return TruthSource.enumeration(size)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.option_values["target"] == "digits":
            self._init_digits()
        else:
            self._init_modes()
        configs = support_size(self.latent, torch.Size([self.pack * self.length, self.vocab]))
        if (
            self.option_values["truth"] == "enumeration"
            and configs > self.option_values["max_configs"]
        ):
            raise ValueError(
                f"invalid option truth='enumeration' for problem {self.name!r}: "
                f"vocab**(pack*length) = {configs} packs exceed max_configs="
                f"{self.option_values['max_configs']}; use truth=reference or raise max_configs"
            )

    def _init_modes(self) -> None:
        self.length, self.vocab = self.option_values["length"], self.option_values["vocab"]
        self.prototypes = mode_prototypes(
            self.name, self.vocab, self.length, self.option_values["modes"],
            self.option_values["seed"] + 3, self.device,
        )  # [M, L] token ids
        self.images: Tensor | None = None

    def _init_digits(self) -> None:
        self.images, self.prototypes = digit_images(self.device)  # [1797, 64], [10, 64]
        self.length, self.vocab = self.images.shape[1], 2

    @property
    def features(self) -> int:
        return self.length * self.vocab

    def init_params(self) -> Params:
        with seeded(
            self.option_values["seed"], torch.device("cpu")
        ):  # same draws on every device/dtype
            logits = torch.randn(self.length, self.vocab, dtype=torch.float64)
        return {"logits": self.option_values["logit_std"] * logits.to(self.device, self.dtype)}

    def distribution(self, params: Params) -> Independent:
        logits = params["logits"].repeat(1, self.pack, 1)  # [R, m*L, V]
        return Independent(OneHotCategorical(logits=logits, validate_args=False), 1)

    def critic_input(self, z: Tensor) -> Tensor:
        return z.reshape(*z.shape[:-2], self.pack * self.features)

    def target_tokens(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` target sequences as token ids ``[n, L]``."""
        if self.images is not None:
            index = torch.randint(len(self.images), (n,), generator=generator)
            return self.images[index.to(self.device)]
        vocab, eps = self.vocab, self.option_values["target_noise"]
        mode = torch.randint(len(self.prototypes), (n,), generator=generator)
        replace = torch.rand(n, self.length, generator=generator) < eps
        shift = torch.randint(1, vocab, (n, self.length), generator=generator)  # another symbol
        tokens = self.prototypes[mode.to(self.device)]
        swapped = (tokens + shift.to(self.device)) % vocab
        return torch.where(replace.to(self.device), swapped, tokens)

    def target_draws(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        tokens = self.target_tokens(n, generator)
        one_hot = torch.nn.functional.one_hot(tokens, self.vocab)
        return one_hot.to(self.dtype).reshape(n, self.features)

    def generator_metrics(self, params: Params) -> dict[str, float]:
        """Exact ``total_variation`` and ``modes_covered`` (no sampling)."""
        return {
            "total_variation": self.total_variation(params),
            "modes_covered": float(self.mode_coverage(params)),
        }

    def truth(self, params: Params, n_samples: int = 1) -> Truth | None:
        if not self.truth_of(self.option_values, n_samples).exact:
            return None
        return enumeration_truth(self, params, self.option_values["max_configs"])

    def target_log_prob(self, tokens: Tensor) -> Tensor:
        """log p(x) of sequences ``[N, L]`` (token ids) under the ``modes`` target: ``[N]``."""
        return noisy_modes_log_prob(
            tokens, self.prototypes, self.vocab, self.option_values["target_noise"]
        )

    def total_variation(self, params: Params, chunk_size: int = 4096) -> float:
        """Exact TV(q, p) = 1/2 sum_x |q(x) - p(x)| over the V^L sequences (one draw, not a
        pack), or NaN if V^L exceeds ``max_configs`` (always for ``digits``)."""
        if self.vocab**self.length > self.option_values["max_configs"]:
            return math.nan
        log_q_table = torch.log_softmax(params["logits"].detach().double(), -1)  # [L, V]
        return total_variation(log_q_table, self.target_log_prob, chunk_size)

    def coverage_radius(self) -> int:
        """h = floor(L / 4), the largest Hamming distance of a sequence from its mode's
        prototype."""
        return self.length // 4

    def mode_shares(self, tokens: Tensor) -> Tensor:
        """Fraction of the sequences ``[N, L]`` in each mode's region ``[M]``: the sequences
        whose nearest prototype (Hamming distance, ties to the lower index) is s_c and lies
        within ``coverage_radius()``."""
        return hamming_shares(tokens, self.prototypes, self.coverage_radius())

    def mode_coverage(self, params: Params) -> int:
        """Modes covered: c is covered when the share of ``N_EVAL`` generator sequences in
        its region (``mode_shares``) is at least ``COVERAGE_FRACTION`` times the target's
        share (all images for ``digits``; ``N_EVAL`` draws for ``modes``). Fixed seed."""
        with seeded(self.option_values["seed"] + 2, self.device):
            logits = params["logits"].detach()
            generated = torch.distributions.Categorical(logits=logits).sample((N_EVAL,))
            target = self.images if self.images is not None else self.target_tokens(N_EVAL)
        target_share = self.mode_shares(target)
        covered = self.mode_shares(generated) >= COVERAGE_FRACTION * target_share
        return int((covered & (target_share > 0)).sum())
