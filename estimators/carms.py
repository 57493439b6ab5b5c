"""CARMS: K mutually antithetic categorical samples from a Dirichlet copula (Dimitriev & Zhou
2021), importance-weighted leave-one-out REINFORCE on them.

The copula. With d ~ Dirichlet(1, ..., 1) over the K samples, u_k = (1 - d_k)^(K-1) is
U(0, 1) and the u_k are negatively dependent (ARMS, ``estimators.antithetic``); the bivariate
CDF of any two of them is C(x, y) = max(x^s + y^s - 1, 0)^(K-1), s = 1 / (K - 1). One set of K
uniforms per categorical variable (bits: 2 classes with logits (theta, 0)).

Categories from uniforms. The C classes are laid on (0, 1) as consecutive intervals of
lengths p_c in some order (a layout), and sample k takes the class whose interval holds u_k:
marginally q. The layout is drawn per variable and estimate, shared by its K samples,
uniformly among C (C - 1) / 2: one per pair of classes {a, b}, the less likely of the two at
the bottom, the other at the top, the rest in between in increasing order of probability
(ties by index). A pair of samples can then take any two distinct classes (at K = 2 the
copula is u_2 = 1 - u_1, which pairs the bottom interval with the top one; for K > 2 a
uniform near 1 pairs with any other), which the estimator needs. Two classes have a single
layout, the less likely class below: ARMS's coupling. (The authors' code mixes over the same
bottom/top pairs.)

The estimator. With J_ab = P(z_i = a, z_j = b) the pair law of two samples of a variable
(the mixture over layouts of the copula's rectangle probabilities
C(R_a, R_b) - C(L_a, R_b) - C(R_a, L_b) + C(L_a, L_b), intervals [L_c, R_c)) and the weight
w_ab = p_a p_b / J_ab,

    g = (1/K) sum_i (e_{z_i} - p) (1/(K-1)) sum_{j != i} w(z_i, z_j) (f(z_i) - f(z_j))

per variable. Unbiased: the pair (z_i, z_j) of this variable is independent of the other
variables' pairs' effect on the conditional means F(a) = E[f | this variable = a], and
E[w (e_{z_i} - p)(F(z_i) - F(z_j))] = sum_ab p_a p_b (e_a - p)(F(a) - F(b)) = grad E f
(the importance weight turns the coupled pair into an independent one). Pairs with
z_i = z_j contribute 0 in mean whatever their weight (F(a) - F(a) = 0); the paper's
p_a^2 / J_aa is kept (0 where J_aa = 0: such a pair never occurs).

At 2 categories on a single variable the agreeing pairs' terms vanish (f(z_i) = f(z_j)) and
w_01 = p (1 - p) / (m - C(m, m)) with m = min(p, 1 - p): ARMS sample for sample, and at K = 2
DisARM (tests/test_carms.py). On several variables the agreeing pairs carry CARMS's weight
p_a^2 / J_aa and ARMS's p (1 - p) / (m - C(m, m)): both unbiased, different estimates.

Per-example signals and the direct term as in ``estimators.antithetic``. Cost: K evaluations.

References: Dimitriev & Zhou (2021), "CARMS: Categorical-Antithetic-REINFORCE Multi-Sample
Gradient Estimator", NeurIPS; Dimitriev & Zhou (2021), "ARMS", ICML.
"""

from __future__ import annotations

import itertools
from typing import ClassVar

import torch
from torch import Tensor

from estimators.antithetic import logit_surrogate, signals_at
from estimators.base import Estimator, State, Surrogate
from estimators.discrete import binary_as_categorical, is_binary, logits_of
from problems.base import Capability, Params, Problem, broadcast_factors


def copula_cdf(x: Tensor, y: Tensor, n_samples: int) -> Tensor:
    """The Dirichlet copula's bivariate CDF max(x^s + y^s - 1, 0)^(K-1), s = 1 / (K - 1)."""
    s = 1 / (n_samples - 1)
    return (x**s + y**s - 1).clamp(min=0) ** (n_samples - 1)


def layouts(p: Tensor) -> Tensor:
    """The C (C - 1) / 2 layouts of each variable (module docstring), classes from bottom to
    top: ``[..., C]`` probabilities -> ``[..., C (C - 1) / 2, C]`` class indices."""
    n_classes = p.shape[-1]
    order = torch.sort(p, dim=-1, stable=True).indices  # ascending
    positions = torch.tensor(
        [[low, *(m for m in range(n_classes) if m not in (low, high)), high]
         for low, high in itertools.combinations(range(n_classes), 2)],
        device=p.device,
    )  # [L, C]
    return order.unsqueeze(-2).expand(*p.shape[:-1], len(positions), n_classes).gather(
        -1, positions.expand(*p.shape[:-1], -1, -1))


def dirichlet_uniforms(shape: torch.Size, like: Tensor) -> Tensor:
    """K coupled U(0, 1) along dim 0: u_k = (1 - d_k)^(K-1), d ~ Dirichlet(1, ..., 1) (the
    draws of ``arms``)."""
    exponentials = torch.empty(shape, dtype=like.dtype, device=like.device).exponential_()
    return (1 - exponentials / exponentials.sum(0, keepdim=True)) ** (shape[0] - 1)


