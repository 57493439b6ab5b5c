"""The ``ray`` executor: every cell a Ray task, on a local Ray instance or a cluster."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Collection, Iterator
from typing import Any

import torch

from bench import threads as thread_policy
from bench.cell.run import failed_row
from bench.cell.spec import CellSpec
from bench.registry import use_registry
from bench.sweep.executors.base import (
    RAY_CONNECT_TIMEOUT,
    RAY_INSTALL_HINT,
    Executor,
    ExecutorConfig,
    Result,
    cell_env,
    run_cell_guarded,
    start_worker,
    timeout_reason,
    worker_env,
)

#: times a cell is submitted again when the node running it dies (then it is a failed row)
NODE_LOSS_RETRIES = 2


def _ray_cell(
    spec: CellSpec,
    run_id: str,
    config: ExecutorConfig,
    plugin_dir: str,
    threads: int,
    timeout: float | None,
) -> Result:
    """The body of a cell's Ray task (see the module docstring on timeouts). The registry
    is passed to the cell's thread: a thread does not inherit the task's context."""
    env, registry = start_worker(config, threads, spec.device, (plugin_dir,),
                                 prepare=timeout is not None)
    if timeout is None:
        return run_cell_guarded(spec, run_id, env, registry)
    box: list[Result] = []
    started = time.perf_counter()
    thread = threading.Thread(
        target=lambda: box.append(run_cell_guarded(spec, run_id, env, registry)), daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        with use_registry(registry):
            row = failed_row(spec, run_id, cell_env(spec, env), timeout_reason(timeout),
                             time.perf_counter() - started)
        return row, []
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


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Hold back what is written to file descriptor 2 in the block (Ray's C++ core logs a
    line a second there while it retries a GCS that does not answer as one): dropped if the
    block raises, so that the failure is one line, written out after it if it succeeds."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            raise
        else:
            sys.stderr.flush()
            os.dup2(saved, 2)
            held.seek(0)
            os.write(2, held.read())
        finally:
            os.dup2(saved, 2)
            os.close(saved)


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
            with _quiet_stderr():
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
        """Submit every cell, yield results as they come; a cell whose node died (the whole
        node, not only the cell's worker process) is submitted again, at most
        ``NODE_LOSS_RETRIES`` times, and otherwise becomes a failed row."""
        ray = self.ray
        cuda = torch.device(self.device).type == "cuda"
        options: dict[str, Any] = {
            "num_cpus": 1 if cuda else self.threads,
            "num_gpus": 1 if cuda else 0,
            "max_retries": 0,  # a cell that kills its own worker is a failed row, not retried
            "runtime_env": {"env_vars": thread_policy.policy_env()},
        }
        if self.config.cell_timeout is not None:
            options["max_calls"] = 1
        task = ray.remote(**options)(_ray_cell)

        def submit(spec: CellSpec) -> Any:
            return task.remote(spec, self.run_id, self.config, self.plugin_dir, self.threads,
                               self.config.cell_timeout)

        spec_of = {submit(spec): spec for spec in list(cells)}
        lost: dict[str, int] = {}  # cell key -> times its node died under it
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
                except ray.exceptions.NodeDiedError as err:
                    lost[spec.key] = lost.get(spec.key, 0) + 1
                    if lost[spec.key] > NODE_LOSS_RETRIES:
                        yield self._failed(spec, err), []
                        continue
                    again = submit(spec)
                    spec_of[again] = spec
                    self.pending.append(again)
                except ray.exceptions.RayError as err:
                    yield self._failed(spec, err), []

    def _failed(self, spec: CellSpec, err: Exception) -> dict[str, Any]:
        lines = str(err).strip().splitlines()
        reason = f"Ray task failed: {type(err).__name__}: {lines[0] if lines else ''}"
        env = worker_env("cpu", self.threads)
        return failed_row(spec, self.run_id, cell_env(spec, env), reason, 0.0)

    def close(self) -> None:
        if self.ray is None:
            return
        for ref in self.pending:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
        self.pending = []
        self.ray.shutdown()
        self.ray = None
