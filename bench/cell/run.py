"""Measure one cell: an estimator on a problem against the truth.

A cell takes its problem, evaluation point and truth from the sweep's shared instance
(``bench.cell.shared``: built once per process, the same for every estimator), draws R
independent gradient estimates with K samples each from its own seed (batched and chunked,
see ``bench.cell.estimate``), summarises them against the truth (``bench.cell.metrics``),
times one estimate as a training step would take it and measures its peak memory
(``bench.cell.timing``). ``measure_s`` (and ``estimates_per_s``) time the R estimates
alone; ``stats_s`` is the time spent on their statistics (accumulation, bootstrap,
intervals). A pair that does not fit is a ``skipped`` row with the reason; an exception
or a non-finite estimate is a ``failed`` row with the reason, so that the sweep
(``bench.sweep``) goes on.
"""

from __future__ import annotations

import json
import time
from typing import Any

import torch

from bench import env as environment
from bench.cell.estimate import TimedChunks, estimate_chunks, one_estimate, prepare
from bench.cell.metrics import Accumulator
from bench.cell.seeds import derive_seed
from bench.cell.shared import shared_problem
from bench.cell.spec import CellSpec
from bench.cell.timing import peak_memory_bytes, time_call
from bench.registry import estimator_class, problem_class
from bench.schema import DIAGNOSTICS
from estimators import Estimator
from estimators.base import flatten
from problems.base import Params, Problem, repeat_params


def cell_identity(spec: CellSpec, run_id: str) -> dict[str, Any]:
    """The key columns shared by a cell's row and its coordinate rows."""
    return {
        "cell_key": spec.key,
        "run_id": run_id,
        "problem": spec.problem,
        "problem_options": json.dumps(dict(spec.problem_options), sort_keys=True),
        "estimator": spec.estimator,
        "estimator_options": json.dumps(dict(spec.estimator_options), sort_keys=True),
        "n_samples": spec.n_samples,
        "n_repeats": spec.n_repeats,
        "seed": spec.seed,
        "device": spec.device,
        "dtype": spec.dtype,
    }


def skip_reason(
    spec: CellSpec, problem: type[Problem], estimator: type[Estimator]
) -> str | None:
    """Why the cell's pair cannot run (see ``Estimator.incompatibility`` and
    ``Estimator.options_incompatibility``), or None."""
    reason = (estimator.incompatibility(problem, dict(spec.problem_options))
              or estimator.options_incompatibility(problem, dict(spec.problem_options),
                                                   dict(spec.estimator_options)))
    return reason if reason is not None else estimator.sample_rule(spec.n_samples)


def base_row(spec: CellSpec, run_id: str, env: dict[str, Any]) -> dict[str, Any]:
    """The columns every row of a cell has, whatever its status."""
    return cell_identity(spec, run_id) | env | {
        "created_utc": environment.utc_now(),
        "unbiased": estimator_class(spec.estimator).unbiased,
    }


def failed_row(
    spec: CellSpec, run_id: str, env: dict[str, Any], reason: str, cell_s: float
) -> dict[str, Any]:
    """The row of a cell that failed outside ``run_cell`` (a timeout, a dead worker)."""
    return base_row(spec, run_id, env) | {"status": "failed", "reason": reason, "cell_s": cell_s}


