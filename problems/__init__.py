"""The problem registry. Keys are permanent: they are written into result files."""

from problems.base import Capability, LatentKind, Params, Problem, Truth
from problems.counts import PoissonQuadratic
from problems.custom import from_callable
from problems.discrete_vae import BernoulliVAE, CategoricalVAE
from problems.gan_critic import GanContinuous
from problems.gan_discrete import GanDiscrete
from problems.importance import BernoulliIWAE
from problems.logistic_regression import LogisticRegression
from problems.options import Option
from problems.policy import Policy
from problems.polynomial import Polynomial
from problems.sbn import SigmoidBeliefNet
from problems.subsets import KSubset
from problems.toys import (
    BernoulliToy,
    CategoricalToy,
    GammaQuadratic,
    GaussianElbo,
    GaussianQuadratic,
)

PROBLEMS: dict[str, type[Problem]] = {
    "gaussian_quadratic": GaussianQuadratic,
    "bernoulli_toy": BernoulliToy,
    "categorical_toy": CategoricalToy,
    "gaussian_elbo": GaussianElbo,
    "bernoulli_vae": BernoulliVAE,
    "categorical_vae": CategoricalVAE,
    "gan_continuous": GanContinuous,
    "gan_discrete": GanDiscrete,
    "bernoulli_iwae": BernoulliIWAE,
    "gamma_quadratic": GammaQuadratic,
    "policy": Policy,
    "k_subset": KSubset,
    "polynomial": Polynomial,
    "logistic_regression": LogisticRegression,
    "sbn": SigmoidBeliefNet,
    "poisson_quadratic": PoissonQuadratic,
}


def get_problem(name: str) -> type[Problem]:
    """The built-in problem class registered as ``name``; the error lists the valid names.

    Plugins' problems are not here: the harness looks names up in the registry of its
    invocation (``bench.registry.problem_class``), which this layer cannot import.
    """
    try:
        return PROBLEMS[name]
    except KeyError:
        raise ValueError(
            f"unknown problem {name!r}; valid problems: {', '.join(PROBLEMS)}"
        ) from None


__all__ = [
    "PROBLEMS",
    "Capability",
    "LatentKind",
    "Option",
    "Params",
    "Problem",
    "Truth",
    "from_callable",
    "get_problem",
]
