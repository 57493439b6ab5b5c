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

import torch

from bench.sweep.executors.base import (
    EXECUTORS,
    MAX_CELL_TIMEOUT,
    OVERSUBSCRIPTION,
    RAY_INSTALL_HINT,
    Executor,
    ExecutorConfig,
    Result,
    cpu_count,
    prepare_process,
)
from bench.sweep.executors.local import LocalExecutor
from bench.sweep.executors.process import ProcessExecutor
from bench.sweep.executors.ray import RayExecutor, check_reachable

__all__ = [
    "EXECUTORS", "MAX_CELL_TIMEOUT", "OVERSUBSCRIPTION", "RAY_INSTALL_HINT", "Executor",
    "ExecutorConfig", "LocalExecutor", "ProcessExecutor", "RayExecutor", "Result",
    "check_reachable", "cpu_count", "isolated_executor", "make_executor", "prepare_process",
]


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
