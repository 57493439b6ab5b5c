"""Memory and harness overhead at scale: a cell's peak memory at d = 200 and R = 10^6, and
the harness's time per estimate against the estimator's own batched step on the VAEs and
GAN critics.

``HarnessOverhead.track_overhead_ratio`` is the time per estimate of the estimator's own
batched step on all R repeats at once (one surrogate over ``[K, R]`` samples and one
backward pass: ``one_estimate`` on ``[R, ...]`` leaves, nothing else) over the time per
estimate of a cell's estimation (``estimate_chunks`` in its measured chunks, clocked by
``TimedChunks``, as ``bench.cell.run`` takes ``measure_s``): 1 is no overhead; the goal is
>= 0.9. Run as a script (``python -m benchmarks.bench_scale``) it prints the table of
docs/sweeps.md ("Harness overhead"): median and quartiles of the ratio over several runs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from benchmarks.common import (
    ESTIMATOR_NAMES,
    N_SAMPLES,
    bench_module,
    device,
    make_pair,
    smoke,
    synchronize,
)
from estimators import ESTIMATORS
from problems import PROBLEMS
from problems.base import repeat_params

estimate = bench_module("estimate")
metrics = bench_module("metrics")

#: the memory benchmark's cell: bernoulli_toy d = 200, reinforce_loo, K = 2 (issue 27)
MEMORY_D, MEMORY_K = 200, 2
#: its R: 10^6 (2 x 10^4 in smoke mode, where the suite must take about a minute)
MEMORY_R = 20_000 if smoke() else 1_000_000
#: the problems of the overhead suite (bernoulli_vae alone in smoke mode)
OVERHEAD_PROBLEMS = ["bernoulli_vae"] if smoke() else [
    "bernoulli_vae", "categorical_vae", "gan_continuous"]
#: repeats of one overhead measurement: one chunk for every estimator on these problems
OVERHEAD_R = 200
#: timed runs of each side, alternating, per ratio
OVERHEAD_RUNS = 5


class CellMemory:
    """Peak resident memory of a cell's estimation with its statistics (``--bootstrap 0``)
    at d = 200 and R = 10^6: flat in R, near the imports' base plus the chunk budget
    (docs/sweeps.md, "Memory")."""

    timer = time.perf_counter
    number = 1
    repeat = 1

    def setup(self) -> None:
        self.device = device()
        self.problem = PROBLEMS["bernoulli_toy"]({"d": MEMORY_D}, device=self.device)
        self.estimator = ESTIMATORS["reinforce_loo"]()
        self.point = {k: v.detach() for k, v in self.problem.init_params().items()}
        self.state = estimate.warmed_state(self.problem, self.estimator, self.point, MEMORY_K)

    def peakmem_cell_d200_r1e6(self) -> None:
        accumulator = metrics.Accumulator(MEMORY_D, None, None, 0, 0, n_repeats=MEMORY_R)
        for chunk in estimate.estimate_chunks(
            self.problem, self.estimator, self.point, MEMORY_K, MEMORY_R, self.state
        ):
            accumulator.add(chunk)
        accumulator.summary()


def overhead_times(
    pair, n_repeats: int, runs: int, clock: Callable[[], float] | None = None
) -> tuple[list[float], list[float]]:
    """Seconds per estimate of the batched step and of the cell's estimation, ``runs`` each,
    alternating (so that a change of load hits both alike), on ``clock`` (default: the wall
    clock; ``time.process_time`` for CPU seconds, which other jobs on a shared machine do
    not inflate)."""
    problem, estimator, point, state = pair.problem, pair.estimator, pair.point, pair.state
    dev = problem.device
    timer = clock or time.perf_counter
    batched, cell = [], []
    for _ in range(runs):
        params = repeat_params(point, n_repeats)
        states = estimate.expand_state(state, n_repeats)
        synchronize(dev)
        start = timer()
        estimate.one_estimate(problem, estimator, params, N_SAMPLES, states)
        synchronize(dev)
        batched.append((timer() - start) / n_repeats)
        drawn = estimate.estimate_chunks(problem, estimator, point, N_SAMPLES, n_repeats, state)
        # a commit before TimedChunks took a clock is timed on the wall clock alone
        chunks = (estimate.TimedChunks(drawn, dev) if clock is None
                  else estimate.TimedChunks(drawn, dev, clock=clock))
        for _ in chunks:
            pass
        cell.append(chunks.seconds / n_repeats)
    return batched, cell


class HarnessOverhead:
    """The harness's estimation against the estimator's own batched step, on the VAEs and
    the GAN critic (module docstring)."""

    params = (ESTIMATOR_NAMES, OVERHEAD_PROBLEMS)
    param_names = ("estimator", "problem")
    timer = time.perf_counter
    number = 1
    repeat = 1
    unit = "batched s / cell s per estimate"

    def setup(self, estimator: str, problem: str) -> None:
        self.pair = make_pair(estimator, problem, device())

    def track_overhead_ratio(self, estimator: str, problem: str) -> float:
        batched, cell = overhead_times(self.pair, OVERHEAD_R, OVERHEAD_RUNS)
        return statistics.median(batched) / statistics.median(cell)


def main() -> None:
    """Print the overhead table of docs/sweeps.md: ratio median [quartiles] per pair."""
    parser = argparse.ArgumentParser(description="harness overhead table")
    parser.add_argument("--runs", type=int, default=7, help="ratios per pair (median)")
    parser.add_argument("--repeats", type=int, default=OVERHEAD_R, help="R per measurement")
    parser.add_argument("--problems", default=",".join(OVERHEAD_PROBLEMS), help="problems")
    parser.add_argument("--no-header", action="store_true", help="rows only (to append)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="cpu: process CPU seconds (steady on a shared machine); wall")
    args = parser.parse_args()
    clock = time.process_time if args.clock == "cpu" else None
    torch.set_num_threads(1)
    if not args.no_header:
        print("| problem | estimator | batched ms / estimate | cell ms / estimate | ratio "
              "median [quartiles] |")
        print("|---|---|---:|---:|---|")
    for problem in args.problems.split(","):
        for name in ESTIMATOR_NAMES:
            try:
                pair = make_pair(name, problem, device())
            except NotImplementedError:
                continue
            overhead_times(pair, args.repeats, 1, clock)  # warm-up
            batched, cell = overhead_times(pair, args.repeats, args.runs, clock)
            ratios = [b / c for b, c in zip(batched, cell, strict=True)]
            q1, _, q3 = statistics.quantiles(ratios, n=4)
            print(f"| {problem} | {name} | {1e3 * statistics.median(batched):.3f} | "
                  f"{1e3 * statistics.median(cell):.3f} | {statistics.median(ratios):.2f} "
                  f"[{q1:.2f}, {q3:.2f}] |", flush=True)


if __name__ == "__main__":
    main()
