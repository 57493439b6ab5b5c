"""Sigmoid belief networks with 1-3 stochastic layers of Bernoulli units (the REBAR, RELAX,
ARM, DisARM and VIMCO benchmark)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from problems.base import Params, StressSetting, batched_linear
from problems.discrete_vae import BernoulliVAE
from problems.options import Option, resolve_options
from problems.vae_options import COMMON_OPTIONS
from problems.vae_parts import uniform_layers

#: the most units in all stochastic layers together
MAX_UNITS = 4096


def parse_layers(text: str) -> tuple[int, ...]:
    """Layer widths from the ``layers`` option (its pattern has checked the text)."""
    return tuple(int(part) for part in text.split("-"))


class SigmoidBeliefNet(BernoulliVAE):
    """A sigmoid belief network p(x, z_1, ..., z_L) = p(z_L) prod_l p(z_(l-1) | z_l), with
    x = z_0 and ``layers`` = w_1-...-w_L stochastic Bernoulli layers (1 to 3, from the data up):

        p(z_L) = Bernoulli(sigmoid(b)),   p(z_(l-1) | z_l) = Bernoulli(sigmoid(g_l(z_l))),

    g_l linear (``arch=linear``) or an MLP with ``hidden`` deterministic layers
    (``arch=mlp``, the papers' "nonlinear"), the prior's logits b learned. The inference
    network is q_theta(z | x) = prod_l Bernoulli(z_l; sigmoid(h_theta(x)_l)), every layer's
    logits computed from x by one network (linear or MLP); the cost per image is the negative
    ELBO integrand

        f_i = -log p(x_i | z_1) - sum_l log p(z_l | z_(l+1)) + log q_theta(z | x_i)

    (``beta`` weights the last two groups of terms as in ``bernoulli_vae``), averaged over
    the minibatch, with per-image learning signals (``signals=local``); ``objective=iwae``
    gives the K-sample bound per image.

    Layers and estimators. q factorizes over the units of all layers given x, so every
    binary estimator (ARM, DisARM, REBAR, RELAX, the straight-through and relaxed families,
    ...) treats the units of all layers as one layer of independent bits: their per-unit
    formulas apply to each layer as written, with each image's whole cost as the signal. The
    papers' q is layer-wise Markov (q(z_1 | x) q(z_2 | z_1) ...), under which ARM, DisARM,
    REBAR and RELAX condition each layer's estimate on samples of the layers below; that form
    needs estimators that sample layer by layer, which the estimator contract does not
    provide, so the inference network here is the factorized one.

    Truth. The per-image negative ELBO is a sum over the 2^(w_1 + ... + w_L) joint latent
    configurations of each image, enumerated exactly when they number at most
    ``max_configs`` (the default 6-6 has 2^12 per image, the most that ``unordered_set``
    enumerates; 8-8 has 2^16, about 2 s for 16 images on one CPU thread); beyond,
    ``truth=reference`` averages high-sample estimates and ``truth=enumeration`` is refused
    before any work, naming the size. ``bench train`` reports the test negative ELBO (exact
    where enumerable) and, with ``iw_samples`` (100 by default, as the papers report), the
    importance-weighted test bound.

    Data: as ``bernoulli_vae`` (``problems.data``): the built-in binarized digits, or a local
    MNIST / Omniglot / Fashion-MNIST file (IDX, gzipped or not, or ``.npz``).

    References: Neal (1992), "Connectionist learning of belief networks", Artificial
    Intelligence 56; Mnih & Gregor (2014), NVIL, ICML; Tucker et al. (2017), REBAR, NeurIPS,
    Section 6.2; Grathwohl et al. (2018), RELAX, ICLR; Yin & Zhou (2019), ARM, ICLR; Dong,
    Mnih, Tucker (2020), DisARM, NeurIPS; Mnih & Rezende (2016), VIMCO, ICML.
    """

    name = "sbn"
    # tested in tests/test_sbn.py (brute force, estimators against enumeration)
    example_options: ClassVar[dict] = {"layers": "2-2", "batch": 2}
    benchmark_options: ClassVar[dict] = {"layers": "4-4", "batch": 8}
    verify_settings = (
        StressSetting({"batch": 2, "layers": "2-2"}, quick=True),
        StressSetting({"arch": "mlp", "batch": 2, "grad_decoder": True, "hidden": "3",
                       "layers": "2-1-2"}),
    )
    description = "sigmoid belief net, 1-3 Bernoulli layers; exact truth by per-image enumeration"
    options: ClassVar[dict[str, Option]] = {
        "layers": Option("6-6", "stochastic layer widths from the data up, e.g. 200-200-200",
                         pattern=r"[1-9][0-9]*(-[1-9][0-9]*){0,2}",
                         pattern_help="1 to 3 positive integers separated by dashes"),
        **COMMON_OPTIONS,
        "kl": Option("sample", "KL term: sample (the prior is learned and layered, so no "
                     "closed form)", choices=("sample",)),
        "iw_samples": Option(100, "samples of the importance-weighted test bound (0: off)",
                             minimum=0),
    }

    @classmethod
    def per_image_support(cls, values: Mapping[str, Any]) -> int:
        return 2 ** sum(parse_layers(values["layers"]))

    def __init__(self, options: Mapping[str, Any] | None = None, **kwargs) -> None:
        values = resolve_options(f"problem {self.name!r}", self.options, options or {})
        units = sum(parse_layers(values["layers"]))
        if units > MAX_UNITS:
            raise ValueError(f"invalid option layers={values['layers']} for problem 'sbn': "
                             f"{units} units in all, expected at most {MAX_UNITS}")
        if values["truth"] == "enumeration" and 2**units > values["max_configs"]:
            raise ValueError(
                f"invalid option truth=enumeration for problem 'sbn': layers={values['layers']} "
                f"have 2^{units} joint configurations per image, more than "
                f"max_configs={values['max_configs']:,} (at most 2^24); use truth=reference or none"
            )
        super().__init__(options, **kwargs)

    @property
    def widths(self) -> tuple[int, ...]:
        return parse_layers(self.option_values["layers"])

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (sum(self.widths),)

    def layer_slices(self) -> list[slice]:
        """Where each stochastic layer's units lie in the latent, from the data up."""
        ends = list(itertools.accumulate(self.widths))
        return [slice(end - width, end) for end, width in zip(ends, self.widths, strict=True)]

    def _init_network(self, generator: torch.Generator) -> Params:
        """Uniform(+-1/sqrt(n_in)) weights, zero biases and prior logits; the pixels' output
        bias is the logit of the mean training pixel (the marginal model)."""
        n_pixels = self.data.n_pixels
        nets = {"encoder": [n_pixels, *self.hidden, self.n_units],
                "decoder.x": [self.widths[0], *reversed(self.hidden), n_pixels]}
        for up in range(1, len(self.widths)):
            nets[f"decoder.z{up}"] = [self.widths[up], *reversed(self.hidden),
                                      self.widths[up - 1]]
        params = uniform_layers(nets, generator, self.tensor)
        params["decoder.prior"] = self.tensor(torch.zeros(self.widths[-1]))
        mean = self.data.binary(self.data.train, generator).mean(0).clamp(1e-3, 1 - 1e-3)
        params[f"decoder.x.{len(self.hidden)}.bias"] = torch.logit(mean).to(self.dtype)
        return params

    def _generative(self, params: Params, name: str) -> Tensor:
        return params[name] if name in params else self.decoder[name]

    def _network(self, h: Tensor, params: Params, net: str) -> Tensor:
        """One generative connection: ``[K, R, B, n_in]`` -> ``[K, R, B, n_out]``."""
        h = h.transpose(0, 1)  # [R, K, B, n_in]
        for i in range(len(self.hidden) + 1):
            if i:
                h = self.activation(h)
            weight = self._generative(params, f"{net}.{i}.weight")
            bias = self._generative(params, f"{net}.{i}.bias")
            h = batched_linear(h, weight, bias) if weight.dim() == 3 else h @ weight + bias
        return h.transpose(0, 1)

    def decode(self, z: Tensor, params: Params) -> Tensor:
        """Pixel logits ``[K, R, B, D]`` from the first stochastic layer of z."""
        return self._network(z[..., self.layer_slices()[0]], params, "decoder.x")

    def log_prior(self, z: Tensor, params: Params) -> Tensor:
        """log p(z_1, ..., z_L) per image (the log-mass formula, defined at relaxed z):
        ``[K, R, B, units]`` -> ``[K, R, B]``."""
        layers = [z[..., s] for s in self.layer_slices()]
        prior = self._generative(params, "decoder.prior")  # [R, w_L] or [w_L]
        top = prior.unsqueeze(1) if prior.dim() == 2 else prior
        total = (layers[-1] * F.logsigmoid(top) + (1 - layers[-1]) * F.logsigmoid(-top)).sum(-1)
        for up in range(1, len(layers)):
            logits = self._network(layers[up], params, f"decoder.z{up}")
            below = layers[up - 1]
            total = total + (below * F.logsigmoid(logits)
                             + (1 - below) * F.logsigmoid(-logits)).sum(-1)
        return total

    def per_image_cost(
        self, z: Tensor, params: Params, x: Tensor, beta: float, detach_q: bool = False
    ) -> Tensor:
        """Per-image negative ELBO integrand ``[K, R, B]`` (class docstring)."""
        pixel_logits = self.decode(z, params)
        recon = F.binary_cross_entropy_with_logits(
            pixel_logits, x.expand_as(pixel_logits), reduction="none").sum(-1)
        if beta == 0:
            return recon
        q_params = ({k: v.detach() if k.startswith("encoder.") else v for k, v in params.items()}
                    if detach_q else params)
        log_q = self._log_mass(z, self.encode(q_params, x))
        return recon + beta * (log_q - self.log_prior(z, params))

    def log_ratio_terms(self, z: Tensor, params: Params, x: Tensor) -> Tensor:
        """``-log p(x, z) + log q(z | x)`` per image, ``[S, R, B]``."""
        return self.per_image_cost(z, params, x, 1.0)
