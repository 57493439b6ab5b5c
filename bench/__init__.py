"""The harness and the ``bench`` command line of gradbench.

From Python: ``bench.run_sweep(...)`` runs a sweep and returns its cells as a DataFrame;
``bench.load(run_dir)`` reads a run directory's cells with every option as its own column.
"""


def run_sweep(*args, **kwargs):
    """See ``bench.sweep.run.run_sweep`` (imported lazily to keep ``bench --help`` fast)."""
    from bench.sweep.run import run_sweep as run

    return run(*args, **kwargs)


def load(run_dir):
    """See ``bench.report.tables.load``: the cells of ``run_dir`` with one column per option.

    Raises:
        ValueError: no ``cells.parquet``, or one that cannot be read (damaged), in one line
            naming the file and what to do.
    """
    from pathlib import Path

    import pyarrow as pa

    from bench.report.tables import load as read

    try:
        return read(run_dir)
    except (OSError, pa.ArrowException) as err:
        path = Path(run_dir) / "cells.parquet"
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        remedy = ("re-run the bench run command that wrote it: it rebuilds cells.parquet from "
                  f"{Path(run_dir) / 'cells'}/" if (Path(run_dir) / "cells").is_dir()
                  else "restore it from a copy")
        raise ValueError(f"{path}: cannot be read as a Parquet table, it is damaged ({first}); "
                         f"{remedy}") from None
