"""Bayesian logistic regression on the breast-cancer data: the mc_gradients benchmark (Mohamed
et al. 2020, Section 8)."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Independent, Normal

from problems.base import (
    Capability,
    LatentKind,
    Params,
    Problem,
    StressSetting,
    Truth,
    repeat_params,
)
from problems.options import Option
from problems.truth import TruthSource

#: examples and features of scikit-learn's bundled Wisconsin breast-cancer data
N_EXAMPLES, N_FEATURES = 569, 30
#: the quadrature's range in standard deviations, and its largest step in them
TAIL, STEP = 10.0, 0.25


def breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    """Features standardized to mean 0 and standard deviation 1, with a column of ones for the
    bias, ``[569, 31]``, and labels in {-1, +1} (+1: benign), ``[569]``."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x = (data.data - data.data.mean(0)) / data.data.std(0)
    return np.hstack([x, np.ones((len(x), 1))]), 2.0 * data.target - 1.0


class LogisticRegression(Problem):
    """Negative ELBO of Bayesian logistic regression, q(w) = N(m, diag(exp(2 l))) over the
    30 weights and the bias, prior N(0, I), on a minibatch B of the N = 569 examples:

        f(w) = -(N / |B|) sum_{i in B} log sigmoid(y_i w.x_i) + KL(q || N(0, I)),
        KL = sum_j [exp(2 l_j) + m_j^2 - 1 - 2 l_j] / 2,

    whose expectation over the minibatch draw is the full-data negative ELBO. The KL is
    analytic, a direct term of the cost that every estimator differentiates exactly. Under q
    the activation a_i = y_i w.x_i is Gaussian, N(mu_i, sigma_i^2) with mu_i = y_i m.x_i and
    sigma_i^2 = sum_j x_ij^2 exp(2 l_j), so E_q[log sigmoid(a_i)] = E[log sigmoid(mu_i +
    sigma_i e)], e ~ N(0, 1), a one-dimensional integral, and the exact gradient in m and l is
    the autograd gradient of its quadrature. Gauss-Hermite converges slowly here: in e, log
    sigmoid bends over a width 1 / sigma_i (sigma_i reaches 20 at l = 0), so 128 points are
    still 1e0 off. The trapezoidal rule on e in [-10, 10] with step min(1/4, 1 / (resolution *
    max_i sigma_i)) converges exponentially instead, the integrand being analytic in the strip
    |Im a| < pi (Trefethen & Weideman 2014): tests/test_logistic_regression.py measures the
    change on doubling ``resolution`` below 1e-9 of the gradient's size.

    Parameters are ``loc`` m and ``log_scale`` l (``[31]``, the last the bias's), as in the
    paper's figures. ``bench train`` draws minibatches of ``batch`` examples without
    replacement within a step; ``bench run`` uses the fixed minibatch drawn with ``seed``.

    References: Mohamed, Rosca, Figurnov, Mnih (2020), "Monte Carlo Gradient Estimation in
    Machine Learning", JMLR 21(132), Section 8.1 (Bayesian logistic regression) and the
    authors' deepmind/mc_gradients configuration; Wolberg, Street, Mangasarian (1995),
    the Wisconsin diagnostic breast cancer data (UCI); Trefethen & Weideman (2014), "The
    Exponentially Convergent Trapezoidal Rule", SIAM Review 56(3).
    """

    name = "logistic_regression"
    # tested in tests/test_logistic_regression.py (quadrature truth, 62 coordinates)
    example_options: ClassVar[dict] = {"batch": 4, "log_scale": -1.0, "loc": 0.1}
    benchmark_options: ClassVar[dict] = {"batch": 8}
    verify_settings = (
        StressSetting({"batch": 4, "loc": 0.1, "log_scale": -1.0}, quick=True),
    )
    description = "Bayesian logistic regression, breast cancer (569 x 30), q = N(m, diag s^2)"
    latent = LatentKind.CONTINUOUS
    provides = frozenset({
        Capability.RSAMPLE, Capability.DIFFERENTIABLE_COST, Capability.EXACT_OBJECTIVE,
        Capability.GAUSSIAN,
    })
    truth_source = TruthSource.quadrature()
    options: ClassVar[dict[str, Option]] = {
        "batch": Option(32, "examples per minibatch", minimum=1, maximum=N_EXAMPLES),
        "loc": Option(0.0, "initial mean of every weight"),
        "log_scale": Option(0.0, "initial log standard deviation of every weight"),
        "seed": Option(0, "seed of the fixed evaluation minibatch", minimum=0),
        "resolution": Option(2.0, "quadrature nodes per unit of activation of the exact "
                             "expectation", minimum=0.5),
    }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        features, labels = breast_cancer()
        self.signed = self.tensor(features * labels[:, None])  # y_i x_i: [N, D]
        generator = torch.Generator().manual_seed(self.option_values["seed"])
        self.fixed_batch = torch.randperm(N_EXAMPLES, generator=generator)[
            : self.option_values["batch"]
        ]
        self.batch = self.fixed_batch

    def init_params(self) -> Params:
        d = N_FEATURES + 1
        return {
            "loc": torch.full(
                (d,), self.option_values["loc"], dtype=self.dtype, device=self.device
            ),
            "log_scale": torch.full(
                (d,), self.option_values["log_scale"], dtype=self.dtype, device=self.device
            ),
        }

    def distribution(self, params: Params) -> Independent:
        return Independent(Normal(params["loc"], params["log_scale"].exp(),
                                  validate_args=False), 1)

    @staticmethod
    def kl(params: Params) -> Tensor:
        """KL(q || N(0, I)) ``[R]``."""
        loc, log_scale = params["loc"], params["log_scale"]
        return 0.5 * ((2 * log_scale).exp() + loc**2 - 1 - 2 * log_scale).sum(-1)

    def cost(self, z: Tensor, params: Params) -> Tensor:
        activations = z @ self.signed[self.batch].T  # [K, R, B]
        scale = N_EXAMPLES / len(self.batch)
        return -scale * F.logsigmoid(activations).sum(-1) + self.kl(params)

    def expected_log_likelihood(self, params: Params, rows: Tensor) -> Tensor:
        """sum_{i in rows} E_q[log sigmoid(y_i w.x_i)] by the trapezoidal rule in the standard
        normal variable of each activation: ``[R]`` (class docstring). Each repeat gets the
        step its own spreads need, so no repeat's value depends on another's parameters."""
        signed = self.signed[rows]  # [B, D]
        mean = params["loc"] @ signed.T  # [R, B]
        std = ((2 * params["log_scale"]).exp() @ (signed**2).T).sqrt()
        return torch.stack([self._line_sum(m, s) for m, s in zip(mean, std, strict=True)])

    def _line_sum(self, mean: Tensor, std: Tensor) -> Tensor:
        """sum_i E[log sigmoid(mean_i + std_i e)], e ~ N(0, 1), for one repeat's ``[B]``."""
        widest = max(float(std.detach().max()), 1e-12)
        step = min(STEP, 1 / (self.option_values["resolution"] * widest))
        eps = torch.arange(-TAIL, TAIL + step / 2, step, dtype=self.dtype, device=self.device)
        weights = step * torch.exp(-0.5 * eps**2) / math.sqrt(2 * math.pi)  # [P]
        values = F.logsigmoid(mean.unsqueeze(-1) + std.unsqueeze(-1) * eps)  # [B, P]
        return (values * weights).sum()

    def objective(self, params: Params, n_samples: int = 1) -> Tensor:
        scale = N_EXAMPLES / len(self.batch)
        return -scale * self.expected_log_likelihood(params, self.batch) + self.kl(params)

    def truth(self, params: Params, n_samples: int = 1) -> Truth:
        leaf = repeat_params(params, 1)
        grads = torch.autograd.grad(self.objective(leaf).sum(), list(leaf.values()))
        return Truth(grad={k: g[0].detach() for k, g in zip(leaf, grads, strict=True)},
                     kind="quadrature")

    # training ---------------------------------------------------------------------------------

    def next_batch(self, step: int, generator: torch.Generator) -> None:
        self.batch = torch.randperm(N_EXAMPLES, generator=generator)[: self.option_values["batch"]]

    def reset_batch(self) -> None:
        self.batch = self.fixed_batch

    def train_metrics(self, train: Params) -> dict[str, float]:
        """``full_nelbo``: the negative ELBO on all 569 examples (quadrature, exact), and
        ``accuracy``: the fraction classified correctly by the posterior mean's sign."""
        params = repeat_params(train, 1, requires_grad=False)
        with torch.no_grad():
            rows = torch.arange(N_EXAMPLES)
            nelbo = -self.expected_log_likelihood(params, rows) + self.kl(params)
            accuracy = ((self.signed @ train["loc"]) > 0).to(self.dtype).mean()
        return {"full_nelbo": float(nelbo[0]), "accuracy": float(accuracy)}
