"""The delta-method control variate: a second-order Taylor expansion of the cost as control
variate, for Gaussian q.

Around the mean mu0 = E_q[z] (held fixed, ``stopgrad``), the cost's expansion

    h(z) = f(mu0) + grad f(mu0) . (z - mu0) + 1/2 (z - mu0)^T H(mu0) (z - mu0)

(f evaluated at the current theta, held fixed too) has the closed-form expectation under
q = N(mu, diag sigma^2)

    E_q[h] = f(mu0) + grad f(mu0) . (mu - mu0) + 1/2 sum_j H_jj sigma_j^2
             + 1/2 (mu - mu0)^T H (mu - mu0),

whose gradient at mu = mu0 is grad f(mu0) . dmu/dtheta + 1/2 sum_j H_jj d sigma_j^2/dtheta
(the last term has value and gradient zero there). With a base estimator A of dE[f]/dtheta and
the same estimator B of dE[h]/dtheta minus that exact gradient (mean zero),

    g = A - beta * B,    beta_c = Cov(A_c, B_c) / Var(B_c) per gradient coordinate c,

is unbiased for any beta independent of the samples of A and B. beta is estimated from an
independent pilot batch (``pilot`` single-sample estimates of A and B per repeat), so the
estimate stays unbiased (Mohamed et al. 2020, Section 7.4, on estimating coefficients from a
separate batch). The estimated beta is a ratio whose denominator behaves like a chi-square
with pilot - 1 degrees of freedom: with very few pilot samples its inverse moments, and with
them the estimate's variance, are infinite (measured: pilot = 2 gives Cauchy-like tails), so
``pilot`` is at least 8. Base estimators (``base``): the score function,
A = mean_k [f_k grad log q(z_k) + grad_theta f(z_k, theta)], B = mean_k h_k grad log q(z_k)
- grad E[h]; or the pathwise gradient, A = mean_k grad f(z_k(eps, theta), theta),
B = mean_k grad h(z_k(eps, theta)) - grad E[h].

When the cost is itself quadratic in z (gaussian_quadratic), h = f, A - B is the exact gradient
for every sample, beta = 1, and the estimate has zero variance.

Cost: K + ``pilot`` evaluations of f at samples, plus D at the mean for f, its gradient and
the D Hessian-vector products that give H (D x D per repeat: for small latents).

References: Mohamed, Rosca, Figurnov, Mnih (2020), "Monte Carlo Gradient Estimation in
Machine Learning", JMLR 21(132), Section 7.2 (the delta method control variate) and 7.4;
Paisley, Blei, Jordan (2012), "Variational Bayesian Inference with Stochastic Search", ICML.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from estimators.base import Estimator, State, Surrogate
from estimators.measure_valued import gaussian_of
from problems.base import Capability, Params, Problem, repeat_params
from problems.options import Option


def taylor_expansion(problem: Problem, fixed: Params, mu0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """f, its gradient and Hessian in z at ``mu0`` ``[R, D]`` (params ``fixed``, detached):
    ``[R]``, ``[R, D]``, ``[R, D, D]``, from D copies of the point (one Hessian row each)."""
    dim = mu0.shape[-1]
    point = mu0.unsqueeze(0).expand(dim, *mu0.shape).clone().requires_grad_(True)  # [D, R, D]
    with torch.enable_grad():
        value = problem.cost(point, fixed)  # [D, R]
        (grad,) = torch.autograd.grad(value.sum(), point, create_graph=True)
        eye = torch.eye(dim, dtype=mu0.dtype, device=mu0.device).unsqueeze(1)  # [D, 1, D]
        if grad.requires_grad:  # else f is linear in z and H = 0
            (rows,) = torch.autograd.grad((grad * eye).sum(), point, allow_unused=True)
        else:
            rows = None
    hessian = torch.zeros_like(point) if rows is None else rows  # [D (row), R, D]
    return value[0].detach(), grad[0].detach(), hessian.transpose(0, 1).detach()


class DeltaCV(Estimator):
    """Score-function or pathwise estimator with the second-order Taylor control variate, its
    coefficient from an independent pilot batch (module docstring). Unbiased.

    References: Mohamed et al. (2020), JMLR, Section 7.2; Paisley et al. (2012), ICML.
    """

    name = "delta_cv"
    example_samples = 4
    example_options: ClassVar[dict] = {}
    style = ("black", "D")
    description = (
        "score function or pathwise with the 2nd-order Taylor (delta method) control variate"
    )
    requires = frozenset({Capability.GAUSSIAN, Capability.DIFFERENTIABLE_COST})
    unbiased = True
    cost_formula = "K + pilot + D"
    options: ClassVar[dict[str, Option]] = {
        "base": Option(
            "score", "the estimator controlled: score or pathwise", choices=("score", "pathwise")
        ),
        "pilot": Option(
            16, "single-sample estimates per repeat that set the coefficient", minimum=8
        ),
    }

    def cost_evals(self, n_samples: int, problem: Problem) -> int:
        dim = problem.distribution(repeat_params(problem.init_params(), 1, False)).event_shape
        return n_samples + self.option_values["pilot"] + dim[-1]

    def _losses(
        self,
        problem: Problem,
        params: Params,
        n_samples: int,
        expansion: tuple[Tensor, Tensor, Tensor],
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The surrogates ``[R]`` of A and B (module docstring) and the samples."""
        dist = problem.distribution(params)
        normal = gaussian_of(problem, dist)
        loc, scale = normal.loc, normal.scale  # [R, D]
        mu0 = loc.detach()
        f0, g0, hessian = expansion  # [R], [R, D], [R, D, D]
        expected = (
            f0
            + (g0 * (loc - mu0)).sum(-1)
            + 0.5 * (hessian.diagonal(dim1=-2, dim2=-1) * scale**2).sum(-1)
        )  # E_q[h], [R]
        pathwise = self.option_values["base"] == "pathwise"
        z = dist.rsample((n_samples,)) if pathwise else dist.sample((n_samples,))  # [K, R, D]
        v = z - mu0
        hv = torch.einsum("rij,krj->kri", hessian, v.detach())  # H v, [K, R, D]
        cost = problem.cost(z, params)  # [K, R]
        if pathwise:  # h(z(theta)) with gradient (g0 + H v) dz/dtheta
            h = f0 + (g0 * v).sum(-1) + (hv * v).sum(-1) - 0.5 * (hv * v.detach()).sum(-1)
            return cost.mean(0), h.mean(0) - expected, z.detach()
        h = f0 + (g0 * v).sum(-1) + 0.5 * (hv * v).sum(-1)  # [K, R]
        log_q = dist.log_prob(z)
        loss_a = (cost.detach() * log_q + cost).mean(0)
        return loss_a, (h * log_q).mean(0) - expected, z

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        fixed = {name: value.detach() for name, value in params.items()}
        normal = gaussian_of(problem, problem.distribution(fixed))
        expansion = taylor_expansion(problem, fixed, normal.loc)
        loss_a, loss_b, z = self._losses(problem, params, n_samples, expansion)
        names = list(params)
        grads_a = _grads(loss_a, [params[n] for n in names], retain=True)
        grads_b = _grads(loss_b, [params[n] for n in names], retain=False)
        # the pilot: P single-sample estimates per repeat, rows p * R + r, independent of z
        pilot_size, n_repeats = self.option_values["pilot"], loss_a.shape[0]
        pilot = {
            n: v.unsqueeze(0)
            .expand(pilot_size, *v.shape)
            .reshape(-1, *v.shape[1:])
            .clone()
            .requires_grad_(True)
            for n, v in fixed.items()
        }
        repeated = tuple(t.repeat(pilot_size, *[1] * (t.dim() - 1)) for t in expansion)
        pilot_a, pilot_b, _ = self._losses(problem, pilot, 1, repeated)
        pilot_grads_a = _grads(pilot_a, [pilot[n] for n in names], retain=True)
        pilot_grads_b = _grads(pilot_b, [pilot[n] for n in names], retain=False)
        loss = loss_a.new_zeros(n_repeats)
        for name, a, b, pa, pb in zip(
            names, grads_a, grads_b, pilot_grads_a, pilot_grads_b, strict=True
        ):
            pa = pa.reshape(pilot_size, *a.shape)  # [P, R, *shape]
            pb = pb.reshape(pilot_size, *b.shape)
            pa, pb = pa - pa.mean(0), pb - pb.mean(0)
            variance = (pb**2).sum(0)
            beta = torch.where(variance > 0, (pa * pb).sum(0) / variance.clamp_min(1e-300), 0.0)
            estimate = a - beta * b
            loss = loss + (estimate.detach() * params[name]).reshape(n_repeats, -1).sum(-1)
        return Surrogate(loss=loss, samples=z)


def _grads(loss: Tensor, inputs: list[Tensor], retain: bool) -> list[Tensor]:
    """d loss.sum() / d inputs, zeros for inputs the loss does not use."""
    grads = torch.autograd.grad(loss.sum(), inputs, retain_graph=retain, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads, strict=True)]
