"""``bench list``: the registered estimators and problems, their options, and which pairs apply."""

from __future__ import annotations

import argparse

import pandas as pd

from bench.cli import EXIT_OK
from bench.registry import current_registry


def _options_text(options: dict) -> str:
    if not options:
        return "    (no options)"
    return "\n".join(
        f"    {name} = {opt.default!r}  ({opt.rule()}) {opt.help}" for name, opt in options.items()
    )


def main(args: argparse.Namespace) -> int:
    """Print estimators, problems, their options and which pairs apply (plugins' too)."""
    registry = current_registry()
    estimators, problems = registry.estimators, registry.problems
    print("Estimators")
    for name, est in estimators.items():
        needs = ", ".join(sorted(est.requires)) or "nothing"
        bias = "unbiased" if est.unbiased else "biased"
        multi = "; multi-sample objectives too" if est.supports_multi_sample else ""
        print(f"  {name}: {est.description} [{bias}; requires {needs}; {est.samples_text()}; "
              f"cost {est.cost_formula} evaluations per estimate{multi}; {est.reference()}]")
        print(_options_text(est.options))
    print("\nProblems")
    for name, prob in problems.items():
        gives = ", ".join(sorted(prob.capabilities()))
        truth = prob.truth_of().label()
        print(f"  {name}: {prob.description} [{prob.latent.value}; truth {truth}; "
              f"provides {gives}]")
        print(_options_text(prob.options))
    print("\nEstimators at a glance (cost: evaluations of the cost per estimate, the cells' "
          "cost_evals)")
    rows = [("estimator", "unbiased", "K >=", "cost", "reference")] + [
        (name, "yes" if e.unbiased else "no", str(e.min_samples), e.cost_formula, e.reference())
        for name, e in estimators.items()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False))
              + "  " + row[4])
    print("\nApplicable pairs (x) and skipped ones (.)")
    matrix = pd.DataFrame(
        {e: ["x" if est.incompatibility(p) is None else "." for p in problems.values()]
         for e, est in estimators.items()},
        index=list(problems),
    )
    print(matrix.to_string())
    return EXIT_OK


def add_parser(subparsers) -> None:
    listing = subparsers.add_parser("list", help="estimators, problems, options, pairs")
    listing.set_defaults(handler=main)
