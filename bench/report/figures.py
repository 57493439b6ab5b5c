"""Paper figures from a run's tables, drawn with plotnine.

Each figure is an entry of ``FIGURES``: the table it reads (``cells`` = cells.parquet of
``bench run``, ``train`` = train.parquet of ``bench train``), the columns it needs, and a
function that draws it. Every figure uses the theme, size presets and fixed estimator
colours of ``bench.report.theme``.

1. ``variance_vs_samples``: trace of the gradient covariance against the number of samples K
   per estimator and problem, log-log, with the 95% bootstrap band of each point, a tick at
   every measured K and a 1/K guide (slope -1: an estimator whose samples are independent
   has variance proportional to 1/K). Series are spread slightly around each K so that none
   hides another; a variance of 0, up to floating-point rounding, is drawn hollow on the
   panel's bottom edge.
2. ``tau_tradeoff``: bias ||E[g] - grad L|| and variance against the temperature tau of the
   relaxed estimators: the bias-variance trade-off of Jang et al. (2017) and Maddison et al.
   (2017). Dashed: the bias noise floor sqrt(variance / R). A bias whose 95% interval reaches
   down to the floor is not resolved (the measured norm is mostly the noise of the mean):
   drawn hollow and never joined into a curve.
3. ``efficiency`` and ``efficiency_evals``: mean squared error ||g - grad L||^2 (bias
   included, so that a biased estimator is not rewarded for a low variance) against the
   cost of an estimate, one point per K: the median wall-clock time with its interquartile
   range, or the evaluations of the cost. The lower left wins (MSE x cost per estimate is the
   cost of a given accuracy: Glynn & Whitt 1992, "The Asymptotic Efficiency of Simulation
   Estimators", Operations Research 40(3)).
4. ``training``: training curves of ``bench train``: (a) the objective (the test negative ELBO
   of a VAE, the energy distance or total variation of a GAN's samples to the data, else the
   training loss) against step, (b) against training time, and (c) the gradient variance
   along training on a log scale (DisARM, Dong et al. 2020, Figure 2; RELAX, Grathwohl et
   al. 2018, Figure 4); with several seeds, their mean and a 95% band. Training time is the
   step times the median seconds per step, which stalls of the machine cannot bend. Each
   curve carries its estimator's marker at about six records, so that estimators sharing a
   colour stay apart.
5. ``overview``: per problem, estimators ranked by mean squared error at the largest K of
   that problem, with 95% intervals; hollow markers are biased estimators; a problem whose
   truth is itself an estimate (``truth == "reference"``) says so.

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
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.stats
from plotnine import (
    aes,
    coord_flip,
    facet_wrap,
    geom_errorbar,
    geom_line,
    geom_linerange,
    geom_path,
    geom_point,
    geom_ribbon,
    geom_segment,
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

from bench.cell.metrics import FP_ULPS
from bench.report.theme import (
    TEXT_PT,
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
    caption: str | None = None  # of composed panels, under the last one


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
        for text, option_values in zip(texts, parsed, strict=True):
            labels[problem, text] = (
                f"{problem} ({_format(option_values, changed)})" if changed else problem
            )
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
    for estimator, option_values in zip(table["estimator"], parsed, strict=True):
        same = [p for e, p in zip(table["estimator"], parsed, strict=True) if e == estimator]
        changed = _changed(same)
        labels.append(f"{estimator} ({_format(option_values, changed)})" if changed else estimator)
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
    """Short tick labels for log axes, exact to the digits a break has: 0.3, 30,
    3e-05 -> "3e-5", 6.5e-04 -> "6.5e-4" (so that neighbouring breaks never share a label)."""
    labels = []
    for v in (float(x) for x in values):
        if 1e-3 <= abs(v) < 1e4 or v == 0 or not np.isfinite(v):
            labels.append(f"{v:g}")
            continue
        digits = next((d for d in range(15) if abs(float(f"{v:.{d}e}") - v) <= 1e-9 * abs(v)),
                      15)
        mantissa, exponent = f"{v:.{digits}e}".split("e")
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


def _k_breaks(values: Sequence[float]) -> Callable[[Sequence[float]], list[float]]:
    """Breaks at every measured K inside a panel's limits (K = 1, 2, 4, ... all ticked)."""
    ks = sorted({float(v) for v in values})

    def breaks(limits: Sequence[float]) -> list[float]:
        low, high = (float(v) for v in limits)
        inside = [k for k in ks if low * 0.999 <= k <= high * 1.001]
        return inside[:: int(np.ceil(len(inside) / 8))] if inside else inside

    return breaks


