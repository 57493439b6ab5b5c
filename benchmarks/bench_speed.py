"""Speed and peak memory of gradient estimation, per estimator and problem.

``time_`` benchmarks read the wall clock (``time.perf_counter``; asv's default timer counts
process time, which misses GPU work and waits) and synchronise CUDA before returning, so a
reading covers the queued kernels. ``peakmem_`` benchmarks are asv's peak resident memory
of the process during the call (the baseline includes the imported libraries).
"""

from __future__ import annotations

import time

from benchmarks.common import (
    ESTIMATOR_NAMES,
    N_SAMPLES,
    PROBLEM_NAMES,
    VARIANCE_REPEATS,
    device,
    estimate,
    make_pair,
    synchronize,
)
from problems.base import repeat_params


class OneEstimate:
    """One gradient estimate with K samples, as a training step takes it."""

    params = (ESTIMATOR_NAMES, PROBLEM_NAMES)
    param_names = ("estimator", "problem")
    timer = time.perf_counter

    def setup(self, estimator: str, problem: str) -> None:
        self.device = device()
        self.pair = make_pair(estimator, problem, self.device)
        self.params_r1 = repeat_params(self.pair.point, 1)  # [1, ...]

    def _estimate(self) -> None:
        estimate.one_estimate(
            self.pair.problem, self.pair.estimator, self.params_r1, N_SAMPLES, self.pair.state
        )
        synchronize(self.device)

    def time_estimate(self, estimator: str, problem: str) -> None:
        self._estimate()

    def peakmem_estimate(self, estimator: str, problem: str) -> None:
        self._estimate()


class VarianceMeasurement:
    """The harness's batched variance measurement: R estimates in chunks, their variance."""

    params = (ESTIMATOR_NAMES, PROBLEM_NAMES)
    param_names = ("estimator", "problem")
    timer = time.perf_counter
    # one measurement takes long enough that a single call per sample is accurate
    number = 1
    repeat = (1, 5, 10.0)

    def setup(self, estimator: str, problem: str) -> None:
        self.device = device()
        self.pair = make_pair(estimator, problem, self.device)

    def _measure(self) -> None:
        p = self.pair
        estimate.gradient_variance(
            p.problem, p.estimator, p.point, N_SAMPLES, VARIANCE_REPEATS, p.state
        )
        synchronize(self.device)

    def time_variance(self, estimator: str, problem: str) -> None:
        self._measure()

    def peakmem_variance(self, estimator: str, problem: str) -> None:
        self._measure()
