"""The harness and the ``bench`` command line of gradbench.

From Python: ``bench.run_sweep(...)`` runs a sweep and returns its cells as a DataFrame;
``bench.load(run_dir)`` reads a run directory's cells with every option as its own column.
"""


def run_sweep(*args, **kwargs):
    """See ``bench.sweep.run.run_sweep`` (imported lazily to keep ``bench --help`` fast)."""
    from bench.sweep.run import run_sweep as run

    return run(*args, **kwargs)


def load(run_dir):
    """See ``bench.report.tables.load``: the cells of ``run_dir`` with one column per option
    (imported lazily, as ``run_sweep``)."""
    from bench.report.tables import load as read

    return read(run_dir)
