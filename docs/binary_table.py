"""Print the table of docs/estimators_binary.md from the cells of one or more run directories.

The page's runs (single-threaded, the default seed)::

    bench run --estimator ESTIMATORS --problem bernoulli_toy,bernoulli_vae --samples 2,10 \\
        --repeats 1000 --threads 1 --out results/binary
    bench run --estimator rebar --set tune=true --problem bernoulli_toy,bernoulli_vae \\
        --samples 2,10 --repeats 1000 --threads 1 --out results/binary_tuned
    python docs/binary_table.py results/binary results/binary_tuned

One row per (problem, K, estimator, options): the evaluations of f per estimate, the variance
(trace of the covariance of one estimate) with its 95% bootstrap interval, the variance times
the evaluations (the variance at equal compute, up to the cost of the pathwise terms), the
p-value of the bias test and the warm-up steps of a learned control variate.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

#: estimator options worth naming in the table (the others are defaults or inactive)
SHOWN = ("tune",)


def label(row: pd.Series) -> str:
    """The estimator with the options that distinguish its rows, e.g. ``rebar (tune)``."""
    options = json.loads(row["estimator_options"] or "{}")
    extra = [name for name in SHOWN if options.get(name) is True]
    return f"{row['estimator']} ({', '.join(extra)})" if extra else row["estimator"]


def table(run_dirs: list[Path]) -> str:
    cells = pd.concat([pd.read_parquet(d / "cells.parquet") for d in run_dirs])
    cells = cells[cells["status"] == "ok"].copy()
    cells["label"] = cells.apply(label, axis=1)
    cells = cells.sort_values(["problem", "n_samples", "variance_trace"], kind="stable")
    lines = [
        "| problem | K | estimator | f evals | variance [95% CI] | variance × evals "
        "| bias p | warm-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, row in cells.iterrows():
        lines.append(
            f"| {row['problem']} | {row['n_samples']} | `{row['label']}` | {row['cost_evals']} "
            f"| {row['variance_trace']:.3g} [{row['variance_trace_ci_low']:.3g}, "
            f"{row['variance_trace_ci_high']:.3g}] "
            f"| {row['variance_trace'] * row['cost_evals']:.3g} | {row['bias_p_value']:.2f} "
            f"| {int(row['warmup_steps'])} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table([Path(arg) for arg in sys.argv[1:]]))
