"""The pathwise (reparameterization) estimator.

With z = g(eps, theta), eps ~ p(eps) independent of theta (``rsample``),
dL/dtheta = E_eps[d/dtheta f(g(eps, theta), theta)]: the surrogate is just the sample
mean of the cost of reparameterized samples. On a multi-sample objective the surrogate is
the K-sample bound of the reparameterized samples, whose pathwise gradient is the IWAE
gradient of Burda et al. (2016).

References: Kingma & Welling (2014), "Auto-Encoding Variational Bayes", ICLR; Rezende,
Mohamed, Wierstra (2014), "Stochastic Backpropagation", ICML; Mohamed et al. (2020),
Section 5.
"""

from __future__ import annotations

from estimators.base import Estimator, State, Surrogate
from problems.base import Capability, Params, Problem


class Reparam(Estimator):
    """Pathwise gradient through ``Distribution.rsample``. Unbiased.

    References: Kingma & Welling (2014), ICLR; Rezende et al. (2014), ICML.
    """

    name = "reparam"
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
