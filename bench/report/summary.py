"""Readable summaries of a run's cells for the terminal."""

from __future__ import annotations

import pandas as pd


def summary_table(cells: pd.DataFrame) -> str:
    """A readable summary of the measured cells of a sweep."""
    ok = cells[cells["status"] == "ok"]
    lines = []
    if len(ok):
        table = pd.DataFrame({
            "problem": ok["problem"],
            "estimator": ok["estimator"],
            "options": ok["estimator_options"].str.replace(r'[{}"\s]', "", regex=True),
            "K": ok["n_samples"],
            "truth": ok["truth"],
            "bias_l2": ok["bias_l2"],
            "bias_p": ok["bias_p_value"],
            "noise_floor": ok["bias_l2_noise_floor"],
            "var_trace": ok["variance_trace"],
            "mse": ok["mse"],
            "cosine": ok["cosine"],
            "ms/est": ok["time_per_estimate_s"] * 1e3,
        })
        lines.append(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    skipped = cells[cells["status"] == "skipped"]
    if len(skipped):
        lines.append(f"{len(skipped)} cell(s) skipped: the pair does not apply (see 'reason').")
    for _, row in cells[cells["status"] == "failed"].iterrows():
        lines.append(f"FAILED {row['problem']}/{row['estimator']} K={row['n_samples']}: "
                     f"{row['reason']}")
    return "\n".join(lines)
