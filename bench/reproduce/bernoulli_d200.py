"""The Bernoulli toy at d = 200, t = 0.499, used by the DisARM and double-control-variate
papers: minimize E[mean_j (b_j - t)^2] over 200 logits with REINFORCE leave-one-out, DisARM
and the exact-baseline oracle, two samples (one antithetic pair) per estimate; record the
gradient variance (the trace of its covariance, ``variance_trace``) along each estimator's
own training run.

The exact-baseline oracle is the score function with b = E_q[f] computed exactly; at the same
K its variance is never above leave-one-out REINFORCE's (derived here): with K = 2, RLOO equals
the oracle's estimate minus (1/2) sum_k (f_j - E f) s_k (j the other sample), a mean-zero term
uncorrelated with the oracle's, so Var(RLOO) = Var(oracle) + Var(that term).

Setup: theta = 0, Adam with learning rate 0.01 (our choice; the papers plot variance curves
and we compare their orderings), K = 2.

References: Dong, Mnih, Tucker (2020), "DisARM: An Antithetic Gradient Estimator for Binary
Latent Variables", NeurIPS (abstract: DisARM "consistently outperforms ARM and a strong
independent sample baseline in terms of both variance and log-likelihood"); Titsias & Shi
(2022), "Double Control Variates for Gradient Estimation in Discrete Latent Variable
Models", AISTATS.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from bench.reproduce.base import (
    Mode,
    Outcome,
    Reference,
    Reproduction,
    comparison_row,
)
from bench.reproduce.curves import curve_figure, last, mean_log10, ordering_claim, run_curves
from bench.reproduce.training import TrainSettings
from problems.toys import BernoulliToy

SOURCE = "Dong et al. (2020), NeurIPS; Titsias & Shi (2022), AISTATS: toy, d = 200, t = 0.499"
ABSTRACT = "Dong et al. (2020), NeurIPS, abstract"
D, T, LR, K = 200, 0.499, 0.01, 2
SCALE: dict[str, dict[str, int]] = {
    "short": {"steps": 150, "every": 50, "variance_repeats": 200},
    "full": {"steps": 5000, "every": 250, "variance_repeats": 2000},
}


class BernoulliD200(Reproduction):
    """Gradient variance of RLOO, DisARM and the exact-baseline oracle along training."""

    name = "bernoulli_toy_d200"
    title = "200-bit toy E[mean_j (b_j - 0.499)^2]: gradient variance along training"
    paper = "Dong, Mnih, Tucker (2020), NeurIPS (DisARM); Titsias & Shi (2022), AISTATS"
    target = "toy experiment (variance curves)"
    estimators = ("reinforce_loo", "disarm", "reinforce_exact_baseline")
    runtime: ClassVar[dict[str, str]] = {"short": "3 s", "full": "50 s"}
    trains = True

    def run(self, mode: Mode, seed: int, progress: bool) -> Outcome:
        scale = self.scaled(SCALE[mode])
        train = TrainSettings.from_scale(scale, LR, K)
        setting = f"d={D}, t={T}"
        data, errors = run_curves(
            self.name,
            [(setting, lambda: BernoulliToy({"t": T, "d": D, "theta": 0.0}, dtype=torch.float64))],
            [(name, {}, train) for name in self.estimators],
            seed,
            progress,
        )
        rows = []
        for name in self.available():
            rows.append(
                comparison_row(
                    f"mean log10 variance, {name}",
                    mean_log10(data, setting, name, "variance_trace"),
                    Reference(f"variance {name}", SOURCE, note="curve only"),
                )
            )
            rows.append(
                comparison_row(
                    f"final loss, {name}",
                    last(data, setting, name, "loss"),
                    None,
                    "exact loss at the final theta (ours)",
                )
            )
        variance = {n: mean_log10(data, setting, n, "variance_trace") for n in self.estimators}
        claims = [
            ordering_claim(
                "DisARM's gradient variance is below REINFORCE-LOO's",
                ABSTRACT,
                variance,
                "disarm",
                ["reinforce_loo"],
                "mean log10 variance",
            ),
            ordering_claim(
                "the exact-baseline oracle's variance is below REINFORCE-LOO's at the same K",
                "derived in this suite (module docstring)",
                variance,
                "reinforce_exact_baseline",
                ["reinforce_loo"],
                "mean log10 variance",
            ),
        ]
        notes = [
            "the papers plot these variances as curves and state no values; the claims compare "
            "orderings",
            f"setup: theta = 0, Adam lr {LR} (our choice), K = {K}; variance: the trace of "
            f"the covariance (sum over the {D} coordinates) of {scale['variance_repeats']} "
            "estimates at the estimator's own current theta",
        ]
        notes += self.scale_note(mode, scale["steps"], SCALE["full"]["steps"])
        figure = curve_figure(
            data,
            {"variance_trace": "log10 gradient variance", "loss": "exact loss"},
            f"ours, {mode} version. Published: Dong et al. (2020); Titsias & Shi (2022) "
            "(curves only)",
            width=6.0,
        )
        return self.outcome(mode, data, rows, claims, notes, figure, errors)
