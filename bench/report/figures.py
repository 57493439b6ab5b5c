"""Paper figures from a run's tables, drawn with plotnine.

Each figure is an entry of ``FIGURES``: the table it reads (``cells`` = cells.parquet of
``bench run``, ``train`` = train.parquet of ``bench train``), the columns it needs, and a
function that draws it. Every figure uses the theme, size presets and fixed estimator
colours of ``bench.report.theme``.

1. ``variance_vs_samples``: trace of the gradient covariance against the number of samples K
   per estimator and problem, log-log, with the 95% bootstrap band of each point. An
   estimator whose samples are independent has variance proportional to 1/K (slope -1).
2. ``tau_tradeoff``: bias ||E[g] - grad L|| and variance against the temperature tau of the
   relaxed estimators: the bias-variance trade-off of Jang et al. (2017) and Maddison et al.
   (2017). Dashed: the bias noise floor sqrt(variance / R), below which bias is not resolved.
3. ``efficiency``: variance against wall-clock time per estimate, one point per K: the
   efficiency frontier; the lower left wins (variance x time per estimate is the cost of a
   given accuracy: Glynn & Whitt 1992, "The Asymptotic Efficiency of Simulation
   Estimators", Operations Research 40(3)).
4. ``training``: training curves of ``bench train``: the objective (the test negative ELBO of
   a VAE, the energy distance or total variation of a GAN's samples to the data, else the
   training loss) against step and against wall-clock seconds, and the gradient variance
   along training on a log scale (DisARM, Dong et al. 2020, Figure 2; RELAX, Grathwohl et
   al. 2018, Figure 4).
5. ``overview``: per problem, estimators ranked by mean squared error ||g - grad L||^2 at the
   largest K of that problem, with 95% intervals; hollow markers are biased estimators.

Figures 1, 3 and 5 show each estimator at its default options when the table has them
(e.g. tau = 1), else every variant, labelled with its options.

References: Mohamed, Rosca, Figurnov, Mnih (2020), "Monte Carlo Gradient Estimation in
Machine Learning", JMLR 21(132); Jang, Gu, Poole (2017), ICLR; Maddison, Mnih, Teh (2017),
ICLR; Grathwohl et al. (2018), ICLR; Dong, Mnih, Tucker (2020), NeurIPS.
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from plotnine import (
    aes,
    coord_flip,
    facet_wrap,
    geom_line,
    geom_linerange,
    geom_path,
    geom_point,
    geom_ribbon,
    ggplot,
    guide_legend,
    guides,
    labs,
    scale_color_manual,
    scale_fill_manual,
    scale_shape_manual,
    scale_x_discrete,
    scale_x_log10,
    scale_y_log10,
    theme,
)
from plotnine.composition import Compose

from bench.report.theme import (
    Size,
    estimator_colours,
    estimator_shapes,
    get_size,
    paper_theme,
)
from estimators import ESTIMATORS

FORMATS = ("png", "pdf", "svg")
#: metrics of train.parquet that are the training objective, in order of preference
OBJECTIVES: dict[str, str] = {
    "test_nelbo": "test negative ELBO (nats)",
    "energy_distance": "energy distance to the data",
    "total_variation": "total variation to the data",
    "train_loss": "training objective",
}
#: overview height per estimator and per panel strip and axis, inches
OVERVIEW_ROW_IN, OVERVIEW_STRIP_IN = 0.2, 0.55
#: the tallest figure, inches: plotnine refuses to save one beyond 25 in; panels shrink instead
MAX_HEIGHT_IN = 25.0
#: the separator of facet-local category labels (see ``_ordered_within``)
_WITHIN = "\x1f"


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


@dataclass(frozen=True)
class Figure:
    """A registered figure.

    Attributes:
        table: ``cells`` or ``train``.
        columns: the columns of that table the figure needs.
        draw: (table, size preset) -> ``Drawn``; raises ``NotApplicable`` when nothing
            applies.
    """

    name: str
    description: str
    table: str
    columns: tuple[str, ...]
    draw: Callable[[pd.DataFrame, Size], Drawn]


def check_columns(figure: Figure, table: pd.DataFrame) -> None:
    """Raise ``ValueError`` naming the figure and the columns ``table`` lacks."""
    missing = [c for c in figure.columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"figure {figure.name!r} needs columns {missing} of the {figure.table} table, "
            f"which it lacks; it has: {', '.join(map(str, table.columns)) or '(none)'}"
        )


# table preparation --------------------------------------------------------------------------


def _ok(cells: pd.DataFrame) -> pd.DataFrame:
    return cells[cells["status"] == "ok"] if "status" in cells.columns else cells


def _options(text: object) -> dict:
    return json.loads(text) if isinstance(text, str) and text else {}


def _changed(options: list[dict]) -> list[str]:
    """The option names whose values differ between ``options``."""
    names = sorted({k for o in options for k in o})
    return [n for n in names if len({json.dumps(o.get(n)) for o in options}) > 1]


def _format(options: dict, names: Sequence[str]) -> str:
    return ", ".join(f"{n}={options[n]:g}" if isinstance(options.get(n), float)
                     else f"{n}={options.get(n)}" for n in names)


def _panels(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``panel``: the problem, with the options that differ between its rows."""
    table = table.copy()
    labels = {}
    for problem, rows in table.groupby("problem", sort=False):
        texts = list(dict.fromkeys(rows["problem_options"]))
        parsed = [_options(t) for t in texts]
        changed = _changed(parsed)
        for text, opts in zip(texts, parsed, strict=True):
            labels[problem, text] = f"{problem} ({_format(opts, changed)})" if changed else problem
    table["panel"] = [labels[p, o] for p, o in zip(table["problem"], table["problem_options"],
                                                   strict=True)]
    table["panel"] = pd.Categorical(table["panel"], categories=list(dict.fromkeys(table["panel"])))
    return table


