"""The parts of the discrete VAEs (``problems.discrete_vae``, ``problems.sbn``) that are not
the Problem contract: network initialisation, latent sampling, the enumerated per-image
objectives, pretraining and the test-set metrics.

Each function takes the problem (a ``DiscreteVAE``) and reads its options, data and
networks; the enumerations bound the configurations x images evaluated at once by
``ENUMERATION_ROWS``.

References: Burda, Grosse, Salakhutdinov (2016), "Importance Weighted Autoencoders", ICLR
(the K-sample bound and the importance-weighted test bound).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from problems.base import LatentKind, Params, repeat_params
from problems.data import ImageData, load_data
from problems.enumeration import enumerate_support

if TYPE_CHECKING:
    from problems.discrete_vae import DiscreteVAE

ACTIVATIONS = {"relu": F.relu, "leaky_relu": F.leaky_relu}
#: bound on (configurations x images) evaluated at once by the enumeration
ENUMERATION_ROWS = 2**16
#: images per chunk of the test-set metrics
TEST_CHUNK = 256
#: samples per estimate of the leave-one-out gradient used to pretrain non-enumerable models
PRETRAIN_SAMPLES = 8


def load_images(
    name: str, values: Mapping[str, Any], dtype: torch.dtype, device: torch.device
) -> ImageData:
    """The images of options ``values`` (``problems.data.load_data``), with a check that the
    training split holds a minibatch."""
    data = load_data(
        values["data"],
        test_source=values["test_data"],
        test_fraction=values["test_fraction"],
        binarize=values["binarize"],
        seed=values["seed"],
        dtype=dtype,
        device=device,
    )
    n_train = data.train.shape[0]
    if values["batch"] > n_train:
        raise ValueError(
            f"invalid option batch={values['batch']} for problem {name!r}: "
            f"the training split of {values['data']} has {n_train} images; use "
            f"batch <= {n_train}"
        )
    return data


def parse_hidden(values: Mapping[str, Any]) -> tuple[int, ...]:
    """The mlp's hidden widths of options ``values`` (the option's pattern has checked the
    text); none for the linear architecture."""
    if values["arch"] == "linear":
        return ()
    return tuple(int(part) for part in values["hidden"].split("-"))


def uniform_layers(
    nets: Mapping[str, Sequence[int]],
    generator: torch.Generator,
    tensor: Callable[[Tensor], Tensor],
) -> Params:
    """``{net.i.weight, net.i.bias}`` for every net's consecutive widths: Uniform(+-1/sqrt(n_in))
    weights ``[n_in, n_out]`` drawn with ``generator`` in order, zero biases; ``tensor`` puts
    them on the problem's device and dtype."""
    params: Params = {}
    for net, widths in nets.items():
        for i, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
            bound = 1 / math.sqrt(n_in)
            weight = (torch.rand(n_in, n_out, generator=generator) * 2 - 1) * bound
            params[f"{net}.{i}.weight"] = tensor(weight)
            params[f"{net}.{i}.bias"] = tensor(torch.zeros(n_out))
    return params


def sample_latent(vae: DiscreteVAE, params: Params, x: Tensor, n: int,
                  generator: torch.Generator) -> Tensor:
    """Hard samples ``[n, R, B, *latent]`` from q(. | x) drawn with ``generator``."""
    logits = vae.encode(params, x)
    dtype = vae.dtype
    if vae.latent is LatentKind.BINARY:
        u = torch.rand((n, *logits.shape), generator=generator, dtype=dtype)
        return (u.to(vae.device) < torch.sigmoid(logits)).to(dtype)
    gumbel = -torch.log(-torch.log(
        torch.rand((n, *logits.shape), generator=generator, dtype=dtype)
        .clamp_min(torch.finfo(dtype).tiny)
    )).to(vae.device)
    index = (logits + gumbel).argmax(-1)
    return F.one_hot(index, logits.shape[-1]).to(dtype)


