"""An estimator of your own, checked by ``bench verify`` (docs/verify.md).

REINFORCE with the sample-mean baseline, rescaled by K / (K - 1) so that it stays unbiased:
each sample's baseline then effectively leaves the sample out (Kool et al. 2019).
"""

from estimators import Estimator, Surrogate


class MeanBaseline(Estimator):
    """g = K/(K-1) * mean_k (f_k - mean_j f_j) grad log q(z_k) + grad f.

    References: Kool, van Hoof, Welling (2019), ICLR workshop.
    """

    name = "my_mean_baseline"
    description = "REINFORCE with the rescaled sample-mean baseline"
    requires = frozenset()
    unbiased = True
    min_samples = 2

    def surrogate(self, problem, params, n_samples, state):
        dist = problem.distribution(params)
        z = dist.sample((n_samples,))  # [K, R, *event]
        cost = problem.signals(problem.cost_terms(z, params))  # [K, R, F]
        log_q = problem.signals(problem.log_prob_terms(dist, z))
        free = cost.detach()
        centred = (free - free.mean(0)) * n_samples / (n_samples - 1)
        loss = ((centred * log_q).sum(-1) + cost.sum(-1)).mean(0)
        return Surrogate(loss=loss, samples=z)


ESTIMATORS = {"my_mean_baseline": MeanBaseline}