def _dodge(table: pd.DataFrame, x: str, spread: float = 0.4) -> pd.DataFrame:
    """Add ``x_dodged``: ``x`` times a factor per variant of a panel, so that series that
    coincide stay visible on a log axis; the factors span at most ``1 + spread``."""
    out = []
    for _, rows in table.groupby("panel", observed=True, sort=False):
        variants = list(dict.fromkeys(rows.sort_values("estimator")["variant"]))
        m = len(variants)
        step = min(0.07, np.log1p(spread) / max(m - 1, 1))
        offset = {v: step * (j - (m - 1) / 2) for j, v in enumerate(variants)}
        out.append(rows.assign(x_dodged=rows[x] * np.exp(rows["variant"].map(offset))))
    return pd.concat(out) if out else table.assign(x_dodged=table[x])


def _biased(table: pd.DataFrame) -> pd.Series:
    """Whether each row's estimator is biased (its class says so); unknown: unbiased."""
    if "unbiased" not in table.columns:
        return pd.Series(False, index=table.index)
    return ~table["unbiased"].fillna(True).astype(bool)


def _rounding_variance(table: pd.DataFrame) -> pd.Series:
    """Whether each row's variance is 0 up to floating-point rounding: at most
    (``FP_ULPS`` eps ||mean||)^2, i.e. an SNR of at least 1 / (``FP_ULPS`` eps) (eps of the
    cell's dtype). Such a variance (2e-20 for an exact estimator in float32) only measures
    rounding, and on a log axis it would squash every real variance into the top."""
    eps = table.get("dtype", pd.Series("float32", index=table.index)).map(
        {"float64": np.finfo(np.float64).eps}).fillna(np.finfo(np.float32).eps)
    snr = pd.to_numeric(table.get("snr", pd.Series(np.nan, index=table.index)),
                        errors="coerce")
    return (table["variance_trace"] == 0) | (snr >= 1 / (FP_ULPS * eps))


