"""The ``process`` executor: a pool of spawned worker processes on this machine (also the
isolation of the ``local`` executor's ``--cell-timeout``)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Collection, Iterator
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from typing import Any

import torch

from bench import threads as thread_policy
from bench.cell.run import failed_row
from bench.cell.spec import CellSpec
from bench.sweep.executors.base import (
    Executor,
    ExecutorConfig,
    Result,
    cell_env,
    run_cell_guarded,
    start_worker,
    timeout_reason,
    worker_env,
)


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
    env, registry = start_worker(config, threads, device)
    conn.send(None)  # ready
    while True:
        try:
            spec = conn.recv()
        except EOFError:
            return
        conn.send(run_cell_guarded(spec, run_id, env, registry))


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
                yield from self._collect(worker, timeout)

    def _collect(self, worker: _Worker, timeout: float | None) -> Iterator[Result]:
        """What ``worker`` has for the driver after a wait: its result, or a failed row
        when it died or ran past ``timeout`` (then it is stopped and removed)."""
        spec = worker.spec
        try:
            if worker.conn.poll():
                result = worker.receive()
                if result is not None:
                    yield result
                return
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
            return
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
