"""REBAR and RELAX: a continuous relaxation of a conditional sample as control variate.

Both are score-function estimators with a control variate c subtracted from the learning
signal and its expectation's gradient added back (``estimators.control_variate``, whose
``muprop`` is the Taylor member of the family), so that they stay unbiased for any c.

REBAR (Tucker et al. 2017): c = eta f(sigma_tau(z~)), the cost at a continuous relaxation of
a conditional reparameterization. For a bit with logit l and p = sigmoid(l),
z = l + log u - log(1 - u) (u ~ U(0, 1)) is Logistic(l), b = H(z) = 1[z > 0] ~ Bernoulli(p)
and sigma_tau(z) = sigmoid(z / tau) its binary Concrete relaxation. Given b, the uniform is
uniform on (1 - p, 1) (b = 1) or (0, 1 - p) (b = 0); with a fresh v ~ U(0, 1),
u' = 1 - p + v p or u' = v (1 - p), and z~ = l + logit(u') has the law of z given b, as a
differentiable function of l:

    b = 1:  z~ = log(1 + v e^l) - log(1 - v),
    b = 0:  z~ = l + log v - log(1 - v + e^l)

(algebra: logit(1 - p + v p) = log((1 - p + v p) / ((1 - v) p)) and p / (1 - p) = e^l; the
paper's appendix writes the b = 0 case with 1 - v in place of v, the same law). The
estimator is

    g = [f(b) - eta f(sigma_tau(z~))] d log q(b) + eta d f(sigma_tau(z)) - eta d f(sigma_tau(z~))
        + d_theta f(b),

where d is the total derivative w.r.t. theta (through z, z~ and the cost's own dependence), and
the coefficient f(sigma_tau(z~)) of the score is cut from theta's graph. It is unbiased for
any eta and tau: (b, z~) and (b, z) have the same joint law, so
E[c(z~) d log q(b)] + E[d c(z~)] = d E[c(z~)] = d E[c(z)] = E[d c(z)].
For a one-hot categorical with logits l and theta_c = softmax(l)_c, z = log theta + G with
Gumbels G, b = onehot(argmax z), sigma_tau(z) = softmax(z / tau), and given b (class k) the
conditional Gumbels are, with exponentials E_c = -log v_c (Tucker et al., Appendix C; the
top-down construction of Maddison et al. 2014): z~_k = -log E_k (the maximum of Gumbels with
locations log theta is a standard Gumbel, independent of the argmax) and
z~_c = -log(E_c / theta_c + E_k) for c != k (a Gumbel with location log theta_c truncated
below z~_k).

The noise v of z~ is drawn two ways (option ``coupling``):

* ``independent``: a fresh v, as in the paper's algorithm;
* ``common``: common random numbers, v computed from u so that z~ = z in value (bits:
  v = u / (1 - p) or (u - (1 - p)) / p; categorical: E_k = e^{-z_k},
  E_c = theta_c (e^{-z_c} - e^{-z_k})) while its derivative still goes through the
  conditional construction, as in the authors' code. v is uniform and independent of b, so
  the estimator stays unbiased; the difference of the two pathwise terms then only carries
  the difference of the derivatives.

With ``tune``, eta and log tau are learned during the warm-up by minimizing the estimate's
squared norm (the variance objective of Section 3.3 of the REBAR paper, as in the authors'
"dynamic REBAR", estimators.base), then frozen. The authors' experiments also subtracted NVIL's
learned baseline from f(b); ``rebar`` has none, so it measures the relaxation's control
variate alone.

RELAX (Grathwohl et al. 2018): c_phi(z) = eta f(sigma_tau(z)) + r_phi(sigma_tau(z)) with a
small network r_phi (one tanh hidden layer of ``width`` units) on the relaxed sample and, where
the problem has ``Capability.CONTEXT``, the example's features; the estimator is REBAR's with
c_phi in place of eta f(sigma_tau(.)). eta, log tau and phi are trained during the ``warmup``
steps by the variance objective (the gradient of the squared estimate w.r.t. them, Section
3.3), then frozen. r_phi's output layer starts at zero, so that before training RELAX is
REBAR at the same eta and tau.

The control variate's network (``control_network``, ``apply_network``) is shared with LAX
(``estimators.lax``), RELAX's continuous member. Per-example signals are those of
``estimators.control_variate``. Cost: K hard samples and 2K relaxed ones, 3K evaluations.

References: Tucker, Mnih, Maddison, Lawson, Sohl-Dickstein (2017), "REBAR: Low-variance,
unbiased gradient estimates for discrete latent variable models", NeurIPS; Grathwohl, Choi,
Wu, Roeder, Duvenaud (2018), "Backpropagation through the Void: Optimizing control variates
for black-box gradient estimation", ICLR; Maddison, Tarlow, Minka (2014), "A* Sampling",
NeurIPS.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from estimators.base import Estimator, State, Surrogate
from estimators.control_variate import DISCRETE_DIFFERENTIABLE, detached
from estimators.discrete import is_binary, logits_of
from problems.base import Capability, Params, Problem, repeat_params
from problems.options import Option

COUPLINGS = ("common", "independent")


def open_unit(shape: torch.Size | tuple[int, ...], like: Tensor) -> Tensor:
    """Uniforms on the open interval (0, 1), shaped ``shape``, dtype and device of ``like``."""
    u = torch.rand(shape, dtype=like.dtype, device=like.device)
    return u.clamp(torch.finfo(like.dtype).tiny, 1 - torch.finfo(like.dtype).eps)


def control_network(problem: Problem, unit: int, width: int) -> tuple[dict[str, Tensor], bool]:
    """A control variate's network r_phi: one tanh hidden layer of ``width`` units on each
    factor's ``unit`` inputs (and the example's features where the problem has
    ``Capability.CONTEXT``), Uniform(+-1/sqrt(n_in)) hidden weights, an output layer at zero
    (r_phi = 0 until trained); trainable leaves. Returns it and whether it reads context."""
    with_context = Capability.CONTEXT in problem.provided
    n_in = unit + (problem.context().shape[-1] if with_context else 0)
    bound = 1 / math.sqrt(n_in)
    network = {
        "weight": problem.tensor((torch.rand(n_in, width) * 2 - 1) * bound),
        "bias": problem.tensor(torch.zeros(width)),
        "out": problem.tensor(torch.zeros(width)),
        "out_bias": problem.tensor(0.0),
    }
    for tensor in network.values():
        tensor.requires_grad_()
    return network, with_context


def apply_network(
    network: dict[str, Tensor], problem: Problem, features: Tensor, with_context: bool
) -> Tensor:
    """r_phi per factor, scaled by the problem's ``factor_scale``: features
    ``[K, R, F, U]`` (with each example's context in [-1, 1] appended) -> ``[K, R, F]``."""
    if with_context:
        context = 2 * problem.context().to(features) - 1  # [F, C]
        lead = features.shape[:2]
        features = torch.cat([features, context.expand(*lead, *context.shape)], -1)
    hidden = torch.tanh(features @ network["weight"] + network["bias"])
    return (hidden @ network["out"] + network["out_bias"]) * problem.factor_scale  # [K, R, F]


# bits: logistic noise and its conditional given the bit ---------------------------------------


def binary_logistic(logits: Tensor, u: Tensor) -> Tensor:
    """z = l + log u - log(1 - u) ~ Logistic(l): ``u`` ``[K, R, *event]``."""
    return logits + torch.log(u) - torch.log1p(-u)


def binary_conditional(logits: Tensor, b: Tensor, v: Tensor) -> Tensor:
    """z~ with the law of z given H(z) = b, differentiable in the logits (module docstring):
    log(1 + v e^l) - log(1 - v) for b = 1, l + log v - log(1 - v + e^l) for b = 0."""
    log_v, log_rest = torch.log(v), torch.log1p(-v)
    one = F.softplus(logits + log_v) - log_rest
    zero = logits + log_v - torch.logaddexp(log_rest, logits.expand_as(v))
    return torch.where(b > 0.5, one, zero)


def binary_tied(logits: Tensor, u: Tensor, b: Tensor) -> Tensor:
    """Common random numbers: the v for which ``binary_conditional`` gives back z = l + logit(u)
    (v = (u - (1 - p)) / p for b = 1, u / (1 - p) for b = 0); uniform and independent of b."""
    with torch.no_grad():
        q = torch.sigmoid(-logits.detach())  # 1 - p
        v = torch.where(b > 0.5, (u - q) / (1 - q), u / q)
        return v.clamp(torch.finfo(u.dtype).tiny, 1 - torch.finfo(u.dtype).eps)


# one-hot categoricals: Gumbels and their conditional given the argmax -------------------------


def categorical_gumbel(log_probs: Tensor, u: Tensor) -> Tensor:
    """z = log theta + G with Gumbels G = -log(-log u): ``u`` ``[K, R, *groups, C]``."""
    return log_probs - torch.log(-torch.log(u))


def categorical_conditional(log_probs: Tensor, b: Tensor, log_e: Tensor) -> Tensor:
    """z~ with the law of z given onehot(argmax z) = b, from log-exponentials log E:
    z~_k = -log E_k for the chosen class k, z~_c = -log(E_c / theta_c + E_k) for the others."""
    log_top = (log_e * b).sum(-1, keepdim=True)  # [K, R, *groups, 1]
    others = -torch.logaddexp(log_e - log_probs, log_top)
    return torch.where(b > 0.5, -log_top.expand_as(others), others)


def categorical_tied(log_probs: Tensor, z: Tensor, b: Tensor) -> Tensor:
    """Common random numbers: the log-exponentials for which ``categorical_conditional`` gives
    back z: log E_k = -z_k, log E_c = log theta_c + log(e^{-z_c} - e^{-z_k})."""
    with torch.no_grad():
        z = z.detach()
        top = (z * b).sum(-1, keepdim=True)
        gap = torch.log(-torch.expm1((z - top).clamp_max(-torch.finfo(z.dtype).tiny)))
        log_e = log_probs.detach() - z + gap
        return torch.where(b > 0.5, -top.expand_as(z), log_e)


class ConditionalRelaxation(Estimator):
    """Shared machinery of REBAR and RELAX (module docstring): noise, hard samples,
    conditional relaxations and the surrogate; subclasses give the control variate."""

    requires = DISCRETE_DIFFERENTIABLE
    unbiased = True
    trains_on_variance = True
    cost_formula = "3K (K hard, 2K relaxed)"

    def cost_evals(self, n_samples: int, problem: Problem) -> int:
        return 3 * n_samples

    # learned or fixed eta and temperature ---------------------------------------------------

    def scalars(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """(eta, tau) as tensors like ``like``: the learned ones after ``setup``, else the
        options' values."""
        learned = getattr(self, "learned", None)
        if learned is not None:
            return learned["eta"], learned["log_tau"].exp()
        return like.new_tensor(self.option_values["eta"]), like.new_tensor(
            self.option_values["tau"]
        )

    def build_scalars(self, problem: Problem) -> dict[str, Tensor]:
        """eta and log tau as trainable leaves, from the options."""
        return {
            "eta": problem.tensor(self.option_values["eta"]).clone().requires_grad_(),
            "log_tau": problem.tensor(math.log(self.option_values["tau"])).clone().requires_grad_(),
        }

    def tracking(self) -> bool:
        """Whether the own parameters are being trained (their graph must be kept)."""
        return any(t.requires_grad for t in self.parameters())

    # the control variate: subclasses -------------------------------------------------------

    def control_variate(self, problem: Problem, z: Tensor, params: Params, binary: bool) -> Tensor:
        """c per factor at the relaxation of ``z`` ``[K, R, *event]``: ``[K, R, F]``."""
        eta, tau = self.scalars(z)
        relaxed = relaxation(z, tau, binary)
        return eta * problem.cost_terms(relaxed, params)

    # one estimate --------------------------------------------------------------------------

    def draw_noise(self, logits: Tensor, n_samples: int) -> tuple[Tensor, Tensor]:
        """u of the hard samples and v of the conditional ones, each ``[K, *logits.shape]``
        (for categoricals v gives the exponentials E = -log v)."""
        shape = (n_samples, *logits.shape)
        return open_unit(shape, logits), open_unit(shape, logits)

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        u, v = self.draw_noise(logits_of(problem.distribution(params)).detach(), n_samples)
        return self.surrogate_from_noise(problem, params, u, v)

    def conditional(
        self, logits: Tensor, z: Tensor, b: Tensor, u: Tensor, v: Tensor, binary: bool
    ) -> Tensor:
        """z~ given b, from a fresh v or tied to u by the ``coupling`` option."""
        common = self.option_values["coupling"] == "common"
        if binary:
            return binary_conditional(logits, b, binary_tied(logits, u, b) if common else v)
        log_probs = torch.log_softmax(logits, -1)
        log_e = categorical_tied(log_probs, z, b) if common else torch.log(-torch.log(v))
        return categorical_conditional(log_probs, b, log_e)

    def surrogate_from_noise(
        self, problem: Problem, params: Params, u: Tensor, v: Tensor
    ) -> Surrogate:
        """The surrogate from given uniforms ``u`` (hard samples) and ``v`` (conditional
        samples), each ``[K, R, *event]`` (tests replay an estimate from them)."""
        dist = problem.distribution(params)
        binary = is_binary(dist)
        logits = logits_of(dist)  # [R, *event]
        if binary:
            z = binary_logistic(logits, u)  # [K, R, *event]
            b = (z.detach() > 0).to(z.dtype)
        else:
            z = categorical_gumbel(torch.log_softmax(logits, -1), u)
            b = F.one_hot(z.detach().argmax(-1), z.shape[-1]).to(z.dtype)
        z_cond = self.conditional(logits, z, b, u, v, binary)
        cost = problem.cost_terms(b, params)  # [K, R, F]: the direct term's graph
        at_z = self.control_variate(problem, z, params, binary)
        at_cond = self.control_variate(problem, self.pathwise(z_cond), params, binary)
        if self.tracking():  # the score's coefficient keeps the graph of eta, tau, phi only
            free = self.control_variate(problem, z_cond.detach(), detached(params), binary)
        else:
            free = at_cond.detach()
        signal = problem.signals(self.centre(cost.detach(), free))
        log_q = problem.signals(problem.log_prob_terms(dist, b))
        loss = ((signal * log_q).sum(-1) + (cost + at_z - at_cond).sum(-1)).mean(0)
        _, tau = self.scalars(z)
        return Surrogate(loss=loss, samples=b, relaxed=relaxation(z, tau, binary).detach())

    def pathwise(self, z_cond: Tensor) -> Tensor:
        """z~ as the pathwise correction sees it (its derivative w.r.t. theta kept)."""
        return z_cond

    def centre(self, cost: Tensor, control: Tensor) -> Tensor:
        """The learning signal: the cost minus the control variate."""
        return cost - control


def relaxation(z: Tensor, tau: Tensor, binary: bool) -> Tensor:
    """sigma_tau(z): sigmoid(z / tau) for bits, softmax(z / tau) over the classes."""
    return torch.sigmoid(z / tau) if binary else torch.softmax(z / tau, -1)


TAU = Option(
    0.5,
    "temperature of the relaxation (initial value with tune or relax)",
    minimum=0,
    exclusive=True,
)
ETA = Option(1.0, "scale of the relaxed cost in the control variate (initial value when learned)")
COUPLING = Option(
    "common",
    "noise of the conditional sample: common (tied to the hard "
    "sample's, as the authors' code) or independent (fresh, as the paper's "
    "algorithm)",
    choices=COUPLINGS,
)


class Rebar(ConditionalRelaxation):
    """REBAR: the relaxed cost at the conditional sample, eta f(sigma_tau(z~)), as control
    variate, with its pathwise correction eta [d f(sigma_tau(z)) - d f(sigma_tau(z~))]; for
    Bernoulli and one-hot categorical latents (module docstring). With ``tune``, eta and
    log tau are learned in the warm-up by the variance objective, then frozen.

    References: Tucker, Mnih, Maddison, Lawson, Sohl-Dickstein (2017), "REBAR", NeurIPS.
    """

    name = "rebar"
    style = ("orange", "v")
    example_samples = 4
    example_options: ClassVar[dict] = {}
    paper_order = 7
    warmup_option = "warmup"
    description = "REBAR: conditional Concrete relaxation as control variate"
    options: ClassVar[dict[str, Option]] = {
        "tau": TAU,
        "eta": ETA,
        "coupling": COUPLING,
        "tune": Option(False, "learn eta and log tau in the warm-up (variance objective)"),
        "warmup": Option(
            100,
            "steps that tune eta and tau before measuring",
            minimum=0,
            applies=("tune", (True,)),
        ),
        "lr": Option(
            0.01,
            "Adam learning rate of the tuning",
            minimum=0,
            exclusive=True,
            applies=("tune", (True,)),
        ),
    }

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.learned: dict[str, Tensor] | None = None

    def warmup_steps(self) -> int:
        return int(self.option_values["warmup"]) if self.option_values["tune"] else 0

    def setup(self, problem: Problem, point: Params) -> None:
        if not self.option_values["tune"]:
            return
        self.learned = self.build_scalars(problem)
        self.optimizer = torch.optim.Adam(self.learned.values(), lr=self.option_values["lr"])

    def parameters(self) -> list[Tensor]:
        return list(self.learned.values()) if self.learned is not None else []


class Relax(ConditionalRelaxation):
    """RELAX: c_phi(z) = eta f(sigma_tau(z)) + r_phi(sigma_tau(z) [, context]) in REBAR's
    estimator; eta, log tau and the network phi trained in the warm-up by the variance
    objective, then frozen (module docstring).

    References: Grathwohl, Choi, Wu, Roeder, Duvenaud (2018), "Backpropagation through the
    Void", ICLR.
    """

    name = "relax"
    style = ("green", "<")
    example_samples = 4
    example_options: ClassVar[dict] = {"warmup": 5}
    paper_order = 8
    warmup_option = "warmup"
    description = "RELAX: learned control variate (relaxed cost + network), variance-trained"
    options: ClassVar[dict[str, Option]] = {
        "tau": TAU,
        "eta": ETA,
        "coupling": COUPLING,
        "width": Option(32, "hidden units of the control variate's network", minimum=1),
        "warmup": Option(200, "training steps of the control variate before measuring", minimum=0),
        "lr": Option(0.01, "Adam learning rate of the control variate", minimum=0, exclusive=True),
    }

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.learned: dict[str, Tensor] | None = None
        self.network: dict[str, Tensor] | None = None
        self.with_context = False

    def setup(self, problem: Problem, point: Params) -> None:
        logits = logits_of(problem.distribution(repeat_params(point, 1, requires_grad=False)))
        unit = logits[0].numel() // problem.n_factors
        self.learned = self.build_scalars(problem)
        # r_phi = 0 at the start: REBAR
        self.network, self.with_context = control_network(
            problem, unit, self.option_values["width"]
        )
        self.optimizer = torch.optim.Adam(self.parameters(), lr=self.option_values["lr"])

    def parameters(self) -> list[Tensor]:
        if self.learned is None or self.network is None:
            return []
        return [*self.learned.values(), *self.network.values()]

    def control_variate(self, problem: Problem, z: Tensor, params: Params, binary: bool) -> Tensor:
        if self.network is None:
            raise RuntimeError(
                "relax: call setup(problem, point) before estimating (the "
                "control variate's network is sized for the problem)"
            )
        eta, tau = self.scalars(z)
        relaxed = relaxation(z, tau, binary)
        features = (2 * relaxed - 1).reshape(*z.shape[:2], problem.n_factors, -1)  # [K, R, F, U]
        learned = apply_network(self.network, problem, features, self.with_context)
        return eta * problem.cost_terms(relaxed, params) + learned
