"""``bench table``: a run's summary table for a paper (bias, variance, MSE with intervals,
per problem), as LaTeX or Markdown (``bench.report.tables``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli import EXIT_OK, integer
from bench.files import check_output_dir
from bench.report.tables import FORMATS, load, paper_table


def main(args: argparse.Namespace) -> int:
    """Print (or write) the summary table of a run directory."""
    cells = load(args.run_dir)
    if args.problem:
        chosen = [p.strip() for p in args.problem.split(",") if p.strip()]
        missing = sorted(set(chosen) - set(cells["problem"]))
        if missing:
            raise ValueError(
                f"invalid --problem {','.join(missing)}: not in {args.run_dir}; "
                f"it has {', '.join(dict.fromkeys(cells['problem']))}"
            )
        cells = cells[cells["problem"].isin(chosen)]
    if args.samples:
        cells = cells[cells["n_samples"].isin(args.samples)]
    text = paper_table(cells, args.format, args.digits)
    if args.out:
        out = Path(args.out)
        check_output_dir(out.parent, "--out")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
        except OSError as err:
            raise ValueError(f"--out {out}: cannot write it ({err.strerror})") from None
        print(f"wrote {out}")
    else:
        print(text, end="")
    return EXIT_OK


def _samples(text: str) -> list[int]:
    return [integer(part) for part in text.split(",") if part.strip()]


def add_parser(subparsers) -> None:
    table = subparsers.add_parser(
        "table",
        help="a run's summary table (bias, variance, MSE with intervals) as LaTeX or Markdown",
        # a description is printed as it is (argparse expands only %(prog)s there): one %
        description="Print the summary table of a run directory: per problem, each "
        "estimator's bias ||E g - grad L||, covariance trace and mean squared error with their "
        "95% intervals (docs/intervals.md), and the p-value of 'unbiased'. A number and its "
        "interval share one power of ten and show --digits significant digits of the number.",
    )
    table.add_argument("run_dir", metavar="RUN_DIR", help="the run directory")
    table.add_argument(
        "--format",
        default="markdown",
        choices=list(FORMATS),
        help="latex (booktabs) or markdown (default)",
    )
    table.add_argument(
        "--digits", type=integer, default=3, help="significant digits of each number (default 3)"
    )
    table.add_argument("--problem", default=None, help="only these problems (comma-separated)")
    table.add_argument(
        "--samples", type=_samples, default=None, metavar="K[,K...]", help="only these K"
    )
    table.add_argument(
        "--out", default=None, metavar="FILE", help="write the table to FILE instead of printing it"
    )
    table.set_defaults(handler=main)
