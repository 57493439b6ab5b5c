"""Drawing a registered figure at a size preset, splitting a table into pages, and writing
the files: ``make_figures`` draws every figure of a run, one file per page, and reports
each stage to a ``progress`` callback (``bench figures`` prints them to stderr)."""

from __future__ import annotations

import functools
import math
import operator
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from plotnine import ggplot, guide_legend, guides, labs, theme
from plotnine.composition import Compose

from bench.registry import current_registry
from bench.report.figures.base import MAX_HEIGHT_IN, Figure, check_columns
from bench.report.figures.common import (
    LEGEND_LINE_IN,
    legend_columns,
    legend_height,
    order_estimators,
)
from bench.report.figures.registry import get_figure
from bench.report.theme import TEXT_PT, Size, get_size, paper_theme

FORMATS = ("png", "pdf", "svg")
#: caption lines the presets' ``extra_in`` leaves room for; each further line adds its height
CAPTION_LINES = 2


def wrap_caption(text: str, width_in: float) -> str:
    """``text`` with its lines wrapped to fit ``width_in`` inches at the caption's size
    (an average character of the theme's sans-serif font is about 0.6 em wide)."""
    chars = max(20, int(width_in * 72 / (TEXT_PT * 0.62)))
    return "\n".join(part for line in text.split("\n")
                     for part in (textwrap.wrap(line, chars) or [""]))


def natural_height(drawn, preset: Size, caption: str | None) -> float:
    """The height ``drawn`` needs: its panel rows, legend lines beyond the first two and
    caption lines beyond ``CAPTION_LINES`` (``draw`` caps it at a page, ``MAX_HEIGHT_IN``)."""
    base = drawn.height_in or preset.height_in(drawn.rows)
    legend = max(0.0, legend_height(drawn.legend, preset) - 2 * LEGEND_LINE_IN)
    lines = max(0, len(caption.split("\n")) - CAPTION_LINES) if caption else 0
    # in steps of 1/20 in, a whole number of pixels at 40, 100 and 300 dpi
    return math.ceil(round((base + legend + lines * LEGEND_LINE_IN) * 20, 6)) / 20


def _compose(drawn, styled: list, width: float, height: float) -> Compose:
    """One legend for composed panels: on the last one, beside it or below the stack."""
    beside = drawn.rows == 1
    panels = [panel + styled + theme(legend_position="none") for panel in drawn.plot]
    if beside:
        panels[-1] = panels[-1] + theme(legend_position="right") + guides(
            color=guide_legend(ncol=1))
    else:
        panels[-1] = panels[-1] + theme(legend_position="bottom")
    if drawn.caption:
        panels[-1] = panels[-1] + labs(caption=wrap_caption(drawn.caption, width))
    composed = functools.reduce(operator.or_ if beside else operator.truediv, panels)
    return composed & theme(figure_size=(width, height))


def draw(name: str, table: pd.DataFrame, size: str | Size = "double") -> tuple[
        ggplot | Compose, float, float]:
    """Draw figure ``name`` from ``table`` at a size preset (one drawing, at most a page
    tall: ``make_figures`` splits a table with more problems than a page holds).

    Returns:
        the plot, its width and height in inches.

    Raises:
        ValueError: unknown figure or size, or ``table`` lacks the figure's columns.
        NotApplicable: the table holds no data the figure applies to.
    """
    figure = get_figure(name)
    preset = get_size(size) if isinstance(size, str) else size
    check_columns(figure, table)
    drawn = figure.draw(table, preset)
    width = preset.width_in
    single = isinstance(drawn.plot, ggplot)
    caption = drawn.plot.labels.caption if single else drawn.caption
    caption = wrap_caption(caption, width) if caption else None
    height = min(natural_height(drawn, preset, caption), MAX_HEIGHT_IN)
    styled = paper_theme() + theme(figure_size=(width, height))
    if drawn.tweaks is not None:
        styled = styled + drawn.tweaks
    cols = legend_columns(drawn.legend, preset) if drawn.legend else preset.legend_cols
    styled = [styled, guides(color=guide_legend(ncol=cols), shape=guide_legend(ncol=cols))]
    if single:
        return drawn.plot + styled + (labs(caption=caption) if caption else []), width, height
    return _compose(drawn, styled, width, height), width, height


