"""Writing a reproduction's outcome and the summary a reader sees.

Files in the output directory (``bench reproduce NAME --out DIR``):

* ``run.parquet``: the measurements (``Outcome.data``) with the reproduction, mode, seed,
  commit and time of the run in every row;
* ``comparison.csv`` and ``comparison.md``: ours next to the published values (source cited),
  then the checked claims, the estimators still waiting and the notes;
* ``figure.png``: the figure of the run (when one could be drawn).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pyarrow as pa

from bench import env
from bench.files import atomic_write, write_table
from bench.reproduce.base import Outcome, Reproduction

#: raster resolution of the written figure (the shared theme's 300 dpi makes large files)
FIGURE_DPI = 150


def _markdown_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "(none)\n"
    cells = frame.astype(object).where(frame.notna(), "")
    text = [list(map(str, frame.columns))]
    text += [
        [f"{v:.6g}" if isinstance(v, float) else str(v) for v in row]
        for row in cells.itertuples(index=False)
    ]
    lines = ["| " + " | ".join(row) + " |" for row in text]
    lines.insert(1, "|" + "---|" * len(frame.columns))
    return "\n".join(lines) + "\n"


def claims_frame(outcome: Outcome) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"claim": c.text, "source": c.source, "verdict": c.verdict, "measured": c.measured}
            for c in outcome.claims
        ],
        columns=["claim", "source", "verdict", "measured"],
    )


def report_markdown(reproduction: type[Reproduction], outcome: Outcome, seed: int) -> str:
    """The comparison page: header, table, claims, waiting estimators, notes."""
    parts = [
        f"# {reproduction.name} ({outcome.mode} version)\n",
        f"{reproduction.paper}, {reproduction.target}: {reproduction.title}.\n",
        f"seed {seed}; commit {env.git_commit()}; {env.utc_now()}\n",
        "## Ours next to the published values\n",
        _markdown_table(outcome.comparison),
        "## Claims checked on this run (published ones cite the paper; derived ones say so)\n",
        _markdown_table(claims_frame(outcome)),
    ]
    if outcome.waiting or outcome.errors:
        lines = outcome.waiting + outcome.errors
        parts += ["## Left out\n", "".join(f"- {line}\n" for line in lines)]
    if outcome.notes:
        parts += ["## Notes\n", "".join(f"- {line}\n" for line in outcome.notes)]
    return "\n".join(parts)


def write_outcome(
    reproduction: type[Reproduction], outcome: Outcome, out: Path, seed: int
) -> list[Path]:
    """Write the files of the module docstring into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    data = outcome.data.copy()
    data.insert(0, "reproduction", outcome.reproduction)
    data.insert(1, "mode", outcome.mode)
    data["seed"] = seed
    data["git_commit"] = env.git_commit()
    data["created_utc"] = env.utc_now()
    written = [out / "run.parquet", out / "comparison.csv", out / "comparison.md"]
    write_table(written[0], pa.Table.from_pandas(data, preserve_index=False))
    table = outcome.comparison.copy()
    table.insert(0, "reproduction", outcome.reproduction)
    table.insert(1, "mode", outcome.mode)
    atomic_write(written[1], lambda tmp: table.to_csv(tmp, index=False))
    text = report_markdown(reproduction, outcome, seed)
    atomic_write(written[2], lambda tmp: tmp.write_text(text))
    if outcome.figure is not None:
        path = out / "figure.png"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # plotnine's notes on missing values and sizes
            atomic_write(
                path,
                lambda tmp: outcome.figure.save(tmp, format="png", dpi=FIGURE_DPI, verbose=False),
            )
        written.append(path)
    return written


def summary_text(reproduction: type[Reproduction], outcome: Outcome) -> str:
    """What ``bench reproduce`` prints when the run is done."""
    lines = [
        f"{reproduction.name}: {reproduction.paper}, {reproduction.target}"
        + (
            "  [SHORT version: scaled down, not the paper's scale]"
            if outcome.mode == "short"
            else "  [full version]"
        ),
    ]
    lines += [f"  {line}" for line in outcome.waiting]
    lines += [f"  ERROR: {line}" for line in outcome.errors]
    if not outcome.comparison.empty:
        lines += ["", "ours next to the published values:"]
        shown = outcome.comparison.drop(columns=["source"]).fillna("")
        lines += [
            "  " + row
            for row in shown.to_string(index=False, float_format=lambda v: f"{v:.4g}").splitlines()
        ]
        sources = sorted(set(outcome.comparison["source"]) - {""})
        lines += [f"  source: {s}" for s in sources]
    if outcome.claims:
        lines += ["", "claims checked (published ones cite the paper; derived ones say so):"]
        lines += [f"  {c.verdict:>11}  {c.text} [{c.source}]: {c.measured}" for c in outcome.claims]
    if outcome.notes:
        lines += ["", "notes:"] + [f"  - {n}" for n in outcome.notes]
    return "\n".join(lines)
