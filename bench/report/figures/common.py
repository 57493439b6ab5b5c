"""Table preparation shared by the figures: the rows to show, panel and variant labels,
estimator scales, which estimator is biased on which problem, and the page capacity of a
grid of panels."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache

import numpy as np
import pandas as pd
from plotnine import facet_wrap, scale_color_manual, scale_fill_manual, scale_shape_manual

from bench.registry import current_registry
from bench.report.figures.base import PAGE_HEIGHT_IN
from bench.report.theme import TEXT_PT, Size, estimator_styles
from estimators.targets import ExactGradient
from problems.base import Capability, Problem

#: height of one line of the legend below the panels, inches (8 pt text and its key)
LEGEND_LINE_IN = 0.17


def ok_rows(cells: pd.DataFrame) -> pd.DataFrame:
    return cells[cells["status"] == "ok"] if "status" in cells.columns else cells


def parse_options(text: object) -> dict:
    return json.loads(text) if isinstance(text, str) and text else {}


def _changed(options: list[dict]) -> list[str]:
    """The option names whose values differ between ``options``."""
    names = sorted({k for o in options for k in o})
    return [n for n in names if len({json.dumps(o.get(n)) for o in options}) > 1]


def _format(options: dict, names: Sequence[str]) -> str:
    return ", ".join(f"{n}={options[n]:g}" if isinstance(options.get(n), float)
                     else f"{n}={options.get(n)}" for n in names)


def with_panels(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``panel``: the problem, with the options that differ between its rows."""
    table = table.copy()
    labels = {}
    for problem, rows in table.groupby("problem", sort=False):
        texts = list(dict.fromkeys(rows["problem_options"]))
        parsed = [parse_options(t) for t in texts]
        changed = _changed(parsed)
        for text, option_values in zip(texts, parsed, strict=True):
            labels[problem, text] = (
                f"{problem} ({_format(option_values, changed)})" if changed else problem
            )
    table["panel"] = [labels[p, o] for p, o in zip(table["problem"], table["problem_options"],
                                                   strict=True)]
    table["panel"] = pd.Categorical(table["panel"], categories=list(dict.fromkeys(table["panel"])))
    return table


def _defaults(estimator: str) -> dict | None:
    cls = current_registry().estimators.get(estimator)
    return None if cls is None else {n: o.default for n, o in cls.options.items()}


def with_variants(table: pd.DataFrame, default_only: bool) -> pd.DataFrame:
    """Add ``variant`` (the estimator, with options where several variants are shown) and
    ``estimator`` as a registry-ordered categorical; with ``default_only``, keep only the
    default-options rows of estimators that have them."""
    table = table.copy()
    parsed = [parse_options(t) for t in table["estimator_options"]]
    keep = np.ones(len(table), dtype=bool)
    if default_only:
        is_default = np.array([_defaults(e) == o for e, o in zip(table["estimator"], parsed,
                                                                  strict=True)], dtype=bool)
        has_default = table.assign(d=is_default).groupby("estimator")["d"].transform("any")
        keep = is_default | ~has_default.to_numpy(dtype=bool)
    table, parsed = table[keep], [p for p, k in zip(parsed, keep, strict=True) if k]
    labels = []
    for estimator, option_values in zip(table["estimator"], parsed, strict=True):
        same = [p for e, p in zip(table["estimator"], parsed, strict=True) if e == estimator]
        changed = _changed(same)
        labels.append(f"{estimator} ({_format(option_values, changed)})" if changed else estimator)
    table = table.assign(variant=labels)
    return order_estimators(table)


def order_estimators(table: pd.DataFrame) -> pd.DataFrame:
    order = [e for e in current_registry().estimators if e in set(table["estimator"])]
    order += sorted(set(table["estimator"]) - set(order))
    return table.assign(estimator=pd.Categorical(table["estimator"], categories=order))


def estimator_scales(table: pd.DataFrame, fill: bool = False, shape: bool = True) -> list:
    """Colour (and fill, marker) scales with every estimator's own style
    (``bench.report.theme.estimator_styles``), limited to those in ``table``."""
    names = [n for n in table["estimator"].cat.categories
             if n in set(table["estimator"].astype(str))]
    styles = estimator_styles(names)
    colours = {n: styles[n].colour for n in names}
    scales = [scale_color_manual(values=colours, limits=names, drop=True)]
    if fill:
        scales.append(scale_fill_manual(values=colours, limits=names, drop=True, guide=None))
    if shape:
        scales.append(scale_shape_manual(values={n: styles[n].shape for n in names},
                                         limits=names))
    return scales


