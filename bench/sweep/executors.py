"""Where the cells of a sweep run: in-process, in a local process pool, or as Ray tasks.

Every executor takes the cells still to do and yields ``(row, coords)`` for each cell as
soon as it completes, in completion order; the driver (``bench.sweep.run.run_sweep``) writes
each one to the run directory at once, so killing the driver loses only the cells in flight.

* ``local`` (default): cells run one after another in the driver's process with one torch
  thread (``--threads`` to change it; ``bench.threads`` on why). Its timings are the
  reference. With ``--cell-timeout`` each cell runs instead in one long-lived child
  process (same thread count) that is killed and replaced when a cell overruns: a hung
  cell, even one stuck inside a C++ kernel, is always stopped, and nothing it leaves
  behind (threads, memory, CUDA context) survives it.
* ``process``: ``--workers N`` spawned worker processes, each with
  ``torch.set_num_threads(--threads)``, by default ``max(1, cpu_count // N)`` so that the
  workers do not oversubscribe the cores. With ``--device cuda`` worker ``i`` sees only
  GPU ``i`` (``CUDA_VISIBLE_DEVICES``), so N may not exceed the number of GPUs.
  A timed-out cell's worker is killed and replaced; a worker that dies (a segfault, the
  out-of-memory killer) gives a failed row and is replaced.
* ``ray``: each cell is a Ray task. A CPU cell requests ``num_cpus = --threads`` (default 1)
  and sets torch's thread count to that inside the task; a CUDA cell requests one GPU
  (Ray sets ``CUDA_VISIBLE_DEVICES``). ``--ray-address`` joins an existing cluster
  (``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``); without it a local Ray instance starts
  and stops with the sweep. With ``--cell-timeout`` the task runs the cell in a thread
  and returns a timeout row when the thread overruns, and the task's worker process exits
  after every task (``max_calls=1``), which stops the runaway thread at the cost of a new
  worker process, and so a new ``import torch``, per cell.

Executors take the cells from a ``Collection`` that may claim each cell only when it is
taken (``bench.sweep.run`` shares a run directory between invocations that way): they
take a cell only when they are about to start it. Worker processes and Ray tasks start
with the thread policy of ``bench.threads`` in their environment.

Results do not depend on the executor: a cell's random seed derives from its key
(``CellSpec.cell_seed``) and every cell starts from that seed, whichever process runs it
and whatever ran there before. Timing columns do depend on it (docs/sweeps.md).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from typing import Any, ClassVar

import torch

from bench import env as environment
from bench import threads as thread_policy
from bench.cell.run import failed_row, run_cell
from bench.cell.spec import CellSpec
from bench.cell.timing import peak_memory_bytes
from bench.sweep.plugins import load_plugins, register
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


def run_cell_guarded(spec: CellSpec, run_id: str, env: dict[str, Any]) -> Result:
    """``run_cell`` with the cell's ``code_hash``, and a ``sys.exit`` inside the cell (a
    plugin's) as a failed row."""
    started = time.perf_counter()
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
        plugins: modules whose problems and estimators every worker registers
            (``bench.sweep.plugins``).
        classes: problem and estimator classes given to ``run_sweep`` in place of names,
            which every worker registers (``bench.sweep.plugins.register``).
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

    def register(self, search: tuple[str, ...] | None = None) -> None:
        """Register the plugins and classes in this process (a worker, a Ray task)."""
        load_plugins(self.plugins, search)
        for cls in self.classes:
            register(cls)


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


class LocalExecutor(Executor):
    """Cells in the driver's process, one after another (the reference for timings)."""

    in_process = True

    def run(self, cells: Collection[CellSpec]) -> Iterator[Result]:
        saved = torch.get_num_threads()
        torch.set_num_threads(self.config.threads or 1)
        try:
            env = environment.environment(self.device)
            prepared = False
            for spec in cells:
                if not prepared:
                    prepare_process(self.device)
                    prepared = True
                yield run_cell_guarded(spec, self.run_id, env)
        finally:
            torch.set_num_threads(saved)

    def close(self) -> None:
        """Nothing to release: the cells ran in this process."""


