"""The tiny VAE of docs/your_problem.md as a plugin: ``bench run --plugin tiny_vae``.

The code is the page's first block (tests/test_custom.py checks that they agree)."""

import math

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.distributions import Bernoulli

from problems import from_callable

images = torch.tensor(load_digits().data[:2] > 7, dtype=torch.float64)  # [N, 64] in {0, 1}
N, PIXELS, LATENTS = images.shape[0], images.shape[1], 3


def encoder(w_enc, b_enc):
    """q(z | x), logits [R, N, L]: each parameter arrives with a leading repeat dimension R."""
    return Bernoulli(logits=images.to(w_enc) @ w_enc + b_enc.unsqueeze(-2))


def negative_elbo(z, params):
    """log q(z | x) - log p(z) - log p(x | z): samples [K, R, N, L] -> [K, R]. log q is
    written out so that it is defined at relaxed z in [0, 1] too (relaxed estimators)."""
    logits = encoder(params["w_enc"], params["b_enc"]).logits
    log_q = (z * logits - F.softplus(logits)).sum((-1, -2))
    pixel_logits = z @ params["w_dec"] + params["b_dec"].unsqueeze(-2)  # [K, R, N, 64]
    log_lik = Bernoulli(logits=pixel_logits).log_prob(images.to(z)).sum((-1, -2))
    return log_q + N * LATENTS * math.log(2) - log_lik


generator = torch.Generator().manual_seed(0)
weights = {
    "w_enc": 0.1 * torch.randn(PIXELS, LATENTS, generator=generator),
    "b_enc": torch.zeros(LATENTS),
    "w_dec": 0.1 * torch.randn(LATENTS, PIXELS, generator=generator),
    "b_dec": torch.zeros(PIXELS),
}
TinyVAE = from_callable("tiny_vae", encoder, weights, negative_elbo)


PROBLEMS = {"tiny_vae": TinyVAE}