def _defaults(estimator: str) -> dict | None:
    cls = ESTIMATORS.get(estimator)
    return None if cls is None else {n: o.default for n, o in cls.options.items()}


def _variants(table: pd.DataFrame, default_only: bool) -> pd.DataFrame:
    """Add ``variant`` (the estimator, with options where several variants are shown) and
    ``estimator`` as a registry-ordered categorical; with ``default_only``, keep only the
    default-options rows of estimators that have them."""
    table = table.copy()
    parsed = [_options(t) for t in table["estimator_options"]]
    keep = np.ones(len(table), dtype=bool)
    if default_only:
        is_default = np.array([_defaults(e) == o for e, o in zip(table["estimator"], parsed,
                                                                  strict=True)], dtype=bool)
        has_default = table.assign(d=is_default).groupby("estimator")["d"].transform("any")
        keep = is_default | ~has_default.to_numpy(dtype=bool)
    table, parsed = table[keep], [p for p, k in zip(parsed, keep, strict=True) if k]
    labels = []
    for estimator, opts in zip(table["estimator"], parsed, strict=True):
        same = [p for e, p in zip(table["estimator"], parsed, strict=True) if e == estimator]
        changed = _changed(same)
        labels.append(f"{estimator} ({_format(opts, changed)})" if changed else estimator)
    table = table.assign(variant=labels)
    return _order_estimators(table)


def _order_estimators(table: pd.DataFrame) -> pd.DataFrame:
    order = [e for e in ESTIMATORS if e in set(table["estimator"])]
    order += sorted(set(table["estimator"]) - set(order))
    return table.assign(estimator=pd.Categorical(table["estimator"], categories=order))


