"""The estimation kernel: every driver prepares, draws and steps an estimator through it.

Cells (``bench.cell.run``), ``bench train`` and the reproductions (``bench.training``),
``bench verify``, the asv suites (``benchmarks/``) and the statistical test helpers
(``tests/stats.py``) differ only in what they record:

* ``prepare``: set the estimator up for a problem at a point (its own parameters), warm it up
  from a cold state or from a training state (``Estimator.warm_up``) and freeze it;
* ``estimate_chunks``: R independent estimates at a point in bounded chunks ``[c, D]``, each
  repeat its own leaf copy of the parameters (``problems.base.repeat_params``), one surrogate
  and one backward pass per chunk; ``timed_chunks`` clocks them (CUDA synchronised), apart
  from whatever the caller does with each chunk; ``gradient_variance`` is their
  ``variance_trace``, the trace of the covariance;
* ``train_step``: one training step, ``next_batch``, ``before_step``, one estimate of every
  trained tensor and one optimizer step (the estimator's own parameters take theirs too);

Chunks of repeats keep memory bounded for any R: each takes what fits a budget, measured
(``measured_chunk_size``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import time
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor

from bench.cell.timing import live_bytes, synchronize
from estimators.base import Estimator, State, flatten
from problems.base import Params, Problem, repeat_params

#: the default memory budget of one chunk of repeats, 256 MiB (``--memory``)
CHUNK_BYTES = 2**28
#: the repeats of the two probe chunks that measure a chunk's footprint (``measured_chunk_size``)
PROBE_REPEATS = (2, 4)


#: allocations of this many bytes or more get their own mapping (``map_large_allocations``)
MMAP_THRESHOLD = 2**20


@functools.cache
def map_large_allocations() -> bool:
    """Serve allocations of ``MMAP_THRESHOLD`` bytes or more from their own memory mappings,
    returned to the system when freed (glibc's ``mallopt(M_MMAP_THRESHOLD)``, which also
    stops glibc from raising the threshold as large blocks are freed). Without it, a chunk's
    freed tensors stay in the heap, fragmented, and peak RSS climbs chunk after chunk to
    several budgets (measured: docs/sweeps.md, "Memory"). Once per process; returns whether
    the C library took it (False elsewhere than glibc)."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(-3, MMAP_THRESHOLD))  # -3: M_MMAP_THRESHOLD


def measured_chunk_size(
    problem: Problem,
    estimator: Estimator,
    point: Params,
    n_samples: int,
    n_repeats: int,
    state: State,
    memory: int = CHUNK_BYTES,
) -> int:
    """Repeats per chunk: the most (up to ``n_repeats``) whose measured footprint fits
    ``memory`` bytes, at least one.

    The footprint is measured, autograd's temporaries included: two probe chunks of
    c1 < c2 repeats (``PROBE_REPEATS``) record the live tensor bytes after every allocation
    and free (``bench.cell.timing.live_bytes``). The same operations run on tensors whose
    sizes are affine in c, so the k-th event leaves a_k + b_k c bytes live in both; the
    footprint of c repeats is max_k (a_k + b_k c) exactly, plus the previous chunk of
    estimates ``[c, D]``, which its consumer still holds while the next is drawn. Where the
    probes differ in their events (an estimator whose allocations depend on its draws), the
    footprint is bounded by c times the larger of the second probe's peak per repeat and the
    slope between the two peaks. The probes draw under a forked random state, so that the
    stream of the estimates is untouched; the chunking, and with it that stream, is a
    function of the configuration and the torch version alone: the same in every run.
    """
    c1, c2 = PROBE_REPEATS
    first, second = (_probe(problem, estimator, point, n_samples, state, c) for c in (c1, c2))
    held = sum(v.numel() * v.element_size() for v in point.values())  # a row of estimates
    if len(first) == len(second) and first:
        slopes = [(b - a) / (c2 - c1) for a, b in zip(first, second, strict=True)]
        lines = [(b - slope * c2, slope + held) for b, slope in zip(second, slopes, strict=True)]
    else:
        peak1, peak2 = max(first, default=0), max(second, default=0)
        lines = [(0.0, max(peak2 / c2, (peak2 - peak1) / (c2 - c1), 0.0) + held)]
    fits = [(memory - a) / b for a, b in lines if b > 0]
    if any(a > memory for a, b in lines if b <= 0):
        return 1
    return max(1, min(n_repeats, math.floor(min(fits, default=n_repeats))))


def _probe(
    problem: Problem, estimator: Estimator, point: Params, n_samples: int, state: State,
    size: int,
) -> list[int]:
    """Live bytes after each allocation event of one chunk of ``size`` repeats, drawn under
    a forked random state; then the chunk once more, unprofiled, so that the caches hold the
    step rather than the profiler's records when a caller's clock starts (on
    ``gan_continuous`` the first chunk after a probe took 10 to 15 % longer;
    docs/sweeps.md, "Harness overhead")."""
    device = next(iter(point.values())).device
    devices = [device] if device.type == "cuda" else []

    def step() -> None:
        grads, _ = one_estimate(
            problem, estimator, repeat_params(point, size), n_samples, expand_state(state, size)
        )
        flatten(grads).detach()

    with torch.random.fork_rng(devices=devices):
        events = live_bytes(step, device)
        step()
    return events


def expand_state(state: State, n_repeats: int) -> State:
    """Copy a one-repeat state ``[1, ...]`` to ``n_repeats`` repeats."""
    return {k: v.detach().expand(n_repeats, *v.shape[1:]).clone() for k, v in state.items()}