def legend_names(table: pd.DataFrame) -> tuple[str, ...]:
    """The estimators ``table`` shows, in legend order."""
    present = set(table["estimator"].astype(str))
    return tuple(n for n in table["estimator"].cat.categories if n in present)


def legend_columns(names: Sequence[str], size: Size) -> int:
    """Columns of the legend below the panels: the preset's, fewer when the longest name
    would not fit the width (a key and 0.6 em a character of 8 pt text)."""
    longest = max((len(str(n)) for n in names), default=0)
    fit = int(size.width_in * 72 // (longest * TEXT_PT * 0.6 + 24)) if longest else 1
    return max(1, min(size.legend_cols, fit))


def legend_height(names: Sequence[str], size: Size) -> float:
    """Inches the legend below the panels takes with the estimators ``names``."""
    return LEGEND_LINE_IN * int(np.ceil(len(names) / legend_columns(names, size)))


def wrap_panels(table: pd.DataFrame, max_cols: int) -> tuple[object, int]:
    """``facet_wrap`` over panels, at most ``max_cols`` a row and rows balanced, and the
    number of panel rows it makes."""
    n = table["panel"].nunique()
    rows = int(np.ceil(n / max_cols))
    cols = int(np.ceil(n / rows))
    return facet_wrap("panel", ncol=cols, scales="free"), rows


def grid_per_page(table: pd.DataFrame, size: Size, panels_per_problem: int = 1,
                  row_in: float | None = None, cols: int | None = None) -> int:
    """Problems a page holds in a grid of ``cols`` (default ``size.max_cols``) panels a row,
    rows of ``row_in`` inches (default the preset's), under the legend of the estimators of
    ``table`` and two caption lines beyond the preset's; 0 when not even one row fits (too
    many estimators for one legend: ``output.pages`` then splits the estimators)."""
    shown = ok_rows(table)
    names = list(shown["estimator"].unique()) if "estimator" in shown.columns else []
    free = PAGE_HEIGHT_IN - size.extra_in - legend_height(names, size) - 2 * LEGEND_LINE_IN
    rows = int(free // (row_in or size.row_in))
    return rows * (cols or size.max_cols) // panels_per_problem


def positive(table: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Rows whose ``columns`` are finite and > 0 (drawable on a log scale)."""
    mask = np.ones(len(table), dtype=bool)
    for column in columns:
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
        mask &= np.isfinite(values) & (values > 0)
    return table[mask]


def _multi_sample(problem: str, options: str) -> bool:
    """Whether the problem's objective with these options is a multi-sample bound (options
    this version does not know, from an older result file: its declared ``provides``)."""
    cls = current_registry().problems.get(problem)
    return False if cls is None else _provides_multi_sample(cls, options)


@cache
def _provides_multi_sample(cls: type[Problem], options: str) -> bool:
    try:
        provided = cls.capabilities(parse_options(options))
    except ValueError:
        provided = cls.provides
    return Capability.MULTI_SAMPLE in provided


def biased_on(estimator: str, problem: str, problem_options: str,
              declared_unbiased: bool | None = None) -> bool:
    """Whether ``estimator`` is biased on this problem by its declarations: unbiased if its
    class says so, or if its declared target is the exact gradient there (e.g. ``stl``:
    ``ExactGradient(expectation_only=True)``, exact unless the objective is a multi-sample
    bound). An estimator the registry lacks: the table's ``unbiased`` (unknown: unbiased)."""
    cls = current_registry().estimators.get(estimator)
    if cls is None:
        return declared_unbiased is False
    if cls.unbiased:
        return False
    target = cls.declared_target()
    if isinstance(target, ExactGradient):
        return target.expectation_only and _multi_sample(problem, problem_options)
    return True


def biased(table: pd.DataFrame) -> pd.Series:
    """``biased_on`` for each row of ``table``."""
    declared = (table["unbiased"] if "unbiased" in table.columns
                else pd.Series(None, index=table.index, dtype=object))
    return pd.Series([biased_on(str(e), p, o, None if pd.isna(u) else bool(u))
                      for e, p, o, u in zip(table["estimator"], table["problem"],
                                            table["problem_options"], declared, strict=True)],
                     index=table.index, dtype=bool)
