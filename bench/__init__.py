"""The harness and the ``bench`` command line of gradbench.

From Python: ``bench.run_sweep(...)`` runs a sweep and returns its cells as a DataFrame.
"""


def run_sweep(*args, **kwargs):
    """See ``bench.sweep.run.run_sweep`` (imported lazily to keep ``bench --help`` fast)."""
    from bench.sweep.run import run_sweep as run

    return run(*args, **kwargs)
