"""Antithetic estimators for binary latents: ARM, DisARM (binary and, by stick-breaking,
categorical) and ARMS.

All three evaluate the cost at *coupled* hard samples drawn from the estimator's own uniforms
and return an estimate g of dL/d(logits), written into the surrogate as
``(stopgrad(g) * logits).sum()`` (``estimators.discrete``). Throughout, a bit with logit theta
has p = sigmoid(theta), f is the cost with its direct dependence on the parameters held fixed,
and Delta = f(1) - f(0) on a single bit.

ARM (Yin & Zhou 2019). With one u ~ U(0, 1) per bit, the antithetic pair

    b = 1[u < p],   b' = 1[1 - u < p]   (= 1[u > sigmoid(-theta)])

is marginally Bernoulli(p) each, and (their Theorem 1)

    dL/dtheta_j = E_u[(f(b') - f(b)) (u_j - 1/2)].

On one bit with a = |p - 1/2|: f(b') - f(b) = Delta (b' - b), and b' - b is -1 on
u < min(p, 1 - p), +1 on u > max(p, 1 - p), 0 between, so the mean is
Delta (1/4 - a^2) = Delta p (1 - p) and E[g^2] = Delta^2 (2/3)(1/8 - a^3).

DisARM (Dong, Mnih, Tucker 2020; the same estimator as U2G of Yin et al. 2020) is ARM
Rao-Blackwellized over u given the pair (b, b'): E[(u - 1/2) | b, b'] gives

    g_j = 1/2 (f(b) - f(b')) (-1)^{b'_j} 1[b_j != b'_j] sigma(|theta_j|)
        = 1/2 (f(b) - f(b')) (b_j - b'_j) sigma(|theta_j|),

since (-1)^{b'} 1[b != b'] = b - b' for bits. It is symmetric in the two samples. The
difference f(b) - f(b') is the control-variate form: one sample is the other's baseline.
Adding the two costs instead (a published bug) gives an estimator of mean zero at theta = 0.
On one bit with m = sigma(|theta|): g = Delta m / 2 with probability 2 (1 - m), else 0, so
Var g = Delta^2 m^2 (1 - m)(2m - 1) / 2, which is 0 at theta = 0 (m = 1/2).

Categorical DisARM by stick-breaking (Dong, Mnih, Tucker 2021, "Coupled Gradient Estimators
for Discrete Latent Variables"). A categorical z over classes ordered c_1..c_C is the first
i with b_i = 1 among independent bits b_i ~ Bernoulli(sigmoid(eta_i)), b_C = 1, where
sigmoid(eta_i) = pi_i / sum_{k >= i} pi_k, i.e. eta_i = l_i - logsumexp_{k > i} l_k for the
(ordered) logits l. Coupling the bits of two samples antithetically, bit i is *reached* by
sample s when i <= z_s. Per bit, conditional on all other uniforms:

* reached by both: the DisARM weight 1/2 (f(z) - f(z~)) (b_i - b~_i) sigma(|eta_i|), unbiased
  for the average of the two samples' score-function terms even though the two costs depend on
  bit i through different functions (the later bits differ);
* reached by one sample s only: the other's cost does not depend on u_i, so it is a valid
  baseline: 1/2 (f_s - f_other) (b_si - sigmoid(eta_i));
* reached by neither: 0 (both costs are fixed, and the weight has mean zero given them).

This is the estimator of the paper's code (``weighting=bits``). The classes are ordered by
decreasing logit per group and estimate (option ``order``; the paper's code offers orderings
too): the order changes the variance, never the mean, as the stick-breaking
representation is exact for every order. The gradient w.r.t. eta flows to the logits through
autograd. For C = 2 it is binary DisARM on the bit of logit l_1 - l_2, so ``disarm`` is one
estimator for both latent kinds: bits directly, one-hot categoricals by stick-breaking.

Importance-weighted categorical DisARM (``weighting=importance``, the same paper; its code's
importance weight):
for any coupling pi of two samples z, z~ with marginals q each, and w = q(z) q(z~) / pi(z, z~),

    g = 1/2 (f(z) - f(z~)) (z - z~) w   (d/d logits; d log q(z) = z - softmax(l))

has mean sum_{z != z~} q(z) q(z~) 1/2 (f(z) - f(z~)) (d log q(z) - d log q(z~)) = dE f, provided
pi(z, z~) > 0 for every pair of distinct classes. Under the antithetic stick-breaking coupling
the pair first differs at stage n = min(z, z~), after both bits of every earlier stage were 0,
so w = prod_{i < n} (1 - s_i)^2 / (1 - 2 s_i) * sigma(|eta_n|) with s_i = sigmoid(eta_i) (the
(1, 0) stage contributes q(1) q(0) / pi(1, 0) = sigma(|eta_n|) as for bits). The condition needs
P(both 0) = 1 - 2 s_i > 0 at every stage i <= C - 3; the classes are therefore taken in
ascending order of probability, where s_i <= 1 / (C - i) <= 1/3 at those stages (``order``
does not apply: a descending order with a class above 1/2 leaves pairs unsampled, and the
estimator is biased there). For C = 2, w = sigma(|l_1 - l_2|): binary DisARM, sample by sample.

ARMS (Dimitriev & Zhou 2021). K samples made mutually antithetic by a Dirichlet copula: with
d ~ Dirichlet(1, ..., 1) over the K samples, each d_k ~ Beta(1, K - 1), so
u_k = (1 - d_k)^{K-1} is U(0, 1) and the u_k are negatively dependent (the d_k sum to 1). Per
coordinate the samples are b_k = 1[u_k < p] if p <= 1/2, else 1[1 - u_k < p] (the copula is
most antithetic at small probabilities), with m = min(p, 1 - p). On such samples the
leave-one-out REINFORCE estimator (1/(K-1)) sum_k (f(b_k) - mean_l f(b_l)) (b_k - p) is
biased: a partner's cost is no longer independent of b_k, and E[f(b_l)(b_k - p)] equals
(C(m, m) - m^2) / (p (1 - p)) times the gradient, where
C(m, m) = P(u_1 < m, u_2 < m) = max(2 m^{1/(K-1)} - 1, 0)^{K-1} is the copula's bivariate
CDF. Its mean is (m - C(m, m)) / (p (1 - p)) times the gradient, and ARMS divides that out:

    g_j = p_j (1 - p_j) / (m_j - C(m_j, m_j)) * (1/(K-1)) sum_k (f(b_k) - fbar) (b_kj - p_j).

At K = 2 the Dirichlet draw is (d_1, 1 - d_1), so u_2 = 1 - u_1, C = 0 and the factor is
1 - m = sigma(|theta|): ARMS is DisARM, sample for sample.

Per-example signals and the direct term. On a problem with factors every unit uses its own
example's cost term f_i in place of f (the other examples' terms do not depend on its
uniforms, so dropping them keeps every estimator unbiased); the cost's direct dependence on the
parameters is estimated by the mean of d f(z_k, theta)/d theta over all K hard samples, each of
which is marginally q. Cost: K evaluations of f per estimate for all three (K/2 pairs for ARM
and DisARM, which need an even K).

References: Yin & Zhou (2019), "ARM: Augment-REINFORCE-Merge Gradient for Stochastic Binary
Networks", ICLR; Dong, Mnih, Tucker (2020), "DisARM: An Antithetic Gradient Estimator for
Binary Latent Variables", NeurIPS; Yin et al. (2020), U2G (the same estimator); Dong, Mnih,
Tucker (2021), "Coupled Gradient Estimators for Discrete Latent Variables", NeurIPS; Dimitriev &
Zhou (2021), "ARMS: Antithetic-REINFORCE-Multi-Sample Gradient for Binary Variables", ICML.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from estimators.base import Estimator, State, Surrogate
from estimators.discrete import is_binary, logits_of
from problems.base import Capability, LatentKind, Params, Problem, broadcast_factors
from problems.options import Option

ORDERS = ("descending", "ascending", "none")


def signals_at(problem: Problem, z: Tensor, params: Params) -> tuple[Tensor, Tensor]:
    """The cost terms at hard samples ``z`` ``[N, R, *event]``: per-factor learning signals
    ``[N, R, F]`` (detached; F = 1 with global signals) and the direct term ``[R]``, the mean
    over the N samples of the cost, differentiable w.r.t. the parameters."""
    cost = problem.cost_terms(z, params)  # [N, R, F]
    return problem.signals(cost.detach()), cost.sum(-1).mean(0)


def logit_surrogate(gradient: Tensor, logits: Tensor, direct: Tensor) -> Tensor:
    """The surrogate ``[R]`` whose gradient is ``gradient`` w.r.t. ``logits`` ``[R, ...]``
    plus that of the direct term."""
    return (gradient.detach() * logits).flatten(1).sum(-1) + direct


class BinaryOnly:
    """Mixin: refuses problems whose latent is not binary, with the reason."""

    @classmethod
    def incompatibility(
        cls, problem: type[Problem] | Problem, options: Mapping[str, Any] | None = None
    ) -> str | None:
        reason = super().incompatibility(problem, options)  # type: ignore[misc]
        if reason is None and problem.latent is not LatentKind.BINARY:
            return (
                f"{cls.name} needs binary latents; {problem.name} has "  # type: ignore[attr-defined]
                f"{problem.latent.value} latents"
            )
        return reason


class PairEstimator(Estimator):
    """Shared machinery of ARM and DisARM: K/2 antithetic pairs from K/2 uniforms per unit."""

    requires = frozenset({Capability.DISCRETE})
    unbiased = True
    min_samples = 2
    samples_multiple = 2
    cost_formula = "K (K/2 antithetic pairs)"

    def uniforms(self, shape: torch.Size, like: Tensor) -> Tensor:
        """The estimator's noise, U(0, 1) of ``shape`` (a method, so that tests can fix it)."""
        return torch.rand(shape, dtype=like.dtype, device=like.device)

    def pairs(self, n_samples: int) -> int:
        """K/2, refusing an odd K."""
        if n_samples < 2 or n_samples % 2:
            raise ValueError(
                f"{self.name} needs an even number of samples >= 2 (K/2 antithetic "
                f"pairs), got {n_samples}"
            )
        return n_samples // 2

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        n_pairs = self.pairs(n_samples)
        dist = problem.distribution(params)
        logits = logits_of(dist)  # [R, *event]
        if not is_binary(dist):
            return self.categorical(problem, params, logits, n_pairs)
        p = torch.sigmoid(logits.detach())
        u = self.uniforms(torch.Size((n_pairs, *logits.shape)), p)  # [P, R, *event]
        first, second = (u < p).to(p.dtype), self.partner(u, p)
        z = torch.cat([first, second])  # [K, R, *event]: the K/2 first samples, then partners
        signal, direct = signals_at(problem, z, params)  # [K, R, F]
        f_first = broadcast_factors(signal[:n_pairs], logits.shape[1:])  # [P, R, *event]
        f_second = broadcast_factors(signal[n_pairs:], logits.shape[1:])
        gradient = self.weight(f_first, f_second, u, first, second, logits.detach()).mean(0)
        return Surrogate(loss=logit_surrogate(gradient, logits, direct), samples=z)

    def partner(self, u: Tensor, p: Tensor) -> Tensor:
        """The antithetic partner of b = 1[u < p]: b' = 1[1 - u < p] = 1[u > sigmoid(-theta)]."""
        return (1 - u < p).to(p.dtype)

    @abstractmethod
    def weight(
        self,
        f_first: Tensor,
        f_second: Tensor,
        u: Tensor,
        first: Tensor,
        second: Tensor,
        logits: Tensor,
    ) -> Tensor:
        """Per-pair estimate of dL/d(logits) ``[P, R, *event]`` from the costs (learning
        signals) of the two samples of each pair, broadcast to the units."""

    def categorical(
        self, problem: Problem, params: Params, logits: Tensor, n_pairs: int
    ) -> Surrogate:
        """The estimate on one-hot categorical latents (``disarm``); binary-only estimators
        refuse such problems in ``incompatibility``, and here when called directly."""
        raise TypeError(f"{self.name} needs binary latents; {problem.name} has categorical ones")


