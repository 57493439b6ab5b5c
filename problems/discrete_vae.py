"""Discrete variational autoencoders: binary (sigmoid belief net) and categorical latents.

Model, per image x in {0, 1}^D: a prior p(z) (Bernoulli(1/2) per bit, or uniform over the C
classes of each of G groups), a decoder p(x | z) = prod_d Bernoulli(x_d; sigmoid(g_phi(z)_d)),
and an encoder q_theta(z | x) with Bernoulli logits (or per-group softmax logits) h_theta(x).
The cost of the minibatch {x_1..x_B} is the mean per-example negative ELBO integrand

    f(z, theta) = (1/B) sum_i [ -log p(x_i | z_i) + beta (log q_theta(z_i | x_i) - log p(z_i)) ]

(``kl=sample``), or with the closed-form KL(q_theta(. | x_i) || p) in place of the bracketed
log-ratio (``kl=analytic``), so that E_q[f] is the minibatch negative ELBO (nats per image,
beta-weighted) and its gradient w.r.t. the encoder parameters theta is what the estimators
estimate; with ``grad_decoder`` the decoder parameters phi are estimated as well.

Latent layout. Each image has its own latent, so z has event shape ``[B, L]`` (binary) or
``[B, G, C]`` (categorical, one-hot along C) and q_theta factorizes over the images. The
joint space has 2^(B L) configurations, but the negative ELBO is a sum of per-image terms, each
depending only on its own z_i, so the exact gradient is the sum over images of per-image
enumerations over 2^L (or C^G) configurations; ``truth`` computes exactly that, batched over
images and chunked over configurations.

Relaxed z. The cost is defined on relaxed z in [0, 1]^L (or the simplex): the decoder takes
real inputs, and log q and log p are evaluated with the Bernoulli/categorical log-mass
*formula* sum_l z_l log p_l + (1 - z_l) log(1 - p_l) (resp. sum_c z_c log pi_c), which equals
the log-probability at binary / one-hot z and is the linear interpolation in between; it is
not the density of the Concrete distribution.

References: Mnih & Gregor (2014), "Neural Variational Inference and Learning in Belief
Networks (NVIL)", ICML; Jang, Gu, Poole (2017), "Categorical Reparameterization with
Gumbel-Softmax", ICLR, Section 4.2 (20 x 10 categorical VAE); Yin & Zhou (2019), "ARM:
Augment-REINFORCE-Merge Gradient", ICLR, and Dong, Mnih, Tucker (2020), "DisARM", NeurIPS
(200 binary latents, linear or two hidden layers of 200 units); Higgins et al. (2017),
"beta-VAE", ICLR; Burda, Grosse, Salakhutdinov (2016), "Importance Weighted Autoencoders",
ICLR (the importance-weighted test bound).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, Independent, OneHotCategorical

from problems.base import (
    Capability,
    LatentKind,
    Params,
    Problem,
    StressSetting,
    Truth,
    batched_linear,
    repeat_params,
)
from problems.options import Option, resolve_options
from problems.truth import TruthSource
from problems.vae_options import COMMON_OPTIONS
from problems.vae_parts import (
    ACTIVATIONS,
    enumerated_bound,
    enumerated_cost,
    load_images,
    parse_hidden,
    pretrain,
    test_set_metrics,
    uniform_layers,
)


class DiscreteVAE(Problem):
    """Shared machinery of ``bernoulli_vae`` and ``categorical_vae`` (see the module docstring)."""

    provides = frozenset({
        Capability.DISCRETE, Capability.DIFFERENTIABLE_COST, Capability.ENUMERABLE,
        Capability.CONTEXT,
    })

    @classmethod
    def validation_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """No pretraining: the data, split and network are checked without it."""
        return dict(options) | {"pretrain_steps": 0}

    @classmethod
    def capabilities(cls, options: Mapping[str, Any] | None = None) -> frozenset[Capability]:
        values = resolve_options(f"problem {cls.name!r}", cls.options, options or {})
        extra = set()
        if values["kl"] == "sample":
            extra.add(Capability.LOG_WEIGHTS)
        if values["objective"] == "iwae":
            extra.add(Capability.MULTI_SAMPLE)
        if cls.per_image_support(values) <= values["max_configs"]:
            extra.add(Capability.EXACT_OBJECTIVE)
        return cls.provides | extra

    @classmethod
    @abstractmethod
    def per_image_support(cls, values: Mapping[str, Any]) -> int:
        """Configurations of one image's latent with options ``values``."""

    @classmethod
    def truth_of(cls, options: Mapping[str, Any] | None = None,
                 n_samples: int = 1) -> TruthSource:
        """``auto``/``enumeration``: per-image enumeration (of the K-tuples on the iwae bound)
        within ``max_configs``, else none; ``reference``: leave-one-out REINFORCE, or plain
        REINFORCE on the multi-sample bound (the leave-one-out baseline does not apply)."""
        values = resolve_options(f"problem {cls.name!r}", cls.options, options or {})
        iwae = values["objective"] == "iwae"
        if values["truth"] == "reference":
            return TruthSource.reference("reinforce" if iwae else "reinforce_loo",
                                         values["reference_samples"], values["reference_repeats"])
        size = cls.per_image_support(values) ** (n_samples if iwae else 1)
        if values["truth"] == "none" or size > values["max_configs"] \
                or cls.per_image_support(values) > values["max_configs"]:
            return TruthSource.none()
        return TruthSource.enumeration(size)

    def __init__(
        self,
        options: Mapping[str, Any] | None = None,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(options, device=device, dtype=dtype)
        self.hidden = parse_hidden(self.option_values)
        if self.option_values["truth"] == "enumeration" and not self.enumerable:
            raise ValueError(
                f"invalid option truth=enumeration for problem {self.name!r}: the per-image "
                f"latent space has {self.support:,} configurations, more than "
                f"max_configs={self.option_values['max_configs']:,}; "
                "use truth=auto, reference or none"
            )
        if self.option_values["objective"] == "iwae" and self.option_values["kl"] != "sample":
            raise ValueError(
                f"invalid option objective=iwae for problem {self.name!r} with kl=analytic: the "
                "importance-weighted bound needs the log-weights of kl=sample"
            )
        self.activation = ACTIVATIONS[self.option_values["activation"]]
        self.data = load_images(self.name, self.option_values, dtype, self.device)
        generator = torch.Generator().manual_seed(self.option_values["seed"])
        self.fixed_batch = self.data.train_batch(self.option_values["batch"], generator)  # [B, D]
        self.x = self.fixed_batch
        initial = self._init_network(generator)
        self.decoder: Params = {k: v for k, v in initial.items() if k.startswith("decoder.")}
        if self.option_values["pretrain_steps"]:
            initial = pretrain(self, initial)
            self.decoder = {k: v for k, v in initial.items() if k.startswith("decoder.")}
        self.initial = initial
        self.estimated = [
            k for k in initial if k.startswith("encoder.") or self.option_values["grad_decoder"]
        ]

    # latent layout: subclasses -------------------------------------------------------------

    @property
    @abstractmethod
    def latent_shape(self) -> tuple[int, ...]:
        """Per-image event shape: ``(L,)`` or ``(G, C)``."""

    @abstractmethod
    def _base(self, logits: Tensor) -> Distribution:
        """Per-unit distribution for encoder logits ``[R, B, *latent_shape]``."""

    @abstractmethod
    def _log_mass(self, z: Tensor, logits: Tensor) -> Tensor:
        """Per-image log-mass formula at (possibly relaxed) z: ``[..., B, *latent]`` ->
        ``[..., B]``."""

    @abstractmethod
    def _kl(self, logits: Tensor) -> Tensor:
        """Per-image KL(q || p): ``[R, B, *latent]`` -> ``[R, B]``."""

    # construction -----------------------------------------------------------------------------

    @property
    def n_units(self) -> int:
        return math.prod(self.latent_shape)

    @property
    def support(self) -> int:
        """Configurations of one image's latent."""
        return type(self).per_image_support(self.option_values)

    @property
    def enumerable(self) -> bool:
        return self.support <= self.option_values["max_configs"]


    def _init_network(self, generator: torch.Generator) -> Params:
        """Uniform(+-1/sqrt(n_in)) weights, zero biases; the decoder's output bias is the logit
        of the mean training pixel, so that training starts from the marginal model."""
        n_pixels = self.data.n_pixels
        sizes = {
            "encoder": [n_pixels, *self.hidden, self.n_units],
            "decoder": [self.n_units, *reversed(self.hidden), n_pixels],
        }
        params = uniform_layers(sizes, generator, self.tensor)
        mean = self.data.binary(self.data.train, generator).mean(0).clamp(1e-3, 1 - 1e-3)
        params[f"decoder.{len(self.hidden)}.bias"] = torch.logit(mean).to(self.dtype)
        return params

    # the contract -----------------------------------------------------------------------------

    def init_params(self) -> Params:
        return {k: self.initial[k].clone() for k in self.estimated}

    def distribution(self, params: Params) -> Independent:
        base = self._base(self.encode(params, self.x))  # logits [R, B, *latent]
        return Independent(base, 1 + len(self.latent_shape) - len(base.event_shape))

    @property
    def n_factors(self) -> int:
        """The images of the minibatch: each has its own latent."""
        return self.x.shape[0]

    @property
    def factor_scale(self) -> float:
        """1/B: the objective is the mean over the minibatch."""
        return 1 / self.x.shape[0]

    @property
    def local_signals(self) -> bool:
        return self.option_values["signals"] == "local"

    def cost(self, z: Tensor, params: Params) -> Tensor:
        return self.per_image_cost(z, params, self.x, self.option_values["beta"]).mean(-1)  # [K, R]

    def cost_terms(self, z: Tensor, params: Params, *, detach_q: bool = False) -> Tensor:
        """f_i / B, the per-image negative ELBO integrands over B: ``[K, R, B]``."""
        terms = self.per_image_cost(
            z, params, self.x, self.option_values["beta"], detach_q=detach_q
        )
        return terms / self.x.shape[0]

    def context(self) -> Tensor:
        """Each image of the minibatch, ``[B, D]``."""
        return self.x

    def objective(self, params: Params, n_samples: int = 1) -> Tensor | None:
        """The exact minibatch objective ``[R]`` by per-image enumeration, when enumerable."""
        terms = self.objective_terms(params, n_samples)
        return None if terms is None else terms.sum(-1)

    def objective_terms(self, params: Params, n_samples: int = 1) -> Tensor | None:
        """The exact objective per image (divided by B), ``[R, B]``."""
        if not self.enumerable:
            return None
        if self.multi_sample:
            if self.support**n_samples > self.option_values["max_configs"]:
                return None
            per_image = enumerated_bound(self, params, self.x, n_samples)
        else:
            per_image = enumerated_cost(self, params, self.x, self.option_values["beta"])
        return per_image / self.x.shape[0]

    def truth(self, params: Params, n_samples: int = 1) -> Truth | None:
        if not self.truth_of(self.option_values, n_samples).exact:
            return None
        leaf = repeat_params(params, 1)
        objective = self.objective(leaf, n_samples)
        if objective is None:
            return None
        grads = torch.autograd.grad(objective.sum(), list(leaf.values()))
        return Truth(
            grad={k: g[0].detach() for k, g in zip(leaf, grads, strict=True)}, kind="enumeration"
        )

    # the networks and the per-image cost ------------------------------------------------------

    def encode(self, params: Params, x: Tensor) -> Tensor:
        """Encoder logits: params ``[R, ...]``, x ``[B, D]`` -> ``[R, B, *latent]``."""
        h = x.expand(params["encoder.0.weight"].shape[0], *x.shape)  # [R, B, D]
        for i in range(len(self.hidden) + 1):
            if i:
                h = self.activation(h)
            h = batched_linear(h, params[f"encoder.{i}.weight"], params[f"encoder.{i}.bias"])
        return h.reshape(*h.shape[:-1], *self.latent_shape)

    def decode(self, z: Tensor, params: Params) -> Tensor:
        """Pixel logits ``[K, R, B, D]`` for z ``[K, R, B, *latent]``; the decoder comes from
        ``params`` (``[R, ...]``) when it is there, else from the problem."""
        h = z.reshape(*z.shape[:3], self.n_units).transpose(0, 1)  # [R, K, B, L]
        for i in range(len(self.hidden) + 1):
            if i:
                h = self.activation(h)
            name = f"decoder.{i}."
            if name + "weight" in params:
                h = batched_linear(h, params[name + "weight"], params[name + "bias"])
            else:
                h = h @ self.decoder[name + "weight"] + self.decoder[name + "bias"]
        return h.transpose(0, 1)  # [K, R, B, D]

    def per_image_cost(
        self, z: Tensor, params: Params, x: Tensor, beta: float, detach_q: bool = False
    ) -> Tensor:
        """Per-image negative ELBO integrand ``[K, R, B]`` for z ``[K, R, B, *latent]``; with
        ``detach_q`` the encoder's parameters are cut from the graph in log q."""
        pixel_logits = self.decode(z, params)  # [K, R, B, D]
        recon = F.binary_cross_entropy_with_logits(
            pixel_logits, x.expand_as(pixel_logits), reduction="none"
        ).sum(-1)  # [K, R, B]
        if beta == 0:
            return recon
        if detach_q:
            params = {k: v.detach() if k.startswith("encoder.") else v for k, v in params.items()}
        logits = self.encode(params, x)  # [R, B, *latent]
        if self.option_values["kl"] == "analytic":
            return recon + beta * self._kl(logits)
        log_ratio = self._log_mass(z, logits) - self._log_mass(z, torch.zeros_like(logits))
        return recon + beta * log_ratio

    # training hooks (see problems.base) -------------------------------------------------------

    def train_params(self) -> Params:
        return {k: v.clone() for k, v in self.initial.items()}

    def load_train_params(self, train: Params) -> Params:
        self.decoder = {k: v.detach() for k, v in train.items() if k.startswith("decoder.")}
        return {k: train[k].detach().clone() for k in self.estimated}

    def next_batch(self, step: int, generator: torch.Generator) -> None:
        self.x = self.data.train_batch(self.option_values["batch"], generator)

    def reset_batch(self) -> None:
        self.x = self.fixed_batch

    def train_metrics(self, train: Params) -> dict[str, float]:
        """Test-set negative ELBO and, with ``iw_samples``, the importance-weighted bound
        (``problems.vae_parts.test_set_metrics``)."""
        return test_set_metrics(self, train)

    def log_ratio_terms(self, z: Tensor, params: Params, x: Tensor) -> Tensor:
        """``-log p(x | z) + log q(z | x) - log p(z)`` per image, ``[S, R, B]``."""
        logits = self.encode(params, x)
        recon = F.binary_cross_entropy_with_logits(
            (pixel := self.decode(z, params)), x.expand_as(pixel), reduction="none"
        ).sum(-1)
        return recon + self._log_mass(z, logits) - self._log_mass(z, torch.zeros_like(logits))


class BernoulliVAE(DiscreteVAE):
    """VAE / sigmoid belief net with ``latents`` binary latents per image.

    q_theta(z | x) = prod_l Bernoulli(z_l; sigmoid(h_theta(x)_l)), p(z) = Bernoulli(1/2)^L;
    analytic KL per image: sum_l [p_l log(2 p_l) + (1 - p_l) log(2 (1 - p_l))].

    References: Mnih & Gregor (2014), NVIL, ICML; Dong, Mnih, Tucker (2020), DisARM, NeurIPS,
    Section 6 (200 latents, linear or two hidden layers).
    """

    name = "bernoulli_vae"
    example_options: ClassVar[dict] = {"latents": 3, "batch": 2}
    benchmark_options: ClassVar[dict] = {"latents": 8, "batch": 8}
    verify_settings = (
        StressSetting({"batch": 2, "latents": 3}, quick=True),
        StressSetting({"arch": "mlp", "batch": 3, "grad_decoder": True, "hidden": "4",
                       "latents": 2}),
        StressSetting({"batch": 2, "latents": 2, "objective": "iwae"}),
    )
    description = "binary-latent VAE on binarized images; exact truth by per-image enumeration"
    latent = LatentKind.BINARY
    options: ClassVar[dict[str, Option]] = {
        "latents": Option(8, "binary latents per image", minimum=1, maximum=4096),
        **COMMON_OPTIONS,
    }

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.option_values["latents"],)

    @classmethod
    def per_image_support(cls, values: Mapping[str, Any]) -> int:
        return 2 ** values["latents"]

    def _base(self, logits: Tensor) -> Distribution:
        return Bernoulli(logits=logits, validate_args=False)

    def _log_mass(self, z: Tensor, logits: Tensor) -> Tensor:
        return (z * F.logsigmoid(logits) + (1 - z) * F.logsigmoid(-logits)).sum(-1)

    def _kl(self, logits: Tensor) -> Tensor:
        p = torch.sigmoid(logits)
        return (p * F.logsigmoid(logits) + (1 - p) * F.logsigmoid(-logits) + math.log(2)).sum(-1)


