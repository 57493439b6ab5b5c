"""Print the exact-bias table of docs/group_baselines.md (``python docs/group_bias_table.py``).

Every number is exact (float64 enumeration of all K-tuples of samples,
``estimators.enumerate.exact_moments``), so the table has no Monte Carlo noise and no seed.
Per estimator and normalisation, with g the estimate and grad the true gradient:

* ``rel_bias``: ||E g - grad|| / ||grad||;
* ``cosine``: of E g and grad;
* ``scale``: c* = <E g, grad> / ||grad||^2, the rescaling of grad closest to E g;
* ``not_scale``: ||E g - c* grad|| / ||E g||, the part of the bias that no learning rate
  undoes (0: the bias is a rescaling only);
* ``var``: the trace of the covariance of one estimate.

A second table gives the default GRPO's rescaling c(p) on one bit by success probability.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from estimators import get_estimator
from estimators.base import flatten
from estimators.enumerate import exact_moments
from problems import get_problem

K = 4
PROBLEMS = (
    ("bernoulli_toy", {"theta": 0.0}),
    ("bernoulli_toy", {"theta": 1.0}),
    ("policy", {"prompts": 1, "eos_logit": -0.5}),
    ("policy", {"prompts": 1, "eos_logit": -0.5, "rule": "first"}),
)
SERIES = (
    ("grpo", {}),
    ("grpo", {"length_norm": "token"}),
    ("grpo", {"length_norm": "none"}),
    ("grpo", {"scale": "none"}),
    ("grpo", {"scale": "none", "length_norm": "token"}),
    ("grpo", {"scale": "none", "length_norm": "none"}),
    ("dr_grpo", {}),
)


def row(problem, name: str, options: dict) -> list[str]:
    point = problem.init_params()
    truth = flatten(problem.truth(point).grad, repeated=False).double()
    mean, variance = exact_moments(problem, get_estimator(name)(options), point, K)
    scale = float(mean @ truth / (truth @ truth))
    cosine = float(mean @ truth / (mean.norm() * truth.norm()))
    return [
        f"{(mean - truth).norm() / truth.norm():.4f}",
        f"{cosine:.4f}",
        f"{scale:.4f}",
        f"{(mean - scale * truth).norm() / mean.norm():.4f}",
        f"{variance.sum():.4g}",
    ]


def label(options: dict) -> str:
    shown = {"scale": "std", "length_norm": "sequence", **options}
    return f"scale={shown['scale']}, length_norm={shown['length_norm']}"


def table() -> str:
    torch.set_num_threads(1)
    lines = [
        "| problem | estimator | options | rel_bias | cosine | scale | not_scale | var |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for problem_name, problem_options in PROBLEMS:
        problem = get_problem(problem_name)(problem_options, dtype=torch.float64)
        where = ", ".join(f"{k}={v}" for k, v in problem_options.items())
        for name, options in SERIES:
            shown = label(options) if name == "grpo" else "(none)"
            cells = row(problem, name, options)
            lines.append(f"| {problem_name} ({where}) | `{name}` | {shown} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def scale_table() -> str:
    """The default GRPO's mean on one bit is c(p) times the true gradient, c depending on
    the success probability p = sigmoid(theta) and K: prompts of different difficulty are
    rescaled differently."""
    lines = ["| theta | p | c (K=2) | c (K=4) | c (K=8) |", "|---|---|---|---|---|"]
    for theta in (-3.0, -1.0, 0.0, 1.0, 3.0):
        problem = get_problem("bernoulli_toy")({"theta": theta}, dtype=torch.float64)
        point = problem.init_params()
        truth = problem.truth(point).grad["theta"].double()
        scales = [float(exact_moments(problem, get_estimator("grpo")(), point, k)[0] / truth)
                  for k in (2, 4, 8)]
        p = 1 / (1 + torch.exp(torch.tensor(-theta))).item()
        lines.append(f"| {theta:g} | {p:.4f} | " + " | ".join(f"{c:.4f}" for c in scales) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(table() + "\n" + scale_table(), end="")
