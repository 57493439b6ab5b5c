"""Straight-through estimators for categorical latents: Gumbel-Rao, ReinMax, GST and ZGR.

Every estimator here evaluates the cost at an exact sample and changes only the backward
pass. For one categorical variable with logits l (C classes), probabilities p = softmax(l)
and hard sample D = e_c ~ Cat(p), each builds a soft vector s(l) whose value is discarded and
whose Jacobian carries the gradient: the cost is evaluated at x = D + s - stopgrad(s), so the
estimate w.r.t. the logits is

    g = (ds/dl)^T grad_z f(D),

one hard evaluation and one backward pass per sample. They differ in s:

* ``gumbel_rao`` (Paulus, Maddison, Krause 2021): s = (1/M) sum_m softmax((l + G_m) / tau),
  G_1..G_M Gumbel noise drawn *conditionally on* argmax(l + G) = c. This is the conditional
  expectation of ST-Gumbel-Softmax's backward given D, estimated by M draws.
* ``reinmax`` (Liu et al. 2023): s = 2 pi_1 - pi_0 / 2 with pi_0 = softmax(l) and pi_1 the
  vector (D + softmax(l / tau)) / 2 given the Jacobian of a softmax,
  d pi_1 / dl = diag(pi_1) - pi_1 pi_1^T (Heun's method instead of straight-through's Euler
  step).
* ``gst`` (Fan et al. 2022): s = softmax((l + m) / tau) with a deterministic perturbation m of
  the logits given D: the sampled class is raised to the largest logit and every other class
  within ``gap`` of it is lowered to the largest logit minus the gap, so that argmax s = D.
* ``zgr`` (Gregor et al. 2014, DARN(1/2); Shekhovtsov 2023): s = (p + (D - stopgrad(p))
  log p_c) / 2, the average of straight-through's and a REINFORCE-like term; the limit of
  Gumbel-Rao as tau -> 0.

Identities (tested). With J(pi) = diag(pi) - pi pi^T, ReinMax at tau = 1 has
ds/dl = 2 J((D + p) / 2) - J(p) / 2 = (diag(p) + D D^T - D p^T - p D^T) / 2, which is ZGR's
(J(p) + (D - p)(D - p)^T) / 2: the two are the same estimator, for bits and for any C. For a
cost that is quadratic in the one-hot z (bernoulli_toy, categorical_toy), ZGR is exact in
mean: f(e_j) - f(e_c) = <(grad f(e_j) + grad f(e_c)) / 2, e_j - e_c> (the trapezoid rule is
exact for quadratics), and E[g_j] = (p_j / 2) sum_c p_c (a_jj - a_jc + a_cj - a_cc) with
a_c = grad f(e_c) is the exact gradient sum_c p_c p_j (f(e_j) - f(e_c)). On other costs (the
VAEs) all four are biased.

Bits. A bit with logit theta is the 2-class categorical with logits (theta, 0), class 0 being
'one' (``estimators.discrete.binary_as_categorical``); the estimators work on that and the
cost sees the first coordinate, so binary and categorical results are the same estimator.

References: Paulus, Maddison, Krause (2021), "Rao-Blackwellizing the Straight-Through
Gumbel-Softmax Gradient Estimator", ICLR; Liu, Li, Gao, Han (2023), "Bridging Discrete and
Backpropagation: Straight-Through and Beyond", NeurIPS; Fan, Xu, Chen, Tsai, Chen, Hsu (2022),
"Training Discrete Deep Generative Models via Gapped Straight-Through Estimator", ICML;
Gregor, Danihelka, Mnih, Blundell, Wierstra (2014), "Deep AutoRegressive Networks", ICML;
Shekhovtsov (2023), "Cold Analysis of Rao-Blackwellized Straight-Through Gumbel-Softmax
Gradient Estimator", ICML.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import torch
from torch import Tensor

from estimators.base import Estimator, State, Surrogate
from estimators.discrete import binary_as_categorical, is_binary, logits_of
from estimators.relaxed import DISCRETE_DIFFERENTIABLE, TAU
from estimators.targets import NoTarget, RelaxedGradient
from problems.base import Params, Problem
from problems.options import Option


def categorical_logits(problem: Problem, params: Params) -> tuple[Tensor, bool]:
    """The problem's latent as categorical logits ``[R, *groups, C]`` (bits as (theta, 0)),
    differentiable w.r.t. ``params``, and whether the latent is binary."""
    dist = problem.distribution(params)
    binary = is_binary(dist)
    logits = logits_of(dist)
    return (binary_as_categorical(logits) if binary else logits), binary


def sample_one_hot(logits: Tensor, n_samples: int) -> Tensor:
    """``n_samples`` one-hot draws from Cat(softmax(logits)): ``[K, *logits.shape]``."""
    index = torch.distributions.Categorical(logits=logits.detach()).sample((n_samples,))
    return torch.nn.functional.one_hot(index, logits.shape[-1]).to(logits.dtype)


def conditional_gumbels(logits: Tensor, hard: Tensor, n_draws: int) -> Tensor:
    """Gumbel noise G ``[M, *hard.shape]`` drawn from its law given argmax(logits + G) = D.

    The maximum T = logsumexp(l) - log E_c (E ~ Exp(1)) of l + G is Gumbel(logsumexp(l)) and
    independent of the argmax; given both, every other l_j + G_j is a Gumbel(l_j) truncated
    below T, whose inverse-CDF draw is -log(exp(-T) + E_j exp(-l_j)). Computed from detached
    logits: the noise is fixed, as the noise of ST-Gumbel-Softmax is.
    """
    logits = logits.detach().expand_as(hard)
    exp = torch.empty((n_draws, *hard.shape), dtype=hard.dtype, device=hard.device).exponential_()
    top = torch.logsumexp(logits, -1, keepdim=True) - torch.log((exp * hard).sum(-1, keepdim=True))
    others = -torch.logaddexp(-top, torch.log(exp) - logits)
    perturbed = torch.where(hard.bool(), top, others)  # [M, K, R, *groups, C]
    return perturbed - logits


class StraightThroughFamily(Estimator):
    """Shared surrogate: forward at the hard sample D, backward through ``soft(logits, D)``."""

    requires = DISCRETE_DIFFERENTIABLE
    unbiased = False

    @abstractmethod
    def soft(self, logits: Tensor, hard: Tensor) -> Tensor:
        """The vector s ``[K, R, *groups, C]`` whose Jacobian w.r.t. the logits ``[R, *groups,
        C]`` is the backward pass at the hard samples ``hard`` ``[K, R, *groups, C]``."""

    def sample(self, logits: Tensor, n_samples: int) -> Tensor:
        """The hard samples ``[K, R, *groups, C]``."""
        return sample_one_hot(logits, n_samples)

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        logits, binary = categorical_logits(problem, params)  # [R, *groups, C]
        hard = self.sample(logits, n_samples)  # [K, R, *groups, C]
        soft = self.soft(logits, hard)
        x = hard + soft - soft.detach()
        z, sample = (x[..., 0], hard[..., 0]) if binary else (x, hard)
        return Surrogate(loss=problem.cost(z, params).mean(0), samples=sample)


class GumbelRao(StraightThroughFamily):
    """Gumbel-Rao Monte Carlo: ST-Gumbel-Softmax's backward averaged over M Gumbel draws given
    the sampled category, g = (1/M) sum_m (1/tau) J(y_m)^T grad f(D), y_m = softmax((l + G_m)
    / tau), G_m ~ Gumbel | argmax(l + G) = D.

    Which variant. The paper differentiates softmax((l + G_m) / tau) through l and through the
    conditional G_m (whose law depends on l); its public implementations differ. Only the
    variant with G_m held fixed (detached) has E[g | D] = E[g_STGS | D], so that by the tower
    property its mean equals ST-Gumbel-Softmax's at the same tau for every M while its
    variance, Var(g_STGS) - (1 - 1/M) E[Var(g_STGS | D)], decreases in M; this is that variant
    (the derivative does not flow through the conditional Gumbels). At M = 1 it has the law
    of ST-Gumbel-Softmax. Biased like it.

    References: Paulus, Maddison, Krause (2021), ICLR; Jang et al. (2017), ICLR.
    """

    name = "gumbel_rao"
    example_samples = 4
    example_options: ClassVar[dict] = {"tau": 1.0, "rao_samples": 4}
    paper_order = 10
    style = ("vermillion", ">")
    description = "Gumbel-Rao: ST-Gumbel-Softmax backward averaged over M conditional Gumbels"
    #: the tower property: its mean is ST-Gumbel-Softmax's at the same tau, for every M
    target = RelaxedGradient(straight_through=True)
    options: ClassVar[dict[str, Option]] = {
        "tau": TAU,
        "rao_samples": Option(10, "conditional Gumbel draws M per sample", minimum=1),
    }

    def soft(self, logits: Tensor, hard: Tensor) -> Tensor:
        gumbels = conditional_gumbels(logits, hard, self.option_values["rao_samples"])
        return torch.softmax((logits + gumbels) / self.option_values["tau"], -1).mean(0)


class ReinMax(StraightThroughFamily):
    """ReinMax: g = (2 J(pi_1) - J(p) / 2)^T grad f(D), pi_1 = (D + softmax(l / tau)) / 2,
    J(pi) = diag(pi) - pi pi^T; a second-order (Heun) approximation of the gradient where
    straight-through is first-order (Euler). The sample is drawn at temperature 1; tau only
    enters pi_1 (its paper recommends tau >= 1). At tau = 1 it equals ``zgr``. Biased.

    References: Liu, Li, Gao, Han (2023), "Bridging Discrete and Backpropagation:
    Straight-Through and Beyond", NeurIPS, Algorithm 2.
    """

    name = "reinmax"
    # at tau = 1 ReinMax is ZGR, exact in mean on the quadratic toys: tau = 2 is biased there
    example_samples = 4
    example_options: ClassVar[dict] = {"tau": 2.0}
    paper_order = 9
    style = ("indigo", "*")
    description = "ReinMax: second-order (Heun) straight-through backward"
    target = NoTarget("its mean is the exact gradient only for costs quadratic in z at tau=1")
    options: ClassVar[dict[str, Option]] = {"tau": TAU}

    def soft(self, logits: Tensor, hard: Tensor) -> Tensor:
        pi_1 = (hard + torch.softmax(logits.detach() / self.option_values["tau"], -1)) / 2
        # a softmax whose value is pi_1 and whose Jacobian is J(pi_1)
        pi_1 = torch.softmax(logits + (torch.log(pi_1) - logits).detach(), -1)
        return 2 * pi_1 - torch.softmax(logits, -1) / 2


class GappedST(StraightThroughFamily):
    """Gapped straight-through: g = (1/tau) J(y)^T grad f(D), y = softmax((l + m) / tau) with
    the deterministic perturbation m (detached) given D = e_c and l* = max_j l_j:
    m_c = l* - l_c, and m_j = -max(0, l_j - l* + gap) for j != c. The gap is 1 (GST-1.0) or,
    with ``gap=p``, -log(1 - p_c) / p_c (GST-p). No noise beyond D, so the estimate is a
    function of D. Biased.

    References: Fan, Xu, Chen, Tsai, Chen, Hsu (2022), "Training Discrete Deep Generative
    Models via Gapped Straight-Through Estimator", ICML, Section 4.
    """

    name = "gst"
    example_samples = 4
    example_options: ClassVar[dict] = {"gap": "1", "tau": 1.0}
    style = ("wine", "o")
    description = "gapped straight-through: deterministic logit perturbation given the sample"
    target = NoTarget("its mean has no definition independent of its own backward pass")
    options: ClassVar[dict[str, Option]] = {
        "gap": Option(
            "1", "gap: 1 (GST-1.0) or p (GST-p, -log(1 - p_c) / p_c)", choices=("1", "p")
        ),
        "tau": TAU,
    }

    def soft(self, logits: Tensor, hard: Tensor) -> Tensor:
        fixed = logits.detach().expand_as(hard)
        top = fixed.max(-1, keepdim=True).values
        chosen = (fixed * hard).sum(-1, keepdim=True)
        if self.option_values["gap"] == "p":
            p_c = (torch.softmax(fixed, -1) * hard).sum(-1, keepdim=True)
            gap = -torch.log1p(-p_c) / p_c
        else:
            gap = torch.ones_like(top)
        move = hard * (top - chosen) - (1 - hard) * (fixed - top + gap).clamp(min=0)
        return torch.softmax((logits + move) / self.option_values["tau"], -1)


class ZGR(StraightThroughFamily):
    """ZGR / DARN(1/2): g = (J(p) + (D - p)(D - p)^T)^T grad f(D) / 2, the mean of
    straight-through's J(p)^T grad f(D) and (D - p) <D - p, grad f(D)>, i.e. s = (p + (D -
    stopgrad(p)) log p_c) / 2. The tau -> 0 limit of Gumbel-Rao; for a bit with p = sigmoid
    theta, g = f'(1) (1 - p) / 2 at b = 1 and f'(0) p / 2 at b = 0, Gregor et al.'s DARN
    estimator with its Taylor expansion at 1/2. Exact in mean for costs quadratic in z (the
    module docstring), biased otherwise.

    References: Shekhovtsov (2023), "Cold Analysis of Rao-Blackwellized Straight-Through
    Gumbel-Softmax Gradient Estimator", ICML; Gregor et al. (2014), "Deep AutoRegressive
    Networks", ICML.
    """

    name = "zgr"
    example_samples = 4
    example_options: ClassVar[dict] = {}
    exact_in_mean: ClassVar[dict[str, str]] = {
        "bernoulli_toy": "ZGR is exact for costs quadratic in z (Shekhovtsov 2023)",
        "categorical_toy": "ZGR is exact for costs quadratic in z (Shekhovtsov 2023)",
    }
    style = ("olive", "s")
    description = "ZGR / DARN(1/2): mean of the straight-through and a score-function backward"
    target = NoTarget("its mean is the exact gradient only for costs quadratic in z")

    def soft(self, logits: Tensor, hard: Tensor) -> Tensor:
        log_p = torch.log_softmax(logits, -1)
        p = log_p.exp()
        log_p_sample = (log_p * hard).sum(-1, keepdim=True)  # log p_c, differentiable
        return (p + (hard - p.detach()) * log_p_sample) / 2
