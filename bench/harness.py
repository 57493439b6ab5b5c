"""Running cells: measure an estimator on a problem against the truth, and sweeps of cells.

A cell draws R independent gradient estimates with K samples each (batched and chunked,
see ``bench.estimate``), summarises them against the truth (``bench.metrics``), times one
estimate as a training step would take it and measures its peak memory
(``bench.timing``). A pair that does not fit is a ``skipped`` row with the reason; an
exception or a non-finite estimate is a ``failed`` row with the reason, and the sweep goes
on. Cells run on an executor (``bench.executors``: in-process, a process pool or Ray) and
each is written atomically as soon as it completes (``bench.store``), so an interrupted
sweep resumes where it stopped. docs/sweeps.md describes resuming and failures.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from bench import env as environment
from bench.estimate import estimate_chunks, one_estimate, warmed_state
from bench.metrics import Accumulator
from bench.plugins import load_plugins
from bench.schema import DIAGNOSTICS
from bench.spec import DTYPES, CellSpec, SweepSpec, expand, parse_setting
from bench.store import CODE_COLUMNS, RunStore, StoredCell
from bench.timing import peak_memory_bytes, synchronize, time_call
from bench.truth import cell_truth
from estimators import get_estimator
from problems import get_problem
from problems.base import Params, repeat_params


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


def skip_reason(spec: CellSpec) -> str | None:
    estimator = get_estimator(spec.estimator)
    reason = estimator.incompatibility(get_problem(spec.problem))
    if reason is None and spec.n_samples < estimator.min_samples:
        reason = f"{spec.estimator} needs K >= {estimator.min_samples}, got K={spec.n_samples}"
    return reason


def base_row(spec: CellSpec, run_id: str, env: dict[str, Any]) -> dict[str, Any]:
    """The columns every row of a cell has, whatever its status."""
    return cell_identity(spec, run_id) | env | {
        "created_utc": environment.utc_now(),
        "unbiased": get_estimator(spec.estimator).unbiased,
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
    reason = skip_reason(spec)
    if reason is not None:
        row |= {"status": "skipped", "reason": reason}
    else:
        try:
            measured, coords = _measure(spec)
            row |= measured
        except Exception as err:  # one bad cell must not stop the sweep
            row |= {"status": "failed", "reason": f"{type(err).__name__}: {err}"}
            coords = []
    row["cell_s"] = time.perf_counter() - started
    return row, [identity | c for c in coords]


def _measure(spec: CellSpec) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    device = torch.device(spec.device)
    # seed before construction too: a problem may draw its data or weights from torch's
    # global generator, and a cell must not depend on what ran before it in the process
    torch.manual_seed(spec.cell_seed)
    problem = get_problem(spec.problem)(
        dict(spec.problem_options), device=device, dtype=DTYPES[spec.dtype]
    )
    estimator = get_estimator(spec.estimator)(dict(spec.estimator_options))
    torch.manual_seed(spec.cell_seed)
    point = {k: v.detach() for k, v in problem.init_params().items()}
    truth = cell_truth(problem, point, spec.cell_seed)
    state = warmed_state(problem, estimator, point, spec.n_samples)
    dim = sum(v.numel() for v in point.values())
    accumulator = Accumulator(
        dim,
        truth=None if truth is None else _flat(truth.grad),
        truth_se=None if truth is None or truth.se is None else _flat(truth.se),
        n_bootstrap=spec.n_bootstrap,
        seed=spec.cell_seed,
    )
    synchronize(device)
    start = time.perf_counter()
    for chunk in estimate_chunks(problem, estimator, point, spec.n_samples, spec.n_repeats, state):
        accumulator.add(chunk)
    synchronize(device)
    measure_s = time.perf_counter() - start
    result: dict[str, Any] = {
        "truth": "none" if truth is None else truth.kind,
        "grad_dim": dim,
        "n_finite": accumulator.n,
        "measure_s": measure_s,
        "estimates_per_s": spec.n_repeats / measure_s,
    }
    if accumulator.n_nonfinite:
        raise FloatingPointError(
            f"non-finite gradient estimate in {accumulator.n_nonfinite} of {spec.n_repeats} repeats"
        )
    summary = accumulator.summary()
    result |= summary.scalars | {"n_bootstrap": accumulator.n_bootstrap, "status": "ok"}

    params = repeat_params(point, 1)
    step_state = dict(state)

    def step() -> None:
        nonlocal step_state
        _, step_state = one_estimate(problem, estimator, params, spec.n_samples, step_state)

    timing = time_call(step, device)
    result |= {
        "time_per_estimate_s": timing.median_s,
        "time_iqr_s": timing.iqr_s,
        "time_n": timing.n,
        "peak_memory_bytes": peak_memory_bytes(step, device),
    }
    diagnostics = problem.diagnostics(point)
    unknown = sorted(set(diagnostics) - {name for name, _ in DIAGNOSTICS})
    if unknown:
        raise KeyError(f"{problem.name} reports diagnostics not in bench.schema: {unknown}")
    result |= diagnostics
    return result, _coordinates(point, truth, summary)


def _flat(tensors: Params) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors.values()])


def _coordinates(point: Params, truth, summary) -> list[dict[str, Any]]:
    rows, offset = [], 0
    true = None if truth is None else _flat(truth.grad).double().cpu().numpy()
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


def _names(value: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(value)


def default_out(kind: str = "run") -> Path:
    """``results/<kind>-<local time>``, the default run directory."""
    return Path("results") / time.strftime(f"{kind}-%Y%m%d-%H%M%S")


def check_constructible(cells: Sequence[CellSpec]) -> None:
    """Construct every distinct problem of a sweep once, on the CPU, before any work starts.

    Options are checked one by one when the sweep is expanded; what only construction can
    check (a data file that is missing or malformed, options that contradict each other)
    is checked here, so that bad input is refused before anything is written.

    Raises:
        ValueError: naming the problem, with the first line of the problem's own message
            (which names the value at fault).
    """
    seen: set[tuple] = set()
    for spec in cells:
        ident = (spec.problem, spec.problem_options, spec.dtype)
        if ident in seen:
            continue
        seen.add(ident)
        try:
            get_problem(spec.problem)(
                dict(spec.problem_options), device="cpu", dtype=DTYPES[spec.dtype]
            )
        except (ValueError, OSError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ValueError(f"problem {spec.problem!r}: {first}") from None


def code_version(env: dict[str, Any]) -> dict[str, Any]:
    """What decides the numbers a cell gives besides its configuration (``CODE_COLUMNS``)."""
    return {name: env[name] for name in CODE_COLUMNS}


def check_resume(
    root: Path,
    cells: Sequence[CellSpec],
    stored: dict[str, StoredCell],
    code: dict[str, Any],
    allow_code_change: bool,
) -> None:
    """Refuse to resume a run directory whose cells were made differently (docs/sweeps.md).

    Two rules. (1) A stored cell with a planned cell's key must hold the same canonical
    configuration: the key is a hash of it, so a difference means a hash collision or a
    change in how configurations are written, and the stored numbers would be reported
    under the wrong configuration. (2) Every stored cell must have been made by the same
    code (``CODE_COLUMNS``) as this invocation, unless ``allow_code_change``: a fixed bug
    or a new torch changes the numbers without changing any key.

    Raises:
        ValueError: naming the cell or the versions, and what to do instead.
    """
    for spec in cells:
        old = stored.get(spec.key)
        if old is not None and old.config is not None and old.config != spec.config_text():
            raise ValueError(
                f"--out {root}: cell {spec.key} was made with configuration {old.config}, but "
                f"this sweep gives {spec.config_text()} for the same key; use a new --out"
            )
    if allow_code_change:
        return
    others = sorted({old.code for old in stored.values()} - {tuple(code.items())})
    if others:
        made = "; ".join(", ".join(f"{k}={v}" for k, v in other) for other in others)
        now = ", ".join(f"{k}={v}" for k, v in code.items())
        raise ValueError(
            f"--out {root} holds cells made by other code ({made}) than this run ({now}); "
            "use a new --out, or pass --allow-code-change to add cells made by this code "
            "(every row records its git_commit)"
        )


def run_sweep(
    estimators: str | Sequence[str] = "all",
    problems: str | Sequence[str] = "all",
    samples: Sequence[int] = (10,),
    repeats: int = 1000,
    settings: dict[str, Sequence[Any]] | Sequence[str] | None = None,
    *,
    seed: int = 0,
    device: str = "cpu",
    dtype: str = "float32",
    bootstrap: int = 1000,
    out: str | Path | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    command: Sequence[str] | None = None,
    executor: str = "local",
    workers: int | None = None,
    threads: int | None = None,
    ray_address: str | None = None,
    cell_timeout: float | None = None,
    plugins: Sequence[str] = (),
    allow_code_change: bool = False,
) -> pd.DataFrame:
    """Run a sweep and return its cells as a DataFrame (the rows of ``cells.parquet``).

    Everything is validated before anything is written: names, values, problem
    construction (data files), the device, the executor and the run directory, including
    whether its finished cells may be resumed (``check_resume``).

    Args:
        estimators, problems: ``"all"``, ``"a,b"`` or a list of registry names.
        samples: the K values (samples per estimate).
        repeats: R, independent estimates per cell.
        settings: swept options, ``{"tau": [0.5, 1]}`` or ``["tau=0.5,1"]``; every
            combination becomes a cell for each problem and estimator that has the option.
        out: the run directory; finished cells already in it are not recomputed.
        retry_failed: re-run cells that failed in an earlier invocation.
        executor, workers, threads, ray_address, cell_timeout: where and how cells run
            (``bench.executors.ExecutorConfig``).
        plugins: modules with extra problems and estimators (``bench.plugins``).
        allow_code_change: resume a run directory whose cells other code made.

    Raises:
        ValueError: for any invalid name or value, before any work starts.
    """
    from bench.executors import ExecutorConfig, make_executor  # they import run_cell from here

    plugins = tuple(plugins)
    load_plugins(plugins)
    if settings is None:
        pairs: tuple = ()
    elif isinstance(settings, dict):
        pairs = tuple((k, tuple(str(v) for v in vs)) for k, vs in settings.items())
    else:
        pairs = tuple(parse_setting(s) for s in settings)
    sweep = SweepSpec(
        estimators=_names(estimators),
        problems=_names(problems),
        samples=tuple(int(k) for k in samples),
        repeats=int(repeats),
        seed=int(seed),
        device=device,
        dtype=dtype,
        n_bootstrap=int(bootstrap),
        settings=pairs,
    )
    cells = expand(sweep)
    config = ExecutorConfig(
        kind=executor,
        workers=workers,
        threads=threads,
        ray_address=ray_address,
        cell_timeout=cell_timeout,
        plugins=plugins,
    )
    config.validate()
    if executor != "ray":  # a Ray driver need not have the cluster's GPUs
        environment.check_device(device)
    check_constructible(cells)
    store = RunStore(out if out is not None else default_out())
    store.check_readable()
    store.check_writable()
    stored = store.stored()
    env = environment.environment(device if executor != "ray" else "cpu")
    check_resume(store.root, cells, stored, code_version(env), allow_code_change)
    todo = [
        c for c in cells
        if c.key not in stored or (retry_failed and stored[c.key].status == "failed")
    ]
    by_key = {c.key: c for c in todo}
    run_id = store.root.name
    with make_executor(config, device, run_id) as runner:
        if todo:
            runner.open()
        store.record_invocation({
            "command": list(command) if command is not None else None,
            "created_utc": environment.utc_now(),
            "sweep": {k: v for k, v in sweep.__dict__.items()},
            "executor": config.describe(),
            "cells": len(cells),
            "already_finished": len(cells) - len(todo),
            "environment": env,
        })
        bar = tqdm(total=len(todo), disable=not progress, file=sys.stderr, unit="cell",
                   dynamic_ncols=True)
        for row, coords in runner.run(todo):
            spec = by_key[row["cell_key"]]
            store.write_cell(row, coords, spec.config_text())
            bar.set_description(spec.label())
            bar.update()
        bar.close()
    table = store.consolidate()
    order = {c.key: i for i, c in enumerate(cells)}
    mine = table[table["cell_key"].isin(order)]
    return mine.sort_values("cell_key", key=lambda keys: keys.map(order)).reset_index(drop=True)
