"""``efficiency`` and ``efficiency_evals``: mean squared error ||g - grad L||^2 (bias included,
so that a biased estimator is not rewarded for a low variance) against the cost of an
estimate, one point per K: the median wall-clock time with its interquartile range (log
axis), or the evaluations of the cost (the distinct counts of a panel in order, evenly
spaced, each labelled with its integer count; estimators sharing a count are set side by
side inside its slot). The lower left wins (MSE x cost per estimate is the cost of a given
accuracy). An MSE at rounding level sits on the panel's dotted floor
(``bench.report.figures.axes``); hollow markers: biased on that problem.

References: Glynn & Whitt (1992), "The Asymptotic Efficiency of Simulation Estimators",
Operations Research 40(3).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from plotnine import (
    aes,
    geom_linerange,
    geom_path,
    geom_point,
    geom_segment,
    ggplot,
    labs,
    scale_x_continuous,
)

from bench.report.figures.axes import floor_caption, floor_line, floor_values, log10
from bench.report.figures.base import Drawn, NotApplicable
from bench.report.figures.common import (
    biased,
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

#: x positions of the panels of ``efficiency_evals`` are panel * SLOT_SPAN + rank of the count
SLOT_SPAN = 1000
#: half the width of a count's slot that estimators sharing it spread over
SLOT_HALF = 0.3


def _prepared(cells: pd.DataFrame, x: str) -> pd.DataFrame:
    table = positive(ok_rows(cells), ["mse", x])
    table = with_variants(with_panels(table), default_only=True)
    if table.empty:
        raise NotApplicable(f"no cell has a mean squared error and a positive {x}")
    table = table.sort_values("n_samples")
    table = table.assign(
        low=table["mse_ci_low"].where(table["mse_ci_low"] > 0, table["mse"]),
        high=table["mse_ci_high"].where(table["mse_ci_high"] > 0, table["mse"]),
        biased=biased(table).to_numpy(),
    )
    return floor_values(table, "mse", ["low"])


def _by_time(table: pd.DataFrame, floors: pd.Series) -> tuple[pd.DataFrame, list]:
    cost = table["time_per_estimate_s"] * 1e3
    iqr = table["time_iqr_s"].fillna(0) * 1e3 if "time_iqr_s" in table.columns else 0
    table = table.assign(xpos=cost, cost=cost, cost_low=(cost - iqr / 2).clip(lower=cost / 10),
                         cost_high=cost + iqr / 2)
    layers = [geom_segment(aes(x="cost_low", xend="cost_high", yend="shown"),
                           data=table[~table["at_floor"]], size=0.4, alpha=0.8)]
    return table, layers + log10(x=True, y=True, y_floors=floors)


def _slots(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[float, str]]:
    """``xpos`` of each row: the panel's slot of its count, plus a fixed offset per variant
    of the panel; and the label (the integer count) of every slot centre."""
    labels: dict[float, str] = {}
    parts = []
    for j, (_, rows) in enumerate(table.groupby("panel", observed=True, sort=True)):
        counts = sorted(set(rows["cost_evals"].astype(int)))
        rank = {c: j * SLOT_SPAN + i for i, c in enumerate(counts)}
        labels |= {float(p): str(c) for c, p in rank.items()}
        variants = list(dict.fromkeys(rows.sort_values("estimator")["variant"]))
        step = 2 * SLOT_HALF / max(len(variants) - 1, 1)
        offset = {v: (i * step - SLOT_HALF) if len(variants) > 1 else 0.0
                  for i, v in enumerate(variants)}
        parts.append(rows.assign(xpos=rows["cost_evals"].astype(int).map(rank)
                                 + rows["variant"].map(offset)))
    return pd.concat(parts), labels


def _by_evals(table: pd.DataFrame, floors: pd.Series) -> tuple[pd.DataFrame, list]:
    table, labels = _slots(table)
    centres = np.array(sorted(labels))

    def breaks(limits):
        low, high = (float(v) for v in limits)
        inside = centres[(centres >= low - 1e-9) & (centres <= high + 1e-9)]
        return list(inside[:: int(np.ceil(len(inside) / 6))]) if len(inside) else []

    scale = scale_x_continuous(breaks=breaks, labels=lambda v: [labels.get(float(x), "")
                                                                for x in v],
                               minor_breaks=[], expand=(0, 0.5))
    return table, [scale, *log10(y=True, y_floors=floors)]


def _efficiency(cells: pd.DataFrame, size: Size, by: str) -> Drawn:
    """MSE against the cost of an estimate: ``by`` = ``time`` or ``evals``."""
    table, lines = _prepared(cells, "time_per_estimate_s" if by == "time" else "cost_evals")
    by_x = _by_time if by == "time" else _by_evals
    table, layers = by_x(table, lines["floor"])
    if by == "time":
        xlab, bars = ("wall-clock time per estimate (ms)",
                      "bars: 95% interval of the MSE; interquartile range of the time")
    else:
        xlab, bars = ("cost evaluations per estimate",
                      "bars: 95% interval of the MSE; x: the panel's counts in order, "
                      "estimators sharing a count side by side")
    real = table[~table["at_floor"]]
    joined = table.groupby(["panel", "variant"], observed=True)["n_samples"].transform("size")
    facet, rows = wrap_panels(table, size.max_cols)
    plot = (
        ggplot(table, aes("xpos", "shown", color="estimator", group="variant"))
        + floor_line(lines)
        + geom_linerange(aes(ymin="low", ymax="high"), data=real, size=0.4, alpha=0.8)
        + ([geom_path(data=table[joined > 1], size=0.4, alpha=0.7)] if (joined > 1).any()
           else [])
        + layers
        + geom_point(aes(shape="estimator"), data=table[~table["biased"]], size=1.4)
        + geom_point(aes(shape="estimator"), data=table[table["biased"]], size=1.4,
                     fill="white", stroke=0.4, show_legend=False)
        + facet
        + labs(x=xlab, y="MSE ||g − ∇L||²",
               caption="one point per K, joined in order of K; lower left is better\n"
               f"{bars}; hollow: biased on this problem" + floor_caption(table))
        + estimator_scales(table)
    )
    return Drawn(plot, rows, legend=legend_names(table))


def efficiency(cells: pd.DataFrame, size: Size) -> Drawn:
    return _efficiency(cells, size, "time")


def efficiency_evals(cells: pd.DataFrame, size: Size) -> Drawn:
    return _efficiency(cells, size, "evals")


def per_page(cells: pd.DataFrame, size: Size) -> int:
    return grid_per_page(cells, size)
