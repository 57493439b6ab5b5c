"""Paper figures from a run's tables, drawn with plotnine: one module per figure family.

Each figure is an entry of ``FIGURES`` (``registry``): the table it reads (``cells`` =
cells.parquet of ``bench run``, ``train`` = train.parquet of ``bench train``), the columns it
needs, a function that draws it, and how many problems a page of it holds. Every figure uses
the theme, size presets and per-estimator styles of ``bench.report.theme``, fits a page
(``base.PAGE_HEIGHT_IN``; ``make_figures`` splits more problems into several files, by
problem family), draws rounding-level values on a marked floor (``axes``), and marks as
biased an estimator that is biased on that problem by its declarations (``common``).

* ``variance``: ``variance_vs_samples``; ``tau``: ``tau_tradeoff``; ``efficiency``:
  ``efficiency`` and ``efficiency_evals``; ``overview``; ``training``: training curves;
  ``reproductions``: the figures of ``bench reproduce``.
* ``common`` (table preparation, bias per problem), ``axes`` (breaks, labels, floor),
  ``output`` (drawing at a size, pages), ``make`` (files).

Figures 1, 3 and 5 show each estimator at its default options when the table has them
(e.g. tau = 1), else every variant, labelled with its options.
"""

from bench.report.figures.base import (
    MAX_HEIGHT_IN,
    PAGE_HEIGHT_IN,
    Drawn,
    Figure,
    NotApplicable,
    check_columns,
)
from bench.report.figures.make import load_tables, make_figures, parse_formats
from bench.report.figures.output import FORMATS, draw, pages, save, wrap_caption
from bench.report.figures.registry import FIGURES, get_figure

__all__ = [
    "FIGURES",
    "FORMATS",
    "MAX_HEIGHT_IN",
    "PAGE_HEIGHT_IN",
    "Drawn",
    "Figure",
    "NotApplicable",
    "check_columns",
    "draw",
    "get_figure",
    "load_tables",
    "make_figures",
    "pages",
    "parse_formats",
    "save",
    "wrap_caption",
]
