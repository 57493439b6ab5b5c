"""The registered figures: the table each reads, the columns it needs, how it is drawn and
how many problems a page of it holds."""

from __future__ import annotations

from bench.report.figures import efficiency, overview, tau, training, variance
from bench.report.figures.base import Figure

_CELL_KEY = ("status", "problem", "problem_options", "estimator", "estimator_options",
             "n_samples")

FIGURES: dict[str, Figure] = {
    "variance_vs_samples": Figure(
        "variance_vs_samples", "variance against K, log-log, with 95% bands and a 1/K guide",
        "cells",
        _CELL_KEY + ("variance_trace", "variance_trace_ci_low", "variance_trace_ci_high"),
        variance.variance_vs_samples, variance.per_page,
    ),
    "tau_tradeoff": Figure(
        "tau_tradeoff", "bias and variance against tau of the relaxed estimators", "cells",
        _CELL_KEY + ("bias_l2", "bias_l2_ci_low", "bias_l2_ci_high", "bias_l2_noise_floor",
                     "variance_trace", "variance_trace_ci_low", "variance_trace_ci_high"),
        tau.tau_tradeoff, tau.per_page,
    ),
    "efficiency": Figure(
        "efficiency", "mean squared error against wall-clock time per estimate", "cells",
        _CELL_KEY + ("mse", "mse_ci_low", "mse_ci_high", "time_per_estimate_s", "time_iqr_s"),
        efficiency.efficiency, efficiency.per_page,
    ),
    "efficiency_evals": Figure(
        "efficiency_evals", "mean squared error against cost evaluations per estimate",
        "cells", _CELL_KEY + ("mse", "mse_ci_low", "mse_ci_high", "cost_evals"),
        efficiency.efficiency_evals, efficiency.per_page,
    ),
    "training": Figure(
        "training", "objective against step and training time; gradient variance along "
        "training; mean and bands over seeds", "train",
        ("problem", "problem_options", "estimator", "estimator_options", "step", "wall_s",
         "metric", "value"),
        training.training, training.per_page,
    ),
    "overview": Figure(
        "overview", "per problem, estimators ranked by mean squared error", "cells",
        _CELL_KEY + ("mse", "mse_ci_low", "mse_ci_high", "unbiased"),
        overview.overview, overview.per_page,
    ),
}


def get_figure(name: str) -> Figure:
    try:
        return FIGURES[name]
    except KeyError:
        raise ValueError(f"unknown figure {name!r}; valid figures: {', '.join(FIGURES)}") from None
