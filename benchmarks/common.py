"""What the asv suites measure, and the set-up they share.

Every suite is parametrized over ``ESTIMATOR_NAMES`` (the estimator registry, in its order)
and ``PROBLEM_NAMES`` (the problems below, at small sizes so that ``asv run --quick`` over
the whole suite takes a few minutes on two cores). A pair that does not apply, or a problem
that the benchmarked commit does not register yet, raises ``NotImplementedError`` in
``setup``, which asv records as skipped, so the same suite runs against old and new commits.

The device is the CPU unless the environment variable ``GRADBENCH_ASV_DEVICE`` names
another (``cuda``, ``cuda:1``); timings then synchronise CUDA before the clock is read.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch

from estimators import ESTIMATORS, Estimator, State
from problems import PROBLEMS, Problem
from problems.base import Params


def bench_module(name: str) -> ModuleType:
    """``bench.<package>.<name>`` of the benchmarked commit, or ``bench.<name>`` in commits
    before the layout of docs/architecture.md, so that the suites run against both."""
    for package in ("cell", "sweep", "training"):
        try:
            return importlib.import_module(f"bench.{package}.{name}")
        except ImportError:
            continue
    return importlib.import_module(f"bench.{name}")


estimate = bench_module("estimate")

#: samples per gradient estimate (K) in every suite
N_SAMPLES = 10
#: independent estimates (R) of the timed variance measurement
VARIANCE_REPEATS = 500
#: independent estimates (R) behind the tracked quality numbers
QUALITY_REPEATS = 2000
#: base seed of every measurement; quality numbers are deterministic given the commit
SEED = 0
#: environment variable that selects the device
DEVICE_VARIABLE = "GRADBENCH_ASV_DEVICE"

#: benchmarked problems with their options: small instances of each problem family
PROBLEM_OPTIONS: dict[str, dict[str, Any]] = {
    "gaussian_quadratic": {"d": 4},
    "gaussian_elbo": {"d": 2},
    "bernoulli_toy": {"d": 4},
    "categorical_toy": {"d": 2, "classes": 4},
    "bernoulli_vae": {"latents": 8, "batch": 8},
    "gan_continuous": {},
    "gan_discrete": {},
    "bernoulli_iwae": {"d": 4},
    "gamma_quadratic": {"d": 4},
}

ESTIMATOR_NAMES: list[str] = list(ESTIMATORS)
PROBLEM_NAMES: list[str] = list(PROBLEM_OPTIONS)


def device() -> torch.device:
    """The benchmarked device: ``$GRADBENCH_ASV_DEVICE``, else the CPU."""
    return torch.device(os.environ.get(DEVICE_VARIABLE, "cpu"))


def synchronize(dev: torch.device) -> None:
    """Wait for queued CUDA work, so that a wall-clock reading covers it."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


@dataclass
class Pair:
    """A constructed problem and estimator at the problem's evaluation point."""

    problem: Problem
    estimator: Estimator
    point: Params  # no repeat dimension
    state: State  # the estimator's warmed state for one repeat


def make_problem(problem_name: str, dev: torch.device | None = None) -> Problem:
    """The benchmarked instance of ``problem_name``.

    Raises:
        NotImplementedError: the benchmarked commit does not register the problem.
    """
    if problem_name not in PROBLEMS:
        raise NotImplementedError(f"problem {problem_name!r} is not registered in this commit")
    return PROBLEMS[problem_name](PROBLEM_OPTIONS[problem_name], device=dev or device())


def make_pair(estimator_name: str, problem_name: str, dev: torch.device | None = None) -> Pair:
    """Build ``estimator_name`` on ``problem_name`` with default options, seeded with ``SEED``.

    Raises:
        NotImplementedError: the pair does not apply (asv then skips the benchmark).
    """
    if estimator_name not in ESTIMATORS:
        raise NotImplementedError(f"estimator {estimator_name!r} is not registered in this commit")
    estimator_class = ESTIMATORS[estimator_name]
    if problem_name in PROBLEMS:
        reason = estimator_class.incompatibility(PROBLEMS[problem_name])
        if reason is not None:
            raise NotImplementedError(reason)
    rule = getattr(estimator_class, "sample_rule", None)  # commits before it had min_samples
    reason = rule(N_SAMPLES) if rule else None
    if reason is None and estimator_class.min_samples > N_SAMPLES:
        reason = f"{estimator_name} needs K >= {estimator_class.min_samples}"
    if reason is not None:
        raise NotImplementedError(reason)
    torch.manual_seed(SEED)
    problem = make_problem(problem_name, dev)
    estimator = estimator_class()
    point = {k: v.detach() for k, v in problem.init_params().items()}
    state = estimate.warmed_state(problem, estimator, point, N_SAMPLES)
    return Pair(problem, estimator, point, state)
