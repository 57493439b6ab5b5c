"""What every executor shares: its configuration, its interface, and the guarded cell.

See ``bench.sweep.executors`` for the executors themselves.
"""

from __future__ import annotations

import importlib.util
import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from bench import env as environment
from bench import threads as thread_policy
from bench.cell.run import failed_row, run_cell
from bench.cell.spec import CellSpec
from bench.cell.timing import peak_memory_bytes
from bench.registry import Registry, use_registry
from bench.sweep.plugins import rebuild
from bench.threads import OVERSUBSCRIPTION, check_threads, cpu_count

EXECUTORS = ("local", "process", "ray")

RAY_INSTALL_HINT = (
    "--executor ray needs Ray, which is an optional extra: "
    "pip install -e '.[ray]' (or pip install 'ray[default]>=2.9')"
)

Result = tuple[dict[str, Any], list[dict[str, Any]]]

#: largest --cell-timeout, in seconds (one week)
MAX_CELL_TIMEOUT = 7 * 24 * 3600.0
#: seconds to wait for a Ray head at HOST:PORT before giving up
RAY_CONNECT_TIMEOUT = 5.0


def _ray_installed() -> bool:
    try:
        return importlib.util.find_spec("ray") is not None
    except ValueError:  # a module object without a spec stands in for ray
        return True


def timeout_reason(seconds: float) -> str:
    return f"timeout after {seconds:g} s"


def worker_env(device: str, threads: int) -> dict[str, Any]:
    """The environment of a worker, for the rows the driver writes in its place (a timeout,
    a dead worker): its thread count and the thread policy it was started with."""
    return environment.environment(device) | {
        "threads": threads, "omp_wait_policy": thread_policy.policy_env()["OMP_WAIT_POLICY"]}


def cell_env(spec: CellSpec, env: dict[str, Any]) -> dict[str, Any]:
    """``env`` with the ``code_hash`` of the cell's problem and estimator."""
    return env | {"code_hash": environment.code_hash(spec.problem, spec.estimator)}


def run_cell_guarded(spec: CellSpec, run_id: str, env: dict[str, Any],
                     registry: Registry) -> Result:
    """``run_cell`` under ``registry``, with the cell's ``code_hash``, and a ``sys.exit``
    inside the cell (a plugin's) as a failed row."""
    started = time.perf_counter()
    with use_registry(registry):
        env = cell_env(spec, env)
        try:
            return run_cell(spec, run_id, env)
        except SystemExit as stop:
            reason = f"SystemExit: the cell called sys.exit({stop.code!r})"
            return failed_row(spec, run_id, env, reason, time.perf_counter() - started), []


@dataclass(frozen=True)
class ExecutorConfig:
    """How to run the cells of a sweep (see the module docstring).

    Attributes:
        kind: ``local``, ``process`` or ``ray``.
        workers: processes of the ``process`` executor (default: one per CPU, or with
            ``--device cuda`` one per GPU).
        threads: torch threads per cell (default: 1 for ``local`` and ``ray``,
            ``cpu_count // workers`` for ``process``).
        ray_address: cluster to join; None starts a local Ray instance.
        cell_timeout: seconds after which a cell is stopped and becomes a failed row.
        plugins: the plugin modules of the driver's registry, from which every worker
            builds it again (``bench.sweep.plugins.rebuild``).
        classes: the problem and estimator classes of the driver's registry given in
            place of names (``bench.registry.Registry.classes``), likewise.
    """

    kind: str = "local"
    workers: int | None = None
    threads: int | None = None
    ray_address: str | None = None
    cell_timeout: float | None = None
    plugins: tuple[str, ...] = ()
    classes: tuple[type, ...] = ()

    def validate(self) -> None:
        """Raise ValueError naming the value and the rule for any invalid setting."""
        if self.kind not in EXECUTORS:
            raise ValueError(f"invalid --executor {self.kind!r}; valid: {', '.join(EXECUTORS)}")
        if self.kind == "ray" and not _ray_installed():
            raise ValueError(RAY_INSTALL_HINT)
        most = OVERSUBSCRIPTION * cpu_count()
        if self.workers is not None:
            if self.kind != "process":
                raise ValueError(f"--workers applies to --executor process, not {self.kind}")
            if not 1 <= self.workers <= most:
                raise ValueError(f"invalid --workers {self.workers}: expected 1..{most} "
                                 f"({OVERSUBSCRIPTION} x the {cpu_count()} CPUs here)")
        check_threads(self.threads, cluster=self.kind == "ray")
        if self.ray_address is not None and self.kind != "ray":
            raise ValueError(f"--ray-address applies to --executor ray, not {self.kind}")
        if self.cell_timeout is not None and not 0 < self.cell_timeout <= MAX_CELL_TIMEOUT:
            raise ValueError(f"invalid --cell-timeout {self.cell_timeout}: expected seconds "
                             f"> 0 and <= {MAX_CELL_TIMEOUT:.0f} (one week)")

    def describe(self) -> dict[str, Any]:
        """The settings as recorded in ``run.json``."""
        settings = {k: v for k, v in self.__dict__.items() if v is not None and v != ()}
        if self.classes:
            settings["classes"] = [f"{c.__module__}.{c.__qualname__}" for c in self.classes]
        return settings

    def registry(self, search: tuple[str, ...] | None = None) -> Registry:
        """The driver's registry, built again in this process (a worker, a Ray task)."""
        return rebuild(self.plugins, self.classes, search)


class Executor(ABC):
    """Runs cells and yields their results as they complete.

    ``open`` connects to whatever the executor needs and raises ValueError for anything
    unusable; the harness calls it before it writes anything.
    """

    #: cells run in the driver's own process, so a cell that kills its process kills it
    in_process: ClassVar[bool] = False

    def __init__(self, config: ExecutorConfig, device: str, run_id: str) -> None:
        self.config = config
        self.device = device
        self.run_id = run_id

    def open(self) -> None:
        """Check the executor can run cells on ``device`` here; raise ValueError if not."""
        environment.check_device(self.device)

    @abstractmethod
    def run(self, cells: Collection[CellSpec]) -> Iterator[Result]:
        """Yield ``(row, coords)`` for every cell, in completion order; take each cell from
        ``cells`` only when about to start it (``len(cells)`` is an upper bound)."""

    @abstractmethod
    def close(self) -> None:
        """Release workers; called also when the driver is interrupted."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def prepare_process(device: str) -> None:
    """Pay a fresh process's one-off costs before any cell's clock starts.

    The first memory profile imports half of torch (``torch._inductor``, over a second) and
    the first CUDA tensor creates the context; neither belongs to the first cell's time,
    nor to its ``--cell-timeout``.
    """
    torch.zeros(1, device=device)
    peak_memory_bytes(lambda: torch.zeros(1), torch.device("cpu"))


def start_worker(
    config: ExecutorConfig,
    threads: int,
    device: str,
    search: tuple[str, ...] | None = None,
    prepare: bool = True,
) -> tuple[dict[str, Any], Registry]:
    """What a worker (a pool process, a Ray task) does before its first cell: build the
    invocation's registry again (plugins from ``search`` too), take its thread count,
    record its environment and, with ``prepare``, pay the process's one-off costs
    (``prepare_process``). Returns the environment and the registry, which every cell
    runs under (``run_cell_guarded``)."""
    registry = config.registry(search)
    torch.set_num_threads(threads)
    env = environment.environment(device)
    if prepare:
        prepare_process(device)
    return env, registry