def variance_vs_samples(cells: pd.DataFrame, size: Size) -> Drawn:
    table = _ok(cells)
    variance = pd.to_numeric(table["variance_trace"], errors="coerce")
    table = table[np.isfinite(variance) & (variance >= 0) & (table["n_samples"] > 0)]
    table = _variants(_panels(table), default_only=True)
    sweeps = table.groupby(["panel", "variant"], observed=True)["n_samples"].nunique()
    table = table.set_index(["panel", "variant"]).loc[sweeps[sweeps > 1].index].reset_index()
    if table.empty:
        raise NotApplicable("no estimator was measured at more than one K")
    table = _dodge(table.sort_values("n_samples"), "n_samples")
    rounding = _rounding_variance(table)
    positive = table[~rounding]
    # zero variance has no place on a log axis: drawn hollow on the panel's floor
    floors = positive.groupby("panel", observed=True)["variance_trace"].min() / 3
    zero = table[rounding]
    zero = zero.assign(at_floor=zero["panel"].map(floors).astype(float).fillna(1e-12))
    band = _positive(positive, ["variance_trace_ci_low", "variance_trace_ci_high"])
    # the 1/K guide of each panel passes through the median variance at its smallest K
    guides_ = []
    for panel, rows in positive.groupby("panel", observed=True):
        k0 = rows["n_samples"].min()
        v0 = float(np.median(rows.loc[rows["n_samples"] == k0, "variance_trace"]))
        ks = np.geomspace(k0, rows["n_samples"].max(), 20)
        guides_.append(pd.DataFrame({"panel": panel, "n_samples": ks, "guide": v0 * k0 / ks}))
    guide = pd.concat(guides_) if guides_ else pd.DataFrame(columns=["panel", "n_samples",
                                                                     "guide"])
    guide["panel"] = pd.Categorical(guide["panel"], categories=table["panel"].cat.categories)
    facet, rows = _wrap(table, size.max_cols)
    caption = "grey dashed: ∝ 1/K; bands: 95% intervals; points spread around each K"
    if not zero.empty:
        caption += "\nhollow on the bottom edge: variance 0 to rounding (" + ", ".join(
            dict.fromkeys(zero["variant"].astype(str))) + ")"
    plot = (
        ggplot(positive, aes("x_dodged", "variance_trace", color="estimator", group="variant"))
        + geom_line(aes("n_samples", "guide"), data=guide, inherit_aes=False,
                    linetype="dashed", color="#999999", size=0.5)
        + geom_ribbon(
            aes(ymin="variance_trace_ci_low", ymax="variance_trace_ci_high", fill="estimator"),
            data=band, alpha=0.15, color="none",
        )
        + geom_line(size=0.5)
        + geom_point(aes(shape="estimator"), size=1.4)
        + geom_point(aes("x_dodged", "at_floor", shape="estimator"), data=zero, size=2.0,
                     fill="white", stroke=0.4, show_legend=False)
        + scale_x_log10(breaks=_k_breaks(table["n_samples"]), labels=lambda v: [
            f"{x:g}" for x in v], minor_breaks=[])
        + _log10(y=True)
        + facet
        + labs(x="samples per estimate K", y="gradient variance (trace)",
               caption=caption)
        + _estimator_scales(table, fill=True)
    )
    return Drawn(plot, rows)


def _runs(flags: Sequence[bool]) -> list[int]:
    """Label consecutive True entries with a run number (False entries get -1)."""
    labels, run, previous = [], -1, False
    for flag in flags:
        if flag and not previous:
            run += 1
        labels.append(run if flag else -1)
        previous = flag
    return labels


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
    table = _order_estimators(_panels(table[table["n_samples"] == k])).sort_values("tau")
    # a bias whose 95% interval reaches down to the noise floor is not resolved: the
    # measured norm is then mostly the noise of the mean, not bias
    resolved = (table["bias_l2_ci_low"] > table["bias_l2_noise_floor"]).to_numpy()
    table = table.assign(resolved=resolved)
    table["run"] = 0
    for _, rows in table.groupby(["panel", "estimator"], observed=True):
        table.loc[rows.index, "run"] = _runs(rows["resolved"].tolist())
    long = pd.concat([
        table.assign(
            quantity="bias ||E[g] − ∇L||", value=table["bias_l2"],
            low=table["bias_l2_ci_low"], high=table["bias_l2_ci_high"],
            floor=table["bias_l2_noise_floor"],
        ),
        table.assign(
            quantity="variance (trace)", value=table["variance_trace"],
            low=table["variance_trace_ci_low"], high=table["variance_trace_ci_high"],
            floor=np.nan, resolved=True, run=0,
        ),
    ])
    long["quantity"] = pd.Categorical(long["quantity"], categories=list(
        dict.fromkeys(long["quantity"])))
    long = _positive(long, ["value"])
    long["series"] = (long["estimator"].astype(str) + "/" + long["quantity"].astype(str)
                      + "/" + long["run"].astype(str))
    shown = long[long["resolved"].astype(bool)]
    hidden = long[~long["resolved"].astype(bool)]
    band = _positive(shown, ["low", "high"])
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
    caption = (f"K = {k} samples per estimate; bands: 95% intervals\n"
               "dashed: bias noise floor sqrt(variance / R)")
    if not hidden.empty:
        caption += "\nhollow: not resolved (bias interval reaches the noise floor)"
    plot = (
        ggplot(shown, aes("tau", "value", color="estimator"))
        + geom_ribbon(aes(ymin="low", ymax="high", fill="estimator", group="series"),
                      data=band, alpha=0.2, color="none")
        + geom_line(aes(y="floor", group="estimator"), data=floor, linetype="dashed",
                    size=0.4, alpha=0.8)
        + geom_line(aes(group="series"), size=0.5)
        + geom_point(aes(shape="estimator"), size=1.4)
        + geom_point(aes(shape="estimator"), data=hidden, size=1.4, fill="white", stroke=0.4,
                     show_legend=False)
        + _log10(x=True, y=True)
        + facet
        + labs(x="temperature τ", y="", caption=caption)
        + _estimator_scales(long, fill=True)
    )
    return Drawn(plot, rows)


