"""The pathwise (reparameterization) family: ``reparam``, ``stl`` and ``dreg``.

With z = g(eps, theta), eps ~ p(eps) independent of theta (``rsample``),
dL/dtheta = E_eps[d/dtheta f(g(eps, theta), theta)]: the surrogate is just the sample
mean of the cost of reparameterized samples. On a multi-sample objective the surrogate is
the K-sample bound of the reparameterized samples, whose pathwise gradient is the IWAE
gradient of Burda et al. (2016). Non-Gaussian latents with an ``rsample`` that torch
implements by implicit reparameterization (Gamma, Beta, Dirichlet: dz/dtheta =
-(dF/dtheta) / (dF/dz) for the CDF F, Figurnov et al. 2018) use the same surrogate.

Variational objectives (``Capability.LOG_WEIGHTS``: the cost is f = -log w = log q_theta(z) -
log p(x, z)) let the total derivative of log q at z = g(eps, theta) be split into a path
term, through z, and a score term d/dtheta log q_theta(z) at fixed z, whose expectation is
zero. ``stl`` and ``dreg`` drop or rewrite the score term (``Problem.cost_terms(...,
detach_q=True)`` evaluates log q at parameters cut from the graph, so only its path term is
left):

* ``stl`` (sticking the landing, Roeder et al. 2017) drops it. For the ELBO that removes a
  zero-mean term, so the estimate stays unbiased and its variance vanishes when q equals the
  exact posterior (w is then constant). For the importance-weighted bound with K > 1 the
  score term enters as sum_k w~_k d/dtheta log q(z_k), w~ the normalized weights, whose
  expectation is not zero: STL is biased there (Tucker et al. 2019, Section 3).
* ``dreg`` (doubly reparameterized, Tucker et al. 2019) rewrites that expectation by
  reparameterizing it a second time, E[w~_k d log q(z_k)/dtheta] = E[w~_k^2 d log w_k/dz_k
  dz_k/dtheta] (their eq. 6), which gives the unbiased estimate of the gradient of the
  negative bound, per factor,

      - scale * sum_k w~_k^2 (d log w_k / d z_k) (d z_k / d theta)      (q's parameters)
      - scale * sum_k w~_k d/dtheta log p(x, z_k)                        (the model's),

  the second line being the ordinary IWAE gradient for parameters that enter log p
  directly (a VAE's decoder). With one sample the weight is 1 and DReG is STL.

References: Kingma & Welling (2014), "Auto-Encoding Variational Bayes", ICLR; Rezende,
Mohamed, Wierstra (2014), "Stochastic Backpropagation", ICML; Mohamed et al. (2020),
Section 5; Figurnov, Mohamed, Mnih (2018), "Implicit Reparameterization Gradients",
NeurIPS; Roeder, Wu, Duvenaud (2017), "Sticking the Landing", NeurIPS; Tucker, Lawson, Gu,
Maddison (2019), "Doubly Reparameterized Gradient Estimators for Monte Carlo Objectives",
ICLR.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from estimators.base import Estimator, State, Surrogate
from estimators.targets import ExactGradient
from problems.base import Capability, Params, Problem

#: what the variational pathwise estimators need: a reparameterized sampler, a cost
#: differentiable in z, and a cost that is -log w with a separable log q
VARIATIONAL = frozenset(
    {Capability.RSAMPLE, Capability.DIFFERENTIABLE_COST, Capability.LOG_WEIGHTS}
)


class Reparam(Estimator):
    """Pathwise gradient through ``Distribution.rsample``. Unbiased.

    References: Kingma & Welling (2014), ICLR; Rezende et al. (2014), ICML.
    """

    name = "reparam"
    example_samples = 4
    example_options: ClassVar[dict] = {}
    paper_order = 2
    style = ("vermillion", "D")
    description = "pathwise (reparameterization) gradient through rsample"
    requires = frozenset({Capability.RSAMPLE, Capability.DIFFERENTIABLE_COST})
    unbiased = True
    supports_multi_sample = True

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        z = problem.distribution(params).rsample((n_samples,))  # [K, R, *event]
        if problem.multi_sample:
            loss = problem.joint_cost_terms(z, params).sum(-1)  # the K-sample bound
        else:
            loss = problem.cost(z, params).mean(0)
        return Surrogate(loss=loss, samples=z.detach())


class StickingTheLanding(Estimator):
    """Sticking the landing: the pathwise gradient of -log w with log q's score term dropped.

    g = mean_k d/dtheta [log q_{stopgrad(theta)}(z_k) - log p(x, z_k)] at z_k = g(eps_k, theta)
    (``cost_terms(..., detach_q=True)``); on a multi-sample objective, the pathwise gradient of
    the K-sample bound with every log q so detached. Unbiased for the ELBO (and for the bound
    at K = 1); biased for the importance-weighted bound with K > 1 (module docstring), so it is
    declared biased: ``tests/test_continuous.py`` shows both.

    References: Roeder, Wu, Duvenaud (2017), "Sticking the Landing: Simple, Lower-Variance
    Gradient Estimators for Variational Inference", NeurIPS.
    """

    name = "stl"
    example_samples = 4
    example_options: ClassVar[dict] = {}
    exact_in_mean: ClassVar[dict[str, str]] = {
        "gaussian_elbo": "STL is unbiased for the ELBO (Roeder et al. 2017)",
    }
    style = ("indigo", "v")
    description = (
        "sticking the landing: pathwise -log w without the score of log q "
        "(unbiased for the ELBO, biased for K-sample bounds)"
    )
    requires = VARIATIONAL
    unbiased = False
    target = ExactGradient(expectation_only=True)
    supports_multi_sample = True

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        z = problem.distribution(params).rsample((n_samples,))  # [K, R, *event]
        if problem.multi_sample:
            loss = problem.joint_cost_terms(z, params, detach_q=True).sum(-1)
        else:
            loss = problem.cost_terms(z, params, detach_q=True).sum(-1).mean(0)
        return Surrogate(loss=loss, samples=z.detach())


class DReG(Estimator):
    """Doubly reparameterized gradient of the importance-weighted bound (module docstring).

    Per factor, with log w_k = ``log_weights(z_k, detach_q=True)`` (log q cut from theta) and
    w~ = softmax_k(log w) detached, the surrogate

        -scale * sum_k [ w~_k^2 log w_k(z_k(theta)) + (w~_k - w~_k^2) log w_k(stopgrad z_k) ]

    has the DReG gradient for q's parameters (only the first term reaches them, through z)
    and the IWAE gradient sum_k w~_k d log p(x, z_k) for the model's (both terms reach them
    directly, w~^2 + (w~ - w~^2) = w~). Unbiased; at K = 1, and on expectation objectives
    (the K samples averaged), it is ``stl``.

    References: Tucker, Lawson, Gu, Maddison (2019), "Doubly Reparameterized Gradient
    Estimators for Monte Carlo Objectives", ICLR.
    """

    name = "dreg"
    example_samples = 4
    example_options: ClassVar[dict] = {}
    style = ("wine", "<")
    description = "doubly reparameterized gradient of importance-weighted bounds"
    requires = VARIATIONAL
    unbiased = True
    supports_multi_sample = True

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        z = problem.distribution(params).rsample((n_samples,))  # [K, R, *event]
        if not problem.multi_sample:
            loss = problem.cost_terms(z, params, detach_q=True).sum(-1).mean(0)
            return Surrogate(loss=loss, samples=z.detach())
        log_w = problem.log_weights(z, params, detach_q=True)  # [K, R, F]
        fixed = problem.log_weights(z.detach(), params, detach_q=True)  # model terms only
        weights = torch.softmax(log_w.detach(), 0)  # w~, normalized over the K samples
        squared = weights**2
        surrogate = (squared * log_w + (weights - squared) * fixed).sum(0)  # [R, F]
        return Surrogate(loss=-problem.factor_scale * surrogate.sum(-1), samples=z.detach())
