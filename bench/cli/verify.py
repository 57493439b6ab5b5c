"""``bench verify``: check estimators, built in or from a plugin, against exact gradients."""

from __future__ import annotations

import argparse
import json
import math

import pandas as pd

from bench.cli import EXIT_FAILED, EXIT_OK, add_shared, integer, number
from bench.config import single_settings


def _problems(text: str | None) -> list[str] | None:
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def _table(report) -> str:
    rows = pd.DataFrame([c.row() for c in report.cells])
    if rows.empty:
        return "  (no applicable problem with exact truth)"
    rows["detects"] = rows["detects"].map(
        lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1%}")
    rows = rows.drop(columns=["message"]).dropna(axis=1, how="all").fillna("")
    return rows.to_string(index=False, float_format=lambda v: f"{v:.3g}")


def main(args: argparse.Namespace) -> int:
    """Verify each estimator; print a table per estimator and one verdict line each."""
    from bench.verify import verify_one

    names = [n.strip() for n in args.estimators.split(",") if n.strip()]
    if not names:
        raise ValueError("bench verify: name at least one estimator, e.g. bench verify disarm")
    options = single_settings(args.set, "bench verify")
    reports = [
        verify_one(name, options, quick=args.quick, seed=args.seed, alpha=args.alpha,
                   power_bias=args.power_bias, max_repeats=args.max_repeats,
                   budget_s=args.budget, cell_timeout=args.cell_timeout,
                   against=args.against, problems=_problems(args.problem),
                   progress=not args.no_progress and not args.json, memory=args.memory)
        for name in names
    ]
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], indent=2, default=str))
    else:
        for report in reports:
            claim = "unbiased" if report.declared_unbiased else "biased"
            print(f"\n{report.estimator} (declared {claim}; target: {report.target})")
            print(_table(report))
            for line in report.skipped:
                print(f"  skipped {line}")
            for line in report.failures:
                print(f"  {line}")
        print()
        for report in reports:
            print(report.verdict())
    return EXIT_OK if all(r.ok for r in reports) else EXIT_FAILED


def add_parser(subparsers) -> None:
    verify = subparsers.add_parser(
        "verify",
        help="check estimators against exact gradients (yours too, with --plugin)",
        description="Run each estimator on every problem with exact truth it applies to, at "
        "stress settings (parameters far from 0, d = 1 and d > 1, several K, float64), with R "
        "chosen for power; test its bias against what it declares, compare its variance with a "
        "standard estimator, check that repeats are independent and results deterministic. "
        "A biased estimator is checked against what it declares to be unbiased for (its "
        "target), or reported NOT VERIFIED when nothing can be checked. Exit code 0 when "
        "nothing failed, 1 otherwise (docs/verify.md).",
    )
    verify.add_argument("estimators", metavar="ESTIMATOR[,...]",
                        help="registered estimator names (plugins' included)")
    verify.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="an option of the estimator (repeatable)")
    verify.add_argument("--quick", action="store_true",
                        help="one setting per problem at its smallest K, one reference")
    add_shared(verify, "--seed")
    verify.add_argument("--alpha", type=number, default=1e-3,
                        help="probability that a correct estimator fails a bias test anywhere")
    verify.add_argument("--power-bias", type=number, default=0.05,
                        help="bias, relative to each coordinate, that each test detects with "
                        "probability 0.975")
    verify.add_argument("--max-repeats", type=integer, default=200_000,
                        help="largest R of one bias test for its power target (up to 10x "
                        "more, within 60 s of draws, where the pilot shows it would otherwise "
                        "be inconclusive)")
    verify.add_argument("--budget", type=number, default=None, metavar="SECONDS",
                        help="seconds the draws of one bias test may take (R is capped by it; "
                        "R then depends on the machine's speed)")
    verify.add_argument("--cell-timeout", type=number, default=600.0, metavar="SECONDS",
                        help="seconds one setting may take; past it the setting fails")
    verify.add_argument("--against", metavar="ESTIMATOR", default=None,
                        help="a registered estimator drawn from the same random numbers in "
                        "every setting: the paired difference is reported (paired_z, max_diff)")
    verify.add_argument("--problem", metavar="PROBLEM[,...]", default=None,
                        help="check only the settings of these problems")
    verify.add_argument("--json", action="store_true", help="print the reports as JSON")
    add_shared(verify, "--memory", "--no-progress")
    verify.set_defaults(handler=main)
