"""Run a sweep: validate it, resume its run directory, run its cells on an executor.

``run_sweep`` expands a sweep into cells (``bench.sweep.spec``), checks everything before
anything is written, skips the cells already finished in the run directory, runs the rest on
an executor (``bench.sweep.executors``: in-process, a process pool or Ray) and writes each
cell atomically as soon as it completes (``bench.sweep.store``), so an interrupted sweep
resumes where it stopped. docs/sweeps.md describes resuming and failures.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from bench import env as environment
from bench.cell.spec import CellSpec
from bench.config import DTYPES, names, parse_setting
from bench.sweep.executors import ExecutorConfig, make_executor
from bench.sweep.plugins import load_plugins
from bench.sweep.spec import SweepSpec, expand
from bench.sweep.store import CODE_COLUMNS, RunStore, StoredCell, default_out
from problems import get_problem


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
            (``bench.sweep.executors.ExecutorConfig``).
        plugins: modules with extra problems and estimators (``bench.sweep.plugins``).
        allow_code_change: resume a run directory whose cells other code made.

    Raises:
        ValueError: for any invalid name or value, before any work starts.
    """
    plugins = tuple(plugins)
    load_plugins(plugins)
    if settings is None:
        pairs: tuple = ()
    elif isinstance(settings, dict):
        pairs = tuple((k, tuple(str(v) for v in vs)) for k, vs in settings.items())
    else:
        pairs = tuple(parse_setting(s) for s in settings)
    sweep = SweepSpec(
        estimators=names(estimators),
        problems=names(problems),
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
