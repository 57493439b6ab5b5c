"""Figures of ``bench reproduce``: curves of estimators whose values nearly coincide, drawn so
that every curve stays visible.

``difference_figure``: a row of the metric itself, and a row of each estimator's difference
from a reference estimator, paired by replicate (the difference the reproduction's claims
test), with its 95% Student-t interval over replicates as a band and a zero line; every
estimator carries its own colour and marker (``bench.report.theme``). Five curves that agree
to 1e-4 on a loss of 0.35 (the ReinMax polynomial programme) are one line in the first row
and apart in the second.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.stats
from plotnine import (
    aes,
    facet_grid,
    geom_hline,
    geom_line,
    geom_point,
    geom_ribbon,
    ggplot,
    labs,
    scale_color_manual,
    scale_fill_manual,
    scale_shape_manual,
    theme,
)

from bench.report.theme import estimator_styles, paper_theme

#: markers per curve: about this many records of each carry one
MARKS = 6


def _paired(data: pd.DataFrame, metric: str, reference: str) -> pd.DataFrame:
    """Per setting, series and step: the mean of ``metric`` over replicates, and the mean
    and 95% interval of its difference from ``reference`` at the same replicate."""
    rows = data[data["metric"] == metric]
    ref = rows[rows["series"] == reference][["setting", "replicate", "step", "value"]]
    merged = rows.merge(ref, on=["setting", "replicate", "step"], suffixes=("", "_ref"))
    merged = merged.assign(diff=merged["value"] - merged["value_ref"])
    stats = merged.groupby(["setting", "series", "step"], sort=False).agg(
        value=("value", "mean"), diff=("diff", "mean"), sd=("diff", "std"),
        n=("diff", "count")).reset_index()
    half = (stats["sd"].fillna(0) / np.sqrt(stats["n"])
            * scipy.stats.t.ppf(0.975, np.maximum(stats["n"] - 1, 1))).where(stats["n"] > 1, 0)
    return stats.assign(low=stats["diff"] - half, high=stats["diff"] + half)


def difference_figure(data: pd.DataFrame, metric: str, axis: str, reference: str,
                      caption: str, width: float = 7.0):
    """The metric per step (first row) and its difference from ``reference`` (second row),
    one column per setting; None without records of ``metric`` or ``reference``."""
    if data.empty or not ((data["metric"] == metric) & (data["series"] == reference)).any():
        return None
    stats = _paired(data, metric, reference)
    first, second = axis, f"{axis} − {reference}'s"
    long = pd.concat([
        stats.assign(panel=first, y=stats["value"], low=np.nan, high=np.nan),
        stats.assign(panel=second, y=stats["diff"]),
    ])
    long["panel"] = pd.Categorical(long["panel"], categories=[first, second])
    long["setting"] = pd.Categorical(long["setting"],
                                     categories=list(dict.fromkeys(data["setting"])))
    order = list(dict.fromkeys(data["series"]))
    long["series"] = pd.Categorical(long["series"], categories=order)
    steps = np.sort(long["step"].unique())
    marked = long[long["step"].isin(steps[:: max(1, int(np.ceil(len(steps) / MARKS)))])]
    styles = estimator_styles(order)
    replicates = int(data["replicate"].nunique())
    return (
        ggplot(long, aes("step", "y", color="series", group="series"))
        + geom_hline(aes(yintercept=0), data=long[long["panel"] == second].head(1),
                     color="#999999", linetype="dashed", size=0.4)
        + geom_ribbon(aes(ymin="low", ymax="high", fill="series"),
                      data=long[long["panel"] == second], alpha=0.15, color="none")
        + geom_line(size=0.5)
        + geom_point(aes(shape="series"), data=marked, size=1.6, fill="white", stroke=0.6)
        + facet_grid("panel ~ setting", scales="free_y")
        + scale_color_manual(values={n: styles[n].colour for n in order}, limits=order)
        + scale_fill_manual(values={n: styles[n].colour for n in order}, limits=order,
                            guide=None)
        + scale_shape_manual(values={n: styles[n].shape for n in order}, limits=order)
        + labs(x="training step", y="", caption=f"{caption}\nmean over {replicates} "
               f"replicate(s); lower row: difference from {reference} at the same replicate, "
               "band: its 95% interval, dashed: 0")
        + paper_theme()
        + theme(figure_size=(width, 4.6))
    )
