"""``overview``: per problem, estimators ranked by mean squared error at the largest K of that
problem, with 95% intervals; hollow markers: biased on that problem (by the estimator's
declarations, ``common.biased_on``); an MSE at rounding level sits on the panel's dotted
floor; a problem whose truth is itself an estimate (``truth == "reference"``) says so. One
row of text per estimator: a page holds as many problems as their rows allow."""

from __future__ import annotations

import pandas as pd
from plotnine import aes, coord_flip, geom_errorbar, geom_point, ggplot, labs, scale_x_discrete
from plotnine import theme as plot_theme

from bench.report.figures.axes import floor_caption, floor_line, floor_values, log10
from bench.report.figures.base import Drawn, NotApplicable
from bench.report.figures.common import (
    biased,
    estimator_scales,
    grid_per_page,
    ok_rows,
    positive,
    with_panels,
    with_variants,
    wrap_panels,
)
from bench.report.theme import Size

#: overview height per estimator and per panel strip and axis, inches
ROW_IN, STRIP_IN = 0.15, 0.55
#: the separator of facet-local category labels (see ``_ordered_within``)
_WITHIN = "\x1f"


def _ordered_within(table: pd.DataFrame, value: str) -> pd.DataFrame:
    """Order ``variant`` by ``value`` inside each panel (facets with free scales keep it)."""
    table = table.sort_values(["panel", value], ascending=[True, False])
    key = table["panel"].astype(str) + _WITHIN + table["variant"].astype(str)
    return table.assign(within=pd.Categorical(key, categories=list(dict.fromkeys(key))))


def _label_estimated_truth(table: pd.DataFrame) -> pd.DataFrame:
    """Append "truth estimated" to the panel of problems whose truth is itself an estimate
    (``truth == "reference"``: a large-sample estimate of the harness, not exact)."""
    if "truth" not in table.columns:
        return table
    estimated = set(table.loc[table["truth"] == "reference", "panel"].astype(str))
    if not estimated:
        return table
    names = {p: f"{p}\n(truth estimated)" if p in estimated else p
             for p in table["panel"].cat.categories}
    return table.assign(panel=table["panel"].cat.rename_categories(names))


def _at_largest_k(cells: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    table = with_variants(with_panels(positive(ok_rows(cells), ["mse"])), default_only=True)
    if table.empty:
        raise NotApplicable("no cell has a truth to measure the mean squared error against")
    largest = table.groupby("panel", observed=True)["n_samples"].transform("max")
    table = _label_estimated_truth(table[table["n_samples"] == largest])
    sizes = sorted(set(table["n_samples"]))
    return table, f"K = {sizes[0]}" if len(sizes) == 1 else "the largest K of each problem"


def overview(cells: pd.DataFrame, size: Size) -> Drawn:
    table, at = _at_largest_k(cells)
    table = table.assign(
        biased=biased(table).to_numpy(),
        low=table["mse_ci_low"].where(table["mse_ci_low"] > 0, table["mse"]),
        high=table["mse_ci_high"].where(table["mse_ci_high"] > 0, table["mse"]),
    )
    table, lines = floor_values(table, "mse", ["low"])
    table = _ordered_within(table, "shown")
    real = table[~table["at_floor"]]
    # estimator names label every panel: half as many panels a row as the other figures
    facet, rows = wrap_panels(table, max(1, size.max_cols // 2))
    per_row = ROW_IN * table.groupby("panel", observed=True).size().max()
    height = round(rows * (per_row + STRIP_IN) + size.extra_in, 2)
    caption = (f"at {at}; bars: 95% intervals (drawn over the marker)\n"
               "hollow: biased on this problem (declared)" + floor_caption(table))
    if table["panel"].astype(str).str.contains("truth estimated").any():
        caption += ("\ntruth estimated: measured against a large-sample reference estimate, "
                    "not an exact gradient")
    plot = (
        ggplot(table, aes("within", "shown", color="estimator"))
        + floor_line(lines)
        + geom_point(aes(shape="estimator"), data=table[~table["biased"]], size=2.0)
        + geom_point(aes(shape="estimator"), data=table[table["biased"]], size=2.0,
                     fill="white")
        + geom_errorbar(aes(ymin="low", ymax="high"), data=real, width=0.35, size=0.4)
        + scale_x_discrete(labels=lambda keys: [k.split(_WITHIN, 1)[1] for k in keys])
        + log10(y=True, y_floors=lines["floor"])
        + coord_flip()
        + facet
        + labs(x="", y="MSE ||g − ∇L||²", caption=caption)
        + estimator_scales(table)
    )
    return Drawn(plot, rows, plot_theme(legend_position="none"), height)


def per_page(cells: pd.DataFrame, size: Size) -> int:
    """Problems a page holds: rows of panels as tall as the most estimators of a problem."""
    ok = ok_rows(cells)
    most = ok.groupby(["problem", "problem_options"])["estimator"].nunique().max() if len(
        ok) else 1
    cols = max(1, size.max_cols // 2)
    return grid_per_page(cells.iloc[:0], size, row_in=ROW_IN * most + STRIP_IN, cols=cols)