class CategoricalVAE(DiscreteVAE):
    """VAE with ``groups`` one-hot categorical latents of ``categories`` classes per image.

    q_theta(z | x) = prod_g Cat(z_g; softmax(h_theta(x)_g)), p(z) uniform; analytic KL per
    image: sum_g sum_c pi_gc log(C pi_gc). The Gumbel-Softmax paper's model is 20 x 10.

    References: Jang, Gu, Poole (2017), Gumbel-Softmax, ICLR, Section 4.2; Maddison, Mnih,
    Teh (2017), "The Concrete Distribution", ICLR.
    """

    name = "categorical_vae"
    example_options: ClassVar[dict] = {"groups": 2, "categories": 3, "batch": 2}
    benchmark_options: ClassVar[dict] = {"groups": 2, "categories": 4, "batch": 8}
    verify_settings = (
        StressSetting({"batch": 2, "categories": 3, "groups": 2}, quick=True),
    )
    description = "categorical-latent VAE (G groups of C classes); exact truth by enumeration"
    latent = LatentKind.CATEGORICAL
    options: ClassVar[dict[str, Option]] = {
        "groups": Option(4, "categorical latents per image", minimum=1, maximum=1024),
        "categories": Option(4, "classes per categorical latent", minimum=2, maximum=1024),
        **COMMON_OPTIONS,
    }

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.option_values["groups"], self.option_values["categories"])

    @classmethod
    def per_image_support(cls, values: Mapping[str, Any]) -> int:
        return values["categories"] ** values["groups"]

    def _base(self, logits: Tensor) -> Distribution:
        return OneHotCategorical(logits=logits, validate_args=False)

    def _log_mass(self, z: Tensor, logits: Tensor) -> Tensor:
        return (z * torch.log_softmax(logits, -1)).sum((-1, -2))

    def _kl(self, logits: Tensor) -> Tensor:
        log_pi = torch.log_softmax(logits, -1)
        return (log_pi.exp() * (log_pi + math.log(logits.shape[-1]))).sum((-1, -2))
