"""Shared pieces of the training reproductions: running the curves of several estimators on
several settings, each for several replicates (independent seeds), the learning-curve figure,
and claims about orderings of curves decided by an interval over the replicates
(``bench.reproduce.base.interval_claim``)."""

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
from bench.registry import current_registry, estimator_class
from bench.report.theme import estimator_colours, paper_theme
from bench.reproduce.base import Claim, interval_claim, not_checked
from bench.reproduce.training import TrainSettings, train_curve
from problems.base import Problem

COLUMNS = ["setting", "series", "replicate", "step", "metric", "value"]


def option_subset(name: str, wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The options of ``wanted`` that estimator ``name`` declares (others are not its own)."""
    return {k: v for k, v in wanted.items() if k in estimator_class(name).options}


def run_curves(
    reproduction: str,
    settings: Sequence[tuple[str, Callable[[], Problem]]],
    series: Sequence[tuple[str, dict[str, Any], TrainSettings]],
    seed: int,
    progress: bool,
    replicates: int = 1,
) -> tuple[pd.DataFrame, list[str]]:
    """Train every registered estimator of ``series`` (name, options, settings) on every
    ``(label, make_problem)`` setting, ``replicates`` times from independent seeds (replicate
    0 from the seed of a single run).

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
            if name not in current_registry().estimators:
                continue
            cls = estimator_class(name)
            reason = cls.incompatibility(template) or cls.sample_rule(train.n_samples)
            if reason is not None:
                errors.append(f"{name} [{label}] did not run: {reason}")
                continue
            for replicate in range(replicates):
                key = (reproduction, label, seed) + ((replicate,) if replicate else ())
                try:
                    curve = train_curve(
                        template,
                        name,
                        option_subset(name, options),
                        train,
                        derive_seed(*key),
                        f"{name} [{label}]" + (f" #{replicate}" if replicates > 1 else ""),
                        progress,
                    )
                except Exception as err:  # one broken estimator must not hide the others'
                    errors.append(f"{name} [{label}] failed: {type(err).__name__}: {err}")
                    break
                rows += [{"setting": label, **row, "series": name, "replicate": replicate}
                         for row in curve]
    return pd.DataFrame(rows, columns=COLUMNS), errors


def _select(data: pd.DataFrame, setting: str, series: str, metric: str) -> pd.DataFrame:
    return data[(data.setting == setting) & (data.series == series) & (data.metric == metric)]


def lasts(data: pd.DataFrame, setting: str, series: str, metric: str) -> list[float]:
    """The value of ``metric`` at the last recorded step, one per replicate."""
    part = _select(data, setting, series, metric).sort_values("step")
    return [float(g["value"].iloc[-1]) for _, g in part.groupby("replicate", sort=True)]


def mean_log10s(
    data: pd.DataFrame, setting: str, series: str, metric: str, after: int = 0
) -> list[float]:
    """Mean of log10 ``metric`` over the records at steps > ``after`` (positive values), one
    per replicate."""
    part = _select(data, setting, series, metric)
    part = part[(part.step > after) & (part["value"] > 0)]
    return [float(np.log10(g["value"]).mean()) for _, g in part.groupby("replicate", sort=True)]


def last(data: pd.DataFrame, setting: str, series: str, metric: str) -> float | None:
    """``lasts`` averaged over the replicates (None without a record)."""
    values = lasts(data, setting, series, metric)
    return float(np.mean(values)) if values else None


def mean_log10(
    data: pd.DataFrame, setting: str, series: str, metric: str, after: int = 0
) -> float | None:
    """``mean_log10s`` averaged over the replicates (None without a record)."""
    values = mean_log10s(data, setting, series, metric, after)
    return float(np.mean(values)) if values else None


def ordering_claim(
    text: str,
    source: str,
    values: Mapping[str, Sequence[float] | None],
    lower: str,
    higher: Sequence[str],
    quantity: str,
) -> Claim:
    """``values[lower] < values[h]`` for every h of ``higher``, each decided by an interval on
    the difference paired by replicate (``interval_claim``): PASS when every interval lies
    below 0, FAIL when one lies above, else not resolved at this scale."""
    missing = [n for n in (lower, *higher) if n not in current_registry().estimators]
    if missing:
        return not_checked(text, source, missing)
    if any(not values.get(n) for n in (lower, *higher)):
        return Claim(text, source, None, "not checked: no measurement")
    parts = [interval_claim(text, source, [a - b for a, b in zip(values[lower], values[h],
                                                                   strict=False)],
                            f"{lower} - {h}") for h in higher]
    shown = ", ".join(f"{n} {np.mean(values[n]):.4g}" for n in (lower, *higher))
    measured = f"{quantity} (mean over replicates): {shown}; " + "; ".join(
        p.measured for p in parts)
    if any(p.passed is False for p in parts):
        return Claim(text, source, False, measured)
    if all(p.passed for p in parts):
        return Claim(text, source, True, measured)
    return Claim(text, source, None, measured, unresolved=True)


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
    shown["curve"] = shown["series"] + "#" + shown["replicate"].astype(str)
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
        ggplot(shown, aes("step", "value", color="series", group="curve"))
        + geom_line(size=0.5, alpha=0.8)
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
    "lasts",
    "mean_log10",
    "mean_log10s",
    "option_subset",
    "ordering_claim",
    "run_curves",
]
