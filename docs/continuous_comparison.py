"""The measured comparison of docs/estimators_continuous.md: run the sweeps, draw the figure,
print the tables.

    python docs/continuous_comparison.py [OUT]        # default OUT: results/continuous

1. ``OUT/k``: gaussian_quadratic in one dimension (mu = sigma = 1) at K = 1 for targets
   k = -3 .. 3, as Mohamed et al. (2020), Figure 2: the variance of one estimate of dL/dmu
   and dL/dsigma for the score function, the pathwise estimator and the measure-valued
   derivative (coupled and not), with the closed forms of ``reparam`` and ``mvd`` drawn as
   lines (derived in tests/test_continuous.py). Figure: ``docs/figures/continuous_variance.png``.
2. ``OUT/elbo``: gaussian_elbo (defaults: d = 2, n_obs = 4) at K = 2 and 8, every continuous
   estimator and the score functions.
3. ``OUT/iwae``: gaussian_elbo with ``objective=iwae`` (d = 1) at K = 2, 4: reparam, stl,
   dreg, vimco, reinforce; truth by Gauss-Hermite quadrature.

Every sweep is float64 with R = 20000 estimates per cell, single-threaded, seed 0; an existing
run directory is resumed, not recomputed.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd
import torch
from plotnine import (
    aes,
    facet_wrap,
    geom_line,
    geom_point,
    ggplot,
    labs,
    scale_colour_manual,
    scale_linetype_manual,
    scale_shape_manual,
    scale_y_log10,
)

import bench
from bench.report.theme import estimator_colours, estimator_shapes, paper_theme

ROOT = Path(__file__).resolve().parents[1]
FIGURE = ROOT / "docs" / "figures" / "continuous_variance.png"
TARGETS = [x / 2 for x in range(-6, 7)]
#: lower end of the figure's variance axis
FLOOR = 1e-2
COMMON = {"repeats": 20_000, "dtype": "float64", "threads": 1, "seed": 0, "progress": False}


def sweeps(out: Path) -> dict[str, pd.DataFrame]:
    """Run (or resume) the three sweeps; their cells."""
    runs = {
        "k": {
            "estimators": ["reinforce", "reparam", "mvd", "delta_cv"],
            "problems": ["gaussian_quadratic"],
            "samples": [1],
            "settings": {
                "k": TARGETS,
                "mu": [1.0],
                "sigma": [1.0],
                "d": [1],
                "coupled": [True, False],
            },
        },
        "elbo": {
            "estimators": [
                "reinforce",
                "reinforce_loo",
                "nvil",
                "reparam",
                "stl",
                "dreg",
                "mvd",
                "delta_cv",
            ],
            "problems": ["gaussian_elbo"],
            "samples": [2, 8],
            "settings": {"base": ["score", "pathwise"], "normalize": [False]},
        },
        "iwae": {
            "estimators": ["reinforce", "reparam", "stl", "dreg", "vimco"],
            "problems": ["gaussian_elbo"],
            "samples": [2, 4],
            "settings": {"objective": ["iwae"], "d": [1], "truth": ["auto"]},
        },
    }
    cells = {}
    for name, run in runs.items():
        cells[name] = bench.run_sweep(out=out / name, bootstrap=200, **run, **COMMON)
    return cells


def options(row: pd.Series, keys: tuple[str, ...]) -> str:
    values = json.loads(row["estimator_options"] or "{}")
    shown = [f"{k}={str(values[k]).lower()}" for k in keys if k in values]
    return f"{row['estimator']} ({', '.join(shown)})" if shown else row["estimator"]


def closed_forms() -> pd.DataFrame:
    """Per-sample variances at mu = sigma = 1 on f = (x - k)^2, a = mu - k (the score
    function's from Gaussian moments: g_mu = (a + e)^2 e, g_sigma = (a + e)^2 (e^2 - 1))."""
    rows = []
    for k in [x / 20 for x in range(-60, 61)]:
        a = 1.0 - k
        forms = {
            ("reinforce", "dL/dmu"): a**4 + 14 * a**2 + 15,
            ("reinforce", "dL/dsigma"): 2 * a**4 + 60 * a**2 + 74,
            ("reparam", "dL/dmu"): 4.0,
            ("reparam", "dL/dsigma"): 4 * a**2 + 8,
            ("mvd (coupled=true)", "dL/dmu"): a**2 * (16 / math.pi - 4),
            ("mvd (coupled=true)", "dL/dsigma"): 4 * a**2 + 4,
            ("mvd (coupled=false)", "dL/dmu"): a**2 * (8 / math.pi - 2) + 4 / math.pi,
            ("mvd (coupled=false)", "dL/dsigma"): 16 * a**2 + 8,
        }
        rows += [
            {"k": k, "label": label, "param": param, "variance": v}
            for (label, param), v in forms.items()
        ]
    return pd.DataFrame(rows)


def figure(run: Path) -> Path:
    """Variance of each coordinate's estimate against k: points measured, lines closed form."""
    coords = pd.read_parquet(run / "coords.parquet")
    cells = pd.read_parquet(run / "cells.parquet")
    coords = coords.merge(cells[["cell_key", "status"]], on="cell_key")
    coords = coords[(coords["status"] == "ok") & (coords["estimator"] != "delta_cv")].copy()
    coords["k"] = coords["problem_options"].map(lambda t: json.loads(t)["k"])
    coords["label"] = coords.apply(options, axis=1, keys=("coupled",))
    coords["param"] = "dL/d" + coords["param"]
    lines = closed_forms()
    labels = sorted(set(coords["label"]))
    base = {label: label.split(" ")[0] for label in labels}
    colours, shapes = estimator_colours(), estimator_shapes()
    # coupled mvd's mean derivative is exact at k = mu (variance a^2 (16/pi - 4) = 0): drawn
    # at the floor of the axis
    for table in (coords, lines):
        table["variance"] = table["variance"].clip(lower=FLOOR)
    legend = {"name": "estimator", "limits": labels, "breaks": labels}
    plot = (
        ggplot(coords, aes("k", "variance", colour="label", shape="label"))
        + geom_line(
            lines,
            aes("k", "variance", colour="label", linetype="label"),
            inherit_aes=False,
            size=0.5,
        )
        + geom_point(size=1.8)
        + facet_wrap("param", scales="free_y")
        + scale_y_log10()
        + scale_colour_manual([colours[base[lab]] for lab in labels], **legend)
        + scale_shape_manual(
            ["x" if "false" in lab else shapes[base[lab]] for lab in labels], **legend
        )
        + scale_linetype_manual(
            ["dashed" if "false" in lab else "solid" for lab in labels], **legend
        )
        + labs(
            x="target k of the cost (x - k)^2, x ~ N(1, 1)",
            y="variance of one estimate (K = 1)",
            title="points: measured (R = 20000); lines: closed form",
        )
        + paper_theme()
    )
    plot.save(FIGURE, width=7.0, height=3.4, dpi=200, verbose=False)
    return FIGURE


def table(cells: pd.DataFrame, keys: tuple[str, ...]) -> str:
    cells = cells[cells["status"] == "ok"].copy()
    cells["label"] = cells.apply(options, axis=1, keys=keys)
    cells = cells.sort_values(["n_samples", "variance_trace"], kind="stable")
    lines = [
        "| K | estimator | f evals | variance [95% CI] | variance × evals | bias p | time (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, row in cells.iterrows():
        lines.append(
            f"| {row['n_samples']} | `{row['label']}` | {row['cost_evals']} "
            f"| {row['variance_trace']:.3g} [{row['variance_trace_ci_low']:.3g}, "
            f"{row['variance_trace_ci_high']:.3g}] "
            f"| {row['variance_trace'] * row['cost_evals']:.3g} | {row['bias_p_value']:.2g} "
            f"| {1000 * row['time_per_estimate_s']:.2f} |"
        )
    return "\n".join(lines)


def main(out: Path) -> None:
    torch.set_num_threads(1)
    cells = sweeps(out)
    print(f"figure: {figure(out / 'k')}")
    print("\n## gaussian_elbo\n")
    print(table(cells["elbo"], ("base", "normalize")))
    print("\n## gaussian_elbo, objective=iwae\n")
    print(table(cells["iwae"], ()))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "results" / "continuous")
