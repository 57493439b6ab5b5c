"""What the asv suites measure, and the set-up they share.

Every suite is parametrized over ``ESTIMATOR_NAMES`` (the estimator registry, in its order)
and ``PROBLEM_NAMES`` (the problems below, at small sizes so that ``asv run --quick`` over
the whole suite takes a few minutes on two cores). A pair that does not apply, or a problem
that the benchmarked commit does not register yet, raises ``NotImplementedError`` in
``setup``, which asv records as skipped, so the same suite runs against old and new commits.

The device is the CPU unless the environment variable ``GRADBENCH_ASV_DEVICE`` names
another (``cuda``, ``cuda:1``); timings then synchronise CUDA before the clock is read.

Smoke mode (``GRADBENCH_ASV_SMOKE=1``, set by ``benchmarks/ci.sh``): the suites are
parametrized over a representative subset of the registry instead (``SMOKE_ESTIMATORS``: a
score-function estimator with and without a baseline, the pathwise ones, the relaxations
and straight-through, and the control-variate and multi-sample families where registered)
and over ``SMOKE_PROBLEMS`` (a continuous, a binary and a categorical toy), so that the CI
check stays within a minute or two however large the registry grows. asv records nothing
in that mode (``--dry-run``); real measurements use the full parametrization.

Everything a benchmark needs is built in ``setup``, never in the timed call: ``make_pair``
builds the problem (once per process: ``make_problem`` caches it), warms the estimator up and
runs one untimed estimate, which triggers any lazy set-up of the problem (a GAN's critic
training) and of the estimator.
"""

from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch

from estimators import ESTIMATORS, Estimator, State
from problems import PROBLEMS, Problem
from problems.base import Params, repeat_params


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
    "policy": {"prompts": 4},
    "k_subset": {"n": 8, "k": 3},
    "polynomial": {"d": 4},
    "logistic_regression": {"batch": 8},
    "sbn": {"layers": "4-4", "batch": 8},
    "poisson_quadratic": {"d": 4},
    "categorical_vae": {"groups": 4, "categories": 4, "batch": 8},
}

#: environment variable that selects smoke mode (see the module docstring)
SMOKE_VARIABLE = "GRADBENCH_ASV_SMOKE"
#: the estimators of smoke mode, those of them that the commit registers
SMOKE_ESTIMATORS = (
    "reinforce", "reinforce_loo", "reparam", "gumbel_softmax", "st_gumbel_softmax",
    "straight_through", "disarm", "rebar", "relax", "reinmax", "vimco", "mvd",
)
#: the problems of smoke mode
SMOKE_PROBLEMS = ("gaussian_quadratic", "bernoulli_toy", "categorical_toy")


def smoke() -> bool:
    """Whether ``$GRADBENCH_ASV_SMOKE`` asks for the smoke-mode parametrization."""
    return os.environ.get(SMOKE_VARIABLE, "").strip() not in ("", "0")


if smoke():
    ESTIMATOR_NAMES: list[str] = [name for name in ESTIMATORS if name in SMOKE_ESTIMATORS]
    PROBLEM_NAMES: list[str] = list(SMOKE_PROBLEMS)
else:
    ESTIMATOR_NAMES = list(ESTIMATORS)
    PROBLEM_NAMES = list(PROBLEM_OPTIONS)


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
    """The benchmarked instance of ``problem_name``, built once per process and device.

    Raises:
        NotImplementedError: the benchmarked commit does not register the problem.
    """
    if problem_name not in PROBLEMS:
        raise NotImplementedError(f"problem {problem_name!r} is not registered in this commit")
    return _built(problem_name, str(dev or device()))


@functools.cache
def _built(problem_name: str, dev: str) -> Problem:
    device = torch.device(dev)
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(SEED)
        return PROBLEMS[problem_name](PROBLEM_OPTIONS[problem_name], device=device)


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
    # untimed, in a forked stream (the measured numbers do not move): whatever a first
    # estimate builds lazily (a GAN critic's training) is built here
    cuda = [problem.device.index or 0] if problem.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        copy = {k: v.clone() for k, v in state.items()}
        estimate.one_estimate(problem, estimator, repeat_params(point, 1), N_SAMPLES, copy)
    synchronize(problem.device)
    return Pair(problem, estimator, point, state)
