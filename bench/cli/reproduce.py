"""``bench reproduce``: rerun a published experiment and put our numbers next to the paper's."""

from __future__ import annotations

import argparse
import sys

from bench.cli import EXIT_FAILED, EXIT_OK, add_shared, integer
from bench.config import check_range, check_seed
from bench.threads import check_threads


def _list() -> int:
    from bench.reproduce import REPRODUCTIONS

    for name, cls in REPRODUCTIONS.items():
        runtime = "; ".join(f"{mode} {time}" for mode, time in cls.runtime.items())
        print(f"{name}: {cls.title}")
        print(f"    paper: {cls.paper}, {cls.target}")
        print(f"    estimators: {', '.join(cls.estimators)}")
        for missing in cls.missing():
            print(f"      waiting for estimator {missing} (not registered)")
        print(f"    run time (one CPU thread, imports not counted): {runtime}")
    return EXIT_OK


def main(args: argparse.Namespace) -> int:
    """List the reproductions, or run one and print its summary."""
    if args.list:
        if args.name:
            raise ValueError("give either --list or a reproduction NAME, not both")
        return _list()
    if not args.name:
        raise ValueError(
            "name a reproduction, e.g. bench reproduce relax2018_fig1, or use --list to see them"
        )
    check_threads(args.threads)
    check_seed(args.seed)
    if args.steps is not None:
        check_range("--steps", args.steps, 1, 2**40)
    import torch

    from bench.reproduce import get_reproduction, reproduce
    from bench.reproduce.output import summary_text

    cls = get_reproduction(args.name)
    mode = "full" if args.full else "short"
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"bench reproduce {cls.name} ({mode} version; expected "
        f"{cls.runtime.get(mode, 'unknown')} on one CPU thread)",
        file=sys.stderr,
    )
    for line in (f"  waiting for estimator {n} (not registered)" for n in cls.missing()):
        print(line, file=sys.stderr)
    outcome, written, elapsed = reproduce(
        cls.name,
        mode,
        args.out,
        seed=args.seed,
        steps=args.steps,
        data=args.data,
        progress=not args.no_progress,
    )
    print(summary_text(cls, outcome))
    print(f"\nran in {elapsed:.1f} s; wrote " + ", ".join(str(p) for p in written))
    return EXIT_OK if outcome.ok else EXIT_FAILED


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "reproduce",
        help="rerun a published experiment and compare with the paper (--list)",
        description="Rerun a published experiment with the suite's estimators and problems; "
        "write run.parquet, a comparison table (ours next to the published values, source "
        "cited; where the paper shows only a plot, its orderings are checked as claims) and "
        "figure.png. Estimators not registered yet are reported as waiting and left out. "
        "Exit code 1 when a claim fails on the run or a registered estimator could not run "
        "(docs/reproduce.md).",
    )
    parser.add_argument("name", nargs="?", metavar="NAME", help="a reproduction (see --list)")
    parser.add_argument(
        "--list",
        action="store_true",
        help="list the reproductions with papers, estimators and run times",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--short", action="store_true", help="the scaled-down version (default; what CI runs)"
    )
    size.add_argument("--full", action="store_true", help="the full version")
    parser.add_argument(
        "--out", default=None, help="output directory (default results/reproduce-NAME-MODE)"
    )
    add_shared(parser, "--seed")
    parser.add_argument(
        "--steps",
        type=integer,
        default=None,
        help="training steps in place of the version's own (training reproductions)",
    )
    parser.add_argument(
        "--data",
        default=None,
        metavar="PATH",
        help="an MNIST file (IDX or .npz) for the paper-scale VAE run (disarm2020_vae --full)",
    )
    add_shared(parser, "--threads", "--no-progress")
    parser.set_defaults(handler=main)