def save(plot: ggplot | Compose, path: Path, width: float, height: float) -> Path:
    """Write ``plot`` to ``path`` (format from the suffix) at ``width`` x ``height`` inches."""
    return save_all(plot, [path], width, height)[0]


def save_all(plot: ggplot | Compose, paths: Sequence[Path], width: float,
             height: float) -> list[Path]:
    """Write ``plot`` to every path (format from each suffix) at ``width`` x ``height``
    inches, drawing it once: plotnine's drawing takes most of the time (a figure of 40
    estimators: about 20 s to draw, 5 s to write a format), so formats share one drawing."""
    if isinstance(plot, ggplot):
        plot = plot + theme(figure_size=(width, height))
    figure = plot.draw(show=False)
    try:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            figure.savefig(path, format=path.suffix.lstrip("."), dpi=figure.get_dpi())
    finally:
        plt.close(figure)
    return list(paths)


def _family(problem: str) -> str:
    cls = current_registry().problems.get(problem)
    return str(cls.latent) if cls is not None else "other"


def _estimator_groups(figure: Figure, rows: pd.DataFrame, size: Size) -> list[list[str]]:
    """The estimators of ``rows`` in the fewest consecutive groups (registry order) whose
    legend leaves room for a row of panels on a page."""
    names = list(dict.fromkeys(order_estimators(rows)["estimator"].cat.categories))
    for k in range(2, len(names) + 1):
        groups = [list(g) for g in np.array_split(names, k)]
        if all(figure.per_page(rows[rows["estimator"].isin(g)], size) >= 1 for g in groups):
            return groups
    return [[n] for n in names]


def _chunks(figure: Figure, rows: pd.DataFrame, size: Size, stem: str,
            members: list) -> list[tuple[str, list, list[str] | None]]:
    """Pages of the problems ``members`` of one family: (stem, problems, estimators or None
    for all); the estimators are split too when their legend alone fills a page."""
    capacity = figure.per_page(rows, size)
    if capacity >= 1:
        chunks = [members[i:i + capacity] for i in range(0, len(members), capacity)]
        return [(stem + (f"-{j + 1}" if len(chunks) > 1 else ""), chunk, None)
                for j, chunk in enumerate(chunks)]
    out = []
    for g, names in enumerate(_estimator_groups(figure, rows, size), 1):
        part = rows[rows["estimator"].isin(names)]
        out += [(s, chunk, names) for s, chunk, _ in _chunks(
            figure, part, size, f"{stem}-estimators{g}", members)]
    return out


def pages(figure: Figure, table: pd.DataFrame, size: Size) -> list[tuple[str, pd.DataFrame]]:
    """The files of ``figure`` for ``table``: one named after the figure if its problems fit
    a page (``Figure.per_page``), else one per page, the problems grouped by family (their
    latent kind: ``<figure>-<family>[-<page>]``; ``-estimators<g>`` when a page cannot hold
    the legend of all the family's estimators), or, for a figure of one problem a page,
    ``<figure>-<problem>`` (``-<i>`` for a problem with several option sets)."""
    if table.empty or not set(figure.columns) <= set(table.columns):
        return [(figure.name, table)]
    keys = list(table[["problem", "problem_options"]].drop_duplicates().itertuples(index=False))
    capacity = figure.per_page(table, size)
    if 1 <= len(keys) <= capacity:
        return [(figure.name, table)]
    index = pd.MultiIndex.from_frame(table[["problem", "problem_options"]])
    if capacity == 1:
        problems = [p for p, _ in keys]
        return [(f"{figure.name}-{p}" if problems.count(p) == 1
                 else f"{figure.name}-{p}-{problems[:i].count(p) + 1}", table[index.isin([key])])
                for i, (p, key) in enumerate(zip(problems, keys, strict=True))]
    families: dict[str, list] = {}
    for key in keys:
        families.setdefault(_family(key[0]), []).append(key)
    out = []
    for family, members in families.items():
        rows = table[index.isin(members)]
        for stem, chunk, names in _chunks(figure, rows, size, f"{figure.name}-{family}",
                                          members):
            keep = index.isin(chunk) & (table["estimator"].isin(names) if names is not None
                                        else True)
            out.append((stem, table[keep]))
    return out
