"""The stress settings of ``bench verify``: problems with exact truth, at parameter values,
sizes and sample counts chosen to expose the usual mistakes of gradient estimators.

Each setting is a problem with options and the K values it is checked at. Parameters far
from 0 (saturated probabilities, large means) catch dropped or mis-scaled terms that vanish at
0; d > 1 catches coordinates mixed up or signals shared across units; K = 1, 2 and larger catch
baselines that include their own sample or mis-normalized averages; the VAEs catch wrong
per-example signals and a forgotten direct term of a cost that depends on theta; the
multi-sample objectives catch estimators that treat the bound as an expectation; the policy
(variable-length responses, per-prompt groups, a bandit at length 1) catches baselines and
normalisers that mix prompts or mis-weigh lengths. Everything
runs in float64, so that rounding never looks like bias.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: the sample counts of expectation problems, and of multi-sample objectives (the bound's K)
SAMPLES = (1, 2, 8)
BOUND_SAMPLES = (2, 4)


@dataclass(frozen=True)
class Setting:
    """A problem at options where its exact gradient is known."""

    problem: str
    options: tuple[tuple[str, Any], ...]
    quick: bool = False  # part of the quick check (one setting per problem and objective)

    @property
    def label(self) -> str:
        option_values = " ".join(f"{k}={v}" for k, v in self.options)
        return f"{self.problem}[{option_values}]" if option_values else self.problem


def _setting(problem: str, quick: bool = False, **options: Any) -> Setting:
    return Setting(problem, tuple(sorted(options.items())), quick)


SETTINGS: tuple[Setting, ...] = (
    _setting("gaussian_quadratic", quick=True, mu=1.5, sigma=0.5, k=-1.0, d=1),
    _setting("gaussian_quadratic", mu=-3.0, sigma=2.0, k=0.5, d=3),
    _setting("bernoulli_toy", quick=True, theta=2.5, d=1),
    _setting("bernoulli_toy", theta=0.0, d=1),
    _setting("bernoulli_toy", theta=-1.5, t=0.3, d=3),
    _setting("categorical_toy", quick=True, theta=2.0, d=2, classes=4, t=0.3),
    _setting("categorical_toy", theta=0.0, d=1, classes=3),
    _setting("gaussian_elbo", quick=True, d=1, n_obs=3, m=0.5, s=0.7),
    _setting("gaussian_elbo", d=2, n_obs=2, m=-1.0, s=1.5),
    _setting("gaussian_elbo", quick=True, d=1, n_obs=2, m=0.3, s=0.8, objective="iwae"),
    _setting("bernoulli_iwae", quick=True, theta=2.0, d=2),
    _setting("bernoulli_iwae", theta=0.0, d=1),
    _setting("bernoulli_vae", quick=True, latents=3, batch=2),
    _setting("bernoulli_vae", latents=2, batch=3, arch="mlp", hidden="4", grad_decoder=True),
    _setting("bernoulli_vae", latents=2, batch=2, objective="iwae"),
    _setting("categorical_vae", quick=True, groups=2, categories=3, batch=2),
    _setting("gan_discrete", critic_steps=20),
    _setting("gamma_quadratic", quick=True, alpha=0.5, beta=2.0, t=0.3, d=2),
    _setting("gamma_quadratic", alpha=3.0, beta=0.5, t=8.0, d=1),
    _setting("policy", quick=True, vocab=2, length=3, prompts=2, eos_logit=-1.0),
    _setting("policy", vocab=2, length=2, prompts=2, param="mlp", eos_logit=1.0),
    _setting("policy", vocab=3, length=1, prompts=2, rule="first", eos_logit=2.0),
    _setting("k_subset", quick=True, n=8, k=3, theta=2.0, t=0.3),
    _setting("k_subset", n=5, k=1, theta=0.0),
    _setting("polynomial", quick=True, theta=2.0, p=1.5, d=3),
    _setting("polynomial", theta=-1.0, p=3.0, c=0.8, d=2),
    _setting("logistic_regression", quick=True, batch=4, log_scale=-1.0, loc=0.1),
    _setting("sbn", quick=True, layers="2-2", batch=2),
    _setting("sbn", layers="2-1-2", batch=2, arch="mlp", hidden="3", grad_decoder=True),
    _setting("poisson_quadratic", quick=True, rate=2.0, k=3.0, d=2),
    _setting("poisson_quadratic", rate=0.2, k=4.0, d=1),
)