def right_ends(p: Tensor, layout: Tensor) -> Tensor:
    """The right ends of the intervals by position, bottom to top, the top one exactly 1:
    ``[..., L, C]`` for layouts ``[..., L, C]`` of probabilities ``[..., C]``."""
    right = p.unsqueeze(-2).expand_as(layout).gather(-1, layout).cumsum(-1)
    return torch.cat([right[..., :-1], torch.ones_like(right[..., -1:])], -1)


def pair_law(p: Tensor, n_samples: int) -> Tensor:
    """J_ab = P(z_i = a, z_j = b) for two of the K samples, averaged over the layouts:
    ``[..., C]`` -> ``[..., C, C]``."""
    layout = layouts(p)
    right = right_ends(p, layout)
    left = torch.cat([torch.zeros_like(right[..., :1]), right[..., :-1]], -1)
    low = torch.empty_like(right).scatter(-1, layout, left)  # by class: [..., L, C]
    high = torch.empty_like(right).scatter(-1, layout, right)
    a_low, a_high = low.unsqueeze(-1), high.unsqueeze(-1)
    b_low, b_high = low.unsqueeze(-2), high.unsqueeze(-2)
    rect = (copula_cdf(a_high, b_high, n_samples) - copula_cdf(a_low, b_high, n_samples)
            - copula_cdf(a_high, b_low, n_samples) + copula_cdf(a_low, b_low, n_samples))
    return rect.clamp(min=0).mean(-3)


class CARMS(Estimator):
    """CARMS: K antithetic categorical samples per variable from a Dirichlet copula over a
    random layout of the classes, leave-one-out REINFORCE over pairs with importance weights
    p_a p_b / J_ab (module docstring). Bits are 2-class categoricals; at 2 classes on one
    variable it is ARMS sample for sample.

    References: Dimitriev & Zhou (2021), "CARMS: Categorical-Antithetic-REINFORCE
    Multi-Sample Gradient Estimator", NeurIPS.
    """

    name = "carms"
    example_samples = 4
    example_options: ClassVar[dict] = {}
    style = ("vermillion", "o")
    description = "CARMS: K antithetic categorical samples from a Dirichlet copula (K >= 2)"
    requires = frozenset({Capability.DISCRETE})
    unbiased = True
    min_samples = 2
    cost_formula = "K (K coupled samples)"

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        if n_samples < 2:
            raise ValueError(f"{self.name} needs n_samples >= 2, got {n_samples}")
        dist = problem.distribution(params)
        binary, logits = is_binary(dist), logits_of(dist)
        classes = binary_as_categorical(logits) if binary else logits  # [R, *vars, C]
        p = torch.softmax(classes.detach(), -1)
        u = dirichlet_uniforms(torch.Size((n_samples, *p.shape[:-1])), p)  # [K, R, *vars]
        candidates = layouts(p)  # [R, *vars, L, C]
        choice = torch.randint(candidates.shape[-2], p.shape[:-1], device=p.device)
        layout = candidates.gather(-2, choice[..., None, None].expand(
            *p.shape[:-1], 1, p.shape[-1])).squeeze(-2)  # [R, *vars, C]
        right = right_ends(p, layout.unsqueeze(-2)).squeeze(-2)
        position = (u.unsqueeze(-1) >= right).sum(-1).clamp(max=p.shape[-1] - 1)  # [K, R, *vars]
        category = layout.expand(n_samples, *layout.shape).gather(
            -1, position.unsqueeze(-1)).squeeze(-1)
        onehot = torch.nn.functional.one_hot(category, p.shape[-1]).to(p.dtype)
        z = onehot[..., 0] if binary else onehot
        signal, direct = signals_at(problem, z, params)  # [K, R, F]
        f = broadcast_factors(signal, dist.event_shape)  # [K, R, *event]
        f = f if binary else f[..., 0]  # [K, R, *vars]
        gradient = self.weighted_loo(onehot, category, f, p, n_samples)
        gradient = gradient[..., 0] if binary else gradient
        return Surrogate(loss=logit_surrogate(gradient, logits, direct), samples=z)

    def weighted_loo(self, onehot: Tensor, category: Tensor, f: Tensor, p: Tensor,
                     n_samples: int) -> Tensor:
        """(1/K) sum_i (e_{z_i} - p) (1/(K-1)) sum_{j != i} w(z_i, z_j) (f_i - f_j):
        ``[R, *vars, C]`` from one-hot samples ``[K, R, *vars, C]``, classes and signals
        ``[K, R, *vars]``."""
        joint = pair_law(p, n_samples)  # [R, *vars, C, C]
        safe = torch.where(joint > 0, joint, torch.ones_like(joint))
        weight = torch.where(joint > 0, p.unsqueeze(-1) * p.unsqueeze(-2) / safe, 0.0)
        flat = weight.flatten(-2).expand(n_samples, n_samples, *weight.shape[:-2], -1)
        pair = category.unsqueeze(1) * p.shape[-1] + category.unsqueeze(0)  # [K_i, K_j, ...]
        w = flat.gather(-1, pair.unsqueeze(-1)).squeeze(-1)  # w(z_i, z_j)
        diff = f.unsqueeze(1) - f.unsqueeze(0)  # f_i - f_j; 0 on the diagonal
        per_sample = (w * diff).sum(1) / (n_samples - 1)  # [K, R, *vars]
        return ((onehot - p) * per_sample.unsqueeze(-1)).mean(0)
