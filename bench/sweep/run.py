"""Run a sweep: validate it, resume its run directory, run its cells on an executor.

``run_sweep`` expands a sweep into cells (``bench.sweep.spec``), checks everything before
anything is written, skips the cells already finished in the run directory, runs the rest on
an executor (``bench.sweep.executors``: in-process, a process pool or Ray) and writes each
cell atomically as soon as it completes (``bench.sweep.store``), so an interrupted sweep
resumes where it stopped.

Several invocations may work in one run directory at once: each claims a cell just before
it starts it and skips cells that another live invocation has claimed, then waits for
those at the end (``bench.sweep.invocation.Invocation``). A cell left claimed by an invocation
that died while running it in its own process (a segfault or the out-of-memory killer
ending ``--executor local``) runs next time in a child process of its own, so that if it
kills that one too it becomes a failed row instead of ending every later invocation.
docs/sweeps.md describes resuming and failures.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from bench import env as environment
from bench.cell.spec import CellSpec
from bench.config import DEFAULT_MEMORY, DTYPES, names, parse_setting
from bench.registry import Registry, current_registry, problem_class, use_registry
from bench.sweep.executors import Executor, ExecutorConfig, isolated_executor, make_executor
from bench.sweep.invocation import Invocation
from bench.sweep.plugins import load_plugins
from bench.sweep.spec import SweepSpec, expand
from bench.sweep.store import CODE_COLUMNS, RunStore, StoredCell, default_out

#: seconds between looks at cells that another invocation is computing
POLL_S = 0.5


def check_constructible(cells: Sequence[CellSpec]) -> None:
    """Construct every distinct problem of a sweep once, on the CPU, before any work starts,
    without its expensive work (``Problem.validation_options``: no pretraining; a GAN's
    critic is trained on first use anyway).

    Options are checked one by one when the sweep is expanded; what only construction can
    check (a data file that is missing or malformed, options that contradict each other)
    is checked here, so that bad input is refused before anything is written. The problem
    a cell measures is built again inside the cell (``bench.cell.shared``), under its
    timeout.

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
            cls = problem_class(spec.problem)
            cls(cls.validation_options(dict(spec.problem_options)), device="cpu",
                dtype=DTYPES[spec.dtype])
        except (ValueError, OSError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ValueError(f"problem {spec.problem!r}: {first}") from None
        except Exception:  # not bad input but a broken problem: its cells fail with the reason
            continue


def by_problem(cells: Sequence[CellSpec]) -> list[CellSpec]:
    """``cells`` with those of one problem configuration together, problems in order of first
    appearance, so that a process builds each problem once (``bench.cell.shared`` keeps a
    few at a time)."""
    first: dict[tuple, int] = {}
    for spec in cells:
        first.setdefault(_problem_ident(spec), len(first))
    return sorted(cells, key=lambda spec: first[_problem_ident(spec)])


def _problem_ident(spec: CellSpec) -> tuple:
    return spec.problem, spec.problem_options, spec.device, spec.dtype


def code_version(env: dict[str, Any], problem: str, estimator: str) -> dict[str, Any]:
    """What decides the numbers of a cell of ``problem`` and ``estimator`` besides its
    configuration (``CODE_COLUMNS``); ``code_hash`` is None for names not registered now."""
    registry = current_registry()
    known = problem in registry.problems and estimator in registry.estimators
    return {name: env[name] for name in CODE_COLUMNS if name != "code_hash"} | {
        "code_hash": environment.code_hash(problem, estimator) if known else None}


def check_resume(
    root: Path,
    cells: Sequence[CellSpec],
    stored: dict[str, StoredCell],
    env: dict[str, Any],
    allow_code_change: bool,
) -> None:
    """Refuse to resume a run directory whose cells were made differently (docs/sweeps.md).

    Two rules. (1) A stored cell with a planned cell's key must hold the same canonical
    configuration: the key is a hash of it, so a difference means a hash collision or a
    change in how configurations are written, and the stored numbers would be reported
    under the wrong configuration. (2) Every stored cell must have been made by the same
    code (``CODE_COLUMNS``: git commit, versions, and the hash of the sources of its
    problem and estimator, plugins included, where they are registered now) as this
    invocation would make it, unless ``allow_code_change``: a fixed bug, a changed plugin
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
    for old in stored.values():
        now = code_version(env, old.problem, old.estimator)
        if now["code_hash"] is None:  # a plugin's cell, the plugin not loaded: not comparable
            now["code_hash"] = dict(old.code)["code_hash"]
        made = dict(old.code)
        if _comparable(made) != _comparable(now):
            differ = [name for name in CODE_COLUMNS if made[name] != now[name]]
            then = ", ".join(f"{k}={made[k]}" for k in differ)
            here = ", ".join(f"{k}={now[k]}" for k in differ)
            raise ValueError(
                f"--out {root} holds cells made by other code ({then}, e.g. cell of "
                f"{old.problem}/{old.estimator}) than this run ({here}); use a new --out, or "
                "pass --allow-code-change to add cells made by this code (every row records "
                "its git_commit and code_hash)"
            )


def _comparable(code: dict[str, Any]) -> dict[str, Any]:
    """``code`` without ``+dirty``: a dirty tree at the same commit makes the same numbers
    unless a source that decides them changed, which ``code_hash`` sees (editing a README
    mid-run, or a worker started after the edit, must not make the run unresumable)."""
    commit = code["git_commit"]
    return code | {"git_commit": commit.removesuffix("+dirty") if commit else commit}


class Claimer(Collection):
    """The cells an executor may run, each claimed for this invocation as it is taken.

    Iterating skips cells that are finished or claimed by another live invocation. With
    ``in_process``, a cell that has killed an invocation's process before is not yielded
    but set aside in ``risky`` (with who it killed), to run in a child process.
    """

    def __init__(self, invocation: Invocation, cells: Sequence[CellSpec], in_process: bool,
                 before: dict[str, tuple[int, int] | None]) -> None:
        self.invocation, self.cells, self.in_process, self.before = (
            invocation, list(cells), in_process, before)
        self.taken = 0
        self.risky: dict[str, tuple[CellSpec, str]] = {}

    def __len__(self) -> int:
        return len(self.cells) - self.taken

    def __contains__(self, spec: object) -> bool:
        return spec in self.cells

    def __iter__(self) -> Iterator[CellSpec]:
        for spec in self.cells:
            self.taken += 1
            claim = self.invocation.claim(spec.key, self.in_process, self.before[spec.key])
            if claim is None:
                continue
            if self.in_process and claim.deaths:
                self.risky[spec.key] = (spec, claim.note)
                continue
            yield spec


def _names(
    value: str | Sequence[str | type], kind: str, registry: Registry
) -> tuple[tuple[str, ...], Registry]:
    """Registry names from names, ``'a,b'`` or classes, and ``registry`` with the classes
    added (``Registry.with_class``)."""
    if isinstance(value, str | type):
        value = [value]
    chosen = []
    for item in value:
        if isinstance(item, type):
            registry = registry.with_class(item)
            chosen.append(item.name)
        elif isinstance(item, str):
            chosen.extend(names(item))
        else:
            raise ValueError(f"invalid {kind} {item!r}: expected a name or a {kind} class")
    return tuple(chosen), registry


def run_sweep(
    estimators: str | Sequence[str | type] = "all",
    problems: str | Sequence[str | type] = "all",
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
    memory: int | None = None,
) -> pd.DataFrame:
    """Run a sweep and return its cells as a DataFrame (the rows of ``cells.parquet``).

    Everything is validated before anything is written: names, values, problem
    construction (data files), the device, the executor and the run directory, including
    whether its finished cells may be resumed (``check_resume``).

    Args:
        estimators, problems: ``"all"``, ``"a,b"``, or a list of registry names and
            ``Estimator`` / ``Problem`` classes (a class is added under its ``name`` to the
            registry of this call alone).
        samples: the K values (samples per estimate).
        repeats: R, independent estimates per cell.
        settings: swept options, ``{"tau": [0.5, 1]}`` or ``["tau=0.5,1"]``; every
            combination becomes a cell for each problem and estimator that has the option.
        out: the run directory; finished cells already in it are not recomputed.
        retry_failed: re-run cells that failed in an earlier invocation.
        executor, workers, threads, ray_address, cell_timeout: where and how cells run
            (``bench.sweep.executors.ExecutorConfig``).
        plugins: modules with extra problems and estimators (``bench.sweep.plugins``),
            added to the registry of this call alone.
        allow_code_change: resume a run directory whose cells other code made.
        memory: the bytes one chunk of repeats may allocate (default 256 MiB,
            ``bench.cell.estimate.measured_chunk_size``).

    Raises:
        ValueError: for any invalid name or value, before any work starts.
    """
    registry = load_plugins(tuple(plugins))
    chosen_estimators, registry = _names(estimators, "estimator", registry)
    chosen_problems, registry = _names(problems, "problem", registry)
    sweep = SweepSpec(
        estimators=chosen_estimators,
        problems=chosen_problems,
        samples=tuple(int(k) for k in samples),
        repeats=int(repeats),
        seed=int(seed),
        device=device,
        dtype=dtype,
        n_bootstrap=int(bootstrap),
        memory=DEFAULT_MEMORY if memory is None else int(memory),
        settings=_pairs(settings),
    )
    config = ExecutorConfig(
        kind=executor, workers=workers, threads=threads, ray_address=ray_address,
        cell_timeout=cell_timeout, plugins=registry.plugins, classes=registry.classes,
    )
    command = None if command is None else tuple(command)
    with use_registry(registry):
        return execute(SweepRun(sweep, config, out, retry_failed, progress, command,
                                allow_code_change))


def _pairs(settings: dict[str, Sequence[Any]] | Sequence[str] | None) -> tuple:
    """Swept options as ``((name, (value text, ...)), ...)``."""
    if settings is None:
        return ()
    if isinstance(settings, dict):
        return tuple((k, tuple(str(v) for v in vs)) for k, vs in settings.items())
    return tuple(parse_setting(s) for s in settings)


@dataclass(frozen=True)
class SweepRun:
    """One invocation of a sweep (``run_sweep``'s arguments, grouped): what it measures
    (``sweep``), where its cells run (``executor``) and how it treats its run directory.

    Attributes:
        out: the run directory (None: a new one, ``default_out``).
        retry_failed: re-run cells that failed in an earlier invocation.
        progress: show a progress bar on stderr.
        command: the command line, recorded in the run directory.
        allow_code_change: resume a run directory whose cells other code made.
    """

    sweep: SweepSpec
    executor: ExecutorConfig
    out: str | Path | None = None
    retry_failed: bool = False
    progress: bool = True
    command: tuple[str, ...] | None = None
    allow_code_change: bool = False


def execute(run: SweepRun) -> pd.DataFrame:
    """Expand, check, plan and run the cells of ``run``; returns them as ``run_sweep`` does."""
    cells = expand(run.sweep)
    config, device = run.executor, run.sweep.device
    config.validate()
    if config.kind != "ray":  # a Ray driver need not have the cluster's GPUs
        environment.check_device(device)
    check_constructible(cells)
    store = RunStore(run.out if run.out is not None else default_out())
    store.check_writable()
    store.check_readable()
    stored, damaged, stamps = store.stored()
    env = environment.environment(device if config.kind != "ray" else "cpu")
    check_resume(store.root, cells, stored, env, run.allow_code_change)
    todo = by_problem([
        c for c in cells
        if c.key not in stored or (run.retry_failed and stored[c.key].status == "failed")
    ])
    planned = {c.key for c in cells}
    notes = [
        f"cell {key}: {reason}; "
        + ("recomputing it" if key in planned else "left out of cells.parquet (not in this sweep)")
        for key, reason in damaged.items()
    ]
    with contextlib.ExitStack() as stack:
        runner = stack.enter_context(make_executor(config, device, store.root.name))
        if todo:
            runner.open()
        invocation = stack.enter_context(Invocation(store))
        notes = invocation.notes + notes
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        with store.lock():
            store.record_invocation({
                "invocation": invocation.id,
                "command": list(run.command) if run.command is not None else None,
                "created_utc": environment.utc_now(),
                "sweep": {k: v for k, v in run.sweep.__dict__.items()},
                "executor": config.describe(),
                "cells": len(cells),
                "already_finished": len(cells) - len(todo),
                "notes": notes,
                "environment": env,
            })
        # each cell file as planned: another file there later was written by another invocation
        before = {c.key: stamps.get(c.key) for c in todo}
        computed = _run_cells(store, invocation, runner, config, device, todo, before,
                              run.progress)
        store.update_invocation(invocation.id, {"finished_utc": environment.utc_now(),
                                                "computed": computed})
    return _consolidated(store, cells, damaged)


def _consolidated(
    store: RunStore, cells: Sequence[CellSpec], damaged: dict[str, str]
) -> pd.DataFrame:
    """Consolidate the run directory's tables; return the rows of ``cells``, in order."""
    table, left_out = store.consolidate()
    for key, reason in left_out.items():
        if key not in damaged:
            print(f"note: cell {key}: {reason}; left out of cells.parquet (delete "
                  f"cells/{key}.parquet to recompute it)", file=sys.stderr)
    order = {c.key: i for i, c in enumerate(cells)}
    mine = table[table["cell_key"].isin(order)]
    return mine.sort_values("cell_key", key=lambda keys: keys.map(order)).reset_index(drop=True)


def _run_cells(
    store: RunStore,
    invocation: Invocation,
    runner: Executor,
    config: ExecutorConfig,
    device: str,
    todo: Sequence[CellSpec],
    before: dict[str, tuple[int, int] | None],
    progress: bool,
) -> int:
    """Run ``todo`` in turns, sharing the directory with other invocations (the module
    docstring); return how many cells this invocation computed. ``before`` holds each cell
    file's stamp when ``todo`` was planned (None: absent)."""
    by_key = {c.key: c for c in todo}
    written: set[str] = set()
    bar = tqdm(total=len(todo), disable=not progress, file=sys.stderr, unit="cell",
               dynamic_ncols=True)

    def finish(row: dict[str, Any], coords: list[dict[str, Any]]) -> None:
        spec = by_key[row["cell_key"]]
        store.write_cell(row, coords, spec.config_text())
        invocation.release(spec.key)
        written.add(spec.key)
        bar.set_description(spec.label())
        bar.update()

    remaining, waiting = list(todo), False
    with contextlib.ExitStack() as stack:
        while remaining:
            claimer = Claimer(invocation, remaining, runner.in_process, before)
            for result in runner.run(claimer):
                finish(*result)
            if claimer.risky:
                isolated = stack.enter_context(isolated_executor(config, device, store.root.name))
                risky = [spec for spec, _ in claimer.risky.values()]
                for row, coords in isolated.run(Claimer(invocation, risky, False, before)):
                    if row["status"] == "failed" and row["reason"].startswith("worker process"):
                        row["reason"] += (f"; it had also ended "
                                          f"{claimer.risky[row['cell_key']][1]}")
                    finish(row, coords)
            others = [c for c in remaining if c.key not in written
                      and store.finished(c.key, before[c.key])]
            bar.update(len(others))
            done = written | {c.key for c in others}
            remaining = [c for c in remaining if c.key not in done]
            if remaining and invocation.busy([c.key for c in remaining]) == {
                    c.key for c in remaining}:
                if not waiting:
                    print(f"note: waiting for {len(remaining)} cell(s) that another bench "
                          "process is computing in this directory", file=sys.stderr)
                    waiting = True
                time.sleep(POLL_S)
    bar.close()
    return len(written)
