"""The discrete GAN-critic problem, ``gan_discrete``: one-hot token sequences (or binary
digit images) through a partly trained critic, with an exact truth by enumerating the packs.
The critic, packing and training hooks it shares with ``gan_continuous`` are
``problems.gan_critic.GanCritic``'s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.distributions import Independent, OneHotCategorical

from problems.base import Capability, LatentKind, Params, StressSetting, Truth
from problems.critic import CRITIC_OPTIONS, N_EVAL, seeded
from problems.enumeration import enumeration_truth, support_size
from problems.gan_critic import COVERAGE_FRACTION, GanCritic
from problems.gan_parts import (
    digit_images,
    hamming_shares,
    mode_prototypes,
    noisy_modes_log_prob,
    total_variation,
)
from problems.options import Option, resolve_options
from problems.truth import TruthSource

#: pixels of the scikit-learn digits (8 x 8), ``gan_discrete``'s L with target=digits
DIGIT_PIXELS = 64


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