def run_cell(
    spec: CellSpec, run_id: str = "adhoc", env: dict[str, Any] | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Measure one cell; never raises for a problem inside the cell.

    Returns:
        the cells.parquet row and the cell's coords.parquet rows.
    """
    started = time.perf_counter()
    identity = cell_identity(spec, run_id)
    row = base_row(spec, run_id, env or environment.environment(spec.device))
    coords: list[dict[str, Any]] = []
    problem_cls, estimator_cls = problem_class(spec.problem), estimator_class(spec.estimator)
    reason = skip_reason(spec, problem_cls, estimator_cls)
    if reason is not None:
        row |= {"status": "skipped", "reason": reason}
    else:
        try:
            measured, coords = _measure(spec, estimator_cls)
            row |= measured
        except Exception as err:  # one bad cell must not stop the sweep
            row |= {"status": "failed", "reason": f"{type(err).__name__}: {err}"}
            coords = []
    row["cell_s"] = time.perf_counter() - started
    return row, [identity | c for c in coords]


def _measure(
    spec: CellSpec, estimator_cls: type[Estimator]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    device = torch.device(spec.device)
    # the problem, its point and its truth are the sweep's, not the cell's (bench.cell.shared)
    shared = shared_problem(spec)
    problem, truth = shared.problem, shared.truth(spec.n_samples)
    point = {k: v.clone() for k, v in shared.point.items()}
    estimator = estimator_cls(dict(spec.estimator_options))
    torch.manual_seed(spec.cell_seed)
    state, own_loss = prepare(problem, estimator, point, spec.n_samples)
    dim = sum(v.numel() for v in point.values())
    accumulator = Accumulator(
        dim,
        truth=None if truth is None else flatten(truth.grad, repeated=False),
        truth_se=None if truth is None or truth.se is None else flatten(truth.se, repeated=False),
        n_bootstrap=spec.n_bootstrap,
        seed=derive_seed("bootstrap", spec.cell_seed),  # independent of the sampling stream
        n_repeats=spec.n_repeats,
    )
    # estimation and statistics are timed apart: estimates_per_s is the estimation alone
    chunks = TimedChunks(
        estimate_chunks(problem, estimator, point, spec.n_samples, spec.n_repeats, state,
                        memory=spec.memory),
        device,
    )
    stats_s = accumulate(accumulator, chunks)
    result: dict[str, Any] = {
        "truth": "none" if truth is None else truth.kind,
        # a reference truth estimated by this very estimator is no check of it
        "reason": problem.truth_of(problem.option_values, spec.n_samples).self_reference(
            spec.estimator),
        "grad_dim": dim,
        "n_finite": accumulator.n,
        "measure_s": chunks.seconds,
        "estimates_per_s": spec.n_repeats / chunks.seconds,
        "cost_evals": estimator.cost_evals(spec.n_samples, problem),
        "warmup_steps": estimator.warmup_steps(),
        "estimator_loss": own_loss,
    }
    if accumulator.n_nonfinite:
        raise FloatingPointError(
            f"non-finite gradient estimate in {accumulator.n_nonfinite} of {spec.n_repeats} repeats"
        )
    start = time.perf_counter()
    summary = accumulator.summary()
    stats_s += time.perf_counter() - start
    result |= summary.scalars | {
        "n_bootstrap": accumulator.n_bootstrap, "stats_s": stats_s, "status": "ok"
    }
    result |= _step_cost(problem, estimator, point, spec.n_samples, state, device)
    result |= _diagnostics(problem, point)
    return result, _coordinates(point, truth, summary)


def accumulate(accumulator: Accumulator, chunks: TimedChunks) -> float:
    """Stream ``chunks`` into ``accumulator``; returns the seconds the statistics took (the
    drawing is ``chunks.seconds``): how a cell and the asv suites time a measurement."""
    stats_s = 0.0
    for chunk in chunks:
        start = time.perf_counter()
        accumulator.add(chunk)
        stats_s += time.perf_counter() - start
    start = time.perf_counter()
    accumulator.close()
    return stats_s + time.perf_counter() - start


def _step_cost(
    problem: Problem, estimator: Estimator, point: Params, n_samples: int, state: dict,
    device: torch.device,
) -> dict[str, Any]:
    """Time and peak memory of one estimate, as a training step takes it."""
    params = repeat_params(point, 1)
    step_state = dict(state)

    def step() -> None:
        nonlocal step_state
        _, step_state = one_estimate(problem, estimator, params, n_samples, step_state)

    timing = time_call(step, device)
    return {
        "time_per_estimate_s": timing.median_s,
        "time_iqr_s": timing.iqr_s,
        "time_n": timing.n,
        "peak_memory_bytes": peak_memory_bytes(step, device),
    }


def _diagnostics(problem: Problem, point: Params) -> dict[str, float]:
    diagnostics = problem.diagnostics(point)
    unknown = sorted(set(diagnostics) - {name for name, _ in DIAGNOSTICS})
    if unknown:
        raise KeyError(f"{problem.name} reports diagnostics not in bench.schema: {unknown}")
    return diagnostics


def _coordinates(point: Params, truth, summary) -> list[dict[str, Any]]:
    rows, offset = [], 0
    true = None if truth is None else flatten(truth.grad, repeated=False).double().cpu().numpy()
    for name, value in point.items():
        for index in range(value.numel()):
            j = offset + index
            rows.append({
                "param": name,
                "index": index,
                "mean": float(summary.mean[j]),
                "variance": float(summary.variance[j]),
                "true": None if true is None else float(true[j]),
                "bias_z": None if summary.bias_z is None else float(summary.bias_z[j]),
            })
        offset += value.numel()
    return rows
