"""Score-function (REINFORCE) estimators and their baselines.

For L(theta) = E_q[f(z, theta)], the score-function identity gives

    dL/dtheta = E_q[(f(z, theta) - b) d/dtheta log q_theta(z)] + E_q[d/dtheta f(z, theta)]

for any baseline b independent of z. The surrogate
``mean_k[stopgrad(f_k - b_k) log q(z_k) + f(z_k, theta)]`` with detached samples z_k has this
estimate as its gradient; the second term is the direct dependence of the cost on theta
(zero for costs that do not depend on theta).

Per-factor learning signals. When the latent factorizes over examples and the cost is a sum
of per-example terms f_i(z_i) (``Problem.n_factors``), each example's score is multiplied by
its own f_i, sum_i (f_i - b_i) d/dtheta log q(z_i | x_i): the cross terms f_j d log q(z_i),
j != i, have mean zero, so dropping them keeps the estimate unbiased and removes their
variance (Mnih & Gregor 2014; Mnih & Rezende 2016). A problem option (``signals=global`` on
the VAEs) restores the whole-minibatch signal, so the effect can be measured.

References: Williams (1992), "Simple statistical gradient-following algorithms for
connectionist reinforcement learning", Machine Learning 8; Mohamed et al. (2020), JMLR,
Section 4.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from estimators.base import Estimator, State, Surrogate
from estimators.targets import NoTarget
from problems.base import Capability, Params, Problem
from problems.options import Option


def score_surrogate(
    problem: Problem, params: Params, n_samples: int, baseline: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """REINFORCE surrogate with per-factor learning signals and an optional baseline.

    On a problem with F factors, factor i's score log q(z_i | x_i) is multiplied by its own
    cost term f_i minus its baseline; the direct term is the whole cost. On a multi-sample
    objective the K samples form one estimate: each factor's signal is its K-sample bound
    J_i(z_1..z_K), multiplying the score sum_k log q(z_ki | x_i) of all its samples.

    Args:
        baseline: ``[R]`` (shared by samples and factors), ``[K, R]`` or ``[K, R, F]``, or None.

    Returns:
        loss ``[R]``, samples ``[K, R, *event]``, per-factor signals (detached): ``[K, R, F]``
        (``[1, R, F]`` on a multi-sample objective).
    """
    dist = problem.distribution(params)
    z = dist.sample((n_samples,))  # [K, R, *event]
    if problem.multi_sample:
        cost = problem.signals(problem.joint_cost_terms(z, params)).unsqueeze(0)  # [1, R, F]
        log_q = problem.signals(problem.log_prob_terms(dist, z)).sum(0, keepdim=True)
    else:
        cost = problem.signals(problem.cost_terms(z, params))  # [K, R, F]
        log_q = problem.signals(problem.log_prob_terms(dist, z))  # [K, R, F]
    signal = cost.detach()
    if baseline is not None:
        signal = signal - (baseline if baseline.dim() == 3 else baseline.unsqueeze(-1))
    loss = ((signal * log_q).sum(-1) + cost.sum(-1)).mean(0)  # [R]
    return loss, z, cost.detach()


class Reinforce(Estimator):
    """Plain score-function estimator: b = 0. Unbiased; variance grows with E[f^2].

    References: Williams (1992), Machine Learning 8.
    """

    name = "reinforce"
    example_samples = 4
    example_options: ClassVar[dict] = {}
    paper_order = 0
    style = ("blue", "o")
    description = "score function (REINFORCE), no baseline"
    requires = frozenset()
    unbiased = True
    supports_multi_sample = True

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        loss, z, _ = score_surrogate(problem, params, n_samples, None)
        return Surrogate(loss=loss, samples=z)


class ReinforceEMA(Estimator):
    """Score function with an exponential-moving-average baseline.

    b_t = decay * b_{t-1} + (1 - decay) * mean_{k,i} f_i(z_k) is updated *after* each
    estimate, so the baseline used at step t is independent of step t's samples and the
    estimate stays unbiased. On a problem with factors the one baseline serves every factor's
    signal f_i (a per-example constant, as NVIL's); on a multi-sample objective it tracks the
    bound. Before measuring, the harness runs ``warmup`` estimates at the evaluation
    point so that b has settled near E[f], as it would be mid-training.

    References: Williams (1992); Mnih & Gregor (2014), "Neural Variational Inference and
    Learning in Belief Networks (NVIL)", ICML, Section 3.3.
    """

    name = "reinforce_ema"
    example_samples = 4
    example_options: ClassVar[dict] = {}
    warmup_option = "warmup"
    style = ("orange", "s")
    description = "score function with an exponential-moving-average baseline"
    requires = frozenset()
    unbiased = True
    supports_multi_sample = True
    options: ClassVar[dict[str, Option]] = {
        "decay": Option(0.9, "moving-average decay", minimum=0, maximum=1, exclusive=False),
        "warmup": Option(100, "estimates run to settle the baseline before measuring", minimum=0),
    }

    def init_state(self, params: Params) -> State:
        first = next(iter(params.values()))
        return {"baseline": first.new_zeros(first.shape[0]).detach()}

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        baseline = state["baseline"]  # [R]
        loss, z, signal = score_surrogate(problem, params, n_samples, baseline)
        decay = self.option_values["decay"]
        updated = decay * baseline + (1 - decay) * signal.mean((0, 2))
        return Surrogate(loss=loss, samples=z, state={"baseline": updated})


class ReinforceLOO(Estimator):
    """Score function with the leave-one-out baseline over the K samples.

    b_k = (1 / (K - 1)) sum_{j != k} f(z_j), independent of z_k, hence unbiased; the
    score term equals K / (K - 1) times that of the sample-mean baseline. On a problem with
    factors each factor's signal f_i(z_ki) gets its own leave-one-out baseline over the K
    samples. Multi-sample objectives are VIMCO's (``vimco``), not this estimator's.

    References: Kool, van Hoof, Welling (2019), "Buy 4 REINFORCE Samples, Get a Baseline
    for Free!", ICLR Workshop DeepRLStructPred; Mnih & Rezende (2016), "VIMCO", ICML.
    """

    name = "reinforce_loo"
    example_samples = 4
    example_options: ClassVar[dict] = {}
    paper_order = 1
    style = ("green", "^")
    description = "score function with the leave-one-out baseline (K >= 2)"
    requires = frozenset()
    unbiased = True
    min_samples = 2

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        if n_samples < 2:
            raise ValueError(f"reinforce_loo needs n_samples >= 2, got {n_samples}")
        dist = problem.distribution(params)
        z = dist.sample((n_samples,))  # [K, R, *event]
        cost = problem.signals(problem.cost_terms(z, params))  # [K, R, F]
        free = cost.detach()
        baseline = (free.sum(0, keepdim=True) - free) / (n_samples - 1)  # [K, R, F]
        log_q = problem.signals(problem.log_prob_terms(dist, z))
        signal = ((free - baseline) * log_q).sum(-1)  # [K, R]
        loss = (signal + cost.sum(-1)).mean(0)
        return Surrogate(loss=loss, samples=z)


class ReinforceExactBaseline(Estimator):
    """Score function with the exact baseline b_i = E_q[f_i], computed by the problem.

    An oracle reference, not a practical estimator: the learning signal centred exactly, which
    every practical baseline (moving average, leave-one-out, learned) approximates, so it shows
    how much of REINFORCE's variance such a constant baseline can remove. (The
    variance-minimizing constant of one coordinate, E[f s^2] / E[s^2] for its score s, differs
    from E[f] where f and s^2 covary.) On a problem with factors each factor's signal f_i is
    centred by its own exact expectation (``Problem.objective_terms``). b does not depend on
    the samples, so the estimate is unbiased. It needs ``Capability.EXACT_OBJECTIVE``;
    computing E_q[f] costs what the problem's closed form or enumeration costs, which
    ``cost_evals`` (K) does not count.

    On one bit, f(b) - E f = Delta (b - p) with Delta = f(1) - f(0), so
    g = Delta (b - p)^2: mean Delta p (1 - p), variance Delta^2 p (1 - p) (1 - 2p)^2 per
    sample (zero at p = 1/2).

    References: Williams (1992), Machine Learning 8; Greensmith, Bartlett, Baxter (2004),
    "Variance Reduction Techniques for Gradient Estimates in Reinforcement Learning", JMLR 5.
    """

    name = "reinforce_exact_baseline"
    example_samples = 4
    example_options: ClassVar[dict] = {}
    style = ("black", "*")
    description = "score function with the exact baseline E_q[f] (an oracle reference)"
    requires = frozenset({Capability.EXACT_OBJECTIVE})
    unbiased = True
    cost_formula = "K (plus the problem's exact E_q[f], not counted)"

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        with torch.no_grad():
            exact = problem.objective_terms({k: v.detach() for k, v in params.items()})
        if exact is None:
            raise ValueError(
                f"reinforce_exact_baseline needs the exact objective of "
                f"{problem.name}, which these options do not give"
            )
        baseline = problem.signals(exact).unsqueeze(0).expand(n_samples, -1, -1)  # [K, R, F]
        loss, z, _ = score_surrogate(problem, params, n_samples, baseline)
        return Surrogate(loss=loss, samples=z)


def leave_one_out_bounds(log_w: Tensor, baseline: str) -> Tensor:
    """VIMCO's baselines: per sample k, the log of the K-sample mean of the weights with w_k
    replaced by a mean of the others, log (1/K) (sum_{j != k} w_j + w^_{-k}).

    ``geometric``: log w^_{-k} = mean_{j != k} log w_j; ``arithmetic``: w^_{-k} =
    mean_{j != k} w_j. At K = 2 both are w_{3-k}.

    Args:
        log_w: ``[K, R, F]`` log-weights (K >= 2).

    Returns:
        ``[K, R, F]``.
    """
    k = log_w.shape[0]
    if baseline == "geometric":
        replaced = (log_w.sum(0, keepdim=True) - log_w) / (k - 1)  # [K, R, F]
    else:
        others = log_w.unsqueeze(0).expand(k, *log_w.shape).clone()  # [K (left out), K, R, F]
        eye = torch.eye(k, dtype=torch.bool, device=log_w.device).reshape(k, k, 1, 1)
        others = others.masked_fill(eye, -math.inf)
        replaced = torch.logsumexp(others, 1) - math.log(k - 1)
    grid = log_w.unsqueeze(0).expand(k, *log_w.shape)  # [K (replaced), K, R, F]
    eye = torch.eye(k, dtype=torch.bool, device=log_w.device).reshape(k, k, 1, 1)
    grid = torch.where(eye, replaced.unsqueeze(1), grid)
    return torch.logsumexp(grid, 1) - math.log(k)


class VIMCO(Estimator):
    """VIMCO: the multi-sample score function with per-sample leave-one-out baselines.

    For the negative K-sample bound J = -scale log (1/K) sum_k w(z_k) (per factor),

        g = sum_k (J - J_{-k}) d/dtheta log q(z_k) + d/dtheta J(z, theta)|_z,

    where J_{-k} = -scale log (1/K) (sum_{j != k} w_j + w^_{-k}) is the bound with w_k
    replaced by the geometric (``baseline=geometric``, the paper's choice) or arithmetic mean
    of the other weights: it does not depend on z_k, so each baseline leaves the estimate
    unbiased. The last term, sum_k w~_k d/dtheta log w(z_k) with the normalized weights w~,
    is the bound's own dependence on theta (through log q in w, and through the model); it
    is kept. On a problem with factors each factor's score is paired with its own signal
    (``Problem.signals``). K >= 2; at K = 2 the two baselines coincide.

    References: Mnih & Rezende (2016), "Variational Inference for Monte Carlo Objectives",
    ICML, Section 3.
    """

    name = "vimco"
    example_samples = 4
    example_options: ClassVar[dict] = {}
    paper_order = 11
    style = ("purple", "s")
    description = "VIMCO: multi-sample score function with leave-one-out bound baselines (K >= 2)"
    requires = frozenset({Capability.MULTI_SAMPLE, Capability.LOG_WEIGHTS})
    unbiased = True
    supports_multi_sample = True
    min_samples = 2
    options: ClassVar[dict[str, Option]] = {
        "baseline": Option(
            "geometric",
            "mean that replaces the left-out weight",
            choices=("geometric", "arithmetic"),
        ),
    }

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        if n_samples < 2:
            raise ValueError(f"vimco needs n_samples >= 2, got {n_samples}")
        dist = problem.distribution(params)
        z = dist.sample((n_samples,))  # [K, R, *event]
        joint = problem.joint_cost_terms(z, params)  # [R, F], the bound, direct term
        log_w = problem.log_weights(z, params).detach()  # [K, R, F]
        loo = -problem.factor_scale * leave_one_out_bounds(log_w, self.option_values["baseline"])
        signal = problem.signals(joint.detach().unsqueeze(0) - loo)  # [K, R, F']
        log_q = problem.signals(problem.log_prob_terms(dist, z))  # [K, R, F']
        loss = (signal * log_q).sum((0, -1)) + joint.sum(-1)
        return Surrogate(loss=loss, samples=z)


class NVIL(Estimator):
    """NVIL: the score function with a learned input-dependent baseline, centring and
    variance normalization.

    The learning signal of factor i (example x_i) at sample z_ki is l_ki = f_i(z_ki) (the
    per-example cost, ``Problem.signals``). The estimate is

        g = mean_k sum_i (l_ki - b_psi(x_i) - c) / n d/dtheta log q(z_ki | x_i) + d/dtheta f,

    with b_psi a one-hidden-layer tanh MLP on the example's context (``Capability.CONTEXT``;
    a learned constant where a problem has none), c a running mean of l - b_psi(x) and n =
    max(1, sqrt(v)), v a running mean of (l - b_psi(x) - c)^2 (both with ``decay``, updated
    *after* each estimate, per repeat). psi minimizes the squared error
    mean (l - c - b_psi(x))^2 of the centred signal, trained during the warm-up and frozen
    while measuring.

    Bias. The baseline and c do not depend on the current samples, so without normalization
    (``normalize=false``) the estimate is unbiased. The paper's variance normalization
    (the default, as in Section 3.3 of the paper) divides only the score term by n, so when
    n > 1 the estimate is the true score-function part shrunk by 1/n plus the direct term:
    biased (a per-step rescaling, meant to act on the learning rate). It is declared biased
    for that reason; on problems whose centred signal has a standard deviation below 1 the
    normalization is inactive and the estimate unbiased (``tests/test_learned.py``). Later
    papers use NVIL as a baseline (e.g. Gu et al. 2016, MuProp; Mnih & Rezende 2016, VIMCO;
    Tucker et al. 2017, REBAR) and describe it by its learned input-dependent baseline and
    centring; whether they kept the normalization is not always stated, so this suite does
    not guess: ``normalize=false`` is the unbiased variant to compare estimators with, the
    default the paper's own.

    References: Mnih & Gregor (2014), "Neural Variational Inference and Learning in Belief
    Networks", ICML, Section 3.
    """

    name = "nvil"
    example_samples = 4
    example_options: ClassVar[dict] = {}
    exact_in_mean: ClassVar[dict[str, str]] = {
        "bernoulli_toy": "NVIL's variance normalization is inactive (signal std < 1)",
        "categorical_toy": "NVIL's variance normalization is inactive (signal std < 1)",
        "polynomial": "NVIL's variance normalization is inactive (signal std < 1)",
    }
    paper_order = 12
    warmup_option = "warmup"
    style = ("olive", "o")
    description = (
        "score function with a learned input-dependent baseline, centring and "
        "variance normalization (NVIL; biased while normalizing)"
    )
    requires = frozenset()
    unbiased = False
    target = NoTarget("the variance normalization rescales the score term by a running std")
    options: ClassVar[dict[str, Option]] = {
        "hidden": Option(100, "tanh units of the baseline MLP on the context", minimum=1),
        "normalize": Option(True, "divide the centred signal by max(1, running std)"),
        "decay": Option(
            0.8, "decay of the running mean and variance", minimum=0, maximum=1, exclusive=False
        ),
        "lr": Option(1e-2, "Adam learning rate of the baseline", minimum=0, exclusive=True),
        "warmup": Option(100, "steps training the baseline before measuring", minimum=0),
    }

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.weights: dict[str, Tensor] = {}

    def setup(self, problem: Problem, point: Params) -> None:
        like = next(iter(point.values()))
        kw = {"dtype": like.dtype, "device": like.device}
        if Capability.CONTEXT in problem.provided:
            width, hidden = problem.context().shape[-1], self.option_values["hidden"]
            self.weights = {
                "w1": torch.randn(width, hidden, **kw) / math.sqrt(width),
                "b1": torch.zeros(hidden, **kw),
                "w2": torch.zeros(hidden, **kw),
                "b2": torch.zeros((), **kw),
            }
        else:
            self.weights = {"b2": torch.zeros((), **kw)}
        for tensor in self.weights.values():
            tensor.requires_grad_(True)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=self.option_values["lr"])

    def parameters(self) -> list[Tensor]:
        return list(self.weights.values())

    def baseline(self, problem: Problem) -> Tensor:
        """b_psi per factor ``[F]`` (one learned constant ``[1]`` without context)."""
        if "w1" not in self.weights:
            return self.weights["b2"].reshape(1)
        hidden = torch.tanh(
            problem.context().to(self.weights["w1"]) @ self.weights["w1"] + self.weights["b1"]
        )
        return hidden @ self.weights["w2"] + self.weights["b2"]  # [F]

    def init_state(self, params: Params) -> State:
        first = next(iter(params.values()))
        zeros = first.new_zeros(first.shape[0]).detach()
        return {"centre": zeros, "variance": zeros.clone()}

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        if not self.weights:
            raise ValueError("nvil: call setup(problem, point) before estimating")
        dist = problem.distribution(params)
        z = dist.sample((n_samples,))  # [K, R, *event]
        cost = problem.signals(problem.cost_terms(z, params))  # [K, R, F']
        log_q = problem.signals(problem.log_prob_terms(dist, z))
        learned = self.baseline(problem)  # [F], or [1] (no context)
        if learned.numel() > 1 and not problem.local_signals:
            learned = learned.sum(-1, keepdim=True)  # the whole minibatch's signal
        centre, variance = state["centre"], state["variance"]  # [R]
        free = cost.detach()
        residual = free - learned.detach()  # [K, R, F']
        centred = residual - centre.reshape(1, -1, 1)
        scale = (
            variance.sqrt().clamp_min(1.0)
            if self.option_values["normalize"]
            else torch.ones_like(variance)
        )
        signal = centred / scale.reshape(1, -1, 1)
        loss = ((signal * log_q).sum(-1) + cost.sum(-1)).mean(0)
        decay = self.option_values["decay"]
        updated = {
            "centre": decay * centre + (1 - decay) * residual.mean((0, 2)),
            "variance": decay * variance + (1 - decay) * (centred**2).mean((0, 2)),
        }
        own = ((free - centre.reshape(1, -1, 1) - learned) ** 2).mean()
        return Surrogate(loss=loss, samples=z, state=updated, own_loss=own)
