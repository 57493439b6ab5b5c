"""What a figure is: its declaration (``Figure``), what its drawing returns (``Drawn``), and
the exception of a figure that has nothing to show."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
from plotnine import ggplot, theme

from bench.report.theme import Size

#: the page a figure must fit (inches): the text block of the paper templates (ICML and
#: NeurIPS: 6.75 x 9 and 5.5 x 9 in); a figure with more panels is split into several files
PAGE_HEIGHT_IN = 9.0
#: the tallest single drawing ``draw`` makes when called on more panels than fit a page
#: (``make_figures`` splits instead): panels shrink rather than grow past the page
MAX_HEIGHT_IN = PAGE_HEIGHT_IN


class NotApplicable(Exception):
    """The table has the figure's columns but no data the figure applies to."""


@dataclass(frozen=True)
class Drawn:
    """A drawn figure: the plot, its number of panel rows (which sets its height) and the
    figure's own theme settings, applied over the paper theme."""

    plot: ggplot | list[ggplot]  # a list: panels side by side, or stacked if they do not fit
    rows: int
    tweaks: theme | None = None
    height_in: float | None = None  # overrides the preset's height for ``rows``
    caption: str | None = None  # of composed panels, under the last one
    legend: tuple[str, ...] = ()  # the estimators of the legend below the panels


@dataclass(frozen=True)
class Figure:
    """A registered figure.

    Attributes:
        table: ``cells`` or ``train``.
        columns: the columns of that table the figure needs.
        draw: (table, size preset) -> ``Drawn``; raises ``NotApplicable`` when nothing
            applies.
        per_page: (table, size preset) -> how many problems (a problem with one set of
            options each) one page holds; ``make_figures`` splits a table with more into
            several files, by problem family (the latent kind). 1 draws one file per problem.
    """

    name: str
    description: str
    table: str
    columns: tuple[str, ...]
    draw: Callable[[pd.DataFrame, Size], Drawn]
    per_page: Callable[[pd.DataFrame, Size], int]


def check_columns(figure: Figure, table: pd.DataFrame) -> None:
    """Raise ``ValueError`` naming the figure and the columns ``table`` lacks."""
    missing = [c for c in figure.columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"figure {figure.name!r} needs columns {missing} of the {figure.table} table, "
            f"which it lacks; it has: {', '.join(map(str, table.columns)) or '(none)'}"
        )