def enumerated_cost(vae: DiscreteVAE, params: Params, x: Tensor, beta: float) -> Tensor:
    """``E_q[f_i]`` per image by enumerating each image's 2^L (or C^G) configurations.

    Args:
        params: ``[R, ...]``.
        x: ``[B, D]``.

    Returns:
        ``[R, B]``, differentiable w.r.t. params.
    """
    n_repeats, n_images = params["encoder.0.weight"].shape[0], x.shape[0]
    log_q_unit = vae.encode(params, x)  # [R, B, *latent]
    total = x.new_zeros(n_repeats, n_images)
    chunk = max(1, ENUMERATION_ROWS // (n_repeats * n_images))
    shape = vae.latent_shape
    for configs in enumerate_support(
        vae.latent, torch.Size(shape), chunk, dtype=vae.dtype, device=vae.device
    ):
        z = configs[:, None, None].expand(-1, n_repeats, n_images, *shape)
        weight = vae._log_mass(z, log_q_unit).exp()  # [N, R, B]
        total = total + (weight * vae.per_image_cost(z, params, x, beta)).sum(0)
    return total


def enumerated_bound(vae: DiscreteVAE, params: Params, x: Tensor, n_samples: int) -> Tensor:
    """The negative K-sample bound per image by enumerating the S^K K-tuples of each
    image's S configurations: ``[R, B]``, differentiable w.r.t. params.

    With log w_s = -f(z_s) per configuration s and log q_s its log-mass, the bound is
    ``-sum_{s_1..s_K} prod_k q_{s_k} log (1/K) sum_k w_{s_k}``.
    """
    n_repeats, n_images = params["encoder.0.weight"].shape[0], x.shape[0]
    shape = vae.latent_shape
    configs = torch.cat(list(enumerate_support(
        vae.latent, torch.Size(shape), vae.support, dtype=vae.dtype, device=vae.device,
    )))  # [S, *latent]
    z = configs[:, None, None].expand(-1, n_repeats, n_images, *shape)
    log_w = -vae.per_image_cost(z, params, x, vae.option_values["beta"])  # [S, R, B]
    log_q = vae._log_mass(z, vae.encode(params, x))  # [S, R, B]
    total = x.new_zeros(n_repeats, n_images)
    chunk = max(1, ENUMERATION_ROWS // (n_repeats * n_images))
    tuples = itertools.product(range(vae.support), repeat=n_samples)
    while block := list(itertools.islice(tuples, chunk)):
        index = torch.tensor(block, device=vae.device)  # [N, K]
        bound = torch.logsumexp(log_w[index], 1) - math.log(n_samples)  # [N, R, B]
        total = total - (log_q[index].sum(1).exp() * bound).sum(0)
    return total


def pretrain(vae: DiscreteVAE, params: Params) -> Params:
    """``pretrain_steps`` Adam steps on the negative ELBO of fresh minibatches (seeded),
    with the exact gradient (per-image enumeration) when enumerable, else the unbiased
    leave-one-out score-function gradient from ``PRETRAIN_SAMPLES`` samples."""
    values = vae.option_values
    leaf = repeat_params(params, 1)
    optimizer = torch.optim.Adam(leaf.values(), lr=values["pretrain_lr"])
    generator = torch.Generator().manual_seed(values["seed"] + 1)
    sampler = torch.Generator().manual_seed(values["seed"] + 2)
    beta = values["beta"]
    for _ in range(values["pretrain_steps"]):
        x = vae.data.train_batch(values["batch"], generator)
        if vae.enumerable:
            loss = enumerated_cost(vae, leaf, x, beta).mean()
        else:
            logits = vae.encode(leaf, x)
            z = sample_latent(vae, leaf, x, PRETRAIN_SAMPLES, sampler).detach()
            cost = vae.per_image_cost(z, leaf, x, beta)  # [S, 1, B]
            free = cost.detach()
            baseline = (free.sum(0, keepdim=True) - free) / (PRETRAIN_SAMPLES - 1)
            loss = ((free - baseline) * vae._log_mass(z, logits) + cost).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {k: v[0].detach() for k, v in leaf.items()}


def test_set_metrics(vae: DiscreteVAE, train: Params) -> dict[str, float]:
    """Test-set negative ELBO (beta = 1, exact by enumeration when enumerable, else from
    ``eval_samples`` samples per image) and, with ``iw_samples``, the importance-weighted
    bound -log (1/S) sum_s p(x, z_s) / q(z_s | x) (Burda et al. 2016)."""
    values = vae.option_values
    params = repeat_params(train, 1, requires_grad=False)
    generator = torch.Generator().manual_seed(values["seed"])
    nelbo, iwae = [], []
    with torch.no_grad():
        for x in vae.data.test.split(TEST_CHUNK):
            if vae.enumerable:
                nelbo.append(enumerated_cost(vae, params, x, 1.0)[0])
            else:
                z = sample_latent(vae, params, x, values["eval_samples"], generator)
                nelbo.append(vae.log_ratio_terms(z, params, x).mean(0)[0])
            if values["iw_samples"]:
                z = sample_latent(vae, params, x, values["iw_samples"], generator)
                log_w = -vae.log_ratio_terms(z, params, x)  # [S, 1, B]
                bound = torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])
                iwae.append(-bound[0])
    metrics = {"test_nelbo": torch.cat(nelbo).mean().item()}
    if iwae:
        metrics["test_iwae"] = torch.cat(iwae).mean().item()
    return metrics
