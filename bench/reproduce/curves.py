"""Shared pieces of the training reproductions: running the curves of several estimators on
several settings, the learning-curve figure, and claims about orderings of curves."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from plotnine import (
    aes,
    facet_grid,
    geom_line,
    ggplot,
    labs,
    scale_color_manual,
    theme,
)

from bench.cell.seeds import derive_seed
from bench.report.theme import estimator_colours, paper_theme
from bench.reproduce.base import Claim, not_checked
from bench.reproduce.training import TrainSettings, train_curve
from estimators import ESTIMATORS
from problems.base import Problem

COLUMNS = ["setting", "series", "step", "metric", "value"]


def option_subset(name: str, wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The options of ``wanted`` that estimator ``name`` declares (others are not its own)."""
    return {k: v for k, v in wanted.items() if k in ESTIMATORS[name].options}


def run_curves(
    reproduction: str,
    settings: Sequence[tuple[str, Callable[[], Problem]]],
    series: Sequence[tuple[str, dict[str, Any], TrainSettings]],
    seed: int,
    progress: bool,
) -> tuple[pd.DataFrame, list[str]]:
    """Train every registered estimator of ``series`` (name, options, settings) on every
    ``(label, make_problem)`` setting.

    Returns:
        the rows of ``COLUMNS``, and one line per curve that did not run: an estimator that
        does not apply (its reason), or one that raised (its error, so that the run still
        reports everything else; ``Outcome.errors``).
    """
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    for label, make in settings:
        template = make()
        for name, options, train in series:
            if name not in ESTIMATORS:
                continue
            cls = ESTIMATORS[name]
            reason = cls.incompatibility(template) or cls.sample_rule(train.n_samples)
            if reason is not None:
                errors.append(f"{name} [{label}] did not run: {reason}")
                continue
            try:
                curve = train_curve(
                    template,
                    name,
                    option_subset(name, options),
                    train,
                    derive_seed(reproduction, label, seed),
                    f"{name} [{label}]",
                    progress,
                )
            except Exception as err:  # one broken estimator must not hide the others' results
                errors.append(f"{name} [{label}] failed: {type(err).__name__}: {err}")
                continue
            rows += [{"setting": label, **row, "series": name} for row in curve]
    return pd.DataFrame(rows, columns=COLUMNS), errors


def last(data: pd.DataFrame, setting: str, series: str, metric: str) -> float | None:
    """The value of ``metric`` at the last recorded step."""
    part = data[(data.setting == setting) & (data.series == series) & (data.metric == metric)]
    return None if part.empty else float(part.sort_values("step")["value"].iloc[-1])


def mean_log10(
    data: pd.DataFrame, setting: str, series: str, metric: str, after: int = 0
) -> float | None:
    """Mean of log10 ``metric`` over the records at steps > ``after`` (positive values)."""
    part = data[
        (data.setting == setting)
        & (data.series == series)
        & (data.metric == metric)
        & (data.step > after)
    ]
    values = part["value"][part["value"] > 0]
    return None if values.empty else float(np.log10(values).mean())


def ordering_claim(
    text: str,
    source: str,
    values: Mapping[str, float | None],
    lower: str,
    higher: Sequence[str],
    quantity: str,
) -> Claim:
    """``values[lower] < values[h]`` for every h of ``higher`` (all estimators registered)."""
    missing = [n for n in (lower, *higher) if n not in ESTIMATORS]
    if missing:
        return not_checked(text, source, missing)
    if any(values.get(n) is None for n in (lower, *higher)):
        return Claim(text, source, None, "not checked: no measurement")
    shown = ", ".join(f"{n} {values[n]:.4g}" for n in (lower, *higher))
    return Claim(
        text, source, all(values[lower] < values[h] for h in higher), f"{quantity}: {shown}"
    )


def curve_figure(
    data: pd.DataFrame,
    metrics: Mapping[str, str],
    caption: str,
    log_metrics: Sequence[str] = ("variance_trace",),
    width: float = 7.0,
):
    """Learning curves: one row of panels per metric (``{metric: axis title}``), one column per
    setting; variances on a log scale."""
    shown = data[data.metric.isin(list(metrics))].copy()
    if shown.empty:
        return None
    shown["panel"] = shown["metric"].map(metrics)
    shown["panel"] = pd.Categorical(
        shown["panel"], categories=list(dict.fromkeys(metrics.values()))
    )
    logged = shown[shown.metric.isin(log_metrics)].copy()
    logged["value"] = np.log10(logged["value"].clip(lower=1e-300))
    shown = pd.concat([shown[~shown.metric.isin(log_metrics)], logged])
    shown["setting"] = pd.Categorical(
        shown["setting"], categories=list(dict.fromkeys(data["setting"]))
    )
    colours = estimator_colours(list(shown["series"].unique()))
    rows = shown["panel"].nunique()
    plot = (
        ggplot(shown, aes("step", "value", color="series"))
        + geom_line(size=0.5)
        + facet_grid("panel ~ setting", scales="free_y")
        + scale_color_manual(values=colours)
        + labs(x="training step", y="", caption=caption)
        + paper_theme()
        + theme(figure_size=(width, 1.0 + 1.8 * rows))
    )
    return plot


__all__ = [
    "COLUMNS",
    "curve_figure",
    "last",
    "mean_log10",
    "option_subset",
    "ordering_claim",
    "run_curves",
]
