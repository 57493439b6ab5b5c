"""Print the tables of docs/estimators_categorical.md from the cells of its run directory.

The page's run (single-threaded, the default seed)::

    bench run --estimator reinforce_loo,straight_through,gumbel_softmax,st_gumbel_softmax,\\
gumbel_rao,reinmax,gst,zgr,indecater,unordered_set \\
        --problem categorical_toy,categorical_vae --set theta=1 --set tau=0.5,1,2 \\
        --set gap=1,p --samples 4 --repeats 1000 --threads 1 --out results/categorical
    python docs/categorical_table.py results/categorical

Per problem, every estimator at its default options (tau = 1, gap 1): whether it is
unbiased, the bias norm ||E g - grad L|| (a point estimate), the unbiased estimate of the
squared bias ||E g - grad L||^2 with its 95% interval (it contains 0 at the nominal rate for
an unbiased estimator; a norm's bootstrap interval need not contain its own point, so it is
not shown), the p-value of the bias test, the variance (trace) with its 95% bootstrap
interval, the MSE, the cost evaluations and the time per estimate. Then the temperature
sweep: bias norm / variance at each tau.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

TAUS = (0.5, 1.0, 2.0)
#: the unbiased estimators first, then the biased ones
ORDER = ("reinforce_loo", "unordered_set", "indecater", "straight_through", "gumbel_softmax",
         "st_gumbel_softmax", "gumbel_rao", "reinmax", "gst", "zgr")
NAMES = {"categorical_toy": "toy", "categorical_vae": "VAE"}


def _options(row: pd.Series) -> dict:
    return json.loads(row["estimator_options"] or "{}")


def defaults(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells at the default options: tau = 1 where there is a tau, gap 1 for gst."""
    options = cells.apply(_options, axis=1)
    keep = options.map(lambda o: o.get("tau", 1.0) == 1.0 and o.get("gap", "1") == "1")
    return cells[keep]


def _g(value: float) -> str:
    return f"{value:.3g}"


def problem_table(cells: pd.DataFrame, problem: str, order: list[str]) -> str:
    rows = defaults(cells[cells["problem"] == problem]).set_index("estimator")
    lines = [
        "| estimator | unbiased | bias ‖E g − ∇L‖ | bias² [95%] | bias p "
        "| variance (trace) [95%] | MSE | cost evals | ms / estimate |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in order:
        if name not in rows.index:
            continue
        row = rows.loc[name]
        lines.append(
            f"| `{name}` | {'yes' if row['unbiased'] else 'no'} | {_g(row['bias_l2'])} "
            f"| {_g(row['bias_sq'])} [{_g(row['bias_sq_ci_low'])}, "
            f"{_g(row['bias_sq_ci_high'])}] | {row['bias_p_value']:.2g} "
            f"| {_g(row['variance_trace'])} [{_g(row['variance_trace_ci_low'])}, "
            f"{_g(row['variance_trace_ci_high'])}] | {_g(row['mse'])} | {row['cost_evals']} "
            f"| {1000 * row['time_per_estimate_s']:.1f} |"
        )
    return "\n".join(lines)


def tau_table(cells: pd.DataFrame, order: list[str]) -> str:
    cells = cells.assign(options=cells.apply(_options, axis=1))
    cells = cells[cells["options"].map(lambda o: "tau" in o)]
    lines = ["| estimator | problem | " + " | ".join(f"τ = {t:g}" for t in TAUS) + " |",
             "|---|---|" + "---|" * len(TAUS)]
    for problem in NAMES:
        for name in order:
            gaps = ("1", "p") if name == "gst" else (None,)
            for gap in gaps:
                rows = cells[(cells["problem"] == problem) & (cells["estimator"] == name)]
                if gap is not None:
                    rows = rows[rows["options"].map(lambda o, gap=gap: o.get("gap") == gap)]
                if rows.empty:
                    continue
                by_tau = {o["tau"]: r for o, (_, r) in zip(rows["options"], rows.iterrows(),
                                                             strict=True)}
                label = f"`{name}`" + ("" if gap is None else f" (gap {gap})")
                values = [f"{_g(by_tau[t]['bias_l2'])} / {_g(by_tau[t]['variance_trace'])}"
                          if t in by_tau else "—" for t in TAUS]
                lines.append(f"| {label} | {NAMES[problem]} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def main(run: Path) -> None:
    cells = pd.read_parquet(run / "cells.parquet")
    cells = cells[cells["status"] == "ok"]
    print(f"<!-- measured: {run.as_posix()} ({len(cells)} cells) -->")
    for problem in NAMES:
        norm = cells.loc[cells["problem"] == problem, "truth_l2"].iloc[0]
        print(f"\n`{problem}` (‖∇L‖ = {norm:.3g}):\n")
        print(problem_table(cells, problem, list(ORDER)))
    print("\nTemperature sweep (bias ‖E g − ∇L‖ / variance trace):\n")
    print(tau_table(cells, [n for n in ORDER if n != "zgr"]))
    print("<!-- end -->")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("results/categorical"))
