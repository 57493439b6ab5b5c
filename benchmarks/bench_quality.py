"""Estimator quality at a fixed seed, tracked like a timing: a commit that makes an estimator
noisier, biased or worse at training shows up in asv as a regression.

``Quality`` measures every applicable pair once in ``setup_cache`` with the harness's own
statistics (``bench.cell.metrics.Accumulator``, R = ``QUALITY_REPEATS`` estimates of K =
``N_SAMPLES`` samples at the problem's evaluation point against the harness's truth,
``bench.cell.truth.cell_truth``: exact, or a seeded high-sample reference estimate):

* ``variance_trace`` = sum_c Var[g_c], the trace of the estimator's covariance;
* ``bias_l2`` = ||mean_r g_r - grad L||, which for an unbiased estimator is of the order of
  the noise floor sqrt(variance_trace / R) and for a biased one stays away from zero.

``Training`` trains the default discrete VAE (``bernoulli_vae``) for a few steps with each
applicable estimator (``bench.training.train``) and tracks the final test-set negative ELBO.
"""

from __future__ import annotations

import math
import tempfile
from typing import Any

from benchmarks.common import (
    ESTIMATOR_NAMES,
    N_SAMPLES,
    PROBLEM_NAMES,
    QUALITY_REPEATS,
    SEED,
    bench_module,
    estimate,
    make_pair,
    smoke,
)
from estimators import ESTIMATORS
from problems import PROBLEMS

#: problem, steps, learning rate and samples of the tracked training run (smoke mode: a
#: few steps of its estimators, to check that the benchmark runs)
TRAIN_PROBLEM = "bernoulli_vae"
TRAIN_STEPS = 20 if smoke() else 300
TRAIN_LR = 3e-3
TRAIN_SAMPLES = 2
TRAIN_METRIC = "test_nelbo"
#: seconds asv allows a ``setup_cache`` (every pair of the registry in one call)
SETUP_CACHE_TIMEOUT = 3600


def measure_quality(estimator: str, problem: str) -> dict[str, float]:
    """``variance_trace`` and ``bias_l2`` of one pair at seed ``SEED``.

    Raises:
        NotImplementedError: the pair does not apply, or the problem has no exact gradient.
    """
    pair = make_pair(estimator, problem)
    truth = bench_module("truth").cell_truth(pair.problem, pair.point, SEED, N_SAMPLES)
    if truth is None:
        raise NotImplementedError(f"{problem} has no truth at its benchmarked options")
    dim = sum(v.numel() for v in pair.point.values())
    truth_se = None if truth.se is None else estimate.flatten(truth.se, repeated=False)
    accumulator = bench_module("metrics").Accumulator(
        dim, truth=estimate.flatten(truth.grad, repeated=False), truth_se=truth_se,
        n_bootstrap=0, seed=SEED,
    )
    for chunk in estimate.estimate_chunks(
        pair.problem, pair.estimator, pair.point, N_SAMPLES, QUALITY_REPEATS, pair.state
    ):
        accumulator.add(chunk)
    scalars = accumulator.summary().scalars
    return {"variance_trace": scalars["variance_trace"], "bias_l2": scalars["bias_l2"]}


class Quality:
    """Variance and bias of every applicable pair (see the module docstring)."""

    params = (ESTIMATOR_NAMES, PROBLEM_NAMES)
    param_names = ("estimator", "problem")
    # setup_cache measures every pair in one call: minutes with a large registry
    timeout = SETUP_CACHE_TIMEOUT

    def setup_cache(self) -> dict[tuple[str, str], dict[str, float]]:
        results = {}
        for estimator in ESTIMATOR_NAMES:
            for problem in PROBLEM_NAMES:
                try:
                    results[estimator, problem] = measure_quality(estimator, problem)
                except NotImplementedError:
                    continue
        return results

    setup_cache.timeout = SETUP_CACHE_TIMEOUT

    def setup(self, results: dict, estimator: str, problem: str) -> None:
        if (estimator, problem) not in results:
            # names the reason: incompatible, unregistered, or no exact gradient
            measure_quality(estimator, problem)

    def track_variance_trace(self, results: dict, estimator: str, problem: str) -> float:
        return results[estimator, problem]["variance_trace"]

    track_variance_trace.unit = "grad^2"

    def track_bias_l2(self, results: dict, estimator: str, problem: str) -> float:
        return results[estimator, problem]["bias_l2"]

    track_bias_l2.unit = "grad"


def train_final_metrics() -> dict[str, float]:
    """Final ``TRAIN_METRIC`` of a ``TRAIN_STEPS``-step run per applicable estimator.

    Raises:
        NotImplementedError: the commit has no ``bench.training.train`` or no ``TRAIN_PROBLEM``.
    """
    if TRAIN_PROBLEM not in PROBLEMS:
        raise NotImplementedError(f"problem {TRAIN_PROBLEM!r} is not registered in this commit")
    try:
        training = bench_module("train")
    except ImportError as err:
        raise NotImplementedError(f"this commit has no training loop: {err}") from None
    chosen = [
        name for name in ESTIMATOR_NAMES
        if name in ESTIMATORS and ESTIMATORS[name].incompatibility(PROBLEMS[TRAIN_PROBLEM]) is None
        and ESTIMATORS[name].min_samples <= TRAIN_SAMPLES
    ]
    spec = training.make_spec(
        TRAIN_PROBLEM, ",".join(chosen) if smoke() else "all", steps=TRAIN_STEPS,
        eval_every=TRAIN_STEPS, lr=TRAIN_LR, n_samples=TRAIN_SAMPLES, variance_repeats=2, seed=SEED,
    )
    with tempfile.TemporaryDirectory() as out:
        table = training.run_training(spec, out, progress=False)
    final = table[(table["metric"] == TRAIN_METRIC) & (table["step"] == TRAIN_STEPS)]
    return dict(zip(final["estimator"], final["value"].astype(float), strict=True))


class Training:
    """Final test negative ELBO of a short training run on the default discrete VAE."""

    params = (ESTIMATOR_NAMES,)
    param_names = ("estimator",)
    timeout = SETUP_CACHE_TIMEOUT

    def setup_cache(self) -> dict[str, Any]:
        try:
            return {"final": train_final_metrics(), "reason": None}
        except NotImplementedError as err:
            return {"final": {}, "reason": str(err)}

    setup_cache.timeout = SETUP_CACHE_TIMEOUT

    def setup(self, cache: dict[str, Any], estimator: str) -> None:
        if cache["reason"] is not None:
            raise NotImplementedError(cache["reason"])
        if estimator not in cache["final"]:
            reason = None
            if estimator in ESTIMATORS:
                reason = ESTIMATORS[estimator].incompatibility(PROBLEMS[TRAIN_PROBLEM])
            raise NotImplementedError(reason or f"{estimator} did not train {TRAIN_PROBLEM}")
        if not math.isfinite(cache["final"][estimator]):
            raise FloatingPointError(f"{estimator}: non-finite final {TRAIN_METRIC}")

    def track_final_test_nelbo(self, cache: dict[str, Any], estimator: str) -> float:
        return cache["final"][estimator]

    track_final_test_nelbo.unit = "nats/image"