class ARM(BinaryOnly, PairEstimator):
    """Augment-REINFORCE-Merge: g = (f(b') - f(b)) (u - 1/2) per antithetic pair
    b = 1[u < p], b' = 1[1 - u < p], averaged over K/2 pairs (module docstring).

    References: Yin & Zhou (2019), "ARM: Augment-REINFORCE-Merge Gradient for Stochastic
    Binary Networks", ICLR.
    """

    name = "arm"
    example_samples = 4
    example_options: ClassVar[dict] = {}
    style = ("indigo", "o")
    description = "Augment-REINFORCE-Merge: antithetic pairs from one uniform per bit"

    def weight(self, f_first, f_second, u, first, second, logits):
        return (f_second - f_first) * (u - 0.5)


class DisARM(PairEstimator):
    """DisARM: ARM Rao-Blackwellized over the uniform given the pair,
    g = 1/2 (f(b) - f(b')) (b - b') sigma(|theta|) per pair; on one-hot categorical latents by
    stick-breaking with the classes ordered by ``order`` (module docstring).

    References: Dong, Mnih, Tucker (2020), "DisARM: An Antithetic Gradient Estimator for Binary
    Latent Variables", NeurIPS; Dong, Mnih, Tucker (2021), "Coupled Gradient Estimators for
    Discrete Latent Variables", NeurIPS (stick-breaking).
    """

    name = "disarm"
    example_samples = 4
    example_options: ClassVar[dict] = {}
    paper_order = 6
    style = ("wine", "s")
    description = "DisARM: ARM Rao-Blackwellized over the pair (categorical: stick-breaking)"
    options: ClassVar[dict[str, Option]] = {
        "order": Option(
            "descending",
            "stick-breaking order of the classes (categorical "
            "latents): by logit, descending or ascending, or none (index order)",
            choices=ORDERS,
            applies=("weighting", ("bits",)),
        ),
        "weighting": Option(
            "bits",
            "categorical latents: bits (Rao-Blackwellized per stick-breaking bit) or "
            "importance (one importance weight q q / pi per pair, ascending order)",
            choices=("bits", "importance"),
        ),
    }

    def difference(self, f_first: Tensor, f_second: Tensor) -> Tensor:
        """f(b) - f(b'): each sample's cost with the other's as its control variate."""
        return f_first - f_second

    def weight(self, f_first, f_second, u, first, second, logits):
        return (
            0.5
            * self.difference(f_first, f_second)
            * (first - second)
            * torch.sigmoid(logits.abs())
        )

    def stick_breaking(self, logits: Tensor, n_pairs: int, order: str):
        """The antithetic stick-breaking pairs: the stage logits eta ``[R, *groups, C-1]``, the
        two samples' bits ``[P, R, *groups, C-1]``, stop ranks ``[P, R, *groups, 1]`` and
        one-hot samples ``[K, R, *groups, C]`` (first samples, then partners)."""
        classes = logits.shape[-1]
        if order == "none":
            perm = torch.arange(classes, device=logits.device).expand(logits.shape)
        else:
            descending = order == "descending"
            perm = logits.detach().sort(dim=-1, descending=descending, stable=True).indices
        ordered = logits.gather(-1, perm)  # [R, *groups, C]
        tail = ordered.flip(-1).logcumsumexp(-1).flip(-1)  # logsumexp_{k >= i}
        eta = ordered[..., :-1] - tail[..., 1:]  # [R, *groups, C-1]
        p = torch.sigmoid(eta.detach())
        u = self.uniforms(torch.Size((n_pairs, *eta.shape)), p)  # [P, R, *groups, C-1]
        bits = [(u < p).to(p.dtype), (1 - u < p).to(p.dtype)]
        stops, samples = [], []
        for b in bits:
            extended = torch.cat([b, torch.ones_like(b[..., :1])], -1)  # b_C = 1
            stop = extended.argmax(-1, keepdim=True)  # first 1: the class's rank
            stops.append(stop)
            chosen = perm.expand(n_pairs, *perm.shape).gather(-1, stop)
            samples.append(torch.zeros_like(extended).scatter_(-1, chosen, 1.0))
        return eta, bits, stops, torch.cat(samples)

    def categorical(self, problem: Problem, params: Params, logits: Tensor, n_pairs: int):
        if self.option_values["weighting"] == "importance":
            return self.importance_weighted(problem, params, logits, n_pairs)
        classes = logits.shape[-1]
        eta, bits, stops, z = self.stick_breaking(logits, n_pairs, self.option_values["order"])
        p = torch.sigmoid(eta.detach())
        signal, direct = signals_at(problem, z, params)
        difference = self.difference(
            broadcast_factors(signal[:n_pairs], eta.shape[1:]),
            broadcast_factors(signal[n_pairs:], eta.shape[1:]),
        )
        rank = torch.arange(classes - 1, device=logits.device)
        reached = [rank <= stop for stop in stops]  # bit i reached by sample s: i <= z_s
        both = reached[0] & reached[1]
        gradient = (
            0.5
            * difference
            * (
                both * (bits[0] - bits[1]) * torch.sigmoid(eta.detach().abs())
                + (reached[0] & ~reached[1]) * (bits[0] - p)
                - (reached[1] & ~reached[0]) * (bits[1] - p)
            )
        )
        return Surrogate(loss=logit_surrogate(gradient.mean(0), eta, direct), samples=z)

    def importance_weighted(
        self, problem: Problem, params: Params, logits: Tensor, n_pairs: int
    ) -> Surrogate:
        """g = 1/2 (f(z) - f(z~)) (z - z~) q(z) q(z~) / pi(z, z~) (module docstring)."""
        eta, _, stops, z = self.stick_breaking(logits, n_pairs, "ascending")
        signal, direct = signals_at(problem, z, params)
        difference = self.difference(broadcast_factors(signal[:n_pairs], logits.shape[1:]),
                                     broadcast_factors(signal[n_pairs:], logits.shape[1:]))
        weight = self.pair_weight(eta.detach(), torch.minimum(*stops))  # [P, R, *groups, 1]
        gradient = 0.5 * difference * (z[:n_pairs] - z[n_pairs:]) * weight
        return Surrogate(loss=logit_surrogate(gradient.mean(0), logits, direct), samples=z)

    @staticmethod
    def pair_weight(eta: Tensor, first: Tensor) -> Tensor:
        """q(z) q(z~) / pi(z, z~) for a pair that first differs at stage ``first``
        ``[P, R, *groups, 1]``: prod_{i < n} (1 - s_i)^2 / (1 - 2 s_i) * sigma(|eta_n|) (0
        where the pair is equal; there z = z~ and the estimate is 0 anyway)."""
        s = torch.sigmoid(eta)
        gap = (1 - 2 * s).clamp_min(torch.finfo(s.dtype).tiny)  # P(both bits 0)
        both_zero = torch.where(s < 0.5, (1 - s) ** 2 / gap, 0.0)
        before = torch.cat([torch.ones_like(s[..., :1]), both_zero.cumprod(-1)[..., :-1]], -1)
        at = (before * torch.sigmoid(eta.abs())).expand(*first.shape[:-1], -1)
        return at.gather(-1, first.clamp_max(eta.shape[-1] - 1))


