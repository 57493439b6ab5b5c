"""``bench figures``: draw the figures of a run directory from its Parquet tables."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from bench.cli import EXIT_FAILED, EXIT_OK
from bench.files import check_output_dir
from bench.report.figures import FIGURES, load_tables, make_figures, parse_formats
from bench.report.theme import SIZES


def report_written(written: list[Path], notes: list[str]) -> int:
    """Print what was written and the notes; exit code 1 when no figure was drawn."""
    for path in written:
        print(f"wrote {path}")
    for note in notes:
        print(note)
    if not written:
        print("no figure applies to these tables", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def read_tables(run_dir: str | Path) -> dict:
    """``load_tables``, with an unreadable table as one line naming it (ValueError)."""
    try:
        return load_tables(run_dir)
    except (OSError, pa.ArrowException) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"{run_dir}: cannot read its tables ({first})") from None


def stderr_progress(enabled: bool = True) -> Callable[[str], None]:
    """A progress callback printing each line to stderr with the seconds since it was made
    (``bench figures: 12.3 s overview: drawing``); silent when not ``enabled``."""
    start = time.perf_counter()

    def report(line: str) -> None:
        if enabled:
            print(f"bench figures: {time.perf_counter() - start:5.1f} s {line}",
                  file=sys.stderr, flush=True)

    return report


def main(args: argparse.Namespace) -> int:
    """Draw the figures of a run directory."""
    out = Path(args.out) if args.out else Path(args.run_dir) / "figures"
    check_output_dir(out, "--out" if args.out else "figures directory")
    progress = stderr_progress(not args.no_progress)
    progress(f"reading the tables of {args.run_dir}")
    tables = read_tables(args.run_dir)
    progress(", ".join(f"{name}: {len(t)} rows" for name, t in tables.items()))
    written, notes = make_figures(
        tables, out, parse_formats(args.format), args.size, names=args.figure or None,
        progress=progress,
    )
    return report_written(written, notes)


def add_drawing_options(parser: argparse.ArgumentParser) -> None:
    """The options ``bench figures`` and ``bench paper`` share."""
    parser.add_argument("--format", default="png,pdf",
                        help="comma-separated output formats: png, pdf, svg (default png,pdf)")
    parser.add_argument("--size", default="double", choices=list(SIZES),
                        help="the text width of a paper template, for placement at 100%% "
                        "(8-9 pt text): icml-column 3.25 in (alias single), neurips 5.5 in, "
                        "icml-page 6.75 in (alias double, the default)")


def add_parser(subparsers) -> None:
    figures = subparsers.add_parser(
        "figures",
        help="draw paper figures from a run's Parquet tables",
        description="Draw the figures of a run directory (cells.parquet and/or train.parquet) "
        "into DIR/<figure>.<format>. Figures without data to show are skipped with a note. "
        f"Figures: {', '.join(FIGURES)}.",
    )
    figures.add_argument("run_dir", metavar="RUN_DIR", help="the run directory")
    figures.add_argument("--out", default=None, metavar="DIR",
                         help="output directory (default RUN_DIR/figures)")
    figures.add_argument("--figure", action="append", choices=list(FIGURES), default=[],
                         help="draw only this figure (repeatable; default: all that apply)")
    figures.add_argument("--no-progress", action="store_true",
                         help="no progress lines on stderr")
    add_drawing_options(figures)
    figures.set_defaults(handler=main)
