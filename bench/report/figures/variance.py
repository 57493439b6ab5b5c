"""``variance_vs_samples``: trace of the gradient covariance against the number of samples K
per estimator and problem, log-log, with the 95% bootstrap band of each point, a tick at
every measured K and a 1/K guide (slope -1: an estimator whose samples are independent has
variance proportional to 1/K). Series are spread slightly around each K so that none hides
another; a variance of 0 up to floating-point rounding is drawn hollow on the panel's dotted
floor (``bench.report.figures.axes``).

References: Mohamed, Rosca, Figurnov, Mnih (2020), "Monte Carlo Gradient Estimation in
Machine Learning", JMLR 21(132).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from plotnine import aes, geom_line, geom_point, geom_ribbon, ggplot, labs, scale_x_log10

from bench.report.figures.axes import (
    dodge,
    floor_caption,
    floor_line,
    floor_values,
    k_breaks,
    log10,
)
from bench.report.figures.base import Drawn, NotApplicable
from bench.report.figures.common import (
    estimator_scales,
    grid_per_page,
    legend_names,
    ok_rows,
    positive,
    with_panels,
    with_variants,
    wrap_panels,
)
from bench.report.theme import Size


def _swept(cells: pd.DataFrame) -> pd.DataFrame:
    """The ok rows with a variance, of variants measured at more than one K."""
    table = ok_rows(cells)
    variance = pd.to_numeric(table["variance_trace"], errors="coerce")
    table = table[np.isfinite(variance) & (variance >= 0) & (table["n_samples"] > 0)]
    table = with_variants(with_panels(table), default_only=True)
    sweeps = table.groupby(["panel", "variant"], observed=True)["n_samples"].nunique()
    table = table.set_index(["panel", "variant"]).loc[sweeps[sweeps > 1].index].reset_index()
    if table.empty:
        raise NotApplicable("no estimator was measured at more than one K")
    return table


def _guide(positive_rows: pd.DataFrame, panels: pd.Index) -> pd.DataFrame:
    """The 1/K guide of each panel, through the median variance at its smallest K."""
    parts = []
    for panel, rows in positive_rows.groupby("panel", observed=True):
        k0 = rows["n_samples"].min()
        v0 = float(np.median(rows.loc[rows["n_samples"] == k0, "variance_trace"]))
        ks = np.geomspace(k0, rows["n_samples"].max(), 20)
        parts.append(pd.DataFrame({"panel": panel, "n_samples": ks, "guide": v0 * k0 / ks}))
    guide = pd.concat(parts) if parts else pd.DataFrame(columns=["panel", "n_samples", "guide"])
    return guide.assign(panel=pd.Categorical(guide["panel"], categories=panels))


def variance_vs_samples(cells: pd.DataFrame, size: Size) -> Drawn:
    table = dodge(_swept(cells).sort_values("n_samples"), "n_samples")
    table, lines = floor_values(table, "variance_trace", ["variance_trace_ci_low"])
    real, zero = table[~table["at_floor"]], table[table["at_floor"]]
    band = positive(real, ["variance_trace_ci_low", "variance_trace_ci_high"])
    guide = _guide(real, table["panel"].cat.categories)
    facet, rows = wrap_panels(table, size.max_cols)
    caption = ("grey dashed: ∝ 1/K; bands: 95% intervals; points spread around each K"
               + floor_caption(table))
    plot = (
        ggplot(real, aes("x_dodged", "shown", color="estimator", group="variant"))
        + geom_line(aes("n_samples", "guide"), data=guide, inherit_aes=False,
                    linetype="dashed", color="#999999", size=0.5)
        + geom_ribbon(
            aes(ymin="variance_trace_ci_low", ymax="variance_trace_ci_high", fill="estimator"),
            data=band, alpha=0.15, color="none",
        )
        + floor_line(lines)
        + geom_line(size=0.5)
        + geom_point(aes(shape="estimator"), size=1.4)
        + geom_point(aes(shape="estimator"), data=zero, size=2.0, fill="white", stroke=0.4,
                     show_legend=False)
        + scale_x_log10(breaks=k_breaks(table["n_samples"]), labels=lambda v: [
            f"{x:g}" for x in v], minor_breaks=[])
        + log10(y=True, y_floors=lines["floor"])
        + facet
        + labs(x="samples per estimate K", y="gradient variance (trace)", caption=caption)
        + estimator_scales(table, fill=True)
    )
    return Drawn(plot, rows, legend=legend_names(table))


def per_page(cells: pd.DataFrame, size: Size) -> int:
    return grid_per_page(cells, size)