def prepare(
    problem: Problem,
    estimator: Estimator,
    point: Params,
    n_samples: int,
    state: State | None = None,
    *,
    setup: bool = True,
) -> tuple[State, float | None]:
    """Set the estimator up for ``problem`` at ``point`` (no repeat dimension), warm it up
    there from ``state`` and freeze it (``estimators.base``).

    Args:
        state: the state ``[1, ...]`` to warm up from: None for a cold start (a cell), the
            training state for a measurement mid-run (``bench.training``).
        setup: build the estimator's own parameters first; False keeps those it has (a copy
            of a training estimator).

    Returns:
        its state (one repeat, detached) and its last own loss.
    """
    if setup:
        estimator.setup(problem, point)
    state, own_loss = estimator.warm_up(problem, point, n_samples, state)
    estimator.freeze()
    return {k: v.detach() for k, v in state.items()}, own_loss


def warmed_state(problem: Problem, estimator: Estimator, point: Params, n_samples: int) -> State:
    """The estimator's state after ``prepare`` at ``point`` from a cold start (one repeat)."""
    return prepare(problem, estimator, point, n_samples)[0]


def one_estimate(
    problem: Problem, estimator: Estimator, params: Params, n_samples: int, state: State
) -> tuple[Params, State]:
    """Gradient estimates for leaf ``params`` ``[R, ...]``: returns grads shaped like params."""
    step = estimator.step(problem, params, n_samples, state, train=False)
    return step.grads, step.state


def estimate_chunks(
    problem: Problem,
    estimator: Estimator,
    point: Params,
    n_samples: int,
    n_repeats: int,
    state: State,
    chunk_size: int | None = None,
    memory: int = CHUNK_BYTES,
) -> Iterator[Tensor]:
    """``n_repeats`` independent estimates at ``point`` as an iterator of chunks ``[c, D]``;
    the chunk size is measured here, before the first chunk is drawn (so that a caller's
    clock on the chunks, ``TimedChunks``, does not count the probes).

    Args:
        point: the evaluation point, no repeat dimension.
        state: the estimator's state for one repeat (``[1, ...]``), copied to every repeat.
        chunk_size: repeats per chunk; default: as many as fit ``memory`` bytes
            (``measured_chunk_size``).
    """
    map_large_allocations()
    if chunk_size is None:
        chunk_size = measured_chunk_size(
            problem, estimator, point, n_samples, n_repeats, state, memory
        )
    return _chunks(problem, estimator, point, n_samples, n_repeats, state, chunk_size)


def _chunks(
    problem: Problem, estimator: Estimator, point: Params, n_samples: int, n_repeats: int,
    state: State, chunk_size: int,
) -> Iterator[Tensor]:
    for start in range(0, n_repeats, chunk_size):
        size = min(chunk_size, n_repeats - start)
        grads, _ = one_estimate(
            problem, estimator, repeat_params(point, size), n_samples, expand_state(state, size)
        )
        yield flatten(grads).detach()


def gradient_variance(
    problem: Problem,
    estimator: Estimator,
    point: Params,
    n_samples: int,
    n_repeats: int,
    state: State,
    memory: int = CHUNK_BYTES,
) -> float:
    """``variance_trace``: the trace of the covariance of the estimator at ``point``, the sum
    of the unbiased per-coordinate variances of ``n_repeats`` estimates (drawn in chunks that
    fit ``memory`` bytes)."""
    if n_repeats < 2:
        raise ValueError(f"n_repeats must be >= 2 to measure a variance, got {n_repeats}")
    chunks = estimate_chunks(problem, estimator, point, n_samples, n_repeats, state, memory=memory)
    total = torch.cat(list(chunks))
    variance = total.double().var(0, unbiased=True).sum().item()
    return variance if math.isfinite(variance) else math.nan


class TimedChunks:
    """Iterate over chunks of estimates, clocking only the drawing of each (``seconds``):
    the device is synchronised before and after each draw, so that what the caller does
    with a chunk (statistics) is not counted. ``clock`` is the wall clock unless a caller
    asks for another (``time.process_time``: CPU seconds, which a shared machine's other
    jobs do not inflate; ``benchmarks.bench_scale``)."""

    def __init__(
        self, chunks: Iterable[Tensor], device: torch.device,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.chunks, self.device, self.clock, self.seconds = iter(chunks), device, clock, 0.0

    def __iter__(self) -> Iterator[Tensor]:
        while True:
            synchronize(self.device)
            start = self.clock()
            chunk = next(self.chunks, None)
            synchronize(self.device)
            self.seconds += self.clock() - start
            if chunk is None:
                return
            yield chunk


def train_step(
    problem: Problem,
    estimator: Estimator,
    train: Params,
    optimizer: torch.optim.Optimizer,
    n_samples: int,
    state: State,
    step: int,
    generator: torch.Generator,
) -> tuple[State, float]:
    """One training step of the trained tensors ``train`` (leaves ``[1, *shape]``): the
    problem's minibatch of ``step`` (``next_batch``, drawn with ``generator``) and its own
    updates (``before_step``, e.g. a GAN critic's), one estimate from ``n_samples`` samples,
    one ``optimizer`` step; an estimator with parameters of its own takes one step of its own
    loss at the same estimate (``Estimator.backward``).

    Returns:
        the estimator's new state and the mean cost at its (hard) samples.
    """
    problem.next_batch(step, generator)
    problem.before_step({k: v[0].detach() for k, v in train.items()}, step, generator)
    out = estimator.surrogate(problem, train, n_samples, state)
    with torch.no_grad():
        cost = problem.cost(out.samples, train).mean().item()
    optimizer.zero_grad(set_to_none=True)
    if estimator.parameters():
        grads = estimator.backward(out, train).grads
        for tensor, grad in zip(train.values(), grads.values(), strict=True):
            tensor.grad = grad
    else:
        out.loss.sum().backward()
    optimizer.step()
    return {k: v.detach() for k, v in out.state.items()}, cost