def _efficiency(cells: pd.DataFrame, size: Size, by: str) -> Drawn:
    """MSE against the cost of an estimate: ``by`` = ``time`` (median wall-clock time, with
    its interquartile range) or ``evals`` (evaluations of the cost)."""
    x = "time_per_estimate_s" if by == "time" else "cost_evals"
    table = _positive(_ok(cells), ["mse", x])
    table = _variants(_panels(table), default_only=True)
    if table.empty:
        raise NotApplicable(f"no cell has a mean squared error and a positive {x}")
    table = table.sort_values("n_samples")
    if by == "time":
        table = table.assign(cost=table[x] * 1e3)
        iqr = table["time_iqr_s"].fillna(0) * 1e3 if "time_iqr_s" in table.columns else 0
        table = table.assign(cost_low=(table["cost"] - iqr / 2).clip(lower=table["cost"] / 10),
                             cost_high=table["cost"] + iqr / 2)
        xlab = "wall-clock time per estimate (ms)"
        bars = "bars: 95% interval of the MSE; interquartile range of the time"
    else:
        table = _dodge(table.assign(cost=table[x].astype(float)), "cost", spread=0.15)
        xlab = "cost evaluations per estimate"
        bars = "bars: 95% interval of the MSE; points spread around each count"
    xcol = "cost" if by == "time" else "x_dodged"
    table = table.assign(
        xpos=table[xcol],
        low=table["mse_ci_low"].where(table["mse_ci_low"] > 0, table["mse"]),
        high=table["mse_ci_high"].where(table["mse_ci_high"] > 0, table["mse"]),
        biased=_biased(table),
    )
    joined = table.groupby(["panel", "variant"], observed=True)["n_samples"].transform("size")
    facet, rows = _wrap(table, size.max_cols)
    layers = [geom_linerange(aes(ymin="low", ymax="high"), size=0.4, alpha=0.8)]
    if (joined > 1).any():
        layers.append(geom_path(data=table[joined > 1], size=0.4, alpha=0.7))
    if by == "time":
        layers.append(geom_segment(aes(x="cost_low", xend="cost_high", yend="mse"), size=0.4,
                                   alpha=0.8))
    plot = (
        ggplot(table, aes("xpos", "mse", color="estimator", group="variant"))
        + layers
        + geom_point(aes(shape="estimator"), data=table[~table["biased"]], size=1.4)
        + geom_point(aes(shape="estimator"), data=table[table["biased"]], size=1.4,
                     fill="white", stroke=0.4, show_legend=False)
        + _log10(x=True, y=True)
        + facet
        + labs(x=xlab, y="MSE ||g − ∇L||²",
               caption=f"one point per K, joined in order of K; lower left is better\n{bars}"
               "; hollow: biased estimator")
        + _estimator_scales(table)
    )
    return Drawn(plot, rows)


def efficiency(cells: pd.DataFrame, size: Size) -> Drawn:
    return _efficiency(cells, size, "time")


def efficiency_evals(cells: pd.DataFrame, size: Size) -> Drawn:
    return _efficiency(cells, size, "evals")


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


