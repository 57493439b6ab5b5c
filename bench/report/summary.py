"""Readable summaries of a run's cells for the terminal (``bench run`` prints one).

One block per problem and set of problem options that varies (its header line names them),
one row per measured cell, at most ``WIDTH`` characters: the estimator, the options that
tell its rows in the block apart (abbreviated; the full options are in cells.parquet), K, the kind
of truth, ``biased`` (``decl``: declared biased by the estimator; ``det``: detected by the
bias test, p < ``BIAS_LEVEL``; ``det!`` where an estimator declared unbiased is detected:
a bug, heavy tails or a 1-in-20 false alarm), bias (sqrt of the unbiased squared bias), its
p-value, the variance trace, the mse and ``best``: ``*`` marks the lowest mse among the cells
of the block with the same K and a truth, ``=`` a cell whose mse interval overlaps the best's
(not resolved from it, so it may be as good); then ms per estimate.
"""

from __future__ import annotations

import json
import textwrap

import pandas as pd

from bench.report.tables import varying

#: the widest row
WIDTH = 120
#: the indentation of a block's rows under its problem
INDENT = "  "
#: p-values below this are printed as ``<1e-16``
P_FLOOR = 1e-16
#: the p-value below which a bias counts as detected
BIAS_LEVEL = 0.05
#: the columns after the options: (heading, width)
COLUMNS = (("K", 5), ("truth", 5), ("biased", 8), ("bias", 9), ("p", 8), ("variance", 9),
           ("mse", 9), ("best", 4), ("ms/est", 8))
#: truth kinds as shown
TRUTH = {"closed_form": "exact", "enumeration": "exact", "quadrature": "exact",
         "reference": "ref", "none": "none"}
#: the legend printed under the table
LEGEND = (
    f"biased: decl = declared by the estimator, det = bias test p < {BIAS_LEVEL} "
    "(det! on an estimator declared unbiased); best: * lowest mse at its problem and K, "
    "= mse interval overlaps the best's (a tie); options abbreviated (full in cells.parquet)"
)


def _short(options_text: str, names: list[str], width: int) -> str:
    """``name:value`` of ``names`` in ``options_text`` (JSON), at most ``width`` characters."""
    values = json.loads(options_text) if isinstance(options_text, str) else {}
    text = ",".join(f"{n}:{values[n]}" for n in names if n in values)
    return text if len(text) <= width else text[: width - 1] + "…"


def _biased(row) -> str:
    unbiased = getattr(row, "unbiased", None)
    declared = pd.notna(unbiased) and not bool(unbiased)
    p_value = getattr(row, "bias_p_value", float("nan"))
    detected = bool(p_value < BIAS_LEVEL) if pd.notna(p_value) else False
    if declared:
        return "decl+det" if detected else "decl"
    return "det!" if detected else "-"


def best_marks(block: pd.DataFrame) -> pd.Series:
    """``*`` for the lowest mse per K among the cells with a truth, ``=`` for a cell whose mse
    interval overlaps that cell's, else ``""`` (see the module docstring)."""
    marks = pd.Series("", index=block.index)
    measured = block[block["mse"].notna()]
    for _, group in measured.groupby("n_samples"):
        best = group["mse"].idxmin()
        high = group.at[best, "mse_ci_high"] if "mse_ci_high" in group else group.at[best, "mse"]
        low = group["mse_ci_low"] if "mse_ci_low" in group else group["mse"]
        marks[group.index[low.fillna(group["mse"]) <= high]] = "="
        marks[best] = "*"
    return marks


def _number(value: float, width: int) -> str:
    return f"{value:.3g}".rjust(width) if pd.notna(value) else "–".rjust(width)


def _p_value(value: float, width: int) -> str:
    """A p-value, ``<1e-16`` below the float floor of a p-value near 1."""
    if pd.notna(value) and value < P_FLOOR:
        return f"<{P_FLOOR:.0e}".rjust(width)
    return _number(value, width)


def _block(block: pd.DataFrame, estimator_width: int, options_width: int) -> list[str]:
    names = {name: varying(group, "estimator_options")
             for name, group in block.groupby("estimator", sort=False)}
    marks = best_marks(block)
    lines = []
    for row in block.itertuples():
        cells = [row.estimator.ljust(estimator_width),
                 _short(row.estimator_options, names[row.estimator], options_width).ljust(
                     options_width),
                 str(row.n_samples).rjust(5), TRUTH.get(row.truth, row.truth).rjust(5),
                 _biased(row).rjust(8)]
        cells += [_number(getattr(row, "bias", float("nan")), 9),
                  _p_value(getattr(row, "bias_p_value", float("nan")), 8)]
        cells += [_number(getattr(row, name, float("nan")), 9) for name in
                  ("variance_trace", "mse")]
        cells += [marks[row.Index].rjust(4), _number(row.time_per_estimate_s * 1e3, 8)]
        lines.append(" ".join(cells).rstrip())
    return lines


def _measured_table(ok: pd.DataFrame) -> list[str]:
    estimator_width = max(9, int(ok["estimator"].str.len().max()))
    fixed = sum(width + 1 for _, width in COLUMNS)
    options_width = max(7, WIDTH - len(INDENT) - fixed - estimator_width - 1)
    heading = ["estimator".ljust(estimator_width), "options".ljust(options_width)]
    heading += [name.rjust(width) for name, width in COLUMNS]
    lines = [INDENT + " ".join(heading)]
    keys = {problem: varying(group, "problem_options") for problem, group in ok.groupby("problem")}
    for (problem, options), block in ok.groupby(["problem", "problem_options"], sort=False):
        shown = _short(options, keys[problem], WIDTH - len(problem) - 3)
        lines.append(f"{problem} ({shown})" if shown else problem)
        lines += [INDENT + line for line in _block(block, estimator_width, options_width)]
    return lines


def summary_table(cells: pd.DataFrame) -> str:
    """A readable summary of the measured cells of a sweep (module docstring), then the
    skipped count and one line per failed cell."""
    ok = cells[cells["status"] == "ok"]
    lines = []
    if len(ok):
        lines += _measured_table(ok) + textwrap.wrap(LEGEND, WIDTH)
    skipped = cells[cells["status"] == "skipped"]
    if len(skipped):
        lines.append(f"{len(skipped)} cell(s) skipped: the pair does not apply (see 'reason').")
    for _, row in cells[cells["status"] == "failed"].iterrows():
        lines.append(f"FAILED {row['problem']}/{row['estimator']} K={row['n_samples']}: "
                     f"{row['reason']}")
    return "\n".join(lines)
