"""``training``: training curves of ``bench train``: (a) the objective (the test negative ELBO
of a VAE, the energy distance or total variation of a GAN's samples to the data, else the
training loss) against step, (b) against training time, and (c) the gradient variance along
training on a log scale (DisARM, Dong et al. 2020, Figure 2; RELAX, Grathwohl et al. 2018,
Figure 4); with several seeds, their mean and a 95% band. Training time is the step times
the median seconds per step, which stalls of the machine cannot bend. Each curve carries its
estimator's marker at about six records, so that estimators sharing a colour stay apart. It
draws one problem: its ``per_page`` is 1, so ``make_figures`` writes a file per problem.

References: Grathwohl et al. (2018), ICLR; Dong, Mnih, Tucker (2020), NeurIPS.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.stats
from plotnine import aes, geom_line, geom_point, geom_ribbon, ggplot, labs

from bench.report.figures.axes import log10
from bench.report.figures.base import Drawn, NotApplicable
from bench.report.figures.common import estimator_scales, positive, with_panels, with_variants
from bench.report.theme import Size

#: metrics of train.parquet that are the training objective, in order of preference
OBJECTIVES: dict[str, str] = {
    "test_nelbo": "test negative ELBO (nats)",
    "energy_distance": "energy distance to the data",
    "total_variation": "total variation to the data",
    "train_loss": "training objective",
}


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
    table = with_variants(with_panels(train), default_only=False)
    if table["panel"].nunique() > 1:
        raise ValueError(
            "figure 'training' draws one problem; the train table has "
            f"{', '.join(table['panel'].cat.categories)} (make_figures draws one file each)"
        )
    seeds = table["seed"].nunique() if "seed" in table.columns else 1
    raw = table[table["metric"] == objective]
    curve = _across_seeds(raw)
    curve = curve.assign(time=curve["step"] * curve["variant"].map(_median_pace(raw)))
    variance = positive(table[table["metric"] == "variance_trace"], ["value"])
    name = OBJECTIVES[objective]
    scales = estimator_scales(table, fill=True)
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
            + log10(y=True)
            + labs(title="c", x="training step", y="gradient variance (trace)") + scales
        )
    beside = size.max_cols >= len(panels)
    caption = ("training time: step x the median seconds per step (robust to stalls)\n"
               f"{'mean over ' + str(seeds) + ' seeds' if seeds > 1 else 'one seed'}{band}")
    return Drawn(panels, 1 if beside else len(panels), caption=caption)


def per_page(train: pd.DataFrame, size: Size) -> int:
    return 1