class ARMS(BinaryOnly, Estimator):
    """ARMS: K mutually antithetic samples through a Dirichlet copula, the leave-one-out
    REINFORCE estimator on them, debiased by p (1 - p) / (m - C(m, m)) per coordinate (module
    docstring). K = 2 is DisARM.

    References: Dimitriev & Zhou (2021), "ARMS: Antithetic-REINFORCE-Multi-Sample Gradient for
    Binary Variables", ICML.
    """

    name = "arms"
    example_samples = 4
    example_options: ClassVar[dict] = {}
    style = ("olive", "^")
    description = "ARMS: K antithetic samples from a Dirichlet copula, debiased leave-one-out"
    requires = frozenset({Capability.DISCRETE})
    unbiased = True
    min_samples = 2
    cost_formula = "K (K coupled samples)"

    def uniforms(self, shape: torch.Size, like: Tensor) -> Tensor:
        """K coupled U(0, 1) along dim 0: u_k = (1 - d_k)^(K-1), d ~ Dirichlet(1, ..., 1)."""
        exponentials = torch.empty(shape, dtype=like.dtype, device=like.device).exponential_()
        dirichlet = exponentials / exponentials.sum(0, keepdim=True)
        return (1 - dirichlet) ** (shape[0] - 1)

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        if n_samples < 2:
            raise ValueError(f"arms needs n_samples >= 2, got {n_samples}")
        dist = problem.distribution(params)
        if not is_binary(dist):
            raise TypeError(f"arms needs binary latents; {problem.name} has categorical ones")
        logits = logits_of(dist)  # [R, *event]
        p = torch.sigmoid(logits.detach())
        u = self.uniforms(torch.Size((n_samples, *logits.shape)), p)  # [K, R, *event]
        low = p <= 0.5
        z = torch.where(low, u < p, 1 - u < p).to(p.dtype)
        signal, direct = signals_at(problem, z, params)  # [K, R, F]
        centred = broadcast_factors(signal - signal.mean(0), logits.shape[1:])
        loo = (centred * (z - p)).sum(0) / (n_samples - 1)  # [R, *event]
        gradient = loo * self.correction(p, n_samples)
        return Surrogate(loss=logit_surrogate(gradient, logits, direct), samples=z)

    def correction(self, p: Tensor, n_samples: int) -> Tensor:
        """The factor that makes leave-one-out REINFORCE on the coupled samples unbiased."""
        return debias(p, n_samples)


def debias(p: Tensor, n_samples: int) -> Tensor:
    """ARMS's factor p (1 - p) / (m - C(m, m)), m = min(p, 1 - p), with the Dirichlet copula's
    bivariate CDF C(m, m) = max(2 m^{1/(K-1)} - 1, 0)^{K-1}; 0 where m underflows to 0 (the
    leave-one-out term is 0 there)."""
    m = torch.minimum(p, 1 - p)
    joint = (2 * m ** (1 / (n_samples - 1)) - 1).clamp(min=0) ** (n_samples - 1)
    denominator = m - joint
    safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator > 0, p * (1 - p) / safe, torch.zeros_like(p))