def _estimator_scales(table: pd.DataFrame, fill: bool = False, shape: bool = True) -> list:
    names = list(table["estimator"].cat.categories)
    colours = estimator_colours(names)
    scales = [scale_color_manual(values=colours, limits=names, drop=True)]
    if fill:
        scales.append(scale_fill_manual(values=colours, limits=names, drop=True, guide=None))
    if shape:
        scales.append(scale_shape_manual(values=estimator_shapes(names), limits=names))
    return scales


def _wrap(table: pd.DataFrame, max_cols: int) -> tuple[object, int]:
    """``facet_wrap`` over panels, at most ``max_cols`` a row and rows balanced, and the
    number of panel rows it makes."""
    n = table["panel"].nunique()
    rows = int(np.ceil(n / max_cols))
    cols = int(np.ceil(n / rows))
    return facet_wrap("panel", ncol=cols, scales="free"), rows


def _log_labels(values: Sequence[float]) -> list[str]:
    """Short tick labels for log axes: 0.3, 30, 3e-05 -> "3e-5"."""
    labels = []
    for v in values:
        if 1e-3 <= abs(v) < 1e4:
            labels.append(f"{v:g}")
        else:
            mantissa, exponent = f"{v:.0e}".split("e")
            labels.append(f"{mantissa}e{int(exponent)}")
    return labels


def _log_breaks(limits: Sequence[float]) -> list[float]:
    """Log-axis breaks inside ``limits``: powers of ten or 1-3 per decade if either gives
    three breaks, else the first of 1, 1-3, 1-2-5 and every half digit that gives two (else
    one); at most about five."""
    low, high = (float(v) for v in limits)
    if not (np.isfinite(low) and np.isfinite(high)) or low <= 0 or high <= low:
        return []
    decades = range(int(np.floor(np.log10(low))), int(np.ceil(np.log10(high))) + 1)
    candidates = []
    for mantissas in ((1,), (1, 3), (1, 2, 5), tuple(m / 2 for m in range(2, 20))):
        found = [float(f"{m}e{e}") for e in decades for m in mantissas
                 if low <= float(f"{m}e{e}") <= high]
        candidates.append(found[:: int(np.ceil(len(found) / 5))] if found else found)
    for found in candidates[:2]:
        if len(found) >= 3:
            return found
    for enough in (2, 1):
        for found in candidates:
            if len(found) >= enough:
                return found
    return []


def _log10(x: bool = False, y: bool = False) -> list:
    """Log10 scales of x and/or y with the figures' breaks and short labels."""
    return [scale(breaks=_log_breaks, labels=_log_labels, minor_breaks=[])
            for scale, on in ((scale_x_log10, x), (scale_y_log10, y)) if on]


