"""Toy problems with exact gradients: the standard test beds of the estimator literature."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import Gamma, Independent, Normal, OneHotCategorical

from problems.base import Capability, LatentKind, Params, Problem, StressSetting, Truth
from problems.bits import OutcomeBits
from problems.enumeration import enumeration_truth, exact_objective
from problems.importance import quadrature_bound, quadrature_points
from problems.options import MAX_ENUMERATED, Option, resolve_options
from problems.truth import TruthSource

MAX_ENUMERATION = Option(2**16, "largest latent space enumerated for exact truth", minimum=1,
                         maximum=MAX_ENUMERATED)


class GaussianQuadratic(Problem):
    """x ~ N(mu, diag(sigma^2)) in d dimensions, f(x) = sum_j (x_j - k)^2.

    E[f] = sum_j (mu_j - k)^2 + sigma_j^2, so the exact gradient is
    dL/dmu_j = 2 (mu_j - k) and dL/dsigma_j = 2 sigma_j (w.r.t. sigma itself, not log sigma).

    References: Mohamed, Rosca, Figurnov, Mnih (2020), "Monte Carlo Gradient Estimation in
    Machine Learning", JMLR 21(132), running example of Sections 3-5.
    """

    name = "gaussian_quadratic"
    example_options: ClassVar[dict] = {"mu": 1.0, "sigma": 1.5, "k": -0.5, "d": 2}
    benchmark_options: ClassVar[dict] = {"d": 4}
    verify_settings = (
        StressSetting({"d": 1, "k": -1.0, "mu": 1.5, "sigma": 0.5}, quick=True),
        StressSetting({"d": 3, "k": 0.5, "mu": -3.0, "sigma": 2.0}),
    )
    description = "x ~ N(mu, sigma^2 I), f(x) = sum_j (x_j - k)^2; closed-form gradient"
    latent = LatentKind.CONTINUOUS
    provides = frozenset({
        Capability.RSAMPLE, Capability.DIFFERENTIABLE_COST, Capability.EXACT_OBJECTIVE,
        Capability.GAUSSIAN,
    })
    truth_source = TruthSource.closed_form()
    options: ClassVar[dict[str, Option]] = {
        "mu": Option(1.0, "mean of every coordinate"),
        "sigma": Option(1.0, "standard deviation of every coordinate", minimum=0, exclusive=True),
        "k": Option(0.0, "target of the quadratic cost"),
        "d": Option(1, "dimension", minimum=1),
    }

    def init_params(self) -> Params:
        d = self.option_values["d"]
        return {
            "mu": torch.full((d,), self.option_values["mu"], dtype=self.dtype, device=self.device),
            "sigma": torch.full(
                (d,), self.option_values["sigma"], dtype=self.dtype, device=self.device
            ),
        }

    def distribution(self, params: Params) -> Independent:
        return Independent(Normal(params["mu"], params["sigma"], validate_args=False), 1)

    def cost(self, z: Tensor, params: Params) -> Tensor:
        return ((z - self.option_values["k"]) ** 2).sum(-1)

    def objective(self, params: Params, n_samples: int = 1) -> Tensor:
        return ((params["mu"] - self.option_values["k"]) ** 2 + params["sigma"] ** 2).sum(-1)

    def truth(self, params: Params, n_samples: int = 1) -> Truth:
        grad = {"mu": 2 * (params["mu"] - self.option_values["k"]), "sigma": 2 * params["sigma"]}
        return Truth(grad={k: v.detach() for k, v in grad.items()}, kind="closed_form")


class BernoulliToy(OutcomeBits):
    """d independent bits b_j ~ Bernoulli(sigmoid(theta_j)), f(b) = mean_j (b_j - t)^2.

    With p = sigmoid(theta), E[f] = mean_j [p_j (1 - t)^2 + (1 - p_j) t^2], so
    dL/dtheta_j = p_j (1 - p_j) (1 - 2 t) / d. With t = 0.45 the two outcomes differ by
    only 0.1 in cost, which makes the signal tiny next to score-function noise.

    References: Tucker et al. (2017), "REBAR", NeurIPS, Section 6.1; Grathwohl et al. (2018),
    "Backpropagation through the Void (RELAX)", ICLR, Section 6.1.
    """

    name = "bernoulli_toy"
    example_options: ClassVar[dict] = {"theta": 1.0, "d": 2}
    benchmark_options: ClassVar[dict] = {"d": 4}
    verify_settings = (
        StressSetting({"d": 1, "theta": 2.5}, quick=True),
        StressSetting({"d": 1, "theta": 0.0}),
        StressSetting({"d": 3, "t": 0.3, "theta": -1.5}),
    )
    description = "b_j ~ Bernoulli(sigmoid(theta)), f(b) = mean_j (b_j - t)^2 (REBAR/RELAX toy)"
    truth_source = TruthSource.closed_form()
    options: ClassVar[dict[str, Option]] = {
        "theta": Option(0.0, "logit of every bit"),
        "t": Option(0.45, "target of the quadratic cost"),
        "d": Option(1, "number of bits", minimum=1),
    }

    def outcomes(self) -> tuple[float, float]:
        """The cost of one bit at 1 and at 0: ``((1 - t)^2, t^2)``."""
        t = self.option_values["t"]
        return (1 - t) ** 2, t**2

    def outcome_difference(self) -> float:
        """(1 - t)^2 - t^2 written as 1 - 2 t, without the cancellation."""
        return 1 - 2 * self.option_values["t"]

    def cost(self, z: Tensor, params: Params) -> Tensor:
        return ((z - self.option_values["t"]) ** 2).mean(-1)

    def truth(self, params: Params, n_samples: int = 1) -> Truth:
        return Truth(grad={"theta": self.outcome_gradient(params)}, kind="closed_form")


class CategoricalToy(Problem):
    """d groups z_j ~ Categorical(softmax(logits_j)) over C classes, as one-hot vectors.

    With class values v_c = c / (C - 1) and the group mean s(z) = (1/d) sum_j <z_j, v>,
    the cost is the polynomial f(z) = (s(z) - t)^2 of the one-hot vectors; it couples the
    groups, so it is not a sum of per-group costs. The exact gradient w.r.t. the logits is
    the autograd gradient of the enumerated expectation sum_z q(z) f(z) over all C^d
    configurations. Initial logits are ``theta * (2 v_c - 1)`` in every group.

    References: Liu et al. (2023), "Bridging Discrete and Backpropagation: Straight-Through
    and Beyond (ReinMax)", NeurIPS, polynomial programming experiment (Section 6.1).
    """

    name = "categorical_toy"
    example_options: ClassVar[dict] = {"theta": 1.0, "d": 2, "classes": 4}
    benchmark_options: ClassVar[dict] = {"d": 2, "classes": 4}
    verify_settings = (
        StressSetting({"classes": 4, "d": 2, "t": 0.3, "theta": 2.0}, quick=True),
        StressSetting({"classes": 3, "d": 1, "theta": 0.0}),
    )
    description = "one-hot z_j ~ Cat(softmax(logits_j)), f = (mean_j <z_j, v> - t)^2; enumeration"
    latent = LatentKind.CATEGORICAL
    provides = frozenset(
        {Capability.DISCRETE, Capability.DIFFERENTIABLE_COST, Capability.ENUMERABLE}
    )
    options: ClassVar[dict[str, Option]] = {
        "theta": Option(0.0, "tilt of the initial logits towards high classes"),
        "t": Option(0.45, "target of the group mean"),
        "d": Option(2, "number of groups", minimum=1),
        "classes": Option(10, "categories per group", minimum=2),
        "max_configs": MAX_ENUMERATION,
    }

    def class_values(self) -> Tensor:
        classes = self.option_values["classes"]
        return torch.arange(classes, dtype=self.dtype, device=self.device) / (classes - 1)

    def init_params(self) -> Params:
        logits = self.option_values["theta"] * (2 * self.class_values() - 1)
        return {"logits": logits.expand(self.option_values["d"], -1).clone()}

    def distribution(self, params: Params) -> Independent:
        return Independent(OneHotCategorical(logits=params["logits"], validate_args=False), 1)

    def cost(self, z: Tensor, params: Params) -> Tensor:
        s = (z @ self.class_values()).mean(-1)  # [K, R, d] -> [K, R]
        return (s - self.option_values["t"]) ** 2

    @classmethod
    def capabilities(cls, options=None) -> frozenset[Capability]:
        values = resolve_options(f"problem {cls.name!r}", cls.options, options or {})
        exact = values["classes"] ** values["d"] <= values["max_configs"]
        return cls.provides | ({Capability.EXACT_OBJECTIVE} if exact else set())

    @classmethod
    def truth_of(cls, options=None, n_samples: int = 1) -> TruthSource:
        """Enumeration of the classes^d configurations within ``max_configs``, else none."""
        values = resolve_options(f"problem {cls.name!r}", cls.options, options or {})
        size = values["classes"] ** values["d"]
        return TruthSource.enumeration(size) if size <= values["max_configs"] else \
            TruthSource.none()

    def objective(self, params: Params, n_samples: int = 1) -> Tensor | None:
        if Capability.EXACT_OBJECTIVE not in self.provided:
            return None
        return exact_objective(self, params)

    def truth(self, params: Params, n_samples: int = 1) -> Truth | None:
        return enumeration_truth(self, params, self.option_values["max_configs"])


class GaussianElbo(Problem):
    """Negative ELBO (or importance-weighted bound) of a conjugate linear-Gaussian model.

    Model: z ~ N(0, I_d), x_i | z ~ N(z, sigma_x^2 I_d) for i = 1..n (fixed data drawn with
    ``data_seed``). Variational family q(z) = N(m, diag(s^2)). Cost
    f(z; m, s) = log q(z) - log p(z) - sum_i log p(x_i | z) = -log w(z), so E_q[f] is the
    negative ELBO:

        -ELBO = sum_j [ -log s_j - 1/2 + (m_j^2 + s_j^2) / 2
                        + sum_i ((x_ij - m_j)^2 + s_j^2) / (2 sigma_x^2) ] + const,

    with gradient dL/dm_j = m_j - sum_i (x_ij - m_j) / sigma_x^2 and
    dL/ds_j = -1/s_j + s_j (1 + n / sigma_x^2). The cost depends on (m, s) directly through
    log q, so score-function estimators need the direct term as well.

    With ``objective=iwae`` the objective is the negative K-sample bound
    E[-log (1/K) sum_k w(z_k)] (Burda et al. 2016), whose value and gradient come from a
    tensor-product Gauss-Hermite rule over the K * d noise coordinates (``problems.importance``)
    with P = min(``quadrature``, floor(``max_nodes`` ** (1 / (K d)))) points per coordinate, when
    P >= ``MIN_QUADRATURE``. The integrand, a log-sum-exp of quadratics, has creases where two
    weights cross, so the rule converges algebraically rather than exponentially: measured on
    d = 1, K = 2, the relative error of the bound is about 6e-6 at P = 16, 1e-7 at 32 and 1e-9
    at 48 (``tests/test_contract.py`` checks 1e-8 at the default), far below any Monte Carlo
    tolerance. Past that, ``truth=reference`` estimates the gradient.

    References: Kingma & Welling (2014), "Auto-Encoding Variational Bayes", ICLR, Appendix B;
    Mohamed et al. (2020), JMLR, Section 2; Burda, Grosse, Salakhutdinov (2016), ICLR.
    """

    name = "gaussian_elbo"
    example_options: ClassVar[dict] = {"d": 2, "n_obs": 3}
    benchmark_options: ClassVar[dict] = {"d": 2}
    verify_settings = (
        StressSetting({"d": 1, "m": 0.5, "n_obs": 3, "s": 0.7}, quick=True),
        StressSetting({"d": 2, "m": -1.0, "n_obs": 2, "s": 1.5}),
        StressSetting({"d": 1, "m": 0.3, "n_obs": 2, "objective": "iwae", "s": 0.8}, quick=True),
    )
    description = "negative ELBO or IWAE bound of a linear-Gaussian model, q = N(m, s^2)"
    latent = LatentKind.CONTINUOUS
    provides = frozenset({
        Capability.RSAMPLE, Capability.DIFFERENTIABLE_COST, Capability.LOG_WEIGHTS,
        Capability.EXACT_OBJECTIVE, Capability.GAUSSIAN,
    })
    options: ClassVar[dict[str, Option]] = {
        "d": Option(2, "latent dimension", minimum=1),
        "n_obs": Option(4, "number of observations", minimum=1),
        "sigma_x": Option(1.0, "observation noise std", minimum=0, exclusive=True),
        "m": Option(0.0, "initial variational mean", ),
        "s": Option(1.0, "initial variational std", minimum=0, exclusive=True),
        "data_seed": Option(0, "seed of the built-in observations", minimum=0),
        "objective": Option("elbo", "elbo, or iwae: the K-sample importance-weighted bound",
                            choices=("elbo", "iwae")),
        "quadrature": Option(48, "most Gauss-Hermite points per coordinate of the iwae truth",
                             minimum=2),
        "max_nodes": Option(2**20, "largest quadrature grid of the iwae truth", minimum=1),
        "truth": Option("auto", "auto (closed form or quadrature), reference or none",
                        choices=("auto", "reference", "none")),
        "reference_samples": Option(100, "samples per estimate of the truth=reference gradient",
                                    minimum=1),
        "reference_repeats": Option(2000, "estimates averaged for the truth=reference gradient",
                                    minimum=2),
    }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        generator = torch.Generator().manual_seed(self.option_values["data_seed"])
        d, n = self.option_values["d"], self.option_values["n_obs"]
        z_true = torch.randn(d, generator=generator, dtype=torch.float64)
        noise = torch.randn(n, d, generator=generator, dtype=torch.float64)
        self.x = self.tensor(z_true + self.option_values["sigma_x"] * noise)  # [n, d]

    @classmethod
    def capabilities(cls, options=None) -> frozenset[Capability]:
        values = resolve_options(f"problem {cls.name!r}", cls.options, options or {})
        return cls.provides | (
            {Capability.MULTI_SAMPLE} if values["objective"] == "iwae" else set()
        )

    @classmethod
    def truth_of(cls, options=None, n_samples: int = 1) -> TruthSource:
        """``truth=auto``: the closed form, or on the iwae bound quadrature while its grid
        fits (``quadrature_points``), else none; ``truth=reference``: ``reparam``."""
        values = resolve_options(f"problem {cls.name!r}", cls.options, options or {})
        if values["truth"] == "reference":
            return TruthSource.reference("reparam", values["reference_samples"],
                                         values["reference_repeats"])
        if values["truth"] == "none":
            return TruthSource.none()
        if values["objective"] == "elbo":
            return TruthSource.closed_form()
        if quadrature_points(values, n_samples) is None:
            return TruthSource.none()
        return TruthSource.quadrature()
    def init_params(self) -> Params:
        d = self.option_values["d"]
        return {
            "m": torch.full((d,), self.option_values["m"], dtype=self.dtype, device=self.device),
            "s": torch.full((d,), self.option_values["s"], dtype=self.dtype, device=self.device),
        }

    def distribution(self, params: Params) -> Independent:
        return Independent(Normal(params["m"], params["s"], validate_args=False), 1)

    def cost_terms(self, z: Tensor, params: Params, *, detach_q: bool = False) -> Tensor:
        q_params = {k: v.detach() for k, v in params.items()} if detach_q else params
        log_q = self.distribution(q_params).log_prob(z)  # [K, R]
        log_prior = Normal(0.0, 1.0).log_prob(z).sum(-1)
        residual = self.x - z.unsqueeze(-2)  # [K, R, n, d]
        log_lik = Normal(0.0, self.option_values["sigma_x"]).log_prob(residual).sum((-1, -2))
        return (log_q - log_prior - log_lik).unsqueeze(-1)

    def cost(self, z: Tensor, params: Params) -> Tensor:
        return self.cost_terms(z, params).squeeze(-1)

    def objective(self, params: Params, n_samples: int = 1) -> Tensor | None:
        if self.multi_sample:
            points = quadrature_points(self.option_values, n_samples)
            if points is None:
                return None
            return quadrature_bound(
                lambda z: self.cost(z, params), params["m"], params["s"], n_samples, points
            )
        m, s = params["m"], params["s"]  # [R, d]
        var_x, n = self.option_values["sigma_x"] ** 2, self.x.shape[0]
        sq = ((self.x - m.unsqueeze(-2)) ** 2).sum(-2)  # [R, d]
        per_dim = (
            -torch.log(s)
            - 0.5
            + 0.5 * (m**2 + s**2)
            + (sq + n * s**2) / (2 * var_x)
            + 0.5 * n * math.log(2 * math.pi * var_x)
        )
        return per_dim.sum(-1)

    def truth(self, params: Params, n_samples: int = 1) -> Truth | None:
        if not self.truth_of(self.option_values, n_samples).exact:
            return None
        if self.multi_sample:
            leaf = {k: v.detach().unsqueeze(0).requires_grad_(True) for k, v in params.items()}
            objective = self.objective(leaf, n_samples)
            if objective is None:
                return None
            grads = torch.autograd.grad(objective.sum(), list(leaf.values()))
            return Truth(grad={k: g[0].detach() for k, g in zip(leaf, grads, strict=True)},
                         kind="quadrature")
        m, s = params["m"], params["s"]
        var_x, n = self.option_values["sigma_x"] ** 2, self.x.shape[0]
        grad_m = m - (self.x - m.unsqueeze(-2)).sum(-2) / var_x
        grad_s = -1 / s + s * (1 + n / var_x)
        return Truth(grad={"m": grad_m.detach(), "s": grad_s.detach()}, kind="closed_form")


class GammaQuadratic(Problem):
    """z_j ~ Gamma(alpha_j, beta_j) (shape alpha, rate beta) in d dimensions,
    f(z) = sum_j (z_j - t)^2: a non-Gaussian continuous latent with a closed-form gradient.

    E[z] = alpha / beta and Var z = alpha / beta^2, so E[f] = sum_j alpha_j / beta_j^2 +
    (alpha_j / beta_j - t)^2 and

        dL/dalpha_j = 1 / beta_j^2 + 2 (alpha_j / beta_j - t) / beta_j,
        dL/dbeta_j = -2 alpha_j / beta_j^3 - 2 (alpha_j / beta_j - t) alpha_j / beta_j^2.

    torch's Gamma sampler is a rejection sampler, so there is no explicit reparameterization
    in alpha; its ``rsample`` differentiates the sample implicitly, dz/dalpha =
    -(dF/dalpha) / (dF/dz) with F the CDF (Figurnov et al. 2018), which is what ``reparam``
    uses here. The score function needs only ``log_prob``.

    References: Figurnov, Mohamed, Mnih (2018), "Implicit Reparameterization Gradients",
    NeurIPS, Section 3 and the Gamma example of Section 5; Mohamed et al. (2020), JMLR,
    Section 5.
    """

    name = "gamma_quadratic"
    example_options: ClassVar[dict] = {"alpha": 2.0, "beta": 1.5, "t": 1.0, "d": 2}
    benchmark_options: ClassVar[dict] = {"d": 4}
    verify_settings = (
        StressSetting({"alpha": 0.5, "beta": 2.0, "d": 2, "t": 0.3}, quick=True),
        StressSetting({"alpha": 3.0, "beta": 0.5, "d": 1, "t": 8.0}),
    )
    description = "z ~ Gamma(alpha, beta), f(z) = sum_j (z_j - t)^2; implicit reparameterization"
    latent = LatentKind.CONTINUOUS
    provides = frozenset({
        Capability.RSAMPLE, Capability.DIFFERENTIABLE_COST, Capability.EXACT_OBJECTIVE,
        Capability.GAMMA,
    })
    truth_source = TruthSource.closed_form()
    options: ClassVar[dict[str, Option]] = {
        "alpha": Option(2.0, "shape of every coordinate", minimum=0, exclusive=True),
        "beta": Option(1.5, "rate of every coordinate", minimum=0, exclusive=True),
        "t": Option(1.0, "target of the quadratic cost"),
        "d": Option(1, "dimension", minimum=1),
    }

    def init_params(self) -> Params:
        d = self.option_values["d"]
        return {
            "alpha": torch.full(
                (d,), self.option_values["alpha"], dtype=self.dtype, device=self.device
            ),
            "beta": torch.full(
                (d,), self.option_values["beta"], dtype=self.dtype, device=self.device
            ),
        }

    def distribution(self, params: Params) -> Independent:
        return Independent(Gamma(params["alpha"], params["beta"], validate_args=False), 1)

    def cost(self, z: Tensor, params: Params) -> Tensor:
        return ((z - self.option_values["t"]) ** 2).sum(-1)

    def objective(self, params: Params, n_samples: int = 1) -> Tensor:
        alpha, beta = params["alpha"], params["beta"]
        return (alpha / beta**2 + (alpha / beta - self.option_values["t"]) ** 2).sum(-1)

    def truth(self, params: Params, n_samples: int = 1) -> Truth:
        alpha, beta, t = params["alpha"], params["beta"], self.option_values["t"]
        offset = alpha / beta - t
        grad = {
            "alpha": 1 / beta**2 + 2 * offset / beta,
            "beta": -2 * alpha / beta**3 - 2 * offset * alpha / beta**2,
        }
        return Truth(grad={k: v.detach() for k, v in grad.items()}, kind="closed_form")
