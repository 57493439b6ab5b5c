"""What an estimator's mean is declared to equal: the target ``bench verify`` checks it against.

An unbiased estimator's target is the exact gradient of the problem. A biased estimator is
unbiased for *something else*, and says what in its class attribute ``target``:

* ``ExactGradient(expectation_only=True)``: the exact gradient, but only on expectation
  objectives (e.g. sticking-the-landing, exact for the ELBO and biased for K-sample bounds).
* ``RelaxedGradient(tau_option)``: the gradient of the relaxed objective at the estimator's
  temperature, d/dtheta E_u[f(y_tau(u, theta), theta)] with the Concrete sample
  y_tau = sigmoid((l + log u - log(1 - u)) / tau) for bits and softmax((l + G) / tau),
  G = -log(-log u), for one-hot categoricals; with ``straight_through=True``, the mean of
  the straight-through Gumbel-Softmax gradient E_u[J_y(u)^T grad f(hard(y(u)), theta)]
  (the cost at the hard sample, the backward through y).
* ``IGRGradient()``: the gradient of the IGR relaxed objective at the estimator's ``tau``,
  ``sigma`` and ``delta``, d/dtheta E_eps[f(softmax++((mu(theta) + sigma eps) / tau), theta)],
  eps ~ N(0, I), mu_k = l_k - l_C (``estimators.igr``).
* ``DecoupledStraightThrough()``: the mean of the decoupled straight-through gradient at the
  options ``tau_forward`` and ``tau_backward``, E_u[J_b(u)^T grad f(onehot(argmax(l / tau_f +
  G(u))), theta)] with J_b the Jacobian of y_b = softmax(l / tau_b + G(u)) (for bits
  L(u) = log u - log(1 - u) in place of the Gumbels' difference).
* ``RelaxedCountGradient()``: the gradient of the generalized Gumbel-Softmax relaxed objective
  of a count latent at the options ``tau`` and ``truncation`` n,
  d/dtheta E_u[f(sum_i i softmax((log pi(theta) + G(u)) / tau)_i, theta)] over the truncated
  support {0, ..., n - 1}, pi_i = P(x = i) for i < n - 1 and pi_{n-1} = P(x >= n - 1)
  (``estimators.gengs``).
* ``StraightThroughMean()``: the exact mean of the straight-through gradient,
  sum_z q(z) (dp/dtheta)^T grad_z f(z, theta) (plus the cost's direct dependence on theta),
  p = E_q[z], a finite sum on enumerable problems.
* ``NoTarget(reason)``: nothing checkable beyond "biased as declared".

These are declarations only: ``bench.verify.targets`` computes each from its definition here
(quadrature over the noise, or enumeration of the latent space), never by calling the
estimator, so an estimator that does not compute what it declares fails.

References: Maddison, Mnih, Teh (2017), "The Concrete Distribution", ICLR; Jang, Gu, Poole
(2017), "Categorical Reparameterization with Gumbel-Softmax", ICLR; Bengio, Leonard,
Courville (2013), arXiv:1308.3432.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """Base class of the declarations."""

    def describe(self, options: dict) -> str:
        """The target in words, for the verdict line."""
        raise NotImplementedError


@dataclass(frozen=True)
class ExactGradient(Target):
    """The problem's exact gradient (on expectation objectives only, with
    ``expectation_only``)."""

    expectation_only: bool = False

    def describe(self, options: dict) -> str:
        return ("the exact gradient of expectation objectives" if self.expectation_only
                else "the exact gradient")


@dataclass(frozen=True)
class RelaxedGradient(Target):
    """The relaxed objective's gradient at the temperature ``options[tau_option]`` (or, with
    ``straight_through``, the straight-through Gumbel-Softmax mean at it)."""

    tau_option: str = "tau"
    straight_through: bool = False

    def describe(self, options: dict) -> str:
        tau = options[self.tau_option]
        what = ("the straight-through Gumbel-Softmax mean" if self.straight_through
                else "the relaxed objective's gradient")
        return f"{what} at tau={tau:g}"


@dataclass(frozen=True)
class IGRGradient(Target):
    """The IGR relaxed objective's gradient at the options ``tau``, ``sigma`` and ``delta``."""

    def describe(self, options: dict) -> str:
        return (f"the IGR relaxed objective's gradient at tau={options['tau']:g}, "
                f"sigma={options['sigma']:g}, delta={options['delta']:g}")


@dataclass(frozen=True)
class DecoupledStraightThrough(Target):
    """The decoupled straight-through mean at the options ``tau_forward``, ``tau_backward``."""

    def describe(self, options: dict) -> str:
        return (f"the decoupled straight-through mean at tau_forward="
                f"{options['tau_forward']:g}, tau_backward={options['tau_backward']:g}")


@dataclass(frozen=True)
class RelaxedCountGradient(Target):
    """The generalized Gumbel-Softmax relaxed objective's gradient of a count latent at the
    options ``tau`` and ``truncation``."""

    def describe(self, options: dict) -> str:
        return (f"the relaxed count objective's gradient at tau={options['tau']:g}, "
                f"truncation={options['truncation']}")


@dataclass(frozen=True)
class StraightThroughMean(Target):
    """The exact mean of the straight-through gradient, by enumeration."""

    def describe(self, options: dict) -> str:
        return "the straight-through mean sum_z q(z) (dp/dtheta)^T grad f(z)"


@dataclass(frozen=True)
class NoTarget(Target):
    """Nothing checkable: the estimator's mean has no independent definition here."""

    reason: str = "no target declared"

    def describe(self, options: dict) -> str:
        return f"no target to check ({self.reason})"


__all__ = ["DecoupledStraightThrough", "ExactGradient", "IGRGradient", "NoTarget",
           "RelaxedCountGradient", "RelaxedGradient", "StraightThroughMean", "Target"]