def _positive(table: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Rows whose ``columns`` are finite and > 0 (drawable on a log scale)."""
    mask = np.ones(len(table), dtype=bool)
    for column in columns:
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
        mask &= np.isfinite(values) & (values > 0)
    return table[mask]


# the figures ----------------------------------------------------------------------------------


def variance_vs_samples(cells: pd.DataFrame, size: Size) -> Drawn:
    table = _positive(_ok(cells), ["variance_trace", "n_samples"])
    table = _variants(_panels(table), default_only=True)
    sweeps = table.groupby(["panel", "variant"], observed=True)["n_samples"].nunique()
    table = table.set_index(["panel", "variant"]).loc[sweeps[sweeps > 1].index].reset_index()
    if table.empty:
        raise NotApplicable("no estimator was measured at more than one K")
    table = table.sort_values("n_samples")
    band = _positive(table, ["variance_trace_ci_low", "variance_trace_ci_high"])
    facet, rows = _wrap(table, size.max_cols)
    plot = (
        ggplot(table, aes("n_samples", "variance_trace", color="estimator", group="variant"))
        + geom_ribbon(
            aes(ymin="variance_trace_ci_low", ymax="variance_trace_ci_high", fill="estimator"),
            data=band, alpha=0.2, color="none",
        )
        + geom_line(size=0.5)
        + geom_point(aes(shape="estimator"), size=1.4)
        + _log10(x=True, y=True)
        + facet
        + labs(x="samples per estimate K", y="gradient variance (trace of covariance)")
        + _estimator_scales(table, fill=True)
    )
    return Drawn(plot, rows)


def tau_tradeoff(cells: pd.DataFrame, size: Size) -> Drawn:
    table = _ok(cells).copy()
    table["tau"] = [_options(o).get("tau", np.nan) for o in table["estimator_options"]]
    table = _positive(table, ["tau"])
    sweeps = table.groupby(["problem", "problem_options", "estimator", "n_samples"])["tau"]
    table = table[sweeps.transform("nunique") > 1]
    if table.empty:
        raise NotApplicable("no relaxed estimator was measured at more than one tau")
    counts = table.groupby("n_samples").size()
    k = int(counts[counts == counts.max()].index.max())
    table = _order_estimators(_panels(table[table["n_samples"] == k]))
    long = pd.concat([
        table.assign(
            quantity="bias ||E[g] − ∇L||", value=table["bias_l2"],
            low=table["bias_l2_ci_low"], high=table["bias_l2_ci_high"],
            floor=table["bias_l2_noise_floor"],
        ),
        table.assign(
            quantity="variance (trace)", value=table["variance_trace"],
            low=table["variance_trace_ci_low"], high=table["variance_trace_ci_high"],
            floor=np.nan,
        ),
    ])
    long["quantity"] = pd.Categorical(long["quantity"], categories=list(
        dict.fromkeys(long["quantity"])))
    long = _positive(long.sort_values("tau"), ["value"])
    band = _positive(long, ["low", "high"])
    floor = _positive(long, ["floor"])
    # a y axis for every panel: bias and variance differ by orders of magnitude by problem.
    # Bias above variance with a column per problem if the problems fit in a row, else a
    # bias-variance pair of panels per problem.
    n = long["panel"].nunique()
    if n <= size.max_cols:
        facet, rows = facet_wrap(["quantity", "panel"], ncol=n, scales="free"), 2
    else:
        cols = 2 * max(1, size.max_cols // 2)
        facet = facet_wrap(["panel", "quantity"], ncol=cols, scales="free")
        rows = int(np.ceil(2 * n / cols))
    plot = (
        ggplot(long, aes("tau", "value", color="estimator"))
        + geom_ribbon(aes(ymin="low", ymax="high", fill="estimator"), data=band, alpha=0.2,
                      color="none")
        + geom_line(aes(y="floor"), data=floor, linetype="dashed", size=0.4, alpha=0.8)
        + geom_line(size=0.5)
        + geom_point(aes(shape="estimator"), size=1.4)
        + _log10(x=True, y=True)
        + facet
        + labs(x="temperature τ", y="", caption=f"K = {k} samples per estimate\n"
               "dashed: bias noise floor sqrt(variance / R)")
        + _estimator_scales(long, fill=True)
    )
    return Drawn(plot, rows)


def efficiency(cells: pd.DataFrame, size: Size) -> Drawn:
    table = _positive(_ok(cells), ["variance_trace", "time_per_estimate_s"])
    table = _variants(_panels(table), default_only=True)
    if table.empty:
        raise NotApplicable("no cell has a positive variance and time")
    table = table.assign(time_ms=table["time_per_estimate_s"] * 1e3).sort_values("n_samples")
    joined = table.groupby(["panel", "variant"], observed=True)["n_samples"].transform("size")
    facet, rows = _wrap(table, size.max_cols)
    plot = (
        ggplot(table, aes("time_ms", "variance_trace", color="estimator", group="variant"))
        + geom_path(data=table[joined > 1], size=0.4, alpha=0.7)
        + geom_point(aes(shape="estimator"), size=1.4)
        + _log10(x=True, y=True)
        + facet
        + labs(x="wall-clock time per estimate (ms)", y="gradient variance (trace)",
               caption="one point per K, joined in order of K; lower left is better")
        + _estimator_scales(table)
    )
    return Drawn(plot, rows)


def _ordered_within(table: pd.DataFrame, value: str) -> pd.DataFrame:
    """Order ``variant`` by ``value`` inside each panel (facets with free scales keep it)."""
    table = table.sort_values(["panel", value], ascending=[True, False])
    key = table["panel"].astype(str) + _WITHIN + table["variant"].astype(str)
    return table.assign(within=pd.Categorical(key, categories=list(dict.fromkeys(key))))


def overview(cells: pd.DataFrame, size: Size) -> Drawn:
    table = _positive(_ok(cells), ["mse"])
    table = _variants(_panels(table), default_only=True)
    if table.empty:
        raise NotApplicable("no cell has a truth to measure the mean squared error against")
    largest = table.groupby("panel", observed=True)["n_samples"].transform("max")
    table = table[table["n_samples"] == largest]
    sizes = sorted(set(table["n_samples"]))
    at = f"K = {sizes[0]}" if len(sizes) == 1 else "the largest K of each problem"
    table = table.assign(
        bias=np.where(table["unbiased"].astype(bool), "unbiased", "biased")
        if "unbiased" in table.columns else "unbiased",
    )
    table = _ordered_within(table, "mse")
    interval = table.assign(
        low=table["mse_ci_low"].where(table["mse_ci_low"] > 0, table["mse"]),
        high=table["mse_ci_high"].where(table["mse_ci_high"] > 0, table["mse"]),
    )
    # estimator names label every panel: half as many panels a row as the other figures
    facet, rows = _wrap(interval, max(1, size.max_cols // 2))
    per_row = OVERVIEW_ROW_IN * interval.groupby("panel", observed=True).size().max()
    height = round(rows * (per_row + OVERVIEW_STRIP_IN) + size.extra_in, 2)
    plot = (
        ggplot(interval, aes("within", "mse", color="estimator"))
        + geom_linerange(aes(ymin="low", ymax="high"), size=0.5)
        + geom_point(data=interval[interval["bias"] == "unbiased"], size=1.8)
        + geom_point(data=interval[interval["bias"] == "biased"], size=1.8, fill="white")
        + scale_x_discrete(labels=lambda keys: [k.split(_WITHIN, 1)[1] for k in keys])
        + _log10(y=True)
        + coord_flip()
        + facet
        + labs(x="", y="mean squared error ||g − ∇L||²",
               caption=f"at {at}; 95% intervals\nhollow: biased estimator")
        + _estimator_scales(interval, shape=False)
    )
    return Drawn(plot, rows, theme(legend_position="none"), height)


def _training_objective(train: pd.DataFrame) -> str:
    for metric in OBJECTIVES:
        if (train["metric"] == metric).any():
            return metric
    raise NotApplicable(
        f"train table has none of the objective metrics {', '.join(OBJECTIVES)}"
    )


def training(train: pd.DataFrame, size: Size) -> Drawn:
    if train.empty:
        raise NotApplicable("the train table is empty")
    objective = _training_objective(train)
    table = _variants(_panels(train), default_only=False)
    if table["panel"].nunique() > 1:
        raise ValueError(
            "figure 'training' draws one problem; the train table has "
            f"{', '.join(table['panel'].cat.categories)} (make_figures draws one file each)"
        )
    curve = table[table["metric"] == objective]
    variance = _positive(table[table["metric"] == "variance_trace"], ["value"])
    name = OBJECTIVES[objective]
    scales = _estimator_scales(table, shape=False)
    by_step = (
        ggplot(curve, aes("step", "value", color="estimator", group="variant"))
        + geom_line(size=0.5) + labs(x="training step", y=name) + scales
    )
    by_time = (
        ggplot(curve, aes("wall_s", "value", color="estimator", group="variant"))
        + geom_line(size=0.5) + labs(x="wall-clock time (s)", y=name) + scales
    )
    panels: list[ggplot] = [by_step, by_time]
    if not variance.empty:
        panels.append(
            ggplot(variance, aes("step", "value", color="estimator", group="variant"))
            + geom_line(size=0.5) + _log10(y=True)
            + labs(x="training step", y="gradient variance (trace)") + scales
        )
    beside = size.max_cols >= len(panels)
    return Drawn(panels, 1 if beside else len(panels))


FIGURES: dict[str, Figure] = {
    "variance_vs_samples": Figure(
        "variance_vs_samples", "variance against K, log-log, with 95% bands", "cells",
        ("status", "problem", "problem_options", "estimator", "estimator_options", "n_samples",
         "variance_trace", "variance_trace_ci_low", "variance_trace_ci_high"),
        variance_vs_samples,
    ),
    "tau_tradeoff": Figure(
        "tau_tradeoff", "bias and variance against tau of the relaxed estimators", "cells",
        ("status", "problem", "problem_options", "estimator", "estimator_options", "n_samples",
         "bias_l2", "bias_l2_ci_low", "bias_l2_ci_high", "bias_l2_noise_floor",
         "variance_trace", "variance_trace_ci_low", "variance_trace_ci_high"),
        tau_tradeoff,
    ),
    "efficiency": Figure(
        "efficiency", "variance against time per estimate (efficiency frontier)", "cells",
        ("status", "problem", "problem_options", "estimator", "estimator_options", "n_samples",
         "variance_trace", "time_per_estimate_s"),
        efficiency,
    ),
    "training": Figure(
        "training", "objective against step and wall-clock; gradient variance along training",
        "train",
        ("problem", "problem_options", "estimator", "estimator_options", "step", "wall_s",
         "metric", "value"),
        training,
    ),
    "overview": Figure(
        "overview", "per problem, estimators ranked by mean squared error", "cells",
        ("status", "problem", "problem_options", "estimator", "estimator_options", "n_samples",
         "mse", "mse_ci_low", "mse_ci_high", "unbiased"),
        overview,
    ),
}


def get_figure(name: str) -> Figure:
    try:
        return FIGURES[name]
    except KeyError:
        raise ValueError(f"unknown figure {name!r}; valid figures: {', '.join(FIGURES)}") from None


def draw(name: str, table: pd.DataFrame, size: str | Size = "double") -> tuple[
        ggplot | Compose, float, float]:
    """Draw figure ``name`` from ``table`` at a size preset.

    Returns:
        the plot, its width and height in inches.

    Raises:
        ValueError: unknown figure or size, or ``table`` lacks the figure's columns.
        NotApplicable: the table holds no data the figure applies to.
    """
    figure = get_figure(name)
    preset = get_size(size) if isinstance(size, str) else size
    check_columns(figure, table)
    drawn = figure.draw(table, preset)
    width = preset.width_in
    height = min(drawn.height_in or preset.height_in(drawn.rows), MAX_HEIGHT_IN)
    styled = paper_theme() + theme(figure_size=(width, height))
    if drawn.tweaks is not None:
        styled = styled + drawn.tweaks
    styled = [styled, guides(color=guide_legend(ncol=preset.legend_cols),
                               shape=guide_legend(ncol=preset.legend_cols))]
    if isinstance(drawn.plot, ggplot):
        return drawn.plot + styled, width, height
    # one legend for the composed panels: on the last one, beside it or below the stack
    beside = drawn.rows == 1
    panels = [panel + styled + theme(legend_position="none") for panel in drawn.plot]
    if beside:
        panels[-1] = panels[-1] + theme(legend_position="right") + guides(
            color=guide_legend(ncol=1))
    else:
        panels[-1] = panels[-1] + theme(legend_position="bottom")
    composed = functools.reduce(operator.or_ if beside else operator.truediv, panels)
    return composed & theme(figure_size=(width, height)), width, height


def save(plot: ggplot | Compose, path: Path, width: float, height: float) -> Path:
    """Write ``plot`` to ``path`` (format from the suffix) at ``width`` x ``height`` inches."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(plot, Compose):
        plot.save(path)
    else:
        plot.save(path, width=width, height=height, units="in", verbose=False)
    return path


def load_tables(run_dir: str | Path) -> dict[str, pd.DataFrame]:
    """The tables of a run directory: ``cells`` and ``train`` where present.

    Raises:
        ValueError: the directory has neither cells.parquet nor train.parquet.
    """
    root = Path(run_dir)
    tables = {
        name: pd.read_parquet(root / f"{name}.parquet")
        for name in ("cells", "train") if (root / f"{name}.parquet").is_file()
    }
    if not tables and (root / "cells").is_dir():
        raise ValueError(f"{root}: no cells.parquet yet (an interrupted bench run?); re-run "
                         "the same bench run command to finish and consolidate it")
    if not tables:
        raise ValueError(f"{root}: no cells.parquet or train.parquet (is it a run directory?)")
    return tables


def parse_formats(text: str | Sequence[str]) -> list[str]:
    """``'png,pdf'`` -> ``['png', 'pdf']``, checked against ``FORMATS``."""
    items = [f.strip().lower() for f in (text.split(",") if isinstance(text, str) else text)]
    items = [f for f in items if f]
    bad = [f for f in items if f not in FORMATS]
    if bad or not items:
        raise ValueError(f"invalid --format {text!r}; valid formats: {', '.join(FORMATS)}")
    return list(dict.fromkeys(items))


def _split(figure: Figure, table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The training figure shows one problem: one file ``training-<problem>`` per problem
    (and option set) when the train table has several; other figures: the whole table."""
    if figure.name != "training" or table.empty or not set(figure.columns) <= set(table.columns):
        return [(figure.name, table)]
    keys = table[["problem", "problem_options"]].drop_duplicates()
    if len(keys) == 1:
        return [(figure.name, table)]
    parts = []
    for i, (problem, options) in enumerate(keys.itertuples(index=False)):
        suffix = problem if (keys["problem"] == problem).sum() == 1 else f"{problem}-{i}"
        rows = table[(table["problem"] == problem) & (table["problem_options"] == options)]
        parts.append((f"{figure.name}-{suffix}", rows))
    return parts


def make_figures(
    tables: dict[str, pd.DataFrame],
    out: str | Path,
    formats: Sequence[str] = ("png",),
    size: str = "double",
    names: Sequence[str] | None = None,
) -> tuple[list[Path], list[str]]:
    """Draw figures from ``tables`` into ``out`` as ``<name>.<format>``.

    Args:
        names: the figures to draw; None draws every figure whose table is present and
            skips, with a note, those that do not apply to the data.

    Returns:
        the written files and the notes on skipped figures.

    Raises:
        ValueError: a named figure's table is missing, lacks columns, or has no data for it.
    """
    get_size(size)
    chosen = list(FIGURES) if names is None else [get_figure(n).name for n in names]
    written, notes = [], []
    for name in chosen:
        figure = FIGURES[name]
        if figure.table not in tables:
            if names is not None:
                raise ValueError(f"figure {name!r} needs {figure.table}.parquet, which is absent")
            notes.append(f"{name}: skipped, no {figure.table}.parquet")
            continue
        for stem, table in _split(figure, tables[figure.table]):
            try:
                plot, width, height = draw(name, table, size)
            except NotApplicable as reason:
                if names is not None:
                    raise ValueError(f"figure {name!r}: {reason}") from None
                notes.append(f"{stem}: skipped, {reason}")
                continue
            for fmt in formats:
                written.append(save(plot, Path(out) / f"{stem}.{fmt}", width, height))
    return written, notes
