"""``tau_tradeoff``: bias ||E[g] - grad L|| and variance against the temperature tau of the
relaxed estimators, the bias-variance trade-off of Jang et al. (2017) and Maddison et al.
(2017). Dashed: the bias noise floor sqrt(variance / R). A bias is resolved when the 95%
interval of the unbiased squared bias ||mean - grad L||^2 - variance / R excludes 0
(``bias_sq_ci_low`` > 0; in a table without it, when the norm's interval lies above the
floor); an unresolved one (the measured norm is mostly the noise of the mean) is drawn
hollow and never joined into a curve. The norm's bootstrap interval alone is no test: it
need not contain its own point, and lies above the floor for an unbiased estimator whose
norm is the floor plus noise. Options other than tau are at their defaults where the table
has those rows, so that each estimator is one curve.

References: Jang, Gu, Poole (2017), "Categorical Reparameterization with Gumbel-Softmax",
ICLR; Maddison, Mnih, Teh (2017), "The Concrete Distribution", ICLR.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd
from plotnine import aes, facet_wrap, geom_line, geom_point, geom_ribbon, ggplot, labs

from bench.registry import current_registry
from bench.report.figures.axes import log10
from bench.report.figures.base import Drawn, NotApplicable
from bench.report.figures.common import (
    estimator_scales,
    grid_per_page,
    legend_names,
    ok_rows,
    order_estimators,
    parse_options,
    positive,
    with_panels,
)
from bench.report.theme import Size

BIAS = "bias ||E[g] − ∇L||"


def _runs(flags: Sequence[bool]) -> list[int]:
    """Label consecutive True entries with a run number (False entries get -1)."""
    labels, run, previous = [], -1, False
    for flag in flags:
        if flag and not previous:
            run += 1
        labels.append(run if flag else -1)
        previous = flag
    return labels


def _others(estimator: str, text: object) -> tuple[str, bool]:
    """The options other than tau (as text) and whether they are the estimator's defaults."""
    options = {n: v for n, v in parse_options(text).items() if n != "tau"}
    cls = current_registry().estimators.get(estimator)
    defaults = None if cls is None else {n: o.default for n, o in cls.options.items()
                                         if n != "tau"}
    return json.dumps(options, sort_keys=True), options == defaults


def _default_others(table: pd.DataFrame) -> pd.DataFrame:
    """Each estimator's rows whose options other than tau are its defaults, where it has
    such rows (e.g. gst at gap 1 of gap 1 and p), else all its rows; adds ``others``."""
    pairs = [_others(e, o) for e, o in zip(table["estimator"], table["estimator_options"],
                                           strict=True)]
    table = table.assign(others=[o for o, _ in pairs], default=[d for _, d in pairs])
    has_default = table.groupby("estimator")["default"].transform("any").astype(bool)
    return table[table["default"] | ~has_default].drop(columns="default")


def _resolved(table: pd.DataFrame) -> np.ndarray:
    """Whether each row's bias is resolved: the unbiased squared bias's 95% interval
    excludes 0; without that interval, the norm's lies above the noise floor."""
    low = pd.to_numeric(table.get("bias_sq_ci_low", pd.Series(np.nan, index=table.index)),
                        errors="coerce")
    by_norm = table["bias_l2_ci_low"] > table["bias_l2_noise_floor"]
    return low.gt(0).where(low.notna(), by_norm).to_numpy(dtype=bool)


def _swept(cells: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The rows of estimators measured at several tau, at the K most of them share."""
    table = ok_rows(cells).copy()
    table["tau"] = [parse_options(o).get("tau", np.nan) for o in table["estimator_options"]]
    table = _default_others(positive(table, ["tau"]))
    sweeps = table.groupby(["problem", "problem_options", "estimator", "others",
                            "n_samples"])["tau"]
    table = table[sweeps.transform("nunique") > 1]
    if table.empty:
        raise NotApplicable("no relaxed estimator was measured at more than one tau")
    counts = table.groupby("n_samples").size()
    k = int(counts[counts == counts.max()].index.max())
    table = order_estimators(with_panels(table[table["n_samples"] == k])).sort_values("tau")
    table = table.assign(resolved=_resolved(table))
    table["run"] = 0
    for _, rows in table.groupby(["panel", "estimator", "others"], observed=True):
        table.loc[rows.index, "run"] = _runs(rows["resolved"].tolist())
    return table, k


def _long(table: pd.DataFrame) -> pd.DataFrame:
    """Bias and variance stacked as ``quantity`` / ``value`` with their intervals."""
    long = pd.concat([
        table.assign(quantity=BIAS, value=table["bias_l2"], low=table["bias_l2_ci_low"],
                     high=table["bias_l2_ci_high"], floor=table["bias_l2_noise_floor"]),
        table.assign(quantity="variance (trace)", value=table["variance_trace"],
                     low=table["variance_trace_ci_low"], high=table["variance_trace_ci_high"],
                     floor=np.nan, resolved=True, run=0),
    ])
    long["quantity"] = pd.Categorical(long["quantity"], categories=list(
        dict.fromkeys(long["quantity"])))
    long = positive(long, ["value"])
    curve = long["estimator"].astype(str) + "/" + long["others"]
    return long.assign(curve=curve, series=curve + "/" + long["quantity"].astype(str) + "/"
                       + long["run"].astype(str))


def _facet(n: int, size: Size) -> tuple[object, int]:
    """A y axis for every panel (bias and variance differ by orders of magnitude by
    problem): bias above variance with a column per problem if the problems fit a row, else
    a bias-variance pair of panels per problem."""
    if n <= size.max_cols:
        return facet_wrap(["quantity", "panel"], ncol=n, scales="free"), 2
    cols = 2 * max(1, size.max_cols // 2)
    return facet_wrap(["panel", "quantity"], ncol=cols, scales="free"), int(np.ceil(2 * n / cols))


def tau_tradeoff(cells: pd.DataFrame, size: Size) -> Drawn:
    table, k = _swept(cells)
    long = _long(table)
    shown, hidden = long[long["resolved"].astype(bool)], long[~long["resolved"].astype(bool)]
    facet, rows = _facet(long["panel"].nunique(), size)
    caption = (f"K = {k} samples per estimate; bands: 95% intervals\n"
               "dashed: bias noise floor sqrt(variance / R)")
    if not hidden.empty:
        caption += "\nhollow: bias not resolved (its 95% interval contains 0)"
    plot = (
        ggplot(shown, aes("tau", "value", color="estimator"))
        + geom_ribbon(aes(ymin="low", ymax="high", fill="estimator", group="series"),
                      data=positive(shown, ["low", "high"]), alpha=0.2, color="none")
        + geom_line(aes(y="floor", group="curve"), data=positive(long, ["floor"]),
                    linetype="dashed", size=0.4, alpha=0.8)
        + geom_line(aes(group="series"), size=0.5)
        + geom_point(aes(shape="estimator"), size=1.4)
        + geom_point(aes(shape="estimator"), data=hidden, size=1.4, fill="white", stroke=0.4,
                     show_legend=False)
        + log10(x=True, y=True)
        + facet
        + labs(x="temperature τ", y="", caption=caption)
        + estimator_scales(long, fill=True)
    )
    return Drawn(plot, rows, legend=legend_names(long))


def per_page(cells: pd.DataFrame, size: Size) -> int:
    return grid_per_page(cells, size, panels_per_problem=2)