@contextlib.contextmanager
def _environment(variables: dict[str, str]) -> Iterator[None]:
    """Set ``variables`` in ``os.environ`` for the duration (a child started now inherits them)."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _exit_with_parent(parent_pid: int) -> None:
    """Have the kernel kill this worker when the driver dies, even by SIGKILL (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the driver died before prctl took effect
        os._exit(1)


def prepare_process(device: str) -> None:
    """Pay a fresh process's one-off costs before any cell's clock starts.

    The first memory profile imports half of torch (``torch._inductor``, over a second) and
    the first CUDA tensor creates the context; neither belongs to the first cell's time,
    nor to its ``--cell-timeout``.
    """
    torch.zeros(1, device=device)
    peak_memory_bytes(lambda: torch.zeros(1), torch.device("cpu"))


def _worker_main(
    conn: Connection,
    parent_pid: int,
    config: ExecutorConfig,
    threads: int,
    gpu: int | None,
    run_id: str,
    device: str,
) -> None:
    """A pool worker: set up once, then run every cell it is sent until the pipe closes."""
    _exit_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's: it stops us
    if gpu is not None:  # before anything initialises CUDA in this process
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    config.register()
    torch.set_num_threads(threads)
    env = environment.environment(device)
    prepare_process(device)
    conn.send(None)  # ready
    while True:
        try:
            spec = conn.recv()
        except EOFError:
            return
        conn.send(run_cell_guarded(spec, run_id, env))


class _Worker:
    """One spawned worker process and the cell it is running."""

    def __init__(self, pool: ProcessExecutor, slot: int) -> None:
        self.slot = slot
        self.conn, child = pool.context.Pipe()
        self.process = pool.context.Process(
            target=_worker_main,
            args=(child, os.getpid(), pool.config, pool.threads, pool.gpu(slot),
                  pool.run_id, pool.device),
            daemon=True,
            name=f"bench-worker-{slot}",
        )
        with _environment(thread_policy.policy_env()):  # before the child imports torch
            self.process.start()
        child.close()
        self.ready = False
        self.spec: CellSpec | None = None
        self.started = 0.0

    def submit(self, spec: CellSpec) -> None:
        self.spec, self.started = spec, time.monotonic()
        self.conn.send(spec)

    def receive(self) -> Result | None:
        """The finished cell's result, None for the ready message; EOFError if it died."""
        message = self.conn.recv()
        if message is None:
            self.ready = True
            return None
        self.spec = None
        return message

    def stop(self, kill: bool) -> None:
        if kill:
            self.process.kill()
        self.conn.close()  # an idle worker sees EOF and returns
        self.process.join(timeout=None if kill else 10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class ProcessExecutor(Executor):
    """A pool of spawned worker processes; also the local executor's timeout isolation."""

    def __init__(
        self,
        config: ExecutorConfig,
        device: str,
        run_id: str,
        workers: int,
        threads: int,
    ) -> None:
        super().__init__(config, device, run_id)
        self.context = get_context("spawn")
        self.n_workers = workers
        self.threads = threads
        self.workers: list[_Worker] = []

    def open(self) -> None:
        super().open()
        dev = torch.device(self.device)
        if dev.type == "cuda" and self.n_workers > 1:
            if dev.index is not None:
                raise ValueError(
                    f"--device {self.device} with --workers {self.n_workers}: workers would "
                    "share one GPU; use --device cuda to give each worker its own GPU"
                )
            if self.n_workers > torch.cuda.device_count():
                raise ValueError(
                    f"invalid --workers {self.n_workers} with --device cuda: each worker needs "
                    f"its own GPU and {torch.cuda.device_count()} exist"
                )

    def gpu(self, slot: int) -> int | None:
        """The GPU worker ``slot`` is pinned to (``--device cuda`` with several workers)."""
        dev = torch.device(self.device)
        return slot if dev.type == "cuda" and dev.index is None and self.n_workers > 1 else None

    def run(self, cells: Collection[CellSpec]) -> Iterator[Result]:
        """Keep up to ``n_workers`` workers busy; release each one as soon as no cell is left
        for it, so that the loop ends with the last result."""
        hint = len(cells)  # an upper bound of the cells still to take, ``upcoming`` included
        source = iter(cells)
        upcoming = next(source, None)
        timeout = self.config.cell_timeout
        size = max(1, min(self.n_workers, hint))
        while upcoming is not None or self.workers:
            if upcoming is not None:
                idle = sum(w.spec is None for w in self.workers)
                free = sorted(set(range(size)) - {w.slot for w in self.workers})
                self.workers += [_Worker(self, slot) for slot in free[: max(0, hint - idle)]]
            for worker in list(self.workers):
                if worker.spec is not None:
                    continue
                if upcoming is None:  # nothing left for it: release it, ready or not
                    self.workers.remove(worker)
                    worker.stop(kill=not worker.ready)
                elif worker.ready:
                    worker.submit(upcoming)
                    hint -= 1
                    upcoming = next(source, None)
            if not self.workers:
                continue
            busy = [w for w in self.workers if w.spec is not None]
            wait_s = None
            if timeout is not None and busy:
                wait_s = max(0.0, min(w.started for w in busy) + timeout - time.monotonic())
            wait([w.conn for w in self.workers] + [w.process.sentinel for w in self.workers],
                 wait_s)
            for worker in list(self.workers):
                spec = worker.spec
                try:
                    if worker.conn.poll():
                        result = worker.receive()
                        if result is not None:
                            yield result
                        continue
                    if not worker.process.is_alive():
                        raise EOFError
                except (EOFError, OSError):
                    worker.process.join(timeout=5)  # the pipe can close before exitcode is set
                    code = worker.process.exitcode
                    self.workers.remove(worker)
                    worker.stop(kill=True)
                    if not worker.ready:
                        raise RuntimeError(
                            f"bench worker process failed to start (exit code {code}); "
                            "run with --executor local to see the error"
                        ) from None
                    if spec is not None:
                        reason = f"worker process died (exit code {code})"
                        yield self._failed(spec, reason, time.monotonic() - worker.started), []
                    continue
                if spec is not None and timeout is not None:
                    elapsed = time.monotonic() - worker.started
                    if elapsed >= timeout:
                        self.workers.remove(worker)
                        worker.stop(kill=True)
                        yield self._failed(spec, timeout_reason(timeout), elapsed), []

    def _failed(self, spec: CellSpec, reason: str, cell_s: float) -> dict[str, Any]:
        env = worker_env(self.device, self.threads)
        return failed_row(spec, self.run_id, cell_env(spec, env), reason, cell_s)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop(kill=worker.spec is not None)
        self.workers = []


def _ray_cell(
    spec: CellSpec,
    run_id: str,
    config: ExecutorConfig,
    plugin_dir: str,
    threads: int,
    timeout: float | None,
) -> Result:
    """The body of a cell's Ray task (see the module docstring on timeouts)."""
    config.register(search=(plugin_dir,))
    torch.set_num_threads(threads)
    env = environment.environment(spec.device)
    if timeout is None:
        return run_cell_guarded(spec, run_id, env)
    prepare_process(spec.device)
    box: list[Result] = []
    started = time.perf_counter()
    thread = threading.Thread(target=lambda: box.append(run_cell_guarded(spec, run_id, env)),
                              daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return failed_row(spec, run_id, cell_env(spec, env), timeout_reason(timeout),
                          time.perf_counter() - started), []
    return box[0]


def check_reachable(address: str) -> None:
    """Fail in seconds, not minutes, when nothing listens at a ``HOST:PORT`` Ray address
    (``ray.init`` would retry for minutes).

    Raises:
        ValueError: naming the address and the connection error.
    """
    if address in ("local", "auto"):
        return
    where = address.removeprefix("ray://")
    host, sep, port = where.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(
            f"invalid --ray-address {address}: expected auto, HOST:PORT or ray://HOST:PORT"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), RAY_CONNECT_TIMEOUT).close()
    except (OSError, OverflowError) as err:
        reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        raise ValueError(
            f"--ray-address {address}: nothing answers at {host}:{port} ({reason}); "
            "start the cluster's head with ray start --head, or leave --ray-address out "
            "to start a local Ray instance"
        ) from None


class RayExecutor(Executor):
    """Every cell a Ray task with the resources it uses (see the module docstring)."""

    def __init__(self, config: ExecutorConfig, device: str, run_id: str) -> None:
        super().__init__(config, device, run_id)
        self.threads = config.threads or 1
        self.ray: Any = None
        self.pending: list[Any] = []
        self.plugin_dir = os.getcwd()  # where the driver found plugins of the current directory

    def open(self) -> None:
        try:
            import ray
        except ImportError:
            raise ValueError(RAY_INSTALL_HINT) from None
        dev = torch.device(self.device)
        if dev.type == "cuda" and dev.index is not None:
            raise ValueError(
                f"--device {self.device} with --executor ray: Ray assigns each task its GPU; "
                "use --device cuda"
            )
        if dev.type not in ("cpu", "cuda"):
            raise ValueError(f"unsupported device {self.device!r}: expected cpu or cuda")
        if dev.type == "cpu" and dev.index is not None:
            raise ValueError(
                f"--device {self.device} with --executor ray: a CPU cell runs on the CPUs Ray "
                "gives it; use --device cpu (and --threads for how many)"
            )
        address = self.config.ray_address or "local"
        check_reachable(address)
        try:
            ray.init(address=address, include_dashboard=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"--ray-address {address}: cannot start or join Ray ({first})") \
                from None
        self.ray = ray
        resources = ray.cluster_resources()
        need, have = ("GPU", 1) if dev.type == "cuda" else ("CPU", self.threads)
        if resources.get(need, 0) < have:
            self.close()
            raise ValueError(
                f"the Ray cluster at {address} has {resources.get(need, 0):g} {need}(s); "
                f"a cell needs {have}"
            )

    def run(self, cells: Collection[CellSpec]) -> Iterator[Result]:
        ray = self.ray
        cuda = torch.device(self.device).type == "cuda"
        options: dict[str, Any] = {
            "num_cpus": 1 if cuda else self.threads,
            "num_gpus": 1 if cuda else 0,
            "max_retries": 0,
            "runtime_env": {"env_vars": thread_policy.policy_env()},
        }
        if self.config.cell_timeout is not None:
            options["max_calls"] = 1
        task = ray.remote(**options)(_ray_cell)
        spec_of = {
            task.remote(spec, self.run_id, self.config, self.plugin_dir, self.threads,
                        self.config.cell_timeout): spec
            for spec in list(cells)
        }
        self.pending = list(spec_of)
        while self.pending:
            ready, self.pending = ray.wait(self.pending, num_returns=1)
            if self.pending:
                more, self.pending = ray.wait(self.pending, num_returns=len(self.pending),
                                              timeout=0)
                ready += more
            for ref in ready:
                spec = spec_of.pop(ref)
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayError as err:
                    lines = str(err).strip().splitlines()
                    reason = f"Ray task failed: {type(err).__name__}: {lines[0] if lines else ''}"
                    env = worker_env("cpu", self.threads)
                    yield failed_row(spec, self.run_id, cell_env(spec, env), reason, 0.0), []

    def close(self) -> None:
        if self.ray is None:
            return
        for ref in self.pending:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
        self.pending = []
        self.ray.shutdown()
        self.ray = None


def make_executor(config: ExecutorConfig, device: str, run_id: str) -> Executor:
    """The executor ``config`` describes; call ``open`` before running cells."""
    config.validate()
    if config.kind == "ray":
        return RayExecutor(config, device, run_id)
    if config.kind == "process":
        dev = torch.device(device)
        if dev.type == "cuda":  # one worker per GPU it may use
            default = 1 if dev.index is not None else max(1, torch.cuda.device_count())
        else:
            default = cpu_count()
        workers = config.workers or default
        threads = config.threads or max(1, cpu_count() // workers)
        return ProcessExecutor(config, device, run_id, workers, threads)
    if config.cell_timeout is not None:
        return ProcessExecutor(config, device, run_id, 1, config.threads or 1)
    return LocalExecutor(config, device, run_id)


def isolated_executor(config: ExecutorConfig, device: str, run_id: str) -> Executor:
    """One child process that runs cells with the thread count the local executor would use:
    for cells that may kill the process they run in."""
    return ProcessExecutor(config, device, run_id, 1, config.threads or 1)
