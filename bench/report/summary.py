"""Readable summaries of a run's cells for the terminal."""

from __future__ import annotations

import json

import pandas as pd

from bench.report.tables import varying


def _options(ok: pd.DataFrame) -> pd.Series:
    """Per row, ``name:value`` of the problem options that vary between the cells of its
    problem, then of every estimator option, so that no two rows look alike."""
    shown = pd.Series("", index=ok.index)
    for _, group in ok.groupby("problem", sort=False):
        names = varying(group, "problem_options")
        if names:
            shown[group.index] = [
                ",".join(f"{n}:{json.loads(text)[n]}" for n in names)
                for text in group["problem_options"]
            ]
    estimator = ok["estimator_options"].str.replace(r'[{}"\s]', "", regex=True)
    both = (shown != "") & (estimator != "")
    return shown + both.map({True: ",", False: ""}) + estimator


def summary_table(cells: pd.DataFrame) -> str:
    """A readable summary of the measured cells of a sweep: one row per cell, with the
    options that tell its row apart (``_options``)."""
    ok = cells[cells["status"] == "ok"]
    lines = []
    if len(ok):
        table = pd.DataFrame({
            "problem": ok["problem"],
            "estimator": ok["estimator"],
            "options": _options(ok),
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
