"""The thread policy of measurements: steady timings on a CPU shared with other jobs.

Two parts (docs/sweeps.md has the measurements behind them):

* one torch thread per cell on the ``local`` executor unless ``--threads`` says otherwise
  (``bench.sweep.executors``); the parallel executors divide the CPUs among their cells;
* OpenMP's passive wait policy, ``OMP_WAIT_POLICY=PASSIVE``: a thread that waits for work
  sleeps at once instead of spinning on its core, so a thread that lost its core to
  another job does not stall the others of its team for a whole scheduler time slice.

OpenMP reads ``OMP_WAIT_POLICY`` once, when its library loads with ``import torch``, so the
variable must be in the environment before that: ``bench.cli.main`` sets it first thing,
before anything imports torch, and worker processes and Ray tasks get it in the
environment they start with. A value already in the environment (the user's) wins. This
module imports nothing heavy, so that it can run before torch is imported.
"""

from __future__ import annotations

import os
import sys

#: the environment variables of the policy and their values
POLICY = {"OMP_WAIT_POLICY": "PASSIVE"}


def policy_env() -> dict[str, str]:
    """The policy's variables as a new process should get them (the user's values win)."""
    return {name: os.environ.get(name, value) for name, value in POLICY.items()}


def apply() -> bool:
    """Put the policy into this process's environment, if torch is not loaded yet.

    Returns:
        whether it takes effect in this process (it cannot once OpenMP has been loaded).
    """
    if "torch" in sys.modules:
        return False
    for name, value in POLICY.items():
        os.environ.setdefault(name, value)
    return True


def wait_policy() -> str:
    """``OMP_WAIT_POLICY`` as this process's environment has it (``default`` if unset)."""
    return os.environ.get("OMP_WAIT_POLICY") or "default"


#: largest --threads and --workers, as a multiple of the CPUs: beyond it cells only wait
OVERSUBSCRIPTION = 4


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def check_threads(threads: int | None, cluster: bool = False) -> int | None:
    """``--threads`` of every subcommand: None (the policy's default: one thread per cell,
    or the executor's share of the CPUs) or a count from 1 to ``OVERSUBSCRIPTION`` x the
    CPUs here (any count >= 1 on a ``cluster``, whose machines may have more).

    Raises:
        ValueError: naming the value and the range.
    """
    if threads is None:
        return None
    most = OVERSUBSCRIPTION * cpu_count()
    if threads < 1 or (not cluster and threads > most):
        raise ValueError(f"invalid --threads {threads}: expected 1..{most} "
                         f"({OVERSUBSCRIPTION} x the {cpu_count()} CPUs here)")
    return threads
