"""Group baselines of policy-gradient reinforcement learning (GRPO, Dr. GRPO), and the
variance-minimising constant baseline.

Each factor i (a prompt, ``Problem.n_factors``) draws its own group of K samples (responses)
z_1..z_K with costs f_k = f_i(z_k) (f = -reward) and log-probabilities log q(z_k). The group
estimators differ in the advantage A_k and in the normaliser D_k of each sample's score:

    g = sum_k A_k / D_k  d/dtheta log q(z_k) + mean_k d/dtheta f(z_k, theta)|_z,

with the last (direct) term zero for costs that do not depend on theta.

Advantages. ``grpo`` (Shao et al. 2024) uses A_k = (f_k - mean_j f_j) / (std_j f_j + eps),
the std with ``ddof`` (1 as ``torch.std``); ``scale=none`` and ``dr_grpo`` (Liu et al. 2025)
drop the division. The group mean contains f_k itself: with c = mean_j f_j,
f_k - c = (K - 1) / K (f_k - mean_{j != k} f_j), so without the division and without length
normalisation the estimate is exactly (K - 1) / K times the leave-one-out estimate
(``reinforce_loo``) sample by sample, and its mean is (K - 1) / K times the true gradient.
The division by the group's std is a sample-dependent rescaling: biased, by an amount that
depends on the problem (on one bit at p = 1/2, K = 4: a mean of 0.3492 for a true gradient of
0.025, ``tests/test_group.py`` enumerates it).

Length normalisation (``length_norm``, on problems with ``Capability.SEQUENCE``; elsewhere
every length is 1): ``sequence`` divides each response's log-probability sum by its own
length, D_k = K |o_k| (GRPO's); ``token`` by the group's tokens, D_k = sum_j |o_j| (DAPO's
token-level mean); ``none``, D_k = K. Dr. GRPO divides by a constant, the maximum length L,
D_k = K L, so its mean is exactly (K - 1) / (K L) times the true gradient: a rescaling only.
``sequence`` weighs a short response's tokens more than a long one's: a negative advantage
is diluted on a long response and a positive one concentrated on a short one, which biases
training towards long incorrect and short correct responses (Liu et al. 2025, Section 3.1).

References: Shao et al. (2024), "DeepSeekMath: Pushing the Limits of Mathematical
Reasoning in Open Language Models", arXiv:2402.03300, Section 4.1; Liu et al. (2025),
"Understanding R1-Zero-Like Training: A Critical Perspective", arXiv:2503.20783, Section 3.1;
Yu et al. (2025), "DAPO", arXiv:2503.14476, Section 3.3 (token-level loss); Ahmadian et al.
(2024), "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human
Feedback in LLMs", ACL (RLOO).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.distributions import Distribution

from estimators.base import Estimator, State, Surrogate
from problems.base import Capability, Params, Problem
from problems.options import Option, resolve_options

LENGTH_NORMS = ("sequence", "token", "none")


def response_lengths(problem: Problem, z: Tensor, like: Tensor) -> Tensor:
    """|o| per sample and factor ``[K, R, F']`` (``Problem.signals``); 1 where the problem's
    latent is not a sequence."""
    if Capability.SEQUENCE not in problem.provided:
        return torch.ones_like(like)
    lengths = problem.lengths(z)  # [K, R, F]
    return lengths if problem.local_signals else lengths.sum(-1, keepdim=True)


def max_length(problem: Problem) -> int:
    """The longest response L of a sequence problem; 1 elsewhere."""
    return problem.length if Capability.SEQUENCE in problem.provided else 1


def group_advantages(cost: Tensor, scale: str, ddof: int, eps: float) -> Tensor:
    """A_k = (f_k - mean_j f_j), divided by (std_j f_j + eps) with ``scale=std``.

    Args:
        cost: ``[K, R, F]`` detached costs; the group is dimension 0.

    Returns:
        ``[K, R, F]``.
    """
    centred = cost - cost.mean(0, keepdim=True)
    if scale == "none":
        return centred
    return centred / (cost.std(0, correction=ddof, keepdim=True) + eps)


def normalisers(mode: str, lengths: Tensor, n_max: int) -> Tensor:
    """D_k of every sample ``[K, R, F]`` for ``mode`` (module docstring; ``max``: K L)."""
    k = lengths.shape[0]
    if mode == "sequence":
        return k * lengths
    if mode == "token":
        return lengths.sum(0, keepdim=True).expand_as(lengths)
    if mode == "max":
        return torch.full_like(lengths, k * n_max)
    return torch.full_like(lengths, k)


class GroupEstimator(Estimator):
    """A group baseline: subclasses give ``advantage`` and ``length_mode``."""

    requires = frozenset()
    unbiased = False
    min_samples = 2

    def advantage(self, cost: Tensor) -> Tensor:
        """A_k ``[K, R, F]`` of detached costs ``[K, R, F]``."""
        raise NotImplementedError

    def length_mode(self) -> str:
        return str(self.option_values["length_norm"])

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        if n_samples < 2:
            raise ValueError(f"{self.name} needs a group of n_samples >= 2, got {n_samples}")
        rule = self.options_rule(self.option_values, n_samples)
        if rule is not None:
            raise ValueError(rule)
        dist = problem.distribution(params)
        return self.surrogate_at(problem, params, dist, dist.sample((n_samples,)))

    def surrogate_at(
        self, problem: Problem, params: Params, dist: Distribution, z: Tensor
    ) -> Surrogate:
        """The surrogate at given samples ``z [K, R, *event]`` (tests replay it)."""
        cost = problem.signals(problem.cost_terms(z, params))  # [K, R, F]
        log_q = problem.signals(problem.log_prob_terms(dist, z))  # [K, R, F]
        free = cost.detach()
        lengths = response_lengths(problem, z, free)
        weight = self.advantage(free) / normalisers(self.length_mode(), lengths,
                                                    max_length(problem))
        loss = (weight * log_q).sum((0, -1)) + cost.sum(-1).mean(0)  # [R]
        return Surrogate(loss=loss, samples=z)


class GRPO(GroupEstimator):
    """GRPO's group-normalised advantage, A_k = (f_k - mean_j f_j) / (std_j f_j + eps),
    with each response's score divided by its length (``length_norm=sequence``, GRPO's).

    Biased: with ``scale=none`` and no length normalisation its mean is (K - 1) / K times
    the true gradient; the std division and the length normalisation add problem-dependent
    bias (module docstring). K >= 2 (a group), ``ddof < K``.

    References: Shao et al. (2024), "DeepSeekMath", arXiv:2402.03300, Section 4.1 (Eq. 3
    and the outcome-supervision advantage).
    """

    name = "grpo"
    example_samples = 4
    example_options: ClassVar[dict] = {}
    style = ("purple", ">")
    description = "GRPO: group mean and std advantage, per-sequence length normalisation"
    options: ClassVar[dict[str, Option]] = {
        "scale": Option("std", "divide the centred cost by the group's std (std) or not (none)",
                        choices=("std", "none")),
        "ddof": Option(1, "delta degrees of freedom of the group std (as torch.std)", minimum=0,
                       applies=("scale", ("std",))),
        "eps": Option(1e-4, "added to the group std", minimum=0,
                      applies=("scale", ("std",))),
        "length_norm": Option("sequence", "divide each score by its length (sequence), by the "
                              "group's mean length (token) or not (none)", choices=LENGTH_NORMS),
    }

    @classmethod
    def options_rule(cls, options: Mapping[str, Any], n_samples: int) -> str | None:
        values = resolve_options(f"estimator {cls.name!r}", cls.options, options)
        if values["scale"] == "std" and values["ddof"] >= n_samples:
            return (f"invalid option ddof={values['ddof']} for estimator {cls.name!r}: the std of "
                    f"a group of K={n_samples} needs ddof < K")
        return None

    def advantage(self, cost: Tensor) -> Tensor:
        return group_advantages(
            cost, self.option_values["scale"], self.option_values["ddof"], self.option_values["eps"]
        )


class DrGRPO(GroupEstimator):
    """Dr. GRPO: A_k = f_k - mean_j f_j (no std division) and the constant normaliser L
    (the maximum length) in place of each response's length, D_k = K L. Its mean is exactly
    (K - 1) / (K L) times the true gradient (a rescaling; L = 1 off sequence problems).

    References: Liu et al. (2025), "Understanding R1-Zero-Like Training: A Critical
    Perspective", arXiv:2503.20783, Section 3.1 (Eq. 3).
    """

    name = "dr_grpo"
    example_samples = 4
    example_options: ClassVar[dict] = {}
    style = ("vermillion", "s")
    description = "Dr. GRPO: group-mean advantage, constant (maximum-length) normaliser"
    options: ClassVar[dict[str, Option]] = {}

    def length_mode(self) -> str:
        return "max"

    def advantage(self, cost: Tensor) -> Tensor:
        return group_advantages(cost, "none", 0, 0.0)
