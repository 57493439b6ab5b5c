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
from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, OneHotCategorical, constraints

from problems.base import (
    Capability,
    LatentKind,
    Params,
    Problem,
    Truth,
    batched_linear,
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
from problems.enumeration import enumerate_support, enumeration_truth, support_size
from problems.options import Option

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
    ``reference`` (the harness estimates it with the pathwise estimator) or ``none``.

    References: Goodfellow et al. (2014); Metz et al. (2017), ICLR (8-Gaussian ring);
    Mohamed et al. (2020), JMLR, Sections 4-5.
    """

    name = "gan_continuous"
    description = "generator x = G(eps) + s*xi through a trained MLP critic; ring of Gaussians"
    latent = LatentKind.CONTINUOUS
    provides = frozenset({Capability.RSAMPLE, Capability.DIFFERENTIABLE_COST})
    truth_kind = "reference"
    reference_estimator = "reparam"
    options: ClassVar[dict[str, Option]] = {
        **CRITIC_OPTIONS,
        "modes": Option(8, "Gaussians on the target ring", minimum=1),
        "radius": Option(2.0, "radius of the target ring", minimum=0, exclusive=True),
        "mode_std": Option(0.05, "std of each target Gaussian", minimum=0, exclusive=True),
        "noise_dim": Option(2, "generator noise dimension k", minimum=1),
        "gen_width": Option(32, "hidden units of the generator", minimum=1),
        "output_std": Option(0.1, "generator output noise s", minimum=0, exclusive=True),
        "truth": Option("reference", "reference (harness estimate) or none",
                        choices=("reference", "none")),
    }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        angles = 2 * math.pi * torch.arange(self.option_values["modes"], dtype=torch.float64)
        angles = angles / self.option_values["modes"]
        self.centres = self.tensor(
            self.option_values["radius"] * torch.stack([angles.cos(), angles.sin()], -1)
        )  # [C, 2]

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
        return None

    def coverage_radius(self) -> float:
        """rho = 3 sqrt(mode_std^2 + s^2): 3 std of a generator that outputs a mode's centre."""
        return 3 * math.hypot(self.option_values["mode_std"], self.option_values["output_std"])

    def mode_coverage(self, x: Tensor, y: Tensor) -> int:
        """Modes covered by generator draws ``x`` ``[N, 2]``, judged against target draws ``y``.

        Mode c's region is the disk of radius ``coverage_radius()`` around its centre; c is
        covered when the fraction of x in it is at least ``COVERAGE_FRACTION`` times the
        fraction of y in it.
        """
        def shares(points: Tensor) -> Tensor:
            inside = torch.cdist(points, self.centres) <= self.coverage_radius()  # [N, C]
            return inside.to(torch.float64).mean(0)

        return int((shares(x) >= COVERAGE_FRACTION * shares(y)).sum())


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
    description = "L tokens of V (one-hot) through a trained MLP critic; multi-modal target"
    latent = LatentKind.CATEGORICAL
    provides = frozenset(
        {Capability.DISCRETE, Capability.DIFFERENTIABLE_COST, Capability.ENUMERABLE}
    )
    truth_kind = "enumeration"
    reference_estimator = "reinforce_loo"
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
        modes = self.option_values["modes"]
        if modes > self.vocab**self.length:
            raise ValueError(
                f"invalid option modes={modes} for problem {self.name!r}: expected at most "
                f"vocab**length = {self.vocab**self.length} distinct prototypes"
            )
        with seeded(self.option_values["seed"] + 3, self.device):
            prototypes = torch.randint(self.vocab, (modes, self.length))
            while len(torch.unique(prototypes, dim=0)) < modes:
                prototypes = torch.randint(self.vocab, (modes, self.length))
        self.prototypes = prototypes.to(self.device)  # [M, L] token ids
        self.images: Tensor | None = None

    def _init_digits(self) -> None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.as_tensor(digits.data > 8).long()  # [1797, 64] grey levels 0..16
        labels = torch.as_tensor(digits.target)
        self.length, self.vocab = images.shape[1], 2
        self.images = images.to(self.device)
        self.prototypes = torch.stack(
            [(images[labels == c].double().mean(0) > 0.5).long() for c in range(10)]
        ).to(self.device)  # [10, 64]

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
        if self.option_values["truth"] in ("reference", "none"):
            return None
        return enumeration_truth(self, params, self.option_values["max_configs"])

    def target_log_prob(self, tokens: Tensor) -> Tensor:
        """log p(x) of sequences ``[N, L]`` (token ids) under the ``modes`` target: ``[N]``."""
        vocab, eps = self.vocab, self.option_values["target_noise"]
        match = tokens.unsqueeze(1) == self.prototypes  # [N, M, L]
        keep = torch.tensor(1 - eps, dtype=torch.float64).log()
        swap = torch.tensor(eps / (vocab - 1), dtype=torch.float64).log()
        per_mode = torch.where(match, keep, swap).sum(-1)  # [N, M]
        return torch.logsumexp(per_mode, -1) - math.log(len(self.prototypes))

    def total_variation(self, params: Params, chunk_size: int = 4096) -> float:
        """Exact TV(q, p) = 1/2 sum_x |q(x) - p(x)| over the V^L sequences (one draw, not a
        pack), or NaN if V^L exceeds ``max_configs`` (always for ``digits``)."""
        if self.vocab**self.length > self.option_values["max_configs"]:
            return math.nan
        log_q_table = torch.log_softmax(params["logits"].detach().double(), -1)  # [L, V]
        total = 0.0
        for x in enumerate_support(
            self.latent, torch.Size([self.length, self.vocab]), chunk_size,
            dtype=torch.float64, device=self.device,
        ):
            log_q = (x * log_q_table).sum((-1, -2))
            p = self.target_log_prob(x.argmax(-1)).exp()
            total += (log_q.exp() - p).abs().sum().item()
        return 0.5 * total

    def coverage_radius(self) -> int:
        """h = floor(L / 4), the largest Hamming distance of a sequence from its mode's
        prototype."""
        return self.length // 4

    def mode_shares(self, tokens: Tensor) -> Tensor:
        """Fraction of the sequences ``[N, L]`` in each mode's region ``[M]``: the sequences
        whose nearest prototype (Hamming distance, ties to the lower index) is s_c and lies
        within ``coverage_radius()``."""
        distance = (tokens.unsqueeze(1) != self.prototypes).sum(-1)  # [N, M]
        nearest = distance.min(-1)
        inside = (nearest.values <= self.coverage_radius()).to(torch.float64)  # [N]
        one_hot = torch.nn.functional.one_hot(nearest.indices, len(self.prototypes))
        return (one_hot.to(torch.float64) * inside.unsqueeze(-1)).mean(0)

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