def overview(cells: pd.DataFrame, size: Size) -> Drawn:
    table = _positive(_ok(cells), ["mse"])
    table = _variants(_panels(table), default_only=True)
    if table.empty:
        raise NotApplicable("no cell has a truth to measure the mean squared error against")
    largest = table.groupby("panel", observed=True)["n_samples"].transform("max")
    table = _label_estimated_truth(table[table["n_samples"] == largest])
    sizes = sorted(set(table["n_samples"]))
    at = f"K = {sizes[0]}" if len(sizes) == 1 else "the largest K of each problem"
    table = _ordered_within(table.assign(biased=_biased(table)), "mse")
    interval = table.assign(
        low=table["mse_ci_low"].where(table["mse_ci_low"] > 0, table["mse"]),
        high=table["mse_ci_high"].where(table["mse_ci_high"] > 0, table["mse"]),
    )
    # estimator names label every panel: half as many panels a row as the other figures
    facet, rows = _wrap(interval, max(1, size.max_cols // 2))
    per_row = OVERVIEW_ROW_IN * interval.groupby("panel", observed=True).size().max()
    height = round(rows * (per_row + OVERVIEW_STRIP_IN) + size.extra_in, 2)
    caption = f"at {at}; bars: 95% intervals (drawn over the marker)\nhollow: biased estimator"
    if table["panel"].astype(str).str.contains("truth estimated").any():
        caption += ("\ntruth estimated: measured against a large-sample reference estimate, "
                    "not an exact gradient")
    plot = (
        ggplot(interval, aes("within", "mse", color="estimator"))
        + geom_point(data=interval[~interval["biased"]], size=1.6)
        + geom_point(data=interval[interval["biased"]], size=1.6, fill="white")
        + geom_errorbar(aes(ymin="low", ymax="high"), width=0.6, size=0.5)
        + scale_x_discrete(labels=lambda keys: [k.split(_WITHIN, 1)[1] for k in keys])
        + _log10(y=True)
        + coord_flip()
        + facet
        + labs(x="", y="MSE ||g − ∇L||²", caption=caption)
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


def _across_seeds(rows: pd.DataFrame, log: bool = False) -> pd.DataFrame:
    """Mean and 95% interval of the mean (Student t) of ``value`` over seeds, per variant
    and step; on log10 values with ``log`` (a geometric mean)."""
    values = np.log10(rows["value"]) if log else rows["value"]
    grouped = rows.assign(v=values).groupby(["estimator", "variant", "step"], observed=True)
    stats = grouped["v"].agg(["mean", "std", "count"]).reset_index()
    half = (stats["std"].fillna(0) / np.sqrt(stats["count"])
            * scipy.stats.t.ppf(0.975, np.maximum(stats["count"] - 1, 1)))
    half = half.where(stats["count"] > 1, 0.0)
    mean, low, high = stats["mean"], stats["mean"] - half, stats["mean"] + half
    if log:
        mean, low, high = 10**mean, 10**low, 10**high
    return stats.assign(value=mean, low=low, high=high)


def _median_pace(curve: pd.DataFrame) -> pd.Series:
    """Seconds per training step of each variant: the median over seeds and recording
    intervals of (wall-clock seconds / steps), which a stall of the machine cannot move."""
    paces = {}
    for variant, rows in curve.groupby("variant", observed=True):
        per = []
        for _, run in rows.groupby("seed" if "seed" in rows.columns else "variant"):
            run = run.sort_values("step")
            steps, wall = run["step"].diff(), run["wall_s"].diff()
            per.extend((wall / steps)[steps > 0].tolist())
        paces[variant] = float(np.median(per)) if per else np.nan
    return pd.Series(paces)


def _marks(curve: pd.DataFrame, per_curve: int = 6) -> pd.DataFrame:
    """About ``per_curve`` evenly spaced records of each curve, to carry the estimators'
    markers: estimators that share a colour stay apart in a figure of lines."""
    steps = np.sort(curve["step"].unique())
    every = max(1, int(np.ceil(len(steps) / per_curve)))
    return curve[curve["step"].isin(steps[::every])]


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
    seeds = table["seed"].nunique() if "seed" in table.columns else 1
    raw = table[table["metric"] == objective]
    curve = _across_seeds(raw)
    curve = curve.assign(time=curve["step"] * curve["variant"].map(_median_pace(raw)))
    variance = _positive(table[table["metric"] == "variance_trace"], ["value"])
    name = OBJECTIVES[objective]
    scales = _estimator_scales(table, fill=True)
    band = "" if seeds == 1 else "; bands: 95% intervals of the mean"

    def line(data: pd.DataFrame) -> list:
        layers = [geom_line(size=0.5), geom_point(aes(shape="estimator"), data=_marks(data),
                                                  size=1.3)]
        if seeds > 1:
            layers.insert(0, geom_ribbon(aes(ymin="low", ymax="high", fill="estimator"),
                                         alpha=0.2, color="none"))
        return layers

    by_step = (
        ggplot(curve, aes("step", "value", color="estimator", group="variant")) + line(curve)
        + labs(title="a", x="training step", y=name) + scales
    )
    by_time = (
        ggplot(curve, aes("time", "value", color="estimator", group="variant")) + line(curve)
        + labs(title="b", x="training time (s)", y=name) + scales
    )
    panels: list[ggplot] = [by_step, by_time]
    if not variance.empty:
        spread = _across_seeds(variance, log=True)
        panels.append(
            ggplot(spread, aes("step", "value", color="estimator", group="variant"))
            + line(spread)
            + _log10(y=True)
            + labs(title="c", x="training step", y="gradient variance (trace)") + scales
        )
    beside = size.max_cols >= len(panels)
    caption = ("training time: step x the median seconds per step (robust to stalls)\n"
               f"{'mean over ' + str(seeds) + ' seeds' if seeds > 1 else 'one seed'}{band}")
    return Drawn(panels, 1 if beside else len(panels), caption=caption)


FIGURES: dict[str, Figure] = {
    "variance_vs_samples": Figure(
        "variance_vs_samples", "variance against K, log-log, with 95% bands and a 1/K guide",
        "cells",
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
        "efficiency", "mean squared error against wall-clock time per estimate", "cells",
        ("status", "problem", "problem_options", "estimator", "estimator_options", "n_samples",
         "mse", "mse_ci_low", "mse_ci_high", "time_per_estimate_s", "time_iqr_s"),
        efficiency,
    ),
    "efficiency_evals": Figure(
        "efficiency_evals", "mean squared error against cost evaluations per estimate",
        "cells",
        ("status", "problem", "problem_options", "estimator", "estimator_options", "n_samples",
         "mse", "mse_ci_low", "mse_ci_high", "cost_evals"),
        efficiency_evals,
    ),
    "training": Figure(
        "training", "objective against step and training time; gradient variance along "
        "training; mean and bands over seeds", "train",
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


def wrap_caption(text: str, width_in: float) -> str:
    """``text`` with its lines wrapped to fit ``width_in`` inches at the caption's size
    (an average character of the theme's sans-serif font is about 0.6 em wide)."""
    chars = max(20, int(width_in * 72 / (TEXT_PT * 0.6)))
    return "\n".join(part for line in text.split("\n")
                     for part in (textwrap.wrap(line, chars) or [""]))


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
        caption = drawn.plot.labels.caption
        wrapped = labs(caption=wrap_caption(caption, width)) if caption else []
        return drawn.plot + styled + wrapped, width, height
    # one legend for the composed panels: on the last one, beside it or below the stack
    beside = drawn.rows == 1
    panels = [panel + styled + theme(legend_position="none") for panel in drawn.plot]
    if beside:
        panels[-1] = panels[-1] + theme(legend_position="right") + guides(
            color=guide_legend(ncol=1))
    else:
        panels[-1] = panels[-1] + theme(legend_position="bottom")
    if drawn.caption:
        panels[-1] = panels[-1] + labs(caption=wrap_caption(drawn.caption, width))
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
            missing = [c for c in figure.columns if c not in table.columns]
            if missing and names is None:
                notes.append(f"{stem}: skipped, the {figure.table} table lacks {missing} "
                             "(made by an older version)")
                continue
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
