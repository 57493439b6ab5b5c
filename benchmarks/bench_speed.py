"""Speed and peak memory of gradient estimation, per estimator and problem, and of the
harness's statistics.

``time_`` benchmarks read the wall clock (``time.perf_counter``; asv's default timer counts
process time, which misses GPU work and waits) and synchronise CUDA before returning, so a
reading covers the queued kernels. ``peakmem_`` benchmarks are asv's peak resident memory
of the process during the call (the baseline includes the imported libraries).
"""

from __future__ import annotations

import inspect
import time

from benchmarks.common import (
    ESTIMATOR_NAMES,
    N_SAMPLES,
    PROBLEM_NAMES,
    VARIANCE_REPEATS,
    bench_module,
    device,
    estimate,
    make_pair,
    smoke,
    synchronize,
)
from estimators import ESTIMATORS
from problems import PROBLEMS
from problems.base import repeat_params

metrics = bench_module("metrics")
cell_run = bench_module("run")  # bench.cell.run

#: the configuration of issue 14's throughput target: bernoulli_toy d = 200, reinforce_loo,
#: R = 20000 (2000 in smoke mode, which only checks that the suite runs: one chunk either
#: way; its eight runs under asv --quick took about 30 s at R = 20000)
THROUGHPUT_D, THROUGHPUT_K = 200, 2
THROUGHPUT_R = 2_000 if smoke() else 20_000


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


class CellThroughput:
    """A cell's measurement as ``bench run`` makes it: R = 20000 estimates of reinforce_loo
    with K = 2 on bernoulli_toy d = 200, in chunks, with their statistics (accumulation,
    ``--bootstrap`` replicates, intervals). ``time_`` is the whole; ``track_statistics_share``
    is the statistics' time over the estimation's, a ratio that other load on the machine
    changes less than either time."""

    params = ([0, 1000],)
    param_names = ("bootstrap",)
    timer = time.perf_counter
    number = 1
    repeat = (1, 5, 20.0)
    unit = "statistics s / estimation s"

    def setup(self, bootstrap: int) -> None:
        self.device = device()
        self.problem = PROBLEMS["bernoulli_toy"]({"d": THROUGHPUT_D}, device=self.device)
        self.estimator = ESTIMATORS["reinforce_loo"]()
        self.point = {k: v.detach() for k, v in self.problem.init_params().items()}
        self.state = estimate.warmed_state(self.problem, self.estimator, self.point, THROUGHPUT_K)
        truth = self.problem.truth(self.point).grad
        self.truth = estimate.flatten(truth, repeated=False)

    def _measure(self, bootstrap: int) -> tuple[float, float]:
        options = {}
        if "n_repeats" in inspect.signature(metrics.Accumulator).parameters:
            options["n_repeats"] = THROUGHPUT_R
        accumulator = metrics.Accumulator(THROUGHPUT_D, self.truth, None, bootstrap, 0, **options)
        chunks = estimate.TimedChunks(estimate.estimate_chunks(
            self.problem, self.estimator, self.point, THROUGHPUT_K, THROUGHPUT_R, self.state
        ), self.device)
        statistics = cell_run.accumulate(accumulator, chunks)
        start = time.perf_counter()
        accumulator.summary()
        return chunks.seconds, statistics + time.perf_counter() - start

    def time_estimates_with_statistics(self, bootstrap: int) -> None:
        self._measure(bootstrap)

    def track_statistics_share(self, bootstrap: int) -> float:
        shares = sorted(s / e for e, s in (self._measure(bootstrap) for _ in range(3)))
        return shares[1]
