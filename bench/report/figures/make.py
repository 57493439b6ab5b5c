"""Reading a run's tables and drawing all its figures into files (``make_figures``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from bench.report.figures.base import NotApplicable
from bench.report.figures.output import FORMATS, draw, pages, save_all
from bench.report.figures.registry import FIGURES, get_figure
from bench.report.theme import get_size

Progress = Callable[[str], None]


def load_tables(run_dir: str | Path) -> dict[str, pd.DataFrame]:
    """The tables of a run directory: ``cells`` and ``train`` where present.

    Raises:
        ValueError: the directory has neither cells.parquet nor train.parquet.
    """
    root = Path(run_dir)
    tables = {
        name: pd.read_parquet(root / f"{name}.parquet")
        for name in ("cells", "train") if (root / f"{name}.parquet").is_file()
    }
    if not tables and (root / "cells").is_dir():
        raise ValueError(f"{root}: no cells.parquet yet (an interrupted bench run?); re-run "
                         "the same bench run command to finish and consolidate it")
    if not tables:
        raise ValueError(f"{root}: no cells.parquet or train.parquet (is it a run directory?)")
    return tables


def parse_formats(text: str | Sequence[str]) -> list[str]:
    """``'png,pdf'`` -> ``['png', 'pdf']``, checked against ``FORMATS``."""
    items = [f.strip().lower() for f in (text.split(",") if isinstance(text, str) else text)]
    items = [f for f in items if f]
    bad = [f for f in items if f not in FORMATS]
    if bad or not items:
        raise ValueError(f"invalid --format {text!r}; valid formats: {', '.join(FORMATS)}")
    return list(dict.fromkeys(items))


def _draw_pages(name: str, table: pd.DataFrame, out: Path, formats: Sequence[str], size: str,
                strict: bool, progress: Progress) -> tuple[list[Path], list[str]]:
    """The files of one figure (``pages``); a page without data is a note (an error if
    ``strict``: the figure was asked for by name)."""
    figure = FIGURES[name]
    written, notes = [], []
    parts = pages(figure, table, get_size(size))
    for i, (stem, part) in enumerate(parts, 1):
        missing = [c for c in figure.columns if c not in part.columns]
        if missing and not strict:
            notes.append(f"{stem}: skipped, the {figure.table} table lacks {missing} "
                         "(made by an older version)")
            continue
        start = time.perf_counter()
        page = f" (page {i} of {len(parts)})" if len(parts) > 1 else ""
        progress(f"{stem}: drawing{page}")
        try:
            plot, width, height = draw(name, part, size)
        except NotApplicable as reason:
            if strict:
                raise ValueError(f"figure {name!r}: {reason}") from None
            notes.append(f"{stem}: skipped, {reason}")
            continue
        written += save_all(plot, [out / f"{stem}.{fmt}" for fmt in formats], width, height)
        progress(f"{stem}: {width:g} x {height:g} in, {', '.join(formats)} in "
                 f"{time.perf_counter() - start:.1f} s")
    return written, notes


def make_figures(
    tables: dict[str, pd.DataFrame],
    out: str | Path,
    formats: Sequence[str] = ("png",),
    size: str = "double",
    names: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> tuple[list[Path], list[str]]:
    """Draw figures from ``tables`` into ``out`` as ``<name>.<format>``, or one file per page
    when a figure's problems do not fit one (``output.pages``).

    Args:
        names: the figures to draw; None draws every figure whose table is present and
            skips, with a note, those that do not apply to the data.
        progress: called with a line at each stage (e.g. printing to stderr).

    Returns:
        the written files and the notes on skipped figures.

    Raises:
        ValueError: a named figure's table is missing, lacks columns, or has no data for it.
    """
    get_size(size)
    report = progress or (lambda line: None)
    chosen = list(FIGURES) if names is None else [get_figure(n).name for n in names]
    written, notes = [], []
    for name in chosen:
        figure = FIGURES[name]
        if figure.table not in tables:
            if names is not None:
                raise ValueError(f"figure {name!r} needs {figure.table}.parquet, which is absent")
            notes.append(f"{name}: skipped, no {figure.table}.parquet")
            continue
        files, skipped = _draw_pages(name, tables[figure.table], Path(out), formats, size,
                                     names is not None, report)
        written += files
        notes += skipped
    return written, notes
