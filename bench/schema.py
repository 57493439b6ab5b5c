"""Column schemas of the result tables, so that every row of every run has the same types.

``cells.parquet``: one row per cell. ``coords.parquet``: one row per cell and gradient
coordinate. README.md documents every column.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

from problems import PROBLEMS, Problem

#: columns that identify a cell; repeated in coords.parquet
CELL_KEY = [
    ("cell_key", pa.string()),
    ("run_id", pa.string()),
    ("problem", pa.string()),
    ("problem_options", pa.string()),
    ("estimator", pa.string()),
    ("estimator_options", pa.string()),
    ("n_samples", pa.int64()),
    ("n_repeats", pa.int64()),
    ("seed", pa.int64()),
    ("device", pa.string()),
    ("dtype", pa.string()),
]



def diagnostic_columns(problems: Mapping[str, type[Problem]]) -> list[tuple[str, pa.DataType]]:
    """The problem-specific columns that the problems of a registry declare
    (``Problem.diagnostic_columns``), each once, in registry order."""
    names = dict.fromkeys(column for cls in problems.values() for column in
                          cls.diagnostic_columns)
    return [(name, pa.float64()) for name in names]


#: problem-specific measurements (``Problem.diagnostics``) of the built-in problems, empty in
#: the rows of a problem that has none
DIAGNOSTICS = diagnostic_columns(PROBLEMS)

#: where and with what a row was produced (``bench.env.environment`` plus the time)
PROVENANCE = [
    ("created_utc", pa.string()),
    ("git_commit", pa.string()),
    ("code_hash", pa.string()),
    ("package_version", pa.string()),
    ("torch_version", pa.string()),
    ("python_version", pa.string()),
    ("device_name", pa.string()),
    ("threads", pa.int64()),
    ("omp_wait_policy", pa.string()),
    ("hostname", pa.string()),
]

CELLS = pa.schema(
    CELL_KEY
    + PROVENANCE
    + [
        ("status", pa.string()),
        ("reason", pa.string()),
        ("unbiased", pa.bool_()),
        ("truth", pa.string()),
        ("grad_dim", pa.int64()),
        ("n_finite", pa.int64()),
        ("bias_l2", pa.float64()),
        ("bias_l2_ci_low", pa.float64()),
        ("bias_l2_ci_high", pa.float64()),
        ("bias_l2_noise_floor", pa.float64()),
        ("bias_max_abs_z", pa.float64()),
        ("bias_p_value", pa.float64()),
        ("bias_sq", pa.float64()),
        ("bias_sq_ci_low", pa.float64()),
        ("bias_sq_ci_high", pa.float64()),
        ("bias", pa.float64()),
        ("bias_ci_low", pa.float64()),
        ("bias_ci_high", pa.float64()),
        ("variance_trace", pa.float64()),
        ("variance_trace_ci_low", pa.float64()),
        ("variance_trace_ci_high", pa.float64()),
        ("mse", pa.float64()),
        ("mse_ci_low", pa.float64()),
        ("mse_ci_high", pa.float64()),
        ("interval_method", pa.string()),
        ("cosine", pa.float64()),
        ("snr", pa.float64()),
        ("truth_l2", pa.float64()),
        ("kurtosis", pa.float64()),
        ("heavy_tails", pa.bool_()),
        ("n_bootstrap", pa.int64()),
        ("bootstrap_blocks", pa.int64()),
        ("time_per_estimate_s", pa.float64()),
        ("time_iqr_s", pa.float64()),
        ("time_n", pa.int64()),
        ("estimates_per_s", pa.float64()),
        ("measure_s", pa.float64()),
        ("stats_s", pa.float64()),
        ("cost_evals", pa.int64()),
        ("warmup_steps", pa.int64()),
        ("estimator_loss", pa.float64()),
        ("peak_memory_bytes", pa.int64()),
        ("cell_s", pa.float64()),
    ]
    + DIAGNOSTICS
)

COORDS = pa.schema(
    CELL_KEY
    + [
        ("param", pa.string()),
        ("index", pa.int64()),
        ("mean", pa.float64()),
        ("variance", pa.float64()),
        ("true", pa.float64()),
        ("bias_z", pa.float64()),
    ]
)

#: columns of train.parquet (``bench train``); README documents every one
TRAIN = pa.schema(
    [
        ("run_id", pa.string()),
        ("problem", pa.string()),
        ("problem_options", pa.string()),
        ("estimator", pa.string()),
        ("estimator_options", pa.string()),
        ("n_samples", pa.int64()),
        ("variance_repeats", pa.int64()),
        ("lr", pa.float64()),
        ("step", pa.int64()),
        ("wall_s", pa.float64()),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("device", pa.string()),
        ("dtype", pa.string()),
        ("seed", pa.int64()),
    ]
    + PROVENANCE
)

STATUSES = ("ok", "skipped", "failed")


def table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Rows as a table of ``schema``: missing columns are null, unknown ones are an error."""
    names = set(schema.names)
    for row in rows:
        extra = set(row) - names
        if extra:
            raise KeyError(f"columns not in the schema: {sorted(extra)}")
    return pa.Table.from_pylist(rows, schema=schema)
